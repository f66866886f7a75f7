"""How much data reaches a target: fits of split-half stability and interval width against
the amount of data, solved for the target, and labelled by whether that is inside the
measured range (*interpolated*) or beyond it (*extrapolated*).

Stability (a Jaccard in (0, 1)) is fitted as ``logit(J) = a + b log2(tokens)``: it rises
with data and saturates at 1, and on real models it grows roughly linearly in log tokens at
the sizes measured here. An interval's width is solved through its standard error, fitted as
``log(se) = a + b log(tokens)``, a power law (``b`` about -1/2 when units are independent),
and the width at a size is that of a large-sample interval, ``2 z se`` (z = 1.96 at 95%):
fitting the measured widths themselves would carry the t quantile of the small sizes (a few
units: a wide t) into the slope, and extrapolate too optimistically. Both are least squares over the
measured points; with fewer than two usable points, or a fit that does not move towards the
target as data grows, there is no answer (``NOT_REACHED``) rather than a guess.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

INTERPOLATED = "interpolated"
EXTRAPOLATED = "extrapolated"
NOT_REACHED = "not reached by the fit"


@dataclass(frozen=True)
class Needed:
    """Data needed for a target (``nan`` if not reached), how it was found, and the fitted
    intercept and slope."""

    amount: float
    label: str
    intercept: float
    slope: float


def stability_needed(tokens: np.ndarray, stability: np.ndarray, target: float) -> Needed:
    """Tokens at which the fitted split-half stability reaches ``target`` (in (0, 1));
    points at 0 or 1 (where the logit is infinite) are left out of the fit."""
    if not 0 < target < 1:
        raise ValueError(f"target stability must be in (0, 1), got {target}")
    x, y = np.log2(np.asarray(tokens, float)), np.asarray(stability, float)
    usable = np.isfinite(x) & (y > 0) & (y < 1)
    return _solve(x[usable], special.logit(y[usable]), float(special.logit(target)), 2.0, +1)


def width_needed(
    tokens: np.ndarray, standard_errors: np.ndarray, target: float, confidence: float = 0.95
) -> Needed:
    """Tokens at which the large-sample interval ``2 z se`` of the fitted standard error
    falls to the ``target`` width (> 0)."""
    if not target > 0:
        raise ValueError(f"target width must be > 0, got {target}")
    x, y = np.log(np.asarray(tokens, float)), np.asarray(standard_errors, float)
    usable = np.isfinite(x) & np.isfinite(y) & (y > 0)
    goal = math.log(target / (2 * z_quantile(confidence)))
    return _solve(x[usable], np.log(y[usable]), goal, math.e, -1)


def z_quantile(confidence: float) -> float:
    """The normal quantile of a two-sided ``confidence`` interval (1.96 at 0.95)."""
    return float(special.ndtri(0.5 + confidence / 2))


def _solve(x: np.ndarray, y: np.ndarray, goal: float, base: float, direction: int) -> Needed:
    """Fit ``y = a + b x`` and solve for ``goal``; ``direction`` is the sign ``b`` must have
    for more data to approach the goal. ``x`` is ``log_base(tokens)``."""
    if len(np.unique(x)) < 2:
        return Needed(math.nan, NOT_REACHED, math.nan, math.nan)
    slope, intercept = np.polyfit(x, y, 1)
    if np.sign(slope) != direction:
        return Needed(math.nan, NOT_REACHED, float(intercept), float(slope))
    at = (goal - intercept) / slope
    label = INTERPOLATED if x.min() <= at <= x.max() else EXTRAPOLATED
    return Needed(float(base**at), label, float(intercept), float(slope))
