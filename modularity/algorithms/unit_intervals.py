"""Intervals for the drops that selective pruning reports, over evaluation units.

Evaluation gives, for each metric and each evaluation unit (a document, an image), a
numerator and a denominator: top-1 hits and scored tokens, summed cross-entropy and tokens.
A metric's value is the ratio of the sums, a pooled mean over tokens. Units, not tokens, are
the independent draws: tokens of one document are correlated, documents close to independent.
Before and after pruning are measured on the same units (paired); the task and the reference
are separate samples (the effect, task drop minus reference drop, is a two-sample contrast).

The interval is a cluster-robust t interval: each unit's contribution to the estimate is
linearised (its influence value), the variance is the bias-reduced CR2 sum of squared
influences (each divided by ``1 - leverage``, the unit's share of the tokens), and the
t quantile uses Bell-McCaffrey degrees of freedom, which fall with skewed unit sizes (a few
long documents carry the estimate, so there is less information than the unit count says);
the two samples combine as in Welch's test. With equal unit sizes this is exactly the paired
t interval (one side) and Welch's interval (the effect). Why this and not a bootstrap:
on a planted effect with log-normal document lengths (``modularity.algorithms.coverage``,
``benchmarks/bench_interval_coverage.py``, tests/test_interval_coverage.py; 2,000
evaluations per cell, length sigma 1) the effect's interval covers 0.949-0.965 at 3, 5, 10,
20, 100 and 1,000 units per side, where the percentile bootstrap it replaced covers 0.78 at
3, 0.84 at 5 and 0.90 at 20 units. Single-side drops cover 0.95-0.96 (relative drops up to
0.973: slightly conservative). With 2 units on a side a side's drop covered 0.91-0.93 in the
exploratory runs and the bootstrap 0.61, so below ``MIN_UNITS`` units there is no interval
(``nan``), and ``no_interval_reason`` says why in one line.

Degenerate input has a defined answer: units whose denominator is zero both before and after
carry no information and are left out (``n_units`` counts the rest); with no unit left every
number is ``nan``; a ratio with a zero total denominator is ``nan``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import special

from modularity.errors import invalid_choice

MetricKind = Literal["accuracy", "loss"]
KINDS: tuple[MetricKind, ...] = ("accuracy", "loss")
MIN_UNITS = 3  # per side; with fewer, no interval covers 93-97% (see the module docstring)


def no_interval_reason(n_units: int, n_reference_units: int | None = None) -> str:
    """One line saying why an estimate on this many units has no interval ("" if it has)."""
    fewest = min(n_units, n_units if n_reference_units is None else n_reference_units)
    if fewest >= MIN_UNITS:
        return ""
    return (
        f"no interval: {fewest} evaluation unit(s) on a side, fewer than {MIN_UNITS}, where no "
        "interval method covers 95% (benchmarks/bench_interval_coverage.py)"
    )


@dataclass(frozen=True)
class MetricSums:
    """One metric on one split: each unit's numerator and denominator, both ``[units]``.

    Accuracy: hits and scored tokens (or 0/1 and 1 per image); loss: summed cross-entropy in
    nats and scored tokens. Accepts anything ``np.asarray`` reads (CPU tensors included).
    """

    num: np.ndarray
    den: np.ndarray

    def __post_init__(self) -> None:
        num = np.asarray(self.num, dtype=np.float64)
        den = np.asarray(self.den, dtype=np.float64)
        if num.ndim != 1 or num.shape != den.shape:
            raise ValueError(f"num and den must be [units] arrays, got {num.shape}, {den.shape}")
        if not (np.isfinite(num).all() and np.isfinite(den).all()):
            raise ValueError("num and den must be finite")
        if (den < 0).any():
            raise ValueError("den must be >= 0 (it counts tokens or images)")
        object.__setattr__(self, "num", num)
        object.__setattr__(self, "den", den)

    @property
    def n_units(self) -> int:
        """The units that contributed: those with a positive denominator."""
        return int((self.den > 0).sum())

    @property
    def value(self) -> float:
        """The metric over all units: sum of numerators / sum of denominators (nan if 0)."""
        return float(_ratio(self.num.sum(), self.den.sum()))


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its interval ``[low, high]``, standard error and degrees of
    freedom (the interval is ``value +- t(df) * se``).

    ``n_units`` counts the units that carried the metric; for a task-minus-reference effect
    it counts the task's, and ``n_reference_units`` the reference's. ``nan`` bounds: too few
    units (``no_interval_reason``) or an undefined value.
    """

    value: float
    low: float
    high: float
    n_units: int
    n_reference_units: int | None = None
    se: float = math.nan
    df: float = math.nan

    def p_value(self) -> float:
        """Two-sided p of the t test that the true value is 0 (below 0.05 exactly when the
        95% interval excludes 0); ``nan`` without an interval."""
        if math.isnan(self.se):
            return math.nan
        if self.se == 0:
            return 0.0 if self.value != 0 else 1.0
        return float(2 * special.stdtr(self.df, -abs(self.value) / self.se))

    def p_within(self, margin: float) -> float:
        """p that the true value lies outside ``[-margin, margin]`` (two one-sided tests,
        doubled so that it is below 0.05 exactly when the 95% interval lies inside the
        margin); ``nan`` without an interval."""
        if math.isnan(self.se):
            return math.nan
        if self.se == 0:
            return 0.0 if abs(self.value) < margin else 1.0
        above = special.stdtr(self.df, -(self.value + margin) / self.se)  # true value <= -margin
        below = special.stdtr(self.df, (self.value - margin) / self.se)  # true value >= margin
        return float(min(1.0, 2 * max(above, below)))


