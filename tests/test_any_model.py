"""Any model end to end: a tiny OPT, a tiny Gemma 3 and a family known only through the
config's ``layout`` (Phi) each run prune (then export), overlap and moefy."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig
from safetensors.torch import load_file
from tiny_models import inputs_for
from transformers import AutoModelForCausalLM

from modularity.checkpoint import export_run
from modularity.config import compose_config
from modularity.models.layout import LayoutAdapter
from modularity.models.loading import load_model
from modularity.neurons.masks import ablate
from modularity.run import run

SMALL = ["data.collect_size=512", "data.eval_size=256", "data.block_size=32"]


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> Path:
    """One cache for the module: the models share the byte tokenizer, so the text blocks
    are packed once; statistics stay apart (keyed by the model)."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def make_run_cfg(shared_cache, tmp_path):
    count = iter(range(100))

    def make(*overrides: str) -> DictConfig:
        cfg = compose_config(
            [
                f"cache.dir={shared_cache}",
                "trainer.enable_progress_bar=false",
                "trainer.accelerator=cpu",
                *SMALL,
                *overrides,
            ]
        )
        cfg.output_dir = str(tmp_path / f"run{next(count)}")
        return cfg

    yield make
    GlobalHydra.instance().clear()


@pytest.mark.slow
@pytest.mark.parametrize("model", ["tiny_opt", "tiny_gemma3", "tiny_phi_layout"])
def test_prune_export_overlap_and_moefy(model, make_run_cfg, tmp_path):
    cfg = make_run_cfg(f"model={model}", "task=code")
    rows = run(cfg).rows
    assert rows[rows.metric == "n_selected"].value.item() == 2 * round(0.05 * 64)
    assert rows[(rows.metric == "effect") & (rows.measure == "top1")].value.notna().all()
    loaded = load_model(cfg.model)
    assert isinstance(loaded.adapter, LayoutAdapter) == (model == "tiny_phi_layout")

    # The exported checkpoint computes what the masked model computes.
    mask = load_file(Path(cfg.output_dir) / "scores.safetensors")["mask"]
    report = export_run(cfg.output_dir, tmp_path / "export")
    assert report.structure == "structural" and report.width_after == 64 - 3
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "export").eval()
    inputs = inputs_for(loaded)
    with torch.no_grad(), ablate(loaded.adapter, mask, "zero"):
        masked = loaded.model(**inputs).logits
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, masked, rtol=0, atol=1e-5)

    overlap = run(make_run_cfg(f"model={model}", "analysis=overlap", "tasks=[code,prose]"))
    assert (overlap.rows.metric == "jaccard").any()
    moefy = run(
        make_run_cfg(f"model={model}", "analysis=moefy", "tasks=[code,prose]", "analysis.n_null=20")
    ).rows
    variants = set(moefy[moefy.metric == "alignment_z"].variant)
    assert "random" in variants and len(variants) >= 2  # the partitions and their control
