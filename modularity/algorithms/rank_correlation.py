"""Spearman's rank correlation with a 95% interval (Fisher's z with Fieller's variance) and a
permutation p-value.

Fieller, Hartley & Pearson (1957): ``atanh(rho_s)`` is close to normal with variance
``1.06 / (n - 3)``, which covers near 95% from 10 pairs on (checked by simulation in the
tests); below 10 pairs, or where rho is +-1 (z infinite), there is no interval. The
two-sided p-value against no association relabels one side's pairs: exact (every
permutation) up to 8 pairs, so a few layers still get a test, else from random permutations.
It assumes the pairs exchangeable, which neighbouring layers of a network only approximate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from modularity.algorithms.permutations import permutation_p, permutations

Z_95 = 1.959963984540054
FIELLER_VARIANCE = 1.06
MIN_PAIRS = 10
PERMUTATIONS = 9999  # drawn beyond 8 pairs


@dataclass(frozen=True)
class RankCorrelation:
    """Spearman's rho of ``n`` pairs and its 95% interval (NaN where there is none)."""

    rho: float
    low: float
    high: float
    n: int


def spearman_interval(x: np.ndarray, y: np.ndarray) -> RankCorrelation:
    """Spearman's rho of ``x`` and ``y`` (1-D, same length) with a Fisher-z interval; rho is
    NaN where either is constant, the interval NaN below ``MIN_PAIRS`` pairs."""
    x, y = _pairs(x, y)
    n = len(x)
    if n < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return RankCorrelation(math.nan, math.nan, math.nan, n)
    rho = float(stats.spearmanr(x, y).statistic)
    if n < MIN_PAIRS or abs(rho) == 1:
        return RankCorrelation(rho, math.nan, math.nan, n)
    z = math.atanh(rho)
    half = Z_95 * math.sqrt(FIELLER_VARIANCE / (n - 3))
    return RankCorrelation(rho, math.tanh(z - half), math.tanh(z + half), n)


def spearman_permutation_p(x: np.ndarray, y: np.ndarray, seed: int = 0) -> float:
    """Two-sided p of Spearman's rho of ``x`` and ``y`` against ``y`` relabelled (NaN where
    rho is); ``seed`` draws the relabellings beyond 8 pairs. The ranks (ties averaged) are
    standardised once, so each relabelling's rho is a dot product."""
    x, y = _pairs(x, y)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    a, b = (_standardised_ranks(v) for v in (x, y))
    relabellings = permutations(len(x), PERMUTATIONS, seed)
    return permutation_p(b[relabellings.orders] @ a, float(a @ b), "two-sided", relabellings.exact)


def _pairs(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D of one length, got {x.shape} and {y.shape}")
    return x, y


def _standardised_ranks(values: np.ndarray) -> np.ndarray:
    centred = stats.rankdata(values) - (len(values) + 1) / 2
    return centred / np.linalg.norm(centred)
