"""Composition: typed choices fail at composition, typos are rejected, both model spellings
work, task families are generated, experiments name their tasks once."""

from __future__ import annotations

import pytest
from cli import sweep_jobs
from hydra.errors import ConfigCompositionException

from modularity.config import (
    compose_config,
    family_tasks,
    group_options,
    hydra_context,
    load_task_config,
    normalise_overrides,
)
from modularity.errors import ConfigError
from modularity.infra.validate import check_config, unknown_keys


@pytest.mark.parametrize(
    "override",
    ["selection.scope=bogus", "ablation.mode=half", "model.dtype=float8", "scoring=nope"],
)
def test_bad_choice_fails_at_composition(override):
    with pytest.raises(ConfigCompositionException):
        compose_config([override])


def test_typo_in_an_existing_node_fails_at_composition():
    with pytest.raises(ConfigCompositionException):
        compose_config(["task.blok_size=64"])


def test_typo_added_with_plus_is_rejected_with_a_suggestion():
    cfg = compose_config(["+modle=tiny_llama"])
    with pytest.raises(ConfigError, match=r"unknown config key 'modle' \(did you mean 'model'\?\)"):
        check_config(cfg)


def test_unknown_nested_key_is_found():
    cfg = compose_config(["+selection.fractoin=0.1"])
    assert unknown_keys(cfg, type(None)) == []  # not a schema: nothing to say
    with pytest.raises(ConfigError, match="selection.fractoin"):
        check_config(cfg)


def test_both_model_spellings_compose_with_and_without_an_experiment():
    assert normalise_overrides(["+model=tiny_llama", "+x=1"]) == ["model=tiny_llama", "+x=1"]
    assert compose_config([]).model.name == "tiny_lm_text"  # the bare run has a model
    for spelling in ("+model=tiny_llama", "model=tiny_llama"):
        assert compose_config([spelling]).model.name == "tiny_llama"
        with_experiment = compose_config(["experiment=embedded_text", spelling])
        assert with_experiment.model.name == "tiny_llama"
    assert compose_config(["experiment=embedded_digits"]).model.name == "tiny_vit_digits"


def test_task_families_are_generated_with_their_reference():
    tasks = group_options("task")
    assert {f"digits-{d}" for d in range(10)} <= set(tasks)
    assert "cifar20-fish" in tasks and "fashion-tops" in tasks and "fashion-sneaker" in tasks
    # One-class superclasses would duplicate their class's task.
    assert "fashion-bags" not in tasks and "fashion-bag" in tasks
    digit = load_task_config("digits-3")
    assert digit.classes == ["3"] and digit.reference == "digits"
    assert load_task_config("cifar20-fish").hub.label_field == "coarse_label"
    assert len(family_tasks("cifar20")) == 20


def test_glob_sweeps_over_generated_tasks():
    with hydra_context():
        jobs = sweep_jobs(["task=glob(digits-*)", "selection.fraction=0.1,0.2"])
    assert len(jobs) == 20
    assert ["task=digits-0", "selection.fraction=0.1"] in jobs


@pytest.mark.parametrize("name", group_options("experiment"))
def test_experiments_name_their_tasks_once(name):
    cfg = compose_config([f"experiment={name}"], hydra=True)
    swept = (cfg.hydra.sweeper.params or {}).get("task")
    if swept is not None:  # a pruning sweep over tasks; other analyses compare them in one job
        assert swept == ",".join(cfg.tasks)
    for task in cfg.tasks:
        assert load_task_config(task, cfg.data).name == task


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["task=pile"], "'pile' is its own reference"),
        (["task=digits", "model=tiny_vit"], "'digits' is its own reference"),
        (["selection.fraction=0"], "outside (0, 1]"),
        (["data.collect_size=0"], "data.collect_size=0 must be a whole number >= 1"),
        (["data.block_size=0"], "data.block_size=0"),
        (["model.batch_size=0"], "model.batch_size=0"),
        (["layers=[]"], "layers=[] selects nothing"),
        (["trainer.precision=fp8"], "fp8"),
        (["trainer.accelerator=gpu"], "gpu"),
    ],
)
def test_checks_before_anything_runs(overrides, message):
    cfg = compose_config(overrides)
    with pytest.raises(ConfigError) as err:
        check_config(cfg)
    assert message in str(err.value) and "\n" not in str(err.value)
