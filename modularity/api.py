"""The notebook API: :func:`prune`, :func:`ablate`, :func:`export`, :func:`run_analysis`,
:func:`moefy`, and :func:`load` to reopen a finished run (from the command line or from here).

The same runs as the command line, without one: configs are composed by Hydra with the
same defaults, checked the same way, and written to a run directory you choose (or the
standard ``outputs/<date>/<time>_<model>_<task>``, never the current directory). Bad input,
of any Python type, raises :class:`modularity.errors.ModularityError` whose message is the
command line's one line.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch
from omegaconf import DictConfig

from modularity.errors import ConfigError, invalid_choice

if TYPE_CHECKING:
    from modularity.models.cache import ModelCache

# Friendly keyword names for the settings a notebook changes most.
ALIASES = {
    "scorer": "scoring",
    "scope": "selection.scope",
    "ablation": "ablation.mode",
    "collect_size": "data.collect_size",
    "eval_size": "data.eval_size",
    "block_size": "data.block_size",
    "cache_dir": "cache.dir",
    "progress_bar": "trainer.enable_progress_bar",
}


def _value(value: Any) -> str:
    """A Python value as Hydra override syntax."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_value(v) for v in value) + "]"
    return str(value)


def as_overrides(settings: dict[str, Any]) -> list[str]:
    """Keyword settings as Hydra overrides: an alias, or a dotted key written with ``__``
    (``data__collect_size=4096`` is ``data.collect_size=4096``)."""
    out = []
    for key, value in settings.items():
        key = ALIASES.get(key, key.replace("__", "."))
        out.append(f"{key}={_value(value)}")
    return out


def compose(*overrides: str, run_dir: str | Path | None = None) -> DictConfig:
    """The run config the command line would compose from ``overrides``, checked the same
    way (a bad value raises :class:`~modularity.errors.ModularityError` with the command
    line's one-line message)."""
    from modularity.infra.validate import compose_checked

    cfg = compose_checked(list(overrides))
    cfg.output_dir = None if run_dir is None else str(_path("run_dir", run_dir))
    return cfg


def _path(what: str, value: Any) -> Path:
    """``value`` as a path, or the one-line error naming ``what``."""
    if not isinstance(value, str | PathLike) or not str(value):
        raise ConfigError(f"{what} must be a directory path (str or Path); got {value!r}")
    return Path(value)


def _choice(group: str, value: Any) -> str:
    """``value`` as an option name of config ``group`` (``model``, ``task``)."""
    from modularity.config import group_options

    if not isinstance(value, str):  # named as the command line would read it
        raise invalid_choice(group, value if value is None else str(value), group_options(group))
    return value


@dataclass(frozen=True)
class PruneResult:
    """A selective-pruning run: what was selected, what it did, and where it was written.

    ``rows`` is the run's tidy table (``results.csv``): every drop and the effect with its
    95% interval, stability, data sizes. ``effect`` is the headline (task top-1 drop minus
    reference top-1 drop, percentage points) with ``effect_interval``.
    """

    mask: torch.Tensor  # [layers, neurons] bool
    scores: torch.Tensor  # [layers, neurons] float64
    rows: pd.DataFrame
    config: DictConfig
    run_dir: Path

    def metric(self, metric: str, variant: str = "", measure: str = "") -> pd.Series:
        rows = self.rows[
            (self.rows.metric == metric)
            & (self.rows.variant == variant)
            & (self.rows.measure == measure)
        ]
        if rows.empty:
            raise KeyError(f"no row {metric!r} (variant {variant!r}, measure {measure!r})")
        return rows.iloc[0]

    @property
    def effect(self) -> float:
        return float(self.metric("effect", "task-reference", "top1").value)

    @property
    def effect_interval(self) -> tuple[float, float]:
        row = self.metric("effect", "task-reference", "top1")
        return float(row.low), float(row.high)

    @property
    def stability(self) -> float:
        return float(self.metric("stability").value)


def run_analysis(
    *overrides: str, run_dir: str | Path | None = None, models: ModelCache | None = None
) -> Any:
    """Run any analysis from Hydra overrides (``"analysis=overlap", "tasks=[code,prose]"``);
    returns :class:`modularity.analyses.base.RunResult`. ``models``: a
    :class:`modularity.models.cache.ModelCache` that calls share, so a model loads once."""
    from modularity.run import run

    return run(compose(*overrides, run_dir=run_dir), models)


def _strings(what: str, values: Any) -> list[str]:
    """Hydra overrides given as a list of strings (a lone string is one override)."""
    values = [values] if isinstance(values, str) else values
    if not isinstance(values, Sequence) or not all(isinstance(v, str) for v in values):
        raise ConfigError(f"{what} must be strings such as 'task=code'; got {values!r}")
    return list(values)


