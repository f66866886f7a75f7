"""How much data reaches a target: fits of split-half stability and interval width against
the amount of data, solved for the target, and labelled by whether that is inside the
measured range (*interpolated*) or beyond it (*extrapolated*).

Stability (a Jaccard in (0, 1)) is fitted as ``logit(J) = a + b log2(tokens)``: it rises
with data and saturates at 1. Its extrapolation is rough: fitted on SmolLM2 at 1,024-8,192
collection tokens it predicted 0.86 (code) and 0.99 (prose) at 102,400 tokens, where
``make run-full`` measured 0.75 and 0.67, so a stability target's tokens, extrapolated, are
a lower bound. An interval's width is solved through its standard error, which
falls as ``1 / sqrt(tokens)`` when evaluation units are independent and alike in size: the
standard error at the largest size measured (the most precise) is carried to other sizes by
that law, and the width at a size is that of a large-sample interval, ``2 z se`` (z = 1.96
at 95%). A slope fitted to the smaller sizes is not used: their standard errors rest on a
few units and are noisy (SmolLM2 code, 889-8,128 evaluation tokens: fitted slope -0.18,
extrapolating 3.4 million tokens for a 2 pp interval), whereas the 1/sqrt law from the
largest size predicted a standard error of 0.86 pp at 51,200 tokens, where the full-scale
run's interval (README: +8.6 to +12.1 pp) implies 0.89 pp. Stability is fitted by least
squares over the measured points; with fewer than two usable points, or a fit that does not
rise with data, there is no answer (``NOT_REACHED``) rather than a guess.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

INTERPOLATED = "interpolated"
EXTRAPOLATED = "extrapolated"
NOT_REACHED = "not reached by the fit"
SE_SLOPE = -0.5  # d log(se) / d log(tokens) for independent evaluation units


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
    x, y = x[usable], special.logit(y[usable])
    if len(np.unique(x)) < 2:
        return Needed(math.nan, NOT_REACHED, math.nan, math.nan)
    slope, intercept = (float(v) for v in np.polyfit(x, y, 1))
    if slope <= 0:  # stability does not grow with data over the measured sizes
        return Needed(math.nan, NOT_REACHED, intercept, slope)
    at = (float(special.logit(target)) - intercept) / slope
    inside = x.min() <= at <= x.max()
    return Needed(2.0**at, INTERPOLATED if inside else EXTRAPOLATED, intercept, slope)


def width_needed(
    tokens: np.ndarray, standard_errors: np.ndarray, target: float, confidence: float = 0.95
) -> Needed:
    """Tokens at which the large-sample interval ``2 z se`` falls to the ``target`` width
    (> 0), the standard error of the largest size carried by ``se ~ tokens^(-1/2)``."""
    if not target > 0:
        raise ValueError(f"target width must be > 0, got {target}")
    x, y = np.log(np.asarray(tokens, float)), np.asarray(standard_errors, float)
    usable = np.isfinite(x) & np.isfinite(y) & (y > 0)
    if not usable.any():
        return Needed(math.nan, NOT_REACHED, math.nan, math.nan)
    largest = int(np.argmax(np.where(usable, x, -np.inf)))
    intercept = float(np.log(y[largest]) + SE_SLOPE * -x[largest])
    at = (math.log(target / (2 * z_quantile(confidence))) - intercept) / SE_SLOPE
    inside = x[usable].min() <= at <= x[usable].max()
    return Needed(math.exp(at), INTERPOLATED if inside else EXTRAPOLATED, intercept, SE_SLOPE)


def z_quantile(confidence: float) -> float:
    """The normal quantile of a two-sided ``confidence`` interval (1.96 at 0.95)."""
    return float(special.ndtri(0.5 + confidence / 2))
