"""Planted-effect simulation: how often a 95% interval over evaluation units covers the
true drop or effect, at a given number of units with skewed unit sizes.

Each simulated evaluation draws documents whose token counts are log-normal (``size_sigma``
1 gives a longest-to-median ratio around 10 at 100 documents, as real corpora do), whose
own accuracy and own relative drop vary (Beta), so the true values are known exactly:
the task's drop is ``100 * accuracy * relative_drop`` pp and the effect is the task's
minus the reference's. It checks ``modularity.algorithms.unit_intervals`` and, for
contrast, the paired percentile bootstrap the project used before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from modularity.algorithms.across_tasks import mean_over_tasks
from modularity.algorithms.t_interval import mean_over_estimates
from modularity.algorithms.unit_intervals import (
    Estimate,
    MetricSums,
    drop,
    drop_difference,
)

Side = tuple[MetricSums, MetricSums]  # before, after on the same units


@dataclass(frozen=True)
class Planted:
    """One simulated side's truth: mean accuracy and mean relative drop (both in (0, 1));
    for loss: mean loss in nats and its mean rise."""

    level: float
    change: float

    @property
    def accuracy_drop_pp(self) -> float:
        return 100.0 * self.level * self.change


TASK = Planted(0.5, 0.3)  # drop 15 pp
REFERENCE = Planted(0.4, 0.05)  # drop 2 pp: effect 13 pp
TASK_LOSS = Planted(3.0, 0.4)
REFERENCE_LOSS = Planted(2.5, 0.1)  # loss effect 0.3 nats


def _tokens(rng: np.random.Generator, n_units: int, size_sigma: float) -> np.ndarray:
    return np.maximum(1, np.round(np.exp(rng.normal(np.log(200), size_sigma, n_units))))


def _beta(rng: np.random.Generator, mean: float, n: int, strength: float = 4.0) -> np.ndarray:
    return rng.beta(strength * mean, strength * (1 - mean), n)


def accuracy_side(
    rng: np.random.Generator, n_units: int, truth: Planted, size_sigma: float = 1.0
) -> Side:
    """Documents with their own accuracy and own relative drop (independent of length, so
    the pooled true drop is ``truth.accuracy_drop_pp``)."""
    tokens = _tokens(rng, n_units, size_sigma)
    own = _beta(rng, truth.level, n_units)
    kept = 1 - _beta(rng, truth.change, n_units)
    before = rng.binomial(tokens.astype(np.int64), own)
    after = rng.binomial(tokens.astype(np.int64), own * kept)
    return MetricSums(before, tokens), MetricSums(after, tokens)


def loss_side(
    rng: np.random.Generator, n_units: int, truth: Planted, size_sigma: float = 1.0
) -> Side:
    """Summed cross-entropy per document: mean ``truth.level`` nats a token before, plus a
    rise of mean ``truth.change`` after, both varying between documents."""
    tokens = _tokens(rng, n_units, size_sigma)
    own = rng.gamma(4, truth.level / 4, n_units)
    before = rng.gamma(tokens * 4.0, own / 4)
    after = before + rng.gamma(tokens * 2.0, truth.change / 2 * own / truth.level)
    return MetricSums(before, tokens), MetricSums(after, tokens)


def bootstrap_effects(
    task: Side, reference: Side, rng: np.random.Generator, resamples: int = 1000
) -> np.ndarray:
    """``[resamples]`` top-1 effects (pp), each side's units resampled, before and after
    together."""

    def changes(side: Side) -> np.ndarray:
        before, after = side
        draws = rng.integers(0, before.num.shape[0], (resamples, before.num.shape[0]))
        return 100 * (
            before.num[draws].sum(1) / before.den[draws].sum(1)
            - after.num[draws].sum(1) / after.den[draws].sum(1)
        )

    return changes(task) - changes(reference)


def percentile_bootstrap_effect(
    task: Side, reference: Side, rng: np.random.Generator, resamples: int = 1000
) -> tuple[float, float]:
    """The replaced method, for comparison: 95% percentile interval of the top-1 effect (pp)
    from resampling each side's units, before and after together."""
    low, high = np.quantile(bootstrap_effects(task, reference, rng, resamples), [0.025, 0.975])
    return float(low), float(high)


def _covers(estimate: Estimate, truth: float) -> float:
    """1 or 0, or nan where there is no interval."""
    if estimate.low != estimate.low:
        return float("nan")
    return float(estimate.low <= truth <= estimate.high)


CHECKS: dict[str, Callable[[np.random.Generator, int, float], float]] = {}


def _check(name: str):
    def register(fn):
        CHECKS[name] = fn
        return fn

    return register


@_check("effect (top-1)")
def _effect(rng: np.random.Generator, n_units: int, size_sigma: float) -> float:
    task = accuracy_side(rng, n_units, TASK, size_sigma)
    reference = accuracy_side(rng, n_units, REFERENCE, size_sigma)
    truth = TASK.accuracy_drop_pp - REFERENCE.accuracy_drop_pp
    return _covers(drop_difference(*task, *reference), truth)


@_check("task drop (top-1)")
def _drop(rng: np.random.Generator, n_units: int, size_sigma: float) -> float:
    return _covers(drop(*accuracy_side(rng, n_units, TASK, size_sigma)).absolute, 15.0)


