"""Balanced k-means: modularity.algorithms.kmeans.balanced_kmeans vs k-means-constrained.

Both cluster the same L2-normalised float32 rows into E experts of sizes d // E or
d // E + 1: a GPT-2-sized layer (3072 x 768, E=96) and a Mistral-sized one (14336 x 4096,
E=128), each as plain Gaussian rows and as rows with planted clusters of unequal sizes (where
the size constraint costs inertia, so balancing quality shows). Restarts are matched: ours
runs ``n_restarts=R``, k-means-constrained ``n_init=R``. Inertia is recomputed the same way for
both (float64 sum of squared distances to the group means). Targets: ours >= 10x faster at an
inertia ratio <= 1.01. A report: it exits 0 whether or not targets are met.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from modularity.algorithms.kmeans import balanced_kmeans

SHAPES = [(3072, 768, 96), (14336, 4096, 128)]
QUICK_SHAPES = [(3072, 768, 96)]
SPEEDUP_TARGET = 10.0
INERTIA_TARGET = 1.01


def random_rows(n: int, d: int, seed: int) -> np.ndarray:
    """Gaussian rows [n, d] float32, L2-normalised: no cluster structure at all."""
    x = np.random.default_rng(seed).standard_normal((n, d), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered_rows(n: int, d: int, n_clusters: int, seed: int) -> np.ndarray:
    """Rows [n, d] float32 around random centres, Dirichlet(3) cluster sizes, normalised."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, d), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = rng.choice(n_clusters, size=n, p=rng.dirichlet(np.full(n_clusters, 3.0)))
    noise = rng.standard_normal((n, d), dtype=np.float32) * np.float32(2.0 / np.sqrt(d))
    x = centres[labels] + noise
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def inertia(x: np.ndarray, labels: np.ndarray) -> float:
    """Float64 sum of squared distances of rows x [n, d] to the mean of their group."""
    total = 0.0
    for group in np.unique(labels):
        members = x[labels == group].astype(np.float64)
        total += float(((members - members.mean(axis=0)) ** 2).sum())
    return total


def timed(fn: Callable[[], np.ndarray], repeats: int) -> tuple[float, np.ndarray]:
    """Median wall time of ``repeats`` calls and the labels of the last one."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        labels = fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), labels


def balanced(labels: np.ndarray, n_experts: int) -> bool:
    sizes = np.bincount(labels, minlength=n_experts)
    return int(sizes.max() - sizes.min()) <= 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="only the 3072 x 768 layer")
    parser.add_argument("--restarts", type=int, default=1, help="our n_restarts = their n_init")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs of each (median)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    try:
        from k_means_constrained import KMeansConstrained
    except ImportError:
        KMeansConstrained = None
        print("k-means-constrained is not installed (pip install k-means-constrained):")
        print("timing balanced_kmeans alone, no comparison.")

    balanced_kmeans(random_rows(256, 32, 0), 8)  # warm-up: thread pools, lazy imports
    header = (
        f"{'data':<9} {'shape':>12} {'E':>4} {'ours s':>7} {'theirs s':>8} {'speedup':>7} "
        f"{'inertia ours':>12} {'inertia theirs':>14} {'ratio':>6} {'balanced':>9}  verdict"
    )
    print(f"restarts: ours n_restarts={args.restarts}, theirs n_init={args.restarts}")
    print(header)
    print("-" * len(header))
    for n, d, n_experts in QUICK_SHAPES if args.quick else SHAPES:
        for kind in ("random", "clustered"):
            if kind == "random":
                x = random_rows(n, d, args.seed)
            else:
                x = clustered_rows(n, d, n_experts, args.seed)
            ours_s, ours = timed(
                lambda x=x, e=n_experts: (
                    balanced_kmeans(x, e, n_restarts=args.restarts, seed=args.seed).labels
                ),
                args.repeats,
            )
            ours_inertia = inertia(x, ours)
            shape = f"{n}x{d}"
            if KMeansConstrained is None:
                print(
                    f"{kind:<9} {shape:>12} {n_experts:>4} {ours_s:>7.3f} {'-':>8} {'-':>7} "
                    f"{ours_inertia:>12.1f} {'-':>14} {'-':>6} {balanced(ours, n_experts)!s:>9}"
                )
                continue
            model = KMeansConstrained(
                n_clusters=n_experts,
                size_min=n // n_experts,
                size_max=-(-n // n_experts),
                n_init=args.restarts,
                random_state=args.seed,
            )
            theirs_s, theirs = timed(lambda x=x, m=model: m.fit_predict(x), args.repeats)
            theirs_inertia = inertia(x, theirs)
            speedup = theirs_s / ours_s
            ratio = ours_inertia / theirs_inertia
            met = speedup >= SPEEDUP_TARGET and ratio <= INERTIA_TARGET
            both = f"{balanced(ours, n_experts)}/{balanced(theirs, n_experts)}"
            print(
                f"{kind:<9} {shape:>12} {n_experts:>4} {ours_s:>7.3f} {theirs_s:>8.3f} "
                f"{speedup:>6.1f}x {ours_inertia:>12.1f} {theirs_inertia:>14.1f} {ratio:>6.4f} "
                f"{both:>9}  {'PASS' if met else 'MISS'}",
                flush=True,
            )
    print(f"targets: speedup >= {SPEEDUP_TARGET:g}x and inertia ratio <= {INERTIA_TARGET}")


if __name__ == "__main__":
    main()
