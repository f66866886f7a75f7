"""The run's model cache, and a model known before its weights load (``ModelHandle``).

A pipeline computes cache keys and shape checks from the config and a weightless copy of
the network, so a step that only reads cached statistics never loads the weights.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_models import FAMILIES, tiny_config

from modularity.errors import ConfigError
from modularity.modality import IMAGE, TEXT, modality_of_model, modality_of_task
from modularity.models.cache import ModelCache
from modularity.models.handle import ModelHandle
from modularity.models.loading import load_model
from modularity.neurons.sites import site_widths
from modularity.pipeline import Pipeline

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["data.collect_size=512", "data.eval_size=256", "data.block_size=64"]
SWEEP = [
    "model=tiny_llama",
    "selection.fraction=0.1,0.2",
    "data.collect_size=128",
    "data.eval_size=128",
    "data.block_size=32",
    "trainer.enable_progress_bar=false",
    "trainer.accelerator=cpu",
    "logger=none",
]


def test_a_cache_hands_out_one_load_and_lets_the_oldest_go() -> None:
    models = ModelCache()
    one, two = tiny_config("llama", {"seed": 1}), tiny_config("llama", {"seed": 2})
    first = models.load(one)
    assert models.load(one) is first and models.holds(one)
    assert models.load(tiny_config("llama", {"seed": 1, "batch_size": 3})) is not first
    second = models.load(two)
    assert second is not first and len(models) == 1 and not models.holds(one)
    both = ModelCache(capacity=2)
    kept = both.load(one)
    both.load(two)
    assert both.load(one) is kept and len(both) == 2


def test_load_model_loads_afresh_each_call() -> None:
    cfg = tiny_config("gpt2", {"seed": 3})
    a, b = load_model(cfg), load_model(cfg)
    assert a is not b and a.model is not b.model
    for (name, x), (_, y) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert torch.equal(x, y), name


def test_a_cache_holds_at_least_one_model() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ModelCache(capacity=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_structure_without_weights_matches_the_loaded_model(family: str) -> None:
    handle = ModelHandle(tiny_config(family), ModelCache())
    structure = handle.structure
    assert all(p.is_meta for p in structure.model.parameters())
    assert not handle.is_loaded
    loaded = handle.loaded
    sites = ("mlp", "attn", "heads") if structure.layout.attn_out else ("mlp",)
    assert structure.n_layers == loaded.adapter.n_layers
    assert site_widths(structure, sites) == site_widths(loaded.adapter, sites)
    assert handle.modality is loaded.modality
    assert handle.identity == loaded.identity


@pytest.mark.slow
def test_a_step_that_reads_cached_statistics_loads_no_weights(make_cfg) -> None:
    cfg = make_cfg("model=tiny_llama", *SMALL, "task=code")
    first = Pipeline(cfg)
    task = first.main_task()
    selected = first.select(task)
    before = first.baseline(task, first.reference_of(task))

    models = ModelCache()
    again = Pipeline(cfg, models=models)
    task = again.main_task()
    reselected = again.select(task)
    rebaseline = again.baseline(task, again.reference_of(task))
    assert len(models) == 0, "the weights were loaded although every value was cached"
    assert torch.equal(reselected.mask, selected.mask)
    assert rebaseline["task"].values() == before["task"].values()
    again.evaluate(task, again.reference_of(task), reselected.mask)  # runs the model: loads
    assert len(models) == 1


def test_pipelines_of_one_run_share_its_loaded_model(make_cfg) -> None:
    models = ModelCache()
    pipe = Pipeline(make_cfg("model=tiny_llama", *SMALL), models=models)
    other = Pipeline(make_cfg("model=tiny_llama", *SMALL, "task=prose"), models=models)
    assert other.loaded is pipe.loaded
    assert pipe.with_data(collect_size=256).loaded is pipe.loaded
    assert Pipeline(make_cfg("model=tiny_llama", *SMALL)).loaded is not pipe.loaded


def test_task_and_model_kinds_name_one_modality_each() -> None:
    assert modality_of_task("text") is TEXT and modality_of_model("causal_lm") is TEXT
    assert modality_of_task("image") is IMAGE and modality_of_model("image_classifier") is IMAGE
    assert TEXT.item == "tokens" and IMAGE.item == "images"
    assert set(IMAGE.measures) < set(TEXT.measures)
    with pytest.raises(ConfigError, match="unknown task kind 'audio'; valid: text, image"):
        modality_of_task("audio")
    with pytest.raises(ConfigError, match="task 'digits' has image inputs; this model takes text"):
        TEXT.check_task("digits", "image")


@pytest.mark.slow
def test_the_jobs_of_an_in_process_sweep_load_the_model_once(tmp_path: Path) -> None:
    """``modularity -m`` with Hydra's basic launcher: every job runs in this process and
    loads through the one cache the command created."""
    code = (
        "import sys\n"
        "from modularity.models import loading\n"
        "from modularity.run import main\n"
        "real, loads = loading.load_model, []\n"
        "loading.load_model = lambda cfg: loads.append(cfg.name) or real(cfg)\n"
        f"sys.argv = ['modularity', '-m', *{SWEEP!r}, 'cache.dir={tmp_path / 'cache'}',\n"
        f"            'hydra.sweep.dir={tmp_path / 'sweep'}']\n"
        "main()\n"
        "print('loads', loads)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HYDRA_FULL_ERROR": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list((tmp_path / "sweep").glob("*/results.csv"))) == 2
    assert proc.stdout.splitlines()[-1] == "loads ['tiny_llama']"


def test_notebook_calls_pass_their_model_cache_to_the_run(monkeypatch) -> None:
    from modularity import api, run

    seen = []
    monkeypatch.setattr(run, "run", lambda cfg, models=None: seen.append(models))
    models = ModelCache()
    api.run_analysis("model=tiny_llama", models=models)
    api.run_analysis("model=tiny_llama")
    assert seen == [models, None]