@_check("relative drop")
def _relative(rng: np.random.Generator, n_units: int, size_sigma: float) -> float:
    return _covers(drop(*accuracy_side(rng, n_units, TASK, size_sigma)).relative, TASK.change)


@_check("effect (loss)")
def _loss(rng: np.random.Generator, n_units: int, size_sigma: float) -> float:
    task = loss_side(rng, n_units, TASK_LOSS, size_sigma)
    reference = loss_side(rng, n_units, REFERENCE_LOSS, size_sigma)
    truth = TASK_LOSS.change - REFERENCE_LOSS.change
    return _covers(drop_difference(*task, *reference, "loss"), truth)


@_check("effect, percentile bootstrap")
def _bootstrap(rng: np.random.Generator, n_units: int, size_sigma: float) -> float:
    task = accuracy_side(rng, n_units, TASK, size_sigma)
    reference = accuracy_side(rng, n_units, REFERENCE, size_sigma)
    low, high = percentile_bootstrap_effect(task, reference, rng)
    return float(low <= TASK.accuracy_drop_pp - REFERENCE.accuracy_drop_pp <= high)


def coverage(
    check: str, n_units: int, repetitions: int, seed: int = 0, size_sigma: float = 1.0
) -> float:
    """The share of ``repetitions`` simulated evaluations whose 95% interval covers the
    truth (``nan`` if the method gives no interval at this size)."""
    rng = np.random.default_rng([seed, n_units])
    hits = np.array([CHECKS[check](rng, n_units, size_sigma) for _ in range(repetitions)])
    return float(hits.mean())


# ------------------------------------------------------------------- across tasks
# Two levels: each task's true effect is drawn around the planted mean (spread ``tau`` pp),
# then each task is evaluated on its own units as above. The interval over tasks should
# cover the planted mean.

TaskSample = list[tuple[Side, Side]]  # per task: (task side, reference side)
MEAN_EFFECT_PP = TASK.accuracy_drop_pp - REFERENCE.accuracy_drop_pp  # the planted mean


def task_sample(
    rng: np.random.Generator, n_tasks: int, n_units: int, tau_pp: float, size_sigma: float
) -> TaskSample:
    """``n_tasks`` tasks whose true effects are ``MEAN_EFFECT_PP + tau_pp * N(0, 1)``, each
    against its own reference, both on ``n_units`` skewed units."""
    sample = []
    for effect in MEAN_EFFECT_PP + tau_pp * rng.standard_normal(n_tasks):
        task_drop = effect + REFERENCE.accuracy_drop_pp
        truth = Planted(TASK.level, float(np.clip(task_drop / (100 * TASK.level), 0.01, 0.99)))
        sample.append(
            (
                accuracy_side(rng, n_units, truth, size_sigma),
                accuracy_side(rng, n_units, REFERENCE, size_sigma),
            )
        )
    return sample


def _task_estimates(sample: TaskSample) -> list[np.ndarray]:
    """Each task's effect, standard error and degrees of freedom."""
    estimates = [drop_difference(*task, *reference) for task, reference in sample]
    return [np.array([getattr(e, name) for e in estimates]) for name in ("value", "se", "df")]


def _two_level_t(sample: TaskSample, rng: np.random.Generator) -> tuple[float, float]:
    pooled = mean_over_tasks(*_task_estimates(sample))
    return pooled.low, pooled.high


def _floored_t(sample: TaskSample, rng: np.random.Generator) -> tuple[float, float]:
    values, errors, _ = _task_estimates(sample)
    _, low, high = mean_over_estimates(values, errors)
    return low, high


def _two_level_bootstrap(
    sample: TaskSample, rng: np.random.Generator, resamples: int = 1000
) -> tuple[float, float]:
    """Resample tasks, then each drawn task's units: the mean effect's percentile interval."""
    effects = np.stack([bootstrap_effects(*pair, rng, resamples) for pair in sample])
    tasks = rng.integers(0, len(sample), (resamples, len(sample)))
    means = effects[tasks, np.arange(resamples)[:, None]].mean(1)
    low, high = np.quantile(means, [0.025, 0.975])
    return float(low), float(high)


TASK_METHODS: dict[str, Callable[[TaskSample, np.random.Generator], tuple[float, float]]] = {
    "two-level t (the project's)": _two_level_t,
    "t floored at K-1 df (replaced)": _floored_t,
    "two-level percentile bootstrap": _two_level_bootstrap,
}


def across_task_coverage(
    method: str,
    n_tasks: int,
    n_units: int,
    tau_pp: float,
    repetitions: int,
    seed: int = 0,
    size_sigma: float = 1.0,
) -> float:
    """The share of ``repetitions`` simulated experiments whose 95% interval over tasks
    (``TASK_METHODS[method]``) covers the planted mean effect."""
    rng = np.random.default_rng([seed, n_tasks, n_units, int(tau_pp * 1000)])
    hits = []
    for _ in range(repetitions):
        low, high = TASK_METHODS[method](
            task_sample(rng, n_tasks, n_units, tau_pp, size_sigma), rng
        )
        hits.append(float(low <= MEAN_EFFECT_PP <= high))
    return float(np.mean(hits))
