"""The mean of a few per-unit values (tasks, seeds) with its Student-t 95% interval.

Used where the units are few and summarised by their mean (e.g. an effect averaged over
the tasks of an experiment): the bootstrap needs more units than that to be trusted.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def mean_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and t-interval of the finite ``values``; nan bounds with fewer than two."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(values.mean())
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    quantile = stats.t.ppf(0.5 + confidence / 2, len(values) - 1)
    half = float(quantile * values.std(ddof=1) / np.sqrt(len(values)))
    return mean, mean - half, mean + half
