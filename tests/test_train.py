"""The project's own trained models: seeded training is reproducible, the shipped copies
meet their quality bars on held-out data, and loading never retrains a current model."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from modularity.zoo import train
from modularity.config import load_model_config
from modularity.data.image_sources import load_image_set
from modularity.errors import ModularityError
from modularity.models.loading import load_model
from modularity.paths import MODELS_ENV_VAR


def test_unknown_model_names_the_choices():
    with pytest.raises(ModularityError, match="tiny_vit_digits"):
        train.builtin_model_dir("tiny_vit_digit")


def test_training_is_seeded_and_atomic(tmp_path):
    first = train.install("tiny_vit_digits", tmp_path / "a", max_steps=3)
    second = train.install("tiny_vit_digits", tmp_path / "b", max_steps=3)
    weights = [load_file(tmp_path / d / "tiny_vit_digits" / "model.safetensors") for d in "ab"]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert first["metrics"]["held_out"] == second["metrics"]["held_out"]
    assert first["max_steps"] == 3
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["tiny_vit_digits"]  # no .tmp-*


def test_cut_short_model_is_not_current(tmp_path, monkeypatch):
    train.install("tiny_vit_digits", tmp_path, max_steps=2)
    recipe = train.RECIPES["tiny_vit_digits"]
    assert not train._is_current(tmp_path / "tiny_vit_digits", recipe)


@pytest.mark.parametrize("name", ["tiny_vit_digits", "tiny_lm_text"])
def test_shipped_model_loads_without_training(name, tmp_path, monkeypatch):
    monkeypatch.setenv(MODELS_ENV_VAR, str(tmp_path))
    monkeypatch.setattr(train, "install", lambda *a, **k: pytest.fail("retrained"))
    assert train.builtin_model_dir(name) == train.PACKAGED_MODELS / name
    loaded = load_model(load_model_config(name))
    assert loaded.adapter.n_layers == 4


def test_shipped_digits_vit_is_accurate_on_held_out_images():
    data = load_image_set("digits")
    held_out = train.image_indices(data, "evaluate")
    net = load_model(load_model_config("tiny_vit_digits")).model
    pixels = torch.from_numpy(data.images[held_out] * 2 - 1)
    metrics = train.classifier_metrics(net, pixels, torch.from_numpy(data.labels[held_out]))
    assert metrics["accuracy"] >= 0.95, metrics


def test_shipped_lm_beats_the_unigram_baseline_on_held_out_text():
    shipped = train.PACKAGED_MODELS / "tiny_lm_text"
    record = json.loads((shipped / train.TRAINING_RECORD).read_text())
    loaded = load_model(load_model_config("tiny_lm_text"))
    recipe = train.RECIPES["tiny_lm_text"]
    docs = train.domain_documents("code", "evaluate")
    blocks = train.pack_documents(docs, loaded.tokenizer, recipe.context, 8192)
    loss = train.lm_loss(loaded.model, blocks)
    unigram = record["metrics"]["per_domain"]["code"]["unigram_loss"]
    assert loss < unigram - 1.0, (loss, unigram)


@pytest.mark.slow
def test_pruning_a_digits_neurons_hurts_that_digit_most(make_cfg):
    """The paper's phenomenon on the shipped ViT: at 5% per layer, the pruned digit loses
    (on average over the ten digits) at least three times the top-1 the others lose."""
    from modularity.run import run

    task_drops, other_drops = [], []
    for digit in range(10):
        cfg = make_cfg("+model=tiny_vit_digits", f"task=digits-{digit}", "selection.fraction=0.05")
        result = run(cfg)
        task_drops.append(result["drop"]["task"]["top1"])
        other_drops.append(result["drop"]["reference"]["top1"])
    task_mean, other_mean = sum(task_drops) / 10, sum(other_drops) / 10
    print(f"mean top-1 drop: pruned digit {task_mean:.4f}, other digits {other_mean:.4f}")
    assert task_mean > 0.01 and task_mean >= 3 * max(other_mean, 0.0), (task_drops, other_drops)
