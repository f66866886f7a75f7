"""The mean effect over tasks with an interval that carries both levels of uncertainty: the
spread between tasks and each task's own sampling error over its evaluation units.

Model (two levels): task ``k``'s estimate is ``y_k = mu + u_k + e_k``, its true effect
varying between tasks like these (``u_k``, standard deviation ``tau``) and its estimate
around that (``e_k``, the standard error ``se_k`` with ``df_k`` degrees of freedom from its
own interval over evaluation units). The estimate of ``mu`` is the plain mean of the tasks'
estimates: each task is one of the things the experiment asks about, and weights taken
from estimated errors correlate with the estimates when a task has few units (an
inverse-variance random-effects mean with the modified Hartung-Knapp interval covered 0.88
at 8 tasks x 5 units in an exploratory run of the simulation below). Its variance is the
larger of

- the between-task one, ``s^2 / K`` (the estimates' scatter, which holds ``tau^2`` and the
  tasks' errors), with ``K - 1`` degrees of freedom, and
- the within-task floor, ``sum(se_k^2) / K^2``, with Satterthwaite's degrees of freedom
  from the ``df_k`` (``K - 1`` if some are not known),

so that a handful of tasks agreeing by chance cannot make the interval narrower than their
own errors allow (the modified Knapp-Hartung idea, Röver, Knapp & Friede 2015, BMC Med Res
Methodol 15:99; without the Satterthwaite df the floor used ``K - 1`` and covered 0.99-1.0
at 4 tasks). ``tau`` is reported from the moment estimate ``max(0, s^2 - mean(se_k^2))``.

Coverage of the planted mean on a two-level simulation (tasks drawn with spread ``tau`` 0
or 3 pp, then 5, 20 or 100 skewed evaluation units within each; 600 experiments per cell;
``modularity.algorithms.coverage``, ``python benchmarks/bench_interval_coverage.py
--across-tasks``, tests/test_across_tasks.py): 0.953-0.992 at 3, 4, 5 and 8 tasks, never
below 0.95; it over-covers (0.98-0.99) at 3-4 tasks without spread, where a t with 2-3 df
is wide. The floor at ``K - 1`` df it replaced covered 0.957-1.000, a two-level percentile
bootstrap (tasks, then units within each) 0.935-1.000: it counts each task's error twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

MIN_TASKS = 2  # one estimate has no scatter between tasks


@dataclass(frozen=True)
class MeanOverTasks:
    """The mean over tasks, its interval (nan with fewer than ``MIN_TASKS``), the degrees
    of freedom the interval used, the between-task standard deviation ``tau`` and the
    number of tasks."""

    value: float
    low: float
    high: float
    df: float
    tau: float
    n_tasks: int


def mean_over_tasks(
    values: np.ndarray,
    standard_errors: np.ndarray,
    dfs: np.ndarray | None = None,
    confidence: float = 0.95,
) -> MeanOverTasks:
    """Mean of the per-task ``values`` with the two-level interval of the module docstring.
    Tasks with a non-finite value or error are left out; where a task's df is not known (a
    non-finite ``dfs`` entry, or no ``dfs``) the floor uses ``K - 1``."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    y = np.asarray(values, dtype=float)
    se = np.asarray(standard_errors, dtype=float)
    df = np.full(y.shape, np.nan) if dfs is None else np.asarray(dfs, dtype=float)
    if y.ndim != 1 or se.shape != y.shape or df.shape != y.shape:
        raise ValueError(
            f"values, standard errors and dfs must be [tasks], got {y.shape}, {se.shape}, "
            f"{df.shape}"
        )
    keep = np.isfinite(y) & np.isfinite(se)
    if (se[keep] < 0).any() or (df[keep] <= 0).any():
        raise ValueError("standard errors must be >= 0 and degrees of freedom > 0")
    y, se, df = y[keep], se[keep], df[keep]
    k = len(y)
    if k < MIN_TASKS:
        mean = float(y[0]) if k else math.nan
        return MeanOverTasks(mean, math.nan, math.nan, math.nan, math.nan, k)
    mean = float(y.mean())
    between = float(y.var(ddof=1))
    within = se**2
    tau = math.sqrt(max(0.0, between - float(within.mean())))
    floor = float(within.sum()) / k**2
    floor_df = _satterthwaite(within, df) if np.isfinite(df).all() else k - 1.0
    candidates = [(between / k, k - 1.0), (floor, floor_df)]
    half, used_df = max((_t(d, confidence) * math.sqrt(v), d) for v, d in candidates)
    return MeanOverTasks(mean, mean - half, mean + half, used_df, tau, k)


def _satterthwaite(variances: np.ndarray, dfs: np.ndarray) -> float:
    """Degrees of freedom of a sum of independent variance estimates."""
    total = float(variances.sum())
    if total == 0:
        return math.inf
    shares = variances / total
    return float(1 / (shares**2 / dfs).sum())


def _t(df: float, confidence: float) -> float:
    return float(special.stdtrit(df, 0.5 + confidence / 2))
