"""Is one pair of models' task structure more alike than another pair's? An interval for the
difference of two (partial) Mantel correlations, by a jackknife over tasks.

Persistence asks whether a trained network keeps the task x task structure of its own
initialisation beyond what any two random initialisations share. The two agreements, e.g.
``r(trained, init)`` and ``r(random 1, random 2)``, are computed over the same tasks, so
they are correlated and their p-values say nothing about their difference. The jackknife
leaves out each task in turn (its row and column of every matrix), recomputes both
agreements on the rest and forms pseudo-values of the difference; their standard error
(Tukey's jackknife) gives a t interval around the difference itself, with ``T - 1`` degrees
of freedom, and the p-value of the t test against 0 (the tasks are the units that vary, as
in the Mantel test's permutations). Agreements are Spearman correlations of the matrices'
off-diagonal entries, partial ones with a control matrix (the tasks' data similarity)
regressed out of both.

Calibration (tests/test_agreement_difference.py): on a planted null (four models whose
matrices are one shared structure plus independent noise, so both agreements have one
distribution) the 95% interval covered 0 in 150 of 150 draws at 8 tasks: it is
conservative. A planted persistence (the trained matrix its init's plus a little noise) was
found (interval above 0) in 0.78 of 40 draws at 10 tasks and about 0.3 at 8: the test needs
tasks. Below ``MIN_TASKS`` tasks, leaving one out leaves too few entries for a partial
correlation, so there is no interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special
from scipy.stats import rankdata

Pair = tuple[str, str]
MIN_TASKS = 6  # 5 tasks left after dropping one: 10 entries for a partial correlation


@dataclass(frozen=True)
class Difference:
    """Mean agreement of the ``first`` pairs minus that of the ``second``, with its jackknife
    95% interval and p-value (nan below ``MIN_TASKS``) over ``n_tasks`` tasks."""

    value: float
    low: float
    high: float
    p_value: float
    n_tasks: int


def agreement(a: np.ndarray, b: np.ndarray, control: np.ndarray | None = None) -> float:
    """Spearman correlation of two ``[T, T]`` matrices' upper triangles, partial given the
    ``control`` matrix's when it is given."""
    rows, cols = np.triu_indices(a.shape[0], k=1)
    ranked = [rankdata(m[rows, cols]) for m in (a, b)]
    if control is not None:
        design = np.column_stack([np.ones(len(rows)), rankdata(control[rows, cols])])
        ranked = [r - design @ np.linalg.lstsq(design, r, rcond=None)[0] for r in ranked]
    x, y = (r - r.mean() for r in ranked)
    norm = math.sqrt(float(x @ x) * float(y @ y))
    return float(x @ y) / norm if norm > 0 else math.nan


def agreement_difference(
    matrices: dict[str, np.ndarray],
    first: Sequence[Pair],
    second: Sequence[Pair],
    control: np.ndarray | None = None,
    confidence: float = 0.95,
) -> Difference:
    """Mean ``agreement`` over the ``first`` pairs of models (names in ``matrices``) minus
    the mean over the ``second`` pairs, with its jackknife interval over tasks."""
    if not first or not second:
        raise ValueError("both groups of model pairs must be non-empty")
    n_tasks = next(iter(matrices.values())).shape[0]

    def difference(keep: np.ndarray) -> float:
        sub = {name: m[np.ix_(keep, keep)] for name, m in matrices.items()}
        held = None if control is None else control[np.ix_(keep, keep)]
        means = [
            np.mean([agreement(sub[a], sub[b], held) for a, b in pairs])
            for pairs in (first, second)
        ]
        return float(means[0] - means[1])

    everything = np.arange(n_tasks)
    value = difference(everything)
    if n_tasks < MIN_TASKS or value != value:
        return Difference(value, math.nan, math.nan, math.nan, n_tasks)
    left_out = np.array([difference(everything[everything != i]) for i in everything])
    pseudo = n_tasks * value - (n_tasks - 1) * left_out
    if not np.isfinite(pseudo).all():
        return Difference(value, math.nan, math.nan, math.nan, n_tasks)
    se = float(pseudo.std(ddof=1)) / math.sqrt(n_tasks)
    df = n_tasks - 1
    half = float(special.stdtrit(df, 0.5 + confidence / 2)) * se
    p_value = float(2 * special.stdtr(df, -abs(value) / se)) if se > 0 else float(value == 0)
    return Difference(value, value - half, value + half, p_value, n_tasks)
