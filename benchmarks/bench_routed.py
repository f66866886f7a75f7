"""Routed MLP vs dense MLP: CPU wall time of one gated MLP at each share of experts active.

The routed MLP (``modularity.routing.routed_mlp.RoutedGatedMLP``) computes only the top-k
experts of each token (gather, batched matmul, scatter-add); the dense one is the model's own
``LlamaMLP``. Shapes: SmolLM2-135M's MLP (576 -> 1536, 48 experts of 32) and Mistral 7B's
(4096 -> 14336, 448 experts of 32), synthetic weights, a similarity router, a random balanced
partition (speed does not depend on which neurons form an expert). Two workloads: a prefill
batch of tokens and one decoding token.

Target: routed time / dense time <= share + 0.10 (the work saved, less a small overhead).
A report: it exits 0 whether or not targets are met; MISS marks where routing is slower than
that, including where it is slower than dense outright (ratio > 1).
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaMLP

from modularity.algorithms.kmeans import random_partition
from modularity.routing.routed_mlp import RoutedGatedMLP
from modularity.routing.routers import build_router, experts_per_token

SHAPES = {"SmolLM2-135M": (576, 1536, 48, 256), "Mistral-7B": (4096, 14336, 448, 64)}
SHARES = (0.125, 0.25, 0.5, 1.0)
OVERHEAD = 0.10


def timed(fn, repeats: int) -> float:  # noqa: ANN001 - a callable
    """Fastest wall seconds of ``repeats`` calls after a warm-up call: the call least
    disturbed by other processes on a shared machine."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def synthetic_mlp(d_model: int, d_mlp: int, seed: int) -> LlamaMLP:
    torch.manual_seed(seed)
    mlp = LlamaMLP(LlamaConfig(hidden_size=d_model, intermediate_size=d_mlp)).eval()
    with torch.no_grad():
        for linear in (mlp.gate_proj, mlp.up_proj, mlp.down_proj):
            linear.weight.normal_(0, linear.in_features**-0.5)
    return mlp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="SmolLM2's shape only")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls (fastest)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: on a shared machine, OpenMP waits for a busy "
        "core dominate small matmuls with more)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    shapes = {k: v for k, v in SHAPES.items() if not args.quick or k == "SmolLM2-135M"}
    print(f"torch threads: {torch.get_num_threads()}; fp32; target ratio <= share + {OVERHEAD}")
    header = (
        f"{'MLP':<13} {'tokens':>6} {'E':>4} {'k':>4} {'share':>6} {'dense ms':>9} "
        f"{'routed ms':>9} {'ratio':>6} {'target':>6}  verdict"
    )
    print(header)
    print("-" * len(header))
    for name, (d_model, d_mlp, n_experts, prefill) in shapes.items():
        mlp = synthetic_mlp(d_model, d_mlp, args.seed)
        labels = torch.from_numpy(random_partition(mlp.gate_proj.weight, n_experts).labels)
        router = build_router("similarity", labels, mlp.gate_proj.weight.detach(), n_experts)
        parts = {"gate": mlp.gate_proj, "up": mlp.up_proj, "down": mlp.down_proj}
        for tokens in (prefill, 1):
            x = torch.randn(tokens, d_model, generator=torch.Generator().manual_seed(args.seed))
            with torch.inference_mode():
                dense_s = timed(lambda x=x, m=mlp: m(x), args.repeats)
                for share in SHARES:
                    k = experts_per_token(share, n_experts)
                    routed = RoutedGatedMLP(mlp, parts, labels, n_experts, router, k)
                    routed_s = timed(lambda x=x, r=routed: r(x), args.repeats)
                    ratio, target = routed_s / dense_s, min(1.0, share) + OVERHEAD
                    print(
                        f"{name:<13} {tokens:>6} {n_experts:>4} {k:>4} {share:>6g} "
                        f"{1e3 * dense_s:>9.2f} {1e3 * routed_s:>9.2f} {ratio:>6.2f} "
                        f"{target:>6.2f}  {'PASS' if ratio <= target else 'MISS'}",
                        flush=True,
                    )
                    del routed
        del mlp
    print("ratio: routed / dense wall time; above 1 the routed MLP is slower than dense.")


if __name__ == "__main__":
    main()
