"""Reading and grouping tidy results tables (``results.csv`` of a run, ``report.csv`` of
many): the helpers report figures and summaries share, whatever analysis wrote the rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from modularity.analyses.base import ROW_COLUMNS, SETTING_COLUMNS

NUMERIC = ("value", "low", "high", "p_value", "n", "fraction")
# Overridden keys that the settings columns already hold.
SETTING_OF_OVERRIDE = {
    "task": "task",
    "model": "model",
    "selection.fraction": "fraction",
    "selection.scope": "scope",
    "scoring": "scorer",
    "scoring.scorer": "scorer",
    "ablation.mode": "ablation",
    "layers": "layers",
    "site": "site",
    "analysis": "analysis",
    "model.checkpoint": "checkpoint",
    "data.exclude_from_reference": "reference_excludes",
}


def overrides_of(run_dir: Path) -> dict[str, str]:
    """``key -> value`` of the overrides a run was launched with (Hydra writes them)."""
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return {}
    out = {}
    for item in OmegaConf.to_container(OmegaConf.load(path)) or []:
        key, _, value = str(item).lstrip("+~").partition("=")
        if key not in SETTING_OF_OVERRIDE and not key.startswith("hydra"):
            out[key] = value
    return out


def read_results(path: Path) -> pd.DataFrame:
    """One run's rows, with the run directory and its overridden keys as columns."""
    text = {c: str for c in [*ROW_COLUMNS, *SETTING_COLUMNS] if c not in NUMERIC}
    numeric = {c: ["", "nan", "NaN"] for c in NUMERIC}
    frame = pd.read_csv(path, dtype=text, keep_default_na=False, na_values=numeric)
    if "label" not in frame.columns:  # written before rows carried verdicts
        frame["label"] = ""
    missing = [c for c in ROW_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"missing columns {missing}")
    frame["run"] = str(path.parent)
    for key, value in overrides_of(path.parent).items():
        frame[key] = value
    return frame


def swept_keys(frame: pd.DataFrame, exclude: tuple[str, ...] = ()) -> list[str]:
    """Setting and override columns whose value differs between runs."""
    candidates = [c for c in frame.columns if c not in ROW_COLUMNS and c != "run"]
    return [
        c for c in candidates if c not in exclude and frame[c].astype(str).nunique(dropna=False) > 1
    ]


def panels(frame: pd.DataFrame, exclude: tuple[str, ...]) -> list[tuple[str, pd.DataFrame]]:
    """One group per combination of swept keys other than ``exclude``, labelled: figures
    never pool runs that differ in a swept key."""
    keys = swept_keys(frame, exclude)
    if not keys:
        return [("", frame)]
    out = []
    for values, group in frame.groupby(keys, dropna=False, sort=True):
        values = values if isinstance(values, tuple) else (values,)
        out.append((", ".join(f"{k}={v}" for k, v in zip(keys, values)), group))
    return out


def lower_median(values: pd.Series) -> float:
    """The lower median of the distinct values (a value that occurs), nan if none."""
    distinct = np.sort(values.dropna().unique())
    return float(distinct[(len(distinct) - 1) // 2]) if len(distinct) else float("nan")
