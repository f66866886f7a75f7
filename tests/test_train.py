"""The project's own models: seeded training is reproducible and atomic, checkpoints are
saved and load, the shipped copies meet their quality bars on held-out data, and loading
never trains."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf
from safetensors.torch import load_file
from transformers import AutoTokenizer

from modularity.config import load_model_config
from modularity.data.image_sources import load_image_set
from modularity.data.packing import pack_documents
from modularity.errors import ConfigError, ModularityError
from modularity.infra.paths import MODELS_ENV_VAR
from modularity.models.loading import load_model
from modularity.zoo import model_dirs
from modularity.zoo.checkpoints import checkpoint_steps
from modularity.zoo.cli import register_configs
from modularity.zoo.lm import domain_documents, lm_loss, lm_network
from modularity.zoo.model_dirs import (
    PACKAGED_MODELS,
    builtin_model_dir,
    list_checkpoints,
    read_record,
)
from modularity.zoo.recipes import ZOO_CONF_DIR, LmRecipe, load_recipe, recipe_names
from modularity.zoo.training import install, library_versions
from modularity.zoo.vit import classifier_metrics, split_pixels, vit_network

MODELS = ["tiny_vit_digits", "tiny_vit_fashion", "tiny_lm_text"]


@pytest.fixture
def no_user_models(tmp_path, monkeypatch):
    """An empty user model cache, so only the shipped copies count."""
    monkeypatch.setenv(MODELS_ENV_VAR, str(tmp_path / "user-models"))
    return tmp_path / "user-models"


def test_recipes_compose_with_hydra_as_loading_reads_them():
    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(ZOO_CONF_DIR), version_base="1.3"):
            for name in recipe_names():
                cfg = compose("config", overrides=[f"recipe={name}", "into=/tmp/x"])
                assert OmegaConf.to_object(cfg.recipe) == load_recipe(name), name
            with pytest.raises(Exception, match="epoch"):
                compose("config", overrides=["recipe=tiny_lm_text", "recipe.epoch=2"])
    finally:
        GlobalHydra.instance().clear()
    assert recipe_names() == sorted(MODELS)


def test_unknown_model_names_the_choices():
    with pytest.raises(ConfigError, match="tiny_vit_digits"):
        builtin_model_dir("tiny_vit_digit")


def test_checkpoint_steps_are_the_last_powers_of_two_below_the_end():
    assert checkpoint_steps(1700) == [8, 16, 32, 64, 128, 256, 512, 1024]
    assert checkpoint_steps(300) == [2, 4, 8, 16, 32, 64, 128, 256]
    assert checkpoint_steps(3) == [1, 2]


def test_training_is_seeded_and_atomic(tmp_path):
    first = install("tiny_vit_digits", tmp_path / "a", max_steps=3)
    second = install("tiny_vit_digits", tmp_path / "b", max_steps=3)
    for sub in ("", "checkpoints/step-000000", "checkpoints/step-000002"):
        a, b = (
            load_file(tmp_path / d / "tiny_vit_digits" / sub / "model.safetensors") for d in "ab"
        )
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        assert all(v.dtype == torch.float16 for v in a.values())
    assert first["checkpoints"] == second["checkpoints"]
    assert [c["name"] for c in first["checkpoints"]] == [
        "step-000000",
        "step-000001",
        "step-000002",
        "final",
    ]
    assert [c["examples_seen"] for c in first["checkpoints"]] == [0, 64, 128, 192]
    assert first["max_steps"] == 3 and first["steps"] == 3
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["tiny_vit_digits"]  # no .tmp-*


def test_cut_short_or_stale_copies_are_not_current(no_user_models):
    install("tiny_vit_digits", no_user_models, max_steps=2)
    assert builtin_model_dir("tiny_vit_digits") == PACKAGED_MODELS / "tiny_vit_digits"
    record_path = no_user_models / "tiny_vit_digits" / model_dirs.TRAINING_RECORD
    record = json.loads(record_path.read_text())
    record["max_steps"] = None
    record_path.write_text(json.dumps(record))
    assert builtin_model_dir("tiny_vit_digits") == no_user_models / "tiny_vit_digits"
    record["recipe"]["epochs"] += 1  # an older recipe
    record_path.write_text(json.dumps(record))
    assert builtin_model_dir("tiny_vit_digits") == PACKAGED_MODELS / "tiny_vit_digits"


def test_missing_model_is_a_one_line_error_naming_make_models(no_user_models, monkeypatch):
    monkeypatch.setattr(model_dirs, "PACKAGED_MODELS", no_user_models / "nothing-shipped")
    with pytest.raises(ModularityError, match="make models") as err:
        load_model(load_model_config("tiny_vit_digits"))
    assert "\n" not in str(err.value)
    assert not no_user_models.exists()  # nothing was trained or written


@pytest.mark.slow
def test_loading_cannot_reach_training():
    """Loading a model imports no training code at all, so it cannot train by accident."""
    code = "import sys, modularity.models.loading; print(sorted(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "modularity.models.loading" in out.stdout
    for module in ("modularity.zoo.training", "modularity.zoo.fitting", "lightning"):
        assert f"'{module}'" not in out.stdout, module


@pytest.mark.parametrize("name", MODELS)
def test_shipped_model_loads_without_training(name, no_user_models):
    assert builtin_model_dir(name) == PACKAGED_MODELS / name
    loaded = load_model(load_model_config(name))
    assert loaded.adapter.n_layers == 4


@pytest.mark.parametrize("name", MODELS)
def test_checkpoints_are_listed_in_step_order_with_aliases(name, no_user_models):
    checkpoints = list_checkpoints(name)
    steps = [c.step for c in checkpoints]
    assert steps == sorted(steps) and steps[0] == 0 and len(steps) >= 8
    assert checkpoints[-1].name == "final" and checkpoints[-1].path == PACKAGED_MODELS / name
    assert builtin_model_dir(name, checkpoint="init") == checkpoints[0].path
    assert builtin_model_dir(name, checkpoint="final") == builtin_model_dir(name)
    examples = [c.examples_seen for c in checkpoints]
    assert examples == sorted(examples) and examples[0] == 0
    with pytest.raises(ConfigError, match="init"):
        builtin_model_dir(name, checkpoint="step-999999")


@pytest.mark.parametrize("name", MODELS)
def test_every_recorded_checkpoint_loads(name, no_user_models):
    for checkpoint in list_checkpoints(name):
        if not checkpoint.path.is_dir():  # the LM's intermediate checkpoints are not shipped
            assert name == "tiny_lm_text" and checkpoint.step > 0
            with pytest.raises(ModularityError, match="make models"):
                builtin_model_dir(name, checkpoint=checkpoint.name)
            continue
        assert builtin_model_dir(name, checkpoint=checkpoint.name) == checkpoint.path
        loaded = load_model(
            load_model_config(name, {"builtin": None, "path": str(checkpoint.path)})
        )
        assert loaded.adapter.n_layers == 4, checkpoint.name
        metric = "loss" if name == "tiny_lm_text" else "accuracy"
        assert metric in checkpoint.held_out


def test_unshipped_checkpoint_is_a_one_line_error_naming_make_models(
    no_user_models, tmp_path, monkeypatch
):
    """What a fresh clone holds of the LM: the final model and its initial weights only."""
    shipped = tmp_path / "shipped" / "tiny_lm_text"
    shutil.copytree(PACKAGED_MODELS / "tiny_lm_text", shipped)
    for checkpoint in (shipped / "checkpoints").iterdir():
        if checkpoint.name != "step-000000":
            shutil.rmtree(checkpoint)
    monkeypatch.setattr(model_dirs, "PACKAGED_MODELS", shipped.parent)
    middle = list_checkpoints("tiny_lm_text")[4]
    with pytest.raises(ModularityError, match="make models") as err:
        builtin_model_dir("tiny_lm_text", checkpoint=middle.name)
    assert "\n" not in str(err.value)
    assert (
        builtin_model_dir("tiny_lm_text", checkpoint="init") == shipped / "checkpoints/step-000000"
    )


def _versions_differ(name: str) -> str | None:
    recorded = read_record(PACKAGED_MODELS / name)["versions"]
    current = library_versions()
    differ = {
        k: (recorded[k], current[k]) for k in ("torch", "transformers") if recorded[k] != current[k]
    }
    return f"trained with other library versions: {differ}" if differ else None


@pytest.mark.parametrize("name", MODELS)
def test_checkpoint_zero_is_the_recipes_initial_weights(name, no_user_models):
    reason = _versions_differ(name)
    if reason:
        pytest.skip(reason)
    recipe = load_recipe(name)
    if isinstance(recipe, LmRecipe):
        network = lm_network(recipe, AutoTokenizer.from_pretrained(builtin_model_dir(name)))
    else:
        network = vit_network(recipe, load_image_set(recipe.image_set))
    path = builtin_model_dir(name, checkpoint="init")
    stored = type(network).from_pretrained(path, dtype=torch.float16).state_dict()
    initial = network.half().state_dict()
    assert stored.keys() == initial.keys()
    for key, tensor in stored.items():
        assert torch.equal(tensor, initial[key]), key


def test_shipped_fashion_vit_records_at_least_85_percent_on_the_official_test_images():
    record = read_record(PACKAGED_MODELS / "tiny_vit_fashion")
    held_out = record["metrics"]["held_out"]
    assert held_out["n_images"] == 10_000 and held_out["accuracy"] >= 0.85, held_out
    assert record["train_seconds"] < 10 * 60


@pytest.mark.slow
@pytest.mark.parametrize(("name", "floor"), [("tiny_vit_digits", 0.95), ("tiny_vit_fashion", 0.85)])
def test_shipped_vit_is_accurate_on_held_out_images(name, floor, no_user_models):
    recipe = load_recipe(name)
    pixels, labels = split_pixels(load_image_set(recipe.image_set), "evaluate")
    metrics = classifier_metrics(load_model(load_model_config(name)).model, pixels, labels)
    recorded = read_record(PACKAGED_MODELS / name)["metrics"]["held_out"]["accuracy"]
    assert metrics["accuracy"] >= floor and metrics["accuracy"] == pytest.approx(recorded, abs=1e-3)


def test_shipped_lm_beats_the_unigram_baseline_on_held_out_text(no_user_models):
    record = read_record(PACKAGED_MODELS / "tiny_lm_text")
    loaded = load_model(load_model_config("tiny_lm_text"))
    recipe = load_recipe("tiny_lm_text")
    docs = domain_documents("code", "evaluate", recipe.seed)
    blocks = pack_documents(docs, loaded.tokenizer, recipe.context, 8192).input_ids
    loss = lm_loss(loaded.model, blocks)
    unigram = record["metrics"]["per_domain"]["code"]["unigram_loss"]
    assert loss < unigram - 1.0, (loss, unigram)


@pytest.mark.slow
def test_pruning_a_digits_neurons_hurts_that_digit_most(make_cfg):
    """The paper's phenomenon on the shipped ViT: at 5% per layer, the pruned digit loses
    (on average over the ten digits) at least three times the top-1 the others lose."""
    from modularity.run import run

    task_drops, other_drops = [], []
    for digit in range(10):
        cfg = make_cfg("model=tiny_vit_digits", f"task=digits-{digit}", "selection.fraction=0.05")
        rows = run(cfg).rows
        drops = rows[(rows.metric == "drop") & (rows.measure == "top1")].set_index("variant")
        task_drops.append(drops.value["task"])
        other_drops.append(drops.value["reference"])
    task_mean, other_mean = sum(task_drops) / 10, sum(other_drops) / 10
    print(f"mean top-1 drop (pp): pruned digit {task_mean:.2f}, other digits {other_mean:.2f}")
    assert task_mean > 1 and task_mean >= 3 * max(other_mean, 0.0), (task_drops, other_drops)
