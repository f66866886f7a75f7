"""Checks a composed config passes before anything is loaded or computed.

Hydra and the schema already reject misspelt keys and bad choices; these are the rules a
schema cannot state: keys added with ``+`` that the schema does not know, sizes that make no
sense, a task scored against itself, Trainer arguments Lightning would refuse. Each failure
is one line naming the bad value and what would be valid.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from modularity.config import (
    Config,
    choice,
    group_options,
    load_task_config,
    with_data_settings,
)
from modularity.errors import ConfigError
from modularity.verdicts import check_verdict_config

if TYPE_CHECKING:
    from modularity.analyses.base import Analysis

# Nodes of the schema that hold free-form mappings (passed to a library or a data source).
OPEN_NODES = {"analysis", "trainer", "logger", "hydra"}


def unknown_keys(node: Any, schema: type, path: str = "") -> list[str]:
    """Dotted keys of ``node`` that the dataclass ``schema`` does not declare (keys added
    with ``+key=...`` bypass Hydra's struct check: ``+modle=tiny_llama`` must not run)."""
    if not isinstance(node, DictConfig) or not dataclasses.is_dataclass(schema):
        return []
    declared = {f.name: f.type for f in dataclasses.fields(schema)}
    hints = _type_hints(schema)
    bad = []
    for key in node:
        where = f"{path}{key}"
        if key not in declared:
            if not (path == "" and key in OPEN_NODES):
                bad.append(where)
            continue
        if key in OPEN_NODES and path == "":
            continue
        inner = hints.get(key)
        if dataclasses.is_dataclass(inner):
            bad += unknown_keys(node[key], inner, f"{where}.")
    return bad


def _type_hints(schema: type) -> dict[str, Any]:
    """Field types of a dataclass, with ``X | None`` reduced to ``X``."""
    import typing

    hints = typing.get_type_hints(schema)
    out = {}
    for name, hint in hints.items():
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        out[name] = args[0] if len(args) == 1 else hint
    return out


def check_known_keys(cfg: DictConfig) -> None:
    bad = unknown_keys(cfg, Config)
    if bad:
        known = [f.name for f in dataclasses.fields(Config)]
        hints = []
        for key in bad:
            close = difflib.get_close_matches(key.split(".")[-1], known, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ConfigError(
            f"unknown config key {', '.join(hints)}; valid top-level keys: {', '.join(known)}"
        )


def _positive(what: str, value: Any) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ConfigError(f"{what}={value!r} must be a whole number >= 1")


def check_task(task: DictConfig, what: str = "task") -> None:
    """Sizes, a source that can be built, and a reference that exists and is not the task
    itself."""
    from modularity.data.sources import source_of  # imports the datasets library

    source_of(task)
    for key in ("collect_size", "eval_size", "block_size"):
        _positive(f"{what}.{key}", task[key])
    if not task.reference:
        raise ConfigError(f"{what} {task.name!r} names no reference (set task.reference)")
    if task.reference not in group_options("task"):
        raise ConfigError(
            f"{what} {task.name!r} names an unknown reference {task.reference!r}; valid: "
            f"{', '.join(group_options('task'))}"
        )
    if task.reference == task.name:
        raise ConfigError(
            f"{what} {task.name!r} is its own reference: a task cannot be scored against "
            "itself; choose one of the tasks that use it as reference, e.g. "
            f"{', '.join(tasks_referring_to(task.name)[:6]) or 'another task'}"
        )


def tasks_referring_to(reference: str) -> list[str]:
    """Task configs whose reference is ``reference`` (for error messages). The generated
    families' references are known without composing each of their tasks."""
    from modularity.config import task_families

    generated = {
        f"{prefix}-{suffix}": family_reference
        for prefix, (family_reference, members) in task_families().items()
        for suffix in members
    }
    return [
        name
        for name in group_options("task")
        if name != reference and (generated.get(name) or _own_reference(name)) == reference
    ]


def _own_reference(task: str) -> str | None:
    """The reference a task's YAML file names (read, not composed: these files have no
    defaults list to inherit one from)."""
    from omegaconf import OmegaConf

    from modularity.config import CONF_DIR

    return OmegaConf.load(CONF_DIR / "task" / f"{task}.yaml").get("reference")


def check_config(cfg: DictConfig) -> Analysis:
    """Every check that needs no model; raises ``ConfigError`` with one line. Returns the
    run's analysis, checked. Lightning's trainer check comes last: importing Lightning
    takes seconds, which a typo elsewhere need not wait for."""
    check_known_keys(cfg)
    fraction = cfg.selection.fraction
    if not 0 < fraction <= 1:
        raise ConfigError(f"selection.fraction={fraction} is outside (0, 1]")
    for key in ("collect_size", "eval_size", "block_size"):
        _positive(f"data.{key}", cfg.data[key])
    _positive("model.batch_size", cfg.model.batch_size)
    # Imported here: scoring needs torch, which the entry point's --help does not.
    from modularity.neurons.scoring import check_scorer

    check_scorer(cfg.scoring.scorer)
    if cfg.layers is not None and not cfg.layers:
        raise ConfigError("layers=[] selects nothing; give layer indices, or null for all")
    check_verdict_config(cfg.verdict)
    from modularity.neurons.sites import check_site_scorer

    check_site_scorer(choice(cfg.site), choice(cfg.scoring.scorer))  # an unknown site too
    check_task(with_data_settings(cfg.task, cfg.data))
    for name in cfg.tasks:
        check_task(load_task_config(name, cfg.data), f"task in tasks, {name!r}:")
    from modularity.analyses.base import load_analysis

    analysis = load_analysis(cfg.analysis)
    analysis.check(cfg)
    check_trainer(cfg.trainer)
    return analysis


def check_trainer(trainer_cfg: DictConfig) -> None:
    """Build the Trainer once: Lightning rejects a bad device, precision or strategy here,
    in one line, instead of after the model is loaded."""
    from modularity.infra.trainer import make_trainer, trainer_arguments

    try:
        make_trainer(trainer_cfg)
    except Exception as err:  # noqa: BLE001 - Lightning raises several types; all are input errors
        reason = err.__cause__ or err  # Hydra's instantiate wraps Lightning's reason
        message = str(reason).strip().splitlines()[0] if str(reason).strip() else type(err).__name__
        given = {k: v for k, v in trainer_arguments(trainer_cfg).items() if k != "_target_"}
        raise ConfigError(f"trainer {given}: {message}") from err


# Config groups whose options a user names on the command line.
CHOICE_GROUPS = ("model", "task", "analysis", "scoring", "logger", "experiment")


def _site_names() -> list[str]:
    from modularity.neurons.sites import site_names  # imports torch: only when asked

    return site_names()


# Plain keys whose value is one of a registry's names, checked the same way.
CHOICE_KEYS = {"site": _site_names}


def check_group_choices(overrides: list[str]) -> None:
    """Every ``group=option`` (or sweep of options) names an existing option; one line
    naming the bad one and the valid ones, instead of Hydra's page-long listing."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import Glob

    parser = OverridesParser.create()
    for line in overrides:
        try:
            (override,) = parser.parse_overrides([line])
        except Exception:  # noqa: BLE001 - not an override (an option's value), or Hydra
            continue  # reports the syntax error itself, with context
        group = override.get_key_element().lstrip("+~")
        if group not in (*CHOICE_GROUPS, *CHOICE_KEYS) or override.value_type is None:
            continue
        if override.is_sweep_override():
            if isinstance(override.value(), Glob):  # matches options, so none is unknown
                continue
            values = list(override.sweep_string_iterator())
        else:
            values = [override.get_value_element_as_str()]
        valid = CHOICE_KEYS[group]() if group in CHOICE_KEYS else group_options(group)
        for value in values:
            if value not in valid and value != "null":
                raise ConfigError(f"unknown {group} {value!r}; valid: {', '.join(valid)}")


def compose_checked(overrides: list[str]) -> DictConfig:
    """The config the command line composes from ``overrides``, after the same checks:
    each override a string, each group choice an existing option, then Hydra's own (a
    misspelt key, a value of the wrong type) as one line instead of its exception chain."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from modularity.config import compose_config, normalise_overrides

    bad = [o for o in overrides if not isinstance(o, str)]
    if bad:
        raise ConfigError(f"overrides must be strings such as 'task=code'; got {bad[0]!r}")
    arguments = normalise_overrides(overrides)
    check_group_choices(arguments)
    try:
        return compose_config(arguments)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(one_line(err)) from err


def one_line(err: BaseException) -> str:
    """An exception and its cause in one line (Hydra puts the reason in the cause)."""
    lines = [str(e).strip().splitlines()[0] for e in (err, err.__cause__) if e and str(e).strip()]
    return ": ".join(dict.fromkeys(lines)) or type(err).__name__