def prune(
    model: str = "tiny_lm_text",
    task: str = "code",
    fraction: float = 0.05,
    *,
    run_dir: str | Path | None = None,
    overrides: Sequence[str] = (),
    models: ModelCache | None = None,
    **settings: Any,
) -> PruneResult:
    """Selective pruning of ``task`` on ``model``: select the top ``fraction`` of neurons by
    task score, ablate them, and measure task and reference before and after.

    ``settings`` are further options (``scorer="abs"``, ``scope="global"``,
    ``collect_size=4096``, ``data__block_size=64``); ``overrides`` Hydra overrides as typed
    on the command line; ``models`` a model cache shared between calls.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        raise ConfigError(f"fraction={fraction!r} must be a number in (0, 1]")
    result = run_analysis(
        f"model={_choice('model', model)}",
        f"task={_choice('task', task)}",
        f"selection.fraction={fraction}",
        "analysis=prune",
        *as_overrides(settings),
        *_strings("overrides", overrides),
        run_dir=run_dir,
        models=models,
    )
    extras = result.extras
    return PruneResult(extras["mask"], extras["scores"], result.rows, result.config, result.out_dir)


@contextmanager
def ablate(
    model: torch.nn.Module,
    mask: torch.Tensor,
    mode: str = "zero",
    means: torch.Tensor | None = None,
    site: str = "mlp",
) -> Iterator[torch.nn.Module]:
    """Ablate the units of ``site`` in ``mask`` (``[layers, units]`` bool) of a Hugging Face
    model you loaded yourself, for the ``with`` body; the model is restored bit for bit after.

    ``site`` is ``mlp`` (MLP neurons), ``attn`` (attention neurons, the attention output
    projection's input columns) or ``heads`` (whole heads). ``mode="mean"`` replaces them by
    ``means`` (``[layers, columns]`` of that input; for heads the attention neurons' means)
    instead of zero.
    """
    from modularity.checkpoint import checked_means
    from modularity.models.adapter import ModelAdapter
    from modularity.neurons.masks import ablate as ablate_sites
    from modularity.neurons.sites import check_unit_mask, column_mask

    adapter = ModelAdapter.for_model(model)
    mask = check_unit_mask(adapter, site, mask)
    columns = column_mask(adapter, site, mask).shape[1]
    means = checked_means(mode, means, adapter, columns)
    with ablate_sites(adapter, mask, mode, means, site):
        yield model


def export(source: PruneResult | str | Path, out_dir: str | Path) -> Any:
    """Write the pruned model of a pruning run (a :class:`PruneResult` or its run
    directory) as a Hugging Face checkpoint; returns the export report."""
    run_dir = source.run_dir if isinstance(source, PruneResult) else _path("source", source)
    out = _path("out_dir", out_dir)
    from modularity.checkpoint import export_run

    return export_run(run_dir, out)


def moefy(model: torch.nn.Module, k: int | float = 0.25, **options: Any) -> torch.nn.Module:
    """MoEfy a gated-MLP Hugging Face model you loaded (Llama, Mistral, Qwen, SmolLM2), in
    place: each MLP computes only ``k`` experts per token (an int, or a share of them).

    ``options``: ``method`` (kmeans, coactivation, random), ``router`` (similarity, mlp,
    oracle), ``experts`` or ``neurons_per_expert``, ``data`` (token ids ``[items, tokens]``,
    needed by coactivation and mlp), ``seed``. See :mod:`modularity.routing.build`.
    """
    from modularity.routing.build import moefy_model

    return moefy_model(model, k, **options)


def load(run_dir: str | Path) -> PruneResult | Any:
    """Reopen a finished run directory as the object the API returned for it: a
    :class:`PruneResult` for a pruning run (mask and scores from ``scores.safetensors``),
    else a :class:`modularity.analyses.base.RunResult` (its ``extras`` empty)."""
    from omegaconf import OmegaConf
    from safetensors.torch import load_file

    from modularity.analyses.base import RESULTS, RunResult, analysis_name
    from modularity.errors import ModularityError
    from modularity.infra.artefacts import verify_run_dir

    run = _path("run_dir", run_dir)
    config_path, results = run / ".hydra" / "config.yaml", run / "results.parquet"
    for needed in (config_path, results):
        if not needed.is_file():
            raise ModularityError(
                f"{run} is not a finished run directory: {needed.relative_to(run)} is missing "
                f"(a run writes it with {RESULTS} when it ends)"
            )
    verify_run_dir(run, ["results.parquet", "scores.safetensors"])  # where checksummed
    config = OmegaConf.load(config_path)
    rows = pd.read_parquet(results)
    if analysis_name(config) != "prune":
        return RunResult(rows, run, config, {})
    tensors = load_file(run / "scores.safetensors")
    return PruneResult(tensors["mask"], tensors["scores"], rows, config, run)
