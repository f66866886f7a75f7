"""Permutation tests' shared parts: which relabellings to try and the p-value they give.

Up to ``EXACT_MAX`` items every permutation is enumerated and the p-value is exact (the
share of permutations, identity included, at least as extreme as the observed labelling).
Beyond, permutations are drawn at random and ``p = (1 + #as extreme) / (1 + n)``, which
counts the observed labelling as one of the draws and so is never 0.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

import numpy as np

from modularity.errors import invalid_choice

Alternative = Literal["greater", "less", "two-sided"]
ALTERNATIVES: tuple[Alternative, ...] = ("greater", "less", "two-sided")
EXACT_MAX = 8  # 8! = 40320 permutations
TIE_TOLERANCE = 1e-9  # permuted statistics this close to the observed one count as ties


@dataclass(frozen=True)
class Permutations:
    """The relabellings ``[count, items]`` a test tries, and whether they are all of them."""

    orders: np.ndarray
    exact: bool


def permutations(n_items: int, n_random: int, seed: int) -> Permutations:
    """Every permutation of ``n_items`` up to ``EXACT_MAX`` items, else ``n_random`` drawn."""
    if n_items <= EXACT_MAX:
        return Permutations(np.array(list(itertools.permutations(range(n_items)))), True)
    if n_random < 1:
        raise ValueError(f"n_permutations must be >= 1, got {n_random}")
    rng = np.random.default_rng(seed)
    return Permutations(rng.permuted(np.tile(np.arange(n_items), (n_random, 1)), axis=1), False)


def permutation_p(
    statistics: np.ndarray, observed: float, alternative: Alternative, exact: bool
) -> float:
    """The p-value of ``observed`` among the permuted ``statistics`` (see the module)."""
    if alternative not in ALTERNATIVES:
        raise invalid_choice("permutation test alternative", alternative, ALTERNATIVES)
    if alternative == "greater":
        extreme = statistics >= observed - TIE_TOLERANCE
    elif alternative == "less":
        extreme = statistics <= observed + TIE_TOLERANCE
    else:
        extreme = np.abs(statistics) >= abs(observed) - TIE_TOLERANCE
    count = int(np.count_nonzero(extreme))
    return count / len(statistics) if exact else (1 + count) / (1 + len(statistics))
