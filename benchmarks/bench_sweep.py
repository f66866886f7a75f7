"""Sweep overhead: a pruning sweep's wall time / the time of its unavoidable forward passes.

The sweep: 2 tasks (code, prose) x 4 fractions of ``analysis=prune`` on an embedded default
model, run in-process by ``modularity.default.run_plan`` with a fresh statistics cache, timed
end to end (composing, tokenising, statistics, baselines, evaluations, saving, figures).
Its unavoidable forward passes: one statistics collection (both passes: moments, then exact
MAD) per task and for their reference, and one masked evaluation of task + reference per
job. Everything else (tokenising, unmasked baselines, composing, writing) is overhead.

Those passes are timed twice: inside the sweep (its ``collect_statistics`` and masked
``evaluate`` calls; their loaders are built before the call), which gives the verdict, and
separately before it on pre-tokenised data of the same sizes. The model is loaded and warmed
up once before both. On a small shared machine the separate timing drifts with the load
(both are printed, with the load average). Target: ratio <= 1.3; exit status 0 either way.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

from modularity import pipeline
from modularity.collect import collect_statistics
from modularity.config import compose_config, prepare
from modularity.default import Experiment, run_plan
from modularity.evaluate import evaluate
from modularity.neurons.masks import ablate
from modularity.neurons.scoring import score_neurons
from modularity.neurons.selection import select_top_fraction
from modularity.pipeline import Pipeline

MODELS = {"tiny_lm_text": "embedded_text", "smollm2_135m": "embedded_smollm2"}
TASKS = ("code", "prose")
FRACTIONS = (0.01, 0.02, 0.05, 0.1)
TARGET = 1.3


def sweep_overrides(cache_dir: str) -> list[str]:
    fractions = ",".join(f"{f:g}" for f in FRACTIONS)
    return [
        f"tasks=[{','.join(TASKS)}]",
        f"hydra.sweeper.params={{task:'{','.join(TASKS)}',selection.fraction:'{fractions}'}}",
        f"cache.dir={cache_dir}",
        "trainer.progress_bar=false",
    ]


def forward_seconds(experiment: str, cache_dir: str) -> tuple[float, int, int]:
    """Seconds of the sweep's unavoidable forward passes; and the collection, evaluation counts."""
    cfg = compose_config([f"experiment={experiment}", *sweep_overrides(cache_dir)])
    prepare(cfg)
    pipe = Pipeline(cfg)  # loads the model (cached in-process: the sweep reuses it)
    loaded, trainer, tasks = pipe.loaded, cfg.trainer, {name: pipe.task(name) for name in TASKS}
    reference = pipe.reference_of(tasks[TASKS[0]])
    frequent = pipe.frequent_tokens(reference)
    evaluate(loaded, pipe._loader(reference, "evaluate"), trainer, frequent)  # warm-up

    collected, seconds = {}, 0.0
    for task in [*tasks.values(), reference]:
        loader = pipe._loader(task, "collect")
        start = time.perf_counter()
        collected[task.name] = collect_statistics(loaded, loader, trainer)
        seconds += time.perf_counter() - start

    ref_loader = pipe._loader(reference, "evaluate")
    for name, task in tasks.items():
        loader = pipe._loader(task, "evaluate")
        scores = score_neurons(collected[name], collected[reference.name])
        for fraction in FRACTIONS:
            mask = select_top_fraction(scores, fraction)
            start = time.perf_counter()
            with ablate(pipe.adapter, mask, cfg.ablation.mode):
                for dl in (loader, ref_loader):
                    evaluate(loaded, dl, trainer, frequent)
            seconds += time.perf_counter() - start
    return seconds, len(collected), 2 * len(tasks) * len(FRACTIONS)


class ForwardClock:
    """Time spent in the sweep's own collections and masked evaluations (not baselines)."""

    def __init__(self) -> None:
        self.seconds, self.skip, self.calls = 0.0, 0, Counter[str]()

    def wrap(self, fn: Callable[..., Any], count: bool = True) -> Callable[..., Any]:
        """``fn``, its time added to the total (``count``) or not even in what it calls."""

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start, self.skip = time.perf_counter(), self.skip + (not count)
            try:
                return fn(*args, **kwargs)
            finally:
                self.skip -= not count
                if count and not self.skip:
                    self.seconds += time.perf_counter() - start
                    self.calls[fn.__name__] += 1

        return wrapper


def sweep_seconds(experiment: str, cache_dir: str, out: Path) -> tuple[float, ForwardClock]:
    """The sweep's wall time, and the time of its own unavoidable forward passes."""
    clock = ForwardClock()
    with (
        mock.patch.object(pipeline, "collect_statistics", clock.wrap(collect_statistics)),
        mock.patch.object(pipeline, "evaluate", clock.wrap(evaluate)),
        mock.patch.object(pipeline.Pipeline, "baseline", clock.wrap(Pipeline.baseline, False)),
    ):
        start = time.perf_counter()
        failures = run_plan([Experiment(experiment, ("prune",))], out, sweep_overrides(cache_dir))
        seconds = time.perf_counter() - start
    if failures:
        raise SystemExit(f"sweep failed: {failures}")
    return seconds, clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="tiny_lm_text")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    experiment = MODELS[args.model]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        forward, n_collect, n_eval = forward_seconds(experiment, f"{tmp}/cache_forward")
        sweep, inside = sweep_seconds(experiment, f"{tmp}/cache_sweep", Path(tmp) / "out")
    ratio, separate, calls = sweep / inside.seconds, sweep / forward, inside.calls
    print(f"{args.model} ({experiment}): {len(TASKS)} tasks x {len(FRACTIONS)} fractions, prune")
    print(f"  sweep, end to end                     {sweep:8.2f} s")
    print(f"  its forward passes, timed inside it   {inside.seconds:8.2f} s  ratio {ratio:.3f}")
    print(f"  the same, timed separately before it  {forward:8.2f} s  ratio {separate:.3f}")
    counts = f"{calls['collect_statistics']}, {calls['evaluate']}"
    print(f"  collections (2 passes each), masked task/ref evaluations: {counts}", end="")
    print(f" (separately {n_collect}, {n_eval})")
    print(f"  ratio {ratio:.3f}  target <= {TARGET}: {'PASS' if ratio <= TARGET else 'MISS'}")
    load = [", ".join(f"{x:.2f}" for x in avg) for avg in (load_before, os.getloadavg())]
    print(f"  load average before: {load[0]}; after: {load[1]}; {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
