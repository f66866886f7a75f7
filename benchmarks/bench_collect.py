"""Collection overhead: time of one statistics pass over N tokens / a plain forward pass.

A GPT-2-shaped random model (12 layers, d_model 768, 3072 neurons per layer) on CPU. Exact
MAD needs a second pass (see modularity.neurons.stats), so a full collection costs two of
these passes; the target (<= 1.10) is for the per-pass overhead of the hooks and sums.
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from modularity.models.adapter import ModelAdapter
from modularity.neurons.masks import neuron_hooks
from modularity.neurons.stats import NeuronStatsAccumulator


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    config = GPT2Config(
        n_layer=args.layers, n_embd=768, n_head=12, n_positions=512, vocab_size=8192
    )
    model = GPT2LMHeadModel(config).eval()
    adapter = ModelAdapter.for_model(model)
    batch = torch.randint(0, config.vocab_size, (args.tokens // 256, 256))
    batches = batch.split(8)

    def forward() -> None:
        with torch.inference_mode():
            for ids in batches:
                model(input_ids=ids)

    def collect(center: torch.Tensor | None = None) -> None:
        acc = NeuronStatsAccumulator(adapter.n_layers, adapter.n_neurons, center=center)
        with torch.inference_mode(), neuron_hooks(adapter, acc.update):
            for ids in batches:
                model(input_ids=ids)

    plain = timed(forward, args.repeats)
    moments = timed(collect, args.repeats)
    centred = timed(lambda: collect(torch.zeros(adapter.n_layers, adapter.n_neurons)), args.repeats)
    per_pass = max(moments, centred) / plain
    print(
        f"GPT-2-shaped random model, {args.layers} layers x {adapter.n_neurons} neurons, "
        f"{batch.numel()} tokens, CPU"
    )
    print(f"  plain forward            {plain:8.3f} s")
    print(f"  moments pass             {moments:8.3f} s   ratio {moments / plain:.3f}")
    print(f"  MAD pass                 {centred:8.3f} s   ratio {centred / plain:.3f}")
    print(f"  full collection (2 passes) ratio {(moments + centred) / plain:.3f}")
    verdict = "PASS" if per_pass <= 1.10 else "MISS"
    print(f"  per-pass overhead {per_pass:.3f}  target <= 1.10: {verdict}")


if __name__ == "__main__":
    main()