@dataclass(frozen=True)
class Drop:
    """How much pruning hurt one metric on one side.

    ``absolute``: accuracy ``before - after`` in percentage points, loss ``after - before``
    (its rise) in nats; ``relative``: that change over ``before`` as a fraction (nan where
    ``before`` is 0). Positive means pruning hurt.
    """

    absolute: Estimate
    relative: Estimate


@dataclass(frozen=True)
class _Linearised:
    """One side's change (or a contrast of two): its value, CR2 variance, Bell-McCaffrey
    df, and how many units it rests on."""

    value: float
    variance: float
    df: float
    n_units: int


def drop(
    before: MetricSums,
    after: MetricSums,
    kind: MetricKind = "accuracy",
    *,
    confidence: float = 0.95,
) -> Drop:
    """The drop of one metric from ``before`` to ``after`` pruning on the same units."""
    _check(kind, confidence)
    columns = _paired_columns(before, after)
    absolute, relative = _linearise(columns, kind)
    scale = _scale(kind)
    return Drop(
        absolute=_estimate([absolute], confidence, scale),
        relative=_estimate([relative], confidence),
    )


def drop_difference(
    task_before: MetricSums,
    task_after: MetricSums,
    reference_before: MetricSums,
    reference_after: MetricSums,
    kind: MetricKind = "accuracy",
    *,
    confidence: float = 0.95,
) -> Estimate:
    """The selectivity effect: the task's drop minus the reference's drop.

    Percentage points for accuracies, nats for loss (rise minus rise). The two samples are
    independent, each paired before/after; their variances add, the df as in Welch's test.
    """
    _check(kind, confidence)
    task, _ = _linearise(_paired_columns(task_before, task_after), kind)
    reference, _ = _linearise(_paired_columns(reference_before, reference_after), kind)
    contrast = _Linearised(
        task.value - reference.value,
        task.variance + reference.variance,
        _welch_df(task, reference),
        task.n_units,
    )
    return _estimate([task, reference], confidence, _scale(kind), contrast)


def _paired_columns(before: MetricSums, after: MetricSums) -> np.ndarray:
    """``[units, 4]``: num and den before, num and den after; units with no denominator
    before or after are dropped, as they carry nothing."""
    if before.num.shape != after.num.shape:
        raise ValueError(
            f"before and after must be measured on the same units: {before.num.shape[0]} vs "
            f"{after.num.shape[0]}"
        )
    columns = np.stack([before.num, before.den, after.num, after.den], axis=1)
    return columns[(before.den > 0) | (after.den > 0)]


def _check(kind: str, confidence: float) -> None:
    if kind not in KINDS:
        raise invalid_choice("metric kind", kind, KINDS)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _scale(kind: MetricKind) -> float:
    return 100.0 if kind == "accuracy" else 1.0  # accuracy in percentage points


