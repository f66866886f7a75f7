"""Several sites in one forward: MLP + attention (+ heads) collection against MLP-only.

On a GPT-2-shaped random model (12 layers, d_model 768, 3072 neurons and 768 attention
neurons per layer) over the same token blocks, interleaved over repeats (best time of each
kept): ``collect_statistics`` of the MLP alone, of MLP and attention neurons, and of MLP,
attention neurons and heads. Both use the exact two-pass MAD (``mad_tolerance=0``) so the
number of passes does not depend on the data. Prints the ratios to MLP-only against the
target (1.1) and MISS where above; asserts nothing.
"""

from __future__ import annotations

import argparse
import time

import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader
from transformers import GPT2Config, GPT2LMHeadModel

from modularity.collect import collect_statistics
from modularity.data.packing import TextSample
from modularity.data.tasks import TokenBlocks
from modularity.models.adapter import ModelAdapter
from modularity.models.loading import LoadedModel

TARGET = 1.1
TRAINER = OmegaConf.create(
    {
        "accelerator": "cpu",
        "devices": 1,
        "strategy": "auto",
        "precision": "32-true",
        "enable_progress_bar": False,
    }
)
VARIANTS = {
    "mlp": ("mlp",),
    "mlp + attn": ("mlp", "attn"),
    "mlp + attn + heads": ("mlp", "attn", "heads"),
}


def gpt2_shaped(tokens: int) -> tuple[LoadedModel, DataLoader]:
    torch.manual_seed(0)
    config = GPT2Config(n_layer=12, n_embd=768, n_head=12, n_positions=512, vocab_size=8192)
    model = GPT2LMHeadModel(config).eval()
    blocks = torch.randint(0, config.vocab_size, (tokens // 128, 128))
    units = torch.arange(len(blocks))
    sample = TextSample(blocks, units, units % 2, len(blocks), tokens // 128 * 128)
    return LoadedModel(model, ModelAdapter.for_model(model)), DataLoader(
        TokenBlocks(sample), batch_size=8
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    loaded, loader = gpt2_shaped(args.tokens)
    best = {name: float("inf") for name in VARIANTS}
    for _ in range(args.repeats):
        for name, sites in VARIANTS.items():
            start = time.perf_counter()
            collect_statistics(loaded, loader, TRAINER, mad_tolerance=0.0, sites=sites)
            best[name] = min(best[name], time.perf_counter() - start)
    print(f"GPT-2-shaped random, {args.tokens} tokens, exact two-pass collection:")
    for name, seconds in best.items():
        ratio = seconds / best["mlp"]
        verdict = "" if name == "mlp" else ("ok" if ratio <= TARGET else "MISS")
        print(f"  {name:20s} {seconds:8.2f} s   ratio {ratio:.3f} (target <= {TARGET}) {verdict}")


if __name__ == "__main__":
    main()
