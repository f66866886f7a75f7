"""Expanding a Hydra sweep into its jobs with Hydra's public override parser.

Used where a sweep's jobs must be known without launching them: a multirun checks every
job before the first one runs (:mod:`modularity.infra.sweep_check`).
Glob sweeps (``task=glob(digits-*)``) list the config repository, so parsing needs the
config loader of an initialised Hydra.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser


def expand(overrides: Sequence[str]) -> list[list[str]]:
    """Every job of a sweep: ``["a=1,2", "b=x"]`` -> ``[["a=1", "b=x"], ["a=2", "b=x"]]``."""
    loader = GlobalHydra.instance().config_loader()
    parsed = OverridesParser.create(config_loader=loader).parse_overrides(list(overrides))
    choices = []
    for override in parsed:
        key = override.get_key_element()
        if override.is_sweep_override():
            choices.append([f"{key}={value}" for value in override.sweep_string_iterator()])
        else:
            choices.append([override.input_line])
    return [list(job) for job in itertools.product(*choices)]
