"""Sweep overhead: a pruning sweep's wall time / plain forward passes over the same tokens.

The sweep: 2 tasks (code, prose) x 4 fractions of ``analysis=prune`` on an embedded model, run
as ``python -m modularity.run -m experiment=<name> ...`` runs it (in this process, so that the
model stays warm for the denominator), from a fresh cache, timed end to end (checking every
job, composing, tokenising, statistics, baselines, pruned evaluations, bootstrap intervals,
writing, figures). The denominator is what no implementation can avoid: one backbone
forward over each collection sample (the two tasks and their reference), and full-model
forwards over the evaluation samples that the sweep must score (each side's baseline once,
then task and reference once per job), timed with plain ``torch.inference_mode`` loops over
the very token blocks the sweep used. Tokenising those samples from scratch is timed
separately and printed as a share of the sweep. Target: ratio <= 1.3; nothing is asserted.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from modularity.config import compose_config
from modularity.data.text import text_blocks
from modularity.pipeline import Pipeline
from modularity.run import main as run_main

MODELS = {"tiny_lm_text": "embedded_text", "smollm2_135m": "embedded_smollm2"}
TASKS = ("code", "prose")
FRACTIONS = (0.01, 0.02, 0.05, 0.1)
TARGET = 1.3


def sweep_overrides(cache_dir: str, collect: int, evaluate: int) -> list[str]:
    fractions = ",".join(f"{f:g}" for f in FRACTIONS)
    return [
        f"tasks=[{','.join(TASKS)}]",
        f"hydra.sweeper.params={{task:'{','.join(TASKS)}',selection.fraction:'{fractions}'}}",
        f"cache.dir={cache_dir}",
        f"data.collect_size={collect}",
        f"data.eval_size={evaluate}",
        "trainer.enable_progress_bar=false",
    ]


def run_sweep(arguments: list[str]) -> None:
    """``python -m modularity.run -m <arguments>``, in this process."""
    argv = sys.argv
    sys.argv = ["modularity", "-m", *arguments]
    try:
        run_main()
    finally:
        sys.argv = argv


def forward_seconds(pipe: Pipeline, blocks: torch.Tensor, backbone: bool) -> float:
    """One plain pass over ``blocks`` in the pipeline's batch size."""
    net = pipe.loaded.model.base_model if backbone else pipe.loaded.model
    start = time.perf_counter()
    with torch.inference_mode():
        for batch in blocks.split(pipe.model_cfg.batch_size):
            net(input_ids=batch, use_cache=False)  # as the loops run it
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="tiny_lm_text")
    parser.add_argument("--collect", type=int, default=16384, help="collection tokens")
    parser.add_argument("--evaluate", type=int, default=8192, help="evaluation tokens")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    experiment = MODELS[args.model]
    with tempfile.TemporaryDirectory() as tmp:
        overrides = sweep_overrides(f"{tmp}/cache", args.collect, args.evaluate)
        start = time.perf_counter()
        run_sweep([f"experiment={experiment}", *overrides, f"hydra.sweep.dir={Path(tmp) / 'out'}"])
        sweep = time.perf_counter() - start
        cfg = compose_config([f"experiment={experiment}", *overrides])
        pipe = Pipeline(cfg)  # loads outside the timings below; token blocks come from the cache
        tasks = [pipe.task(name) for name in TASKS]
        reference = pipe.reference_of(tasks[0])
        collect = {s.name: pipe.text_blocks(s, "collect")["input_ids"] for s in [*tasks, reference]}
        evaluate = {
            s.name: pipe.text_blocks(s, "evaluate")["input_ids"] for s in [*tasks, reference]
        }
        forward_seconds(pipe, collect[reference.name][:8], backbone=False)  # warm-up
        plain = sum(forward_seconds(pipe, b, backbone=True) for b in collect.values())
        # Baselines: each side once; pruned: task and reference once per (task, fraction).
        passes = {s.name: 1 + len(FRACTIONS) for s in tasks}
        passes[reference.name] = 1 + len(TASKS) * len(FRACTIONS)
        plain += sum(
            n * forward_seconds(pipe, evaluate[name], backbone=False) for name, n in passes.items()
        )
        start = time.perf_counter()
        for spec in [*tasks, reference]:
            for split, size in (("collect", args.collect), ("evaluate", args.evaluate)):
                text_blocks(
                    spec.config,
                    spec.split(split),
                    pipe.model.tokenizer,
                    pipe.inputs.block_size(spec),
                    size,
                )
        tokenising = time.perf_counter() - start
    ratio = sweep / plain
    print(
        f"{args.model} ({experiment}): {len(TASKS)} tasks x {len(FRACTIONS)} fractions, "
        f"{args.collect} collection and {args.evaluate} evaluation tokens per sample"
    )
    print(f"  sweep, end to end, fresh cache      {sweep:8.2f} s")
    print(f"  plain forwards over the same tokens {plain:8.2f} s   ratio {ratio:.3f}")
    print(
        f"  tokenising the samples from scratch {tokenising:8.2f} s   "
        f"({tokenising / sweep:.0%} of the sweep; cached on disk after the first run)"
    )
    print(f"  ratio {ratio:.3f}  target <= {TARGET}: {'PASS' if ratio <= TARGET else 'MISS'}")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"  load average: {load}; {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
