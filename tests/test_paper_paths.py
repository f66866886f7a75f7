"""The paper's experiments, offline: ``experiment=mistral_domains`` and ``experiment=vit_cifar20``
end to end on architecture-identical tiny models (a ``MistralForCausalLM`` and a
``ViTForImageClassification`` saved with ``save_pretrained``) and local copies of the hub
datasets in their own layout and schema, read through the same hub code path."""

from __future__ import annotations

import json
import sysconfig
import zipfile
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest

from modularity.api import run_analysis
from modularity.config import load_model_config
from modularity.data.image_classes import CIFAR100_SUPERCLASSES
from modularity.models.loading import load_model

pytestmark = pytest.mark.slow
CAMEL_COLUMNS = ["role_1", "topic;", "sub_topic", "message_1", "message_2"]


def python_sources(n: int, offset: int = 0) -> list[str]:
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[offset : offset + n]
    return [p.read_text(errors="replace")[:3000] for p in files]


def write_text_mirror(mirror: Path) -> None:
    """Local copies of the hub datasets mistral_domains reads, laid out as on the hub."""
    code = mirror / "codeparrot" / "github-code-clean" / "data"
    code.mkdir(parents=True)
    sources = python_sources(160)
    datasets.Dataset.from_dict(
        {
            "code": sources,
            "repo_name": ["r/r"] * len(sources),
            "path": [f"f{i}.py" if i % 3 else f"f{i}.c" for i in range(len(sources))],
            "license": ["mit"] * len(sources),
            "size": [len(s) for s in sources],
        }
    ).to_parquet(code / "train-00000-of-00880.parquet")
    words = " ".join(python_sources(40, 100)).split()
    for name in ("biology", "chemistry", "physics", "math"):
        repo = mirror / "camel-ai" / name
        repo.mkdir(parents=True)
        with zipfile.ZipFile(repo / f"{name}.zip", "w") as archive:
            for i in range(300):
                answer = f"{name} " + " ".join(words[(i * 37) % (len(words) - 100) :][:60])
                record = dict(zip(CAMEL_COLUMNS, ["Expert", name, "sub", f"q{i}", answer]))
                archive.writestr(f"{i:04d}.json", json.dumps(record))
    pile = mirror / "nickypro" / "minipile" / "data"
    pile.mkdir(parents=True)
    texts = [" ".join(words[(i * 50) % (len(words) - 100) :][:80]) for i in range(400)]
    datasets.Dataset.from_dict({"text": texts}).to_parquet(pile / "train-00000-of-00001.parquet")


def write_tiny_mistral(path: Path) -> None:
    from transformers import MistralConfig, MistralForCausalLM

    tokenizer = load_model(load_model_config("tiny_lm_text")).tokenizer
    config = MistralConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
    )
    MistralForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)


def test_mistral_domains_offline_end_to_end(tmp_path):
    mirror, model = tmp_path / "mirror", tmp_path / "mistral"
    write_text_mirror(mirror)
    write_tiny_mistral(model)
    common = [
        "experiment=mistral_domains",
        f"model.path={model}",
        f"data.hub_mirror={mirror}",
        "data.collect_size=2048",
        "data.eval_size=1024",
        "data.block_size=64",
        "tasks=[code,python,biology]",
        f"cache.dir={tmp_path / 'cache'}",
        "trainer.enable_progress_bar=false",
    ]
    for task in ("code", "biology"):
        for fraction in (0.05, 0.1):
            result = run_analysis(
                *common,
                f"task={task}",
                f"selection.fraction={fraction}",
                run_dir=tmp_path / f"{task}-{fraction}",
            )
            rows = result.rows
            assert result.config.trainer.precision == "bf16-true"
            assert (rows.metric == "effect").any()
            tokens = rows[rows.metric == "collect_tokens"].set_index("variant").value
            assert tokens["task"] > 0 and tokens["reference"] > 0
    rows = set_analyses(common, tmp_path, match_tasks="[code,biology]")
    assert (rows["overlap"].metric == "mantel_r").any()
    assert (rows["moefy"].metric == "alignment_z_by_depth").any()
    assert (rows["match"].metric == "matched_fraction").sum() == 2


def set_analyses(common: list[str], tmp_path: Path, match_tasks: str) -> dict[str, pd.DataFrame]:
    """The rows of the paper's analyses of task sets on one model: overlap with two random
    twins, MoEfication, and matched damage on ``match_tasks``."""
    settings = {
        "overlap": ["analysis.compare_random=true", "analysis.twins=2"],
        "moefy": ["analysis.n_null=50"],
        "match": [f"tasks={match_tasks}", "analysis.max_steps=3"],
    }
    return {
        name: run_analysis(*common, f"analysis={name}", *extra, run_dir=tmp_path / name).rows
        for name, extra in settings.items()
    }


def write_cifar_mirror(mirror: Path, per_class: int = 6) -> None:
    """A local copy of uoft-cs/cifar100 (parquet, config cifar100) with its label schema."""
    features = datasets.Features(
        {
            "img": datasets.Image(),
            "fine_label": datasets.ClassLabel(num_classes=100),
            "coarse_label": datasets.ClassLabel(names=list(CIFAR100_SUPERCLASSES)),
        }
    )
    rng = np.random.default_rng(0)
    folder = mirror / "uoft-cs" / "cifar100" / "cifar100"
    folder.mkdir(parents=True)
    for split, n in (("train", per_class), ("test", per_class)):
        coarse = np.repeat(np.arange(20), n)
        images = [(rng.random((32, 32, 3)) * 60 + 10 * c).astype(np.uint8) for c in coarse]
        datasets.Dataset.from_dict(
            {"img": images, "fine_label": (coarse * 5).tolist(), "coarse_label": coarse.tolist()},
            features=features,
        ).to_parquet(folder / f"{split}-00000-of-00001.parquet")


def write_tiny_vit(path: Path) -> None:
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_labels=20,
    )
    ViTForImageClassification(config).save_pretrained(path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)


def test_vit_cifar20_offline_end_to_end(tmp_path):
    mirror, model = tmp_path / "mirror", tmp_path / "vit"
    write_cifar_mirror(mirror)
    write_tiny_vit(model)
    common = [
        "experiment=vit_cifar20",
        f"model.path={model}",
        f"data.hub_mirror={mirror}",
        "tasks=[cifar20-fish,cifar20-trees,cifar20-people]",
        f"cache.dir={tmp_path / 'cache'}",
        "trainer.enable_progress_bar=false",
    ]
    for fraction in (0.05, 0.2):
        result = run_analysis(
            *common,
            "task=cifar20-fish",
            f"selection.fraction={fraction}",
            run_dir=tmp_path / f"fish-{fraction}",
        )
        units = result.rows[result.rows.metric == "evaluate_units"].set_index("variant").value
        assert units["task"] == 6 and units["reference"] == 19 * 6  # the other superclasses
    rows = set_analyses(common, tmp_path, match_tasks="[cifar20-fish,cifar20-trees]")
    assert (rows["overlap"].metric == "index_jaccard").any()
    assert (rows["moefy"].metric == "alignment_z").any()
    assert (rows["match"].metric == "cross_ratio").sum() == 4
