"""Several sites in one forward: MLP + attention (+ heads) collection against MLP-only.

On a GPT-2-shaped random model (12 layers, d_model 768, 3072 neurons and 768 attention
neurons per layer) over the same token blocks, interleaved over repeats (best time of each
kept): ``collect_statistics`` of the MLP alone, of MLP and attention neurons, and of MLP,
attention neurons and heads. All use the exact two-pass MAD (``mad_tolerance=0``) so the
number of passes does not depend on the data. Prints the wall and CPU-time ratios to
MLP-only against the target (1.1 on CPU time, the steadier on a loaded machine) and MISS
where above; asserts nothing.
"""

from __future__ import annotations

import argparse

import torch
from fixtures import CPU_TRAINER, gpt2_shaped, timed

from modularity.collect import collect_statistics

TARGET = 1.1
VARIANTS = {
    "mlp": ("mlp",),
    "mlp + attn": ("mlp", "attn"),
    "mlp + attn + heads": ("mlp", "attn", "heads"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (a loaded machine: 1)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded, loader = gpt2_shaped(args.tokens)
    best = {name: [float("inf")] * 2 for name in VARIANTS}
    for _ in range(args.repeats):
        for name, sites in VARIANTS.items():

            def collect(sites: tuple[str, ...] = sites) -> None:
                collect_statistics(loaded, loader, CPU_TRAINER, mad_tolerance=0.0, sites=sites)

            best[name] = [min(a, b) for a, b in zip(best[name], timed(collect))]
    print(
        f"GPT-2-shaped random, {args.tokens} tokens, exact two-pass collection, "
        f"{torch.get_num_threads()} torch threads:"
    )
    mlp_wall, mlp_cpu = best["mlp"]
    for name, (wall, cpu) in best.items():
        ratios = f"ratio {wall / mlp_wall:.3f} wall, {cpu / mlp_cpu:.3f} CPU"
        verdict = "" if name == "mlp" else ("ok" if cpu / mlp_cpu <= TARGET else "MISS")
        print(
            f"  {name:20s} {wall:8.2f} s wall {cpu:8.2f} s CPU   {ratios} "
            f"(target <= {TARGET}) {verdict}"
        )


if __name__ == "__main__":
    main()
