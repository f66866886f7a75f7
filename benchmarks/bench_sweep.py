"""Sweep overhead: a pruning sweep's wall time / the time of its unavoidable forward passes.

The sweep is 2 tasks (code, prose) x 4 fractions of ``analysis=prune`` on an embedded default
model, run in-process by ``modularity.default.run_plan`` with a fresh statistics cache, end to
end (composing, statistics, baselines, evaluations, saving configs, tensors and figures).

The unavoidable forward passes, timed in the same process on the same data sizes: one
statistics collection (both passes: moments, then exact MAD) per task and for their reference,
and one masked evaluation of task + reference per job. Data are tokenised outside the timing
and the model is loaded (and warmed up) once before both measurements, so neither pays that.
Everything else the sweep does (tokenising, unmasked baselines, Trainer set-up, composing,
writing) is overhead. Target: ratio <= 1.3. Exit status 0 either way.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

from modularity.config import compose_config, prepare
from modularity.default import Experiment, run_plan
from modularity.evaluate import collect_statistics, evaluate
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
    loaded, trainer = pipe.loaded, cfg.trainer
    tasks = {name: pipe.task(name) for name in TASKS}
    reference = pipe.reference_of(tasks[TASKS[0]])
    frequent = pipe.frequent_tokens(reference)
    evaluate(loaded, pipe._loader(reference, "evaluate"), trainer, frequent)  # warm-up

    collected, seconds = {}, 0.0
    for task in [*tasks.values(), reference]:
        loader = pipe._loader(task, "collect")
        start = time.perf_counter()
        collected[task.name] = collect_statistics(loaded, loader, trainer)
        seconds += time.perf_counter() - start

    n_eval = 0
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
            n_eval += 1
    return seconds, len(collected), n_eval


def sweep_seconds(experiment: str, cache_dir: str, out: Path) -> float:
    start = time.perf_counter()
    failures = run_plan([Experiment(experiment, ("prune",))], out, sweep_overrides(cache_dir))
    seconds = time.perf_counter() - start
    if failures:
        raise SystemExit(f"sweep failed: {failures}")
    return seconds


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
        sweep = sweep_seconds(experiment, f"{tmp}/cache_sweep", Path(tmp) / "out")
    ratio = sweep / forward
    n_jobs = len(TASKS) * len(FRACTIONS)
    print(f"{args.model} ({experiment}): {len(TASKS)} tasks x {len(FRACTIONS)} fractions")
    print(f"  forward passes: {n_collect} collections (2 passes each), {n_eval} evaluations")
    print(f"  sweep ({n_jobs} jobs, end to end) {sweep:8.2f} s")
    print(f"  unavoidable forward passes   {forward:8.2f} s")
    verdict = "PASS" if ratio <= TARGET else "MISS"
    print(f"  ratio {ratio:.3f}  target <= {TARGET}: {verdict}")
    load = ", ".join(f"{x:.2f}" for x in load_before)
    print(f"  load average before: {load}; {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