def _ratio(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray:
    """``num / den`` as float64, ``nan`` where ``den`` is 0."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast_shapes(num.shape, den.shape), np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _linearise(columns: np.ndarray, kind: MetricKind) -> tuple[_Linearised, _Linearised]:
    """The absolute and relative change of one side with their CR2 variances.

    A ratio of sums ``R = sum(a) / sum(d)`` has influence ``(a_i - R d_i) / sum(d)``; the
    change combines the before and after ratios, the relative change ``+-(1 - after/before)``
    by the chain rule. A unit's leverage is its mean token share before and after.
    """
    n = columns.shape[0]
    totals = columns.sum(axis=0)
    before, after = _ratio(totals[0], totals[1]), _ratio(totals[2], totals[3])
    sign = 1.0 if kind == "accuracy" else -1.0  # accuracy falls, loss rises
    change = float(sign * (before - after))
    relative = float(_ratio(change, before))
    if n == 0 or not (totals[1] > 0 and totals[3] > 0):
        nothing = _Linearised(math.nan, math.nan, math.nan, n)
        return _Linearised(change, math.nan, math.nan, n), nothing
    share_before, share_after = columns[:, 1] / totals[1], columns[:, 3] / totals[3]
    influence_before = (columns[:, 0] - before * columns[:, 1]) / totals[1]
    influence_after = (columns[:, 2] - after * columns[:, 3]) / totals[3]
    leverage = (share_before + share_after) / 2
    absolute_influence = sign * (influence_before - influence_after)
    with np.errstate(divide="ignore", invalid="ignore"):  # before = 0: relative undefined
        relative_influence = sign * (after * influence_before / before - influence_after) / before
    df = _bell_mccaffrey_df(leverage)
    return (
        _Linearised(change, _cr2_variance(absolute_influence, leverage), df, n),
        _Linearised(relative, _cr2_variance(relative_influence, leverage), df, n),
    )


def _cr2_variance(influence: np.ndarray, leverage: np.ndarray) -> float:
    """Bias-reduced (CR2) variance: squared influences over ``1 - leverage``; nan with a
    unit of leverage 1 (it alone carries every token) or an undefined influence."""
    if (leverage >= 1).any() or not np.isfinite(influence).all():
        return math.nan
    return float((influence**2 / (1 - leverage)).sum())


def _bell_mccaffrey_df(leverage: np.ndarray) -> float:
    """Satterthwaite df of the CR2 variance of a weighted mean with weights ``leverage``
    (summing to 1) under equal unit variances: ``tr(G)^2 / tr(G^2)``, where the variance is
    ``e' G e`` for the residuals' generator ``G = M' A M``, ``M = I - 1 h'``,
    ``A = diag(h^2 / (1 - h))``. ``G = A - a h' - h a' + s h h'`` (``s = sum(a)``) has the
    traces below in O(units). Equal weights give ``units - 1``."""
    h = leverage
    if len(h) < 2 or (h >= 1).any():
        return math.nan
    a = h**2 / (1 - h)
    s = a.sum()
    trace = s - 2 * (a * h).sum() + s * (h * h).sum()
    # G = diag(a) + U C U' with U = [a, h], C = [[0, -1], [-1, s]]
    gram = np.array([[(a * a).sum(), (a * h).sum()], [(a * h).sum(), (h * h).sum()]])
    weighted = np.array([[(a**3).sum(), (a * a * h).sum()], [(a * a * h).sum(), (a * h * h).sum()]])
    c = np.array([[0.0, -1.0], [-1.0, s]])
    ck = c @ gram
    trace_sq = (a * a).sum() + 2 * np.trace(c @ weighted) + np.trace(ck @ ck)
    return float(trace**2 / trace_sq)


def _welch_df(task: _Linearised, reference: _Linearised) -> float:
    """Satterthwaite df of the sum of two independent variances with their own df."""
    total = task.variance + reference.variance
    if total == 0:
        return math.inf
    # In shares of the total, so tiny variances cannot underflow to a zero denominator.
    parts = sum(
        (side.variance / total) ** 2 / side.df for side in (task, reference) if side.variance > 0
    )
    return math.inf if parts == 0 else float(1 / parts)


def _estimate(
    sides: list[_Linearised],
    confidence: float,
    scale: float = 1.0,
    combined: _Linearised | None = None,
) -> Estimate:
    """The estimate of ``combined`` (or of the one side) with its t interval; ``nan`` bounds
    when some side has fewer than ``MIN_UNITS`` units or no defined variance."""
    est = combined or sides[0]
    counts = [side.n_units for side in sides]
    value = scale * est.value
    se = scale * math.sqrt(est.variance) if est.variance == est.variance else math.nan
    if min(counts) < MIN_UNITS or not (se == se and value == value):
        low = high = se = df = math.nan
    else:
        df = est.df if se > 0 else math.inf
        half = 0.0 if se == 0 else float(special.stdtrit(df, 0.5 + confidence / 2)) * se
        low, high = value - half, value + half
    reference = counts[1] if len(counts) > 1 else None
    return Estimate(value, low, high, counts[0], reference, se, df)
