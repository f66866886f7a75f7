"""What a pruning result supports, in one word, computed in one place.

Four verdicts with distinct meanings, from the effect's test against 0 and its equivalence
test against a stated margin (``verdict.null_margin_pp`` / ``null_margin_nats``):

- *effect*: the interval lies above 0 (pruning hurt the task more than the reference);
- *reverse effect*: the interval lies below 0 (it hurt the reference more);
- *null*: the interval lies inside ``[-margin, +margin]`` (a precise absence of effect);
- *inconclusive*: none of these (too little data to tell, or no interval at all).

Separately, a selection whose split-half stability is below ``verdict.min_stability`` is
flagged *unstable selection*: its neurons would change with other collection data, whatever
the effect says. A run's own rows carry the uncorrected verdict; summaries over many tasks
and fractions apply Holm's correction to the same p-values (``holm``) and call ``verdict``
again, so a count of significant tasks holds for the whole family at 5%.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from modularity.errors import ConfigError

EFFECT = "effect"
REVERSE = "reverse effect"
NULL = "null"
INCONCLUSIVE = "inconclusive"
VERDICTS = (EFFECT, REVERSE, NULL, INCONCLUSIVE)
UNSTABLE = "unstable selection"
STABLE = "stable selection"
ALPHA = 0.05  # matches the 95% intervals: p < ALPHA exactly when the interval excludes 0


@dataclass
class VerdictConfig:
    """``verdict.*``: the equivalence margin a *null* must lie within, and the stability a
    selection needs. 1 pp of top-1 is below every effect this project calls an effect and
    above the noise of a well-powered evaluation; 0.05 nats of loss is about 1% of a token's
    cross-entropy."""

    null_margin_pp: float = 1.0  # accuracies (top-1, top-10, skip top-1), percentage points
    null_margin_nats: float = 0.05  # loss, nats per token
    min_stability: float = 0.7  # split-half Jaccard below this: unstable selection


def check_verdict_config(cfg: VerdictConfig) -> None:
    """Margins must be positive and the stability threshold a Jaccard in (0, 1]."""
    for key in ("null_margin_pp", "null_margin_nats"):
        value = getattr(cfg, key)
        if not value > 0:
            raise ConfigError(f"verdict.{key}={value} must be > 0 (an equivalence margin)")
    if not 0 < cfg.min_stability <= 1:
        raise ConfigError(f"verdict.min_stability={cfg.min_stability} is outside (0, 1]")


def null_margin(cfg: VerdictConfig, measure: str) -> float:
    """The margin of ``measure``: nats for loss, percentage points for accuracies."""
    return float(cfg.null_margin_nats if measure == "loss" else cfg.null_margin_pp)


def verdict(value: float, p_effect: float, p_null: float, alpha: float = ALPHA) -> str:
    """The verdict from the two-sided p against 0 and the equivalence p against the margin
    (``nan`` p-values, as without an interval, count as not significant)."""
    if p_effect < alpha:
        return EFFECT if value > 0 else REVERSE
    if p_null < alpha:
        return NULL
    return INCONCLUSIVE


def selection_flag(stability: float, min_stability: float) -> str:
    """``unstable selection`` below the threshold (or when stability is unknown)."""
    return STABLE if stability >= min_stability else UNSTABLE


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control, any dependence);
    ``nan`` entries stay ``nan`` and do not count towards the family size."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, math.nan)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted
