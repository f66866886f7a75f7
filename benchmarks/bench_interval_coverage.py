"""Coverage of the 95% intervals over evaluation units on a planted effect.

For each number of units (per side: the task and its reference), many simulated evaluations
with log-normal document lengths (``--size-sigma``; 1 is about as skewed as the project's
corpora, 1.5 more so) and a known drop and effect
(``modularity.algorithms.coverage``): the share of intervals that cover the truth, for the
project's interval (cluster-robust t: CR2 variance, Bell-McCaffrey df) on the top-1 effect,
the task's drop, the relative drop and the loss effect, and for the percentile bootstrap it
replaced. Target: 0.93-0.97 at every size that gets an interval. A report: it exits 0
whether or not targets are met.

``--across-tasks`` prints instead the coverage of the mean effect over tasks on a two-level
simulation (tasks drawn around a planted mean with spread ``tau``, then units within each
task): the project's two-level t interval (``modularity.algorithms.across_tasks``), the
t interval floored at K - 1 df it replaced, and a two-level percentile bootstrap.
"""

from __future__ import annotations

import argparse
import time

from modularity.algorithms.coverage import CHECKS, TASK_METHODS, across_task_coverage, coverage
from modularity.algorithms.unit_intervals import MIN_UNITS, no_interval_reason

TARGET = (0.93, 0.97)
SIZES = [2, 3, 5, 10, 20, 100, 1000]
BOOTSTRAP = "effect, percentile bootstrap"
BOOTSTRAP_MAX_UNITS = 100  # beyond this its resampling makes the table slow to print
TASK_COUNTS = [3, 4, 5, 8]
UNITS_PER_TASK = [5, 20, 100]
TAUS_PP = [0.0, 3.0]


def coverage_cell(rate: float, width: int) -> str:
    """A coverage rate right-aligned in ``width`` characters, MISS where it is off target."""
    low, high = TARGET
    miss = "" if low <= rate <= high else " MISS"
    return f"{rate:>{width - 5}.3f}{miss:>5}"


def across_tasks(repetitions: int, seed: int, size_sigma: float) -> None:
    """Coverage of the mean over tasks, by tasks x units per task x between-task spread."""
    low, high = TARGET
    print(
        f"95% coverage of the planted mean effect over tasks, {repetitions} simulated "
        f"experiments per cell (the bootstrap: a third as many); target {low}-{high}"
    )
    names = list(TASK_METHODS)
    print(f"{'tasks':>5} {'units':>5} {'tau':>4}  " + "  ".join(f"{n:>31}" for n in names))
    start = time.perf_counter()
    for n_tasks in TASK_COUNTS:
        for n_units in UNITS_PER_TASK:
            for tau in TAUS_PP:
                cells = []
                for name in names:
                    reps = repetitions // 3 if "bootstrap" in name else repetitions
                    rate = across_task_coverage(name, n_tasks, n_units, tau, reps, seed, size_sigma)
                    cells.append(coverage_cell(rate, 31))
                print(f"{n_tasks:>5} {n_units:>5} {tau:>4g}  " + "  ".join(cells), flush=True)
    print(f"({time.perf_counter() - start:.0f} s)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=1000, help="per size and check")
    parser.add_argument("--sizes", type=int, nargs="+", default=SIZES, help="units per side")
    parser.add_argument("--size-sigma", type=float, default=1.0, help="log-normal length sd")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--across-tasks", action="store_true", help="the mean over tasks")
    args = parser.parse_args(argv)
    if args.across_tasks:
        across_tasks(args.repetitions, args.seed, args.size_sigma)
        return
    low, high = TARGET
    print(
        f"95% interval coverage, {args.repetitions} simulated evaluations per cell, "
        f"document lengths log-normal (sigma {args.size_sigma:g}); target {low}-{high}"
    )
    names = list(CHECKS)
    print(f"{'units':>6}  " + "  ".join(f"{name:>28}" for name in names))
    start = time.perf_counter()
    for n_units in args.sizes:
        cells = []
        for name in names:
            if name == BOOTSTRAP and n_units > BOOTSTRAP_MAX_UNITS:
                cells.append(f"{'(not run)':>28}")
                continue
            rate = coverage(name, n_units, args.repetitions, args.seed, args.size_sigma)
            if rate != rate:
                cells.append(f"{'no interval':>28}")
                continue
            cells.append(coverage_cell(rate, 28))
        print(f"{n_units:>6}  " + "  ".join(cells), flush=True)
    print(
        f"below {MIN_UNITS} units per side: {no_interval_reason(MIN_UNITS - 1)}; "
        f"({time.perf_counter() - start:.0f} s)"
    )


if __name__ == "__main__":
    main()
