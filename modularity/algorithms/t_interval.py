"""The mean of a few per-unit values (tasks, seeds, layers) with its Student-t 95% interval.

Used where the units are few and summarised by their mean (e.g. an effect averaged over
the tasks of an experiment). When each value is itself an estimate with a standard error,
``mean_over_estimates`` keeps the interval from being narrower than those errors allow.
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


def mean_over_estimates(
    values: np.ndarray, standard_errors: np.ndarray, confidence: float = 0.95
) -> tuple[float, float, float]:
    """Mean of estimates (e.g. each task's effect) with a t interval over them whose
    variance is at least what their own standard errors give the mean.

    The spread of estimated effects already holds each one's sampling error (a random-effects
    view: spread = true spread + noise), but with a handful of tasks it can be small by
    chance; the floor ``sum(se^2) / K^2`` (the modified Knapp-Hartung rule, Röver et al. 2015,
    BMC Med Res Methodol 15:99) keeps each task's own uncertainty in the interval.
    Pairs with a non-finite value or error are left out; nan bounds with fewer than two.
    """
    values = np.asarray(values, dtype=float)
    errors = np.asarray(standard_errors, dtype=float)
    keep = np.isfinite(values) & np.isfinite(errors)
    values, errors = values[keep], errors[keep]
    k = len(values)
    if k == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(values.mean())
    if k < 2:
        return mean, float("nan"), float("nan")
    variance = max(values.var(ddof=1) / k, float((errors**2).sum()) / k**2)
    half = float(stats.t.ppf(0.5 + confidence / 2, k - 1) * np.sqrt(variance))
    return mean, mean - half, mean + half
