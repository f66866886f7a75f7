"""Overlap, matched damage, multirun sweeps, the stats cache in use, and the report."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from modularity.models.loading import load_model
from modularity.report import gather, report
from modularity.run import run

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["data.collect_size=2048", "data.eval_size=1024", "data.block_size=64"]


class ForwardCounter:
    """Counts forward calls of the backbone of the (process-cached) model a config loads
    (collection runs the backbone alone, evaluation the whole model around it)."""

    def __init__(self, cfg):
        from modularity.config import prepare

        prepare(cfg)
        self.model = load_model(cfg.model).model.base_model
        self.calls = 0
        self.handle = self.model.register_forward_hook(self._count)

    def _count(self, *_):
        self.calls += 1

    def take(self) -> int:
        calls, self.calls = self.calls, 0
        return calls


def test_cache_hit_skips_collection(make_cfg):
    cfg = make_cfg("+model=tiny_llama", "task=code", *SMALL)
    counter = ForwardCounter(cfg)
    try:
        run(cfg)
        first = counter.take()
        run(make_cfg("+model=tiny_llama", "task=code", "selection.fraction=0.2", *SMALL))
        second = counter.take()
    finally:
        counter.handle.remove()
    # 2048 tokens / 64 = 32 blocks = 4 batches of 8 per collection split; 1024 -> 2 per eval.
    collect, evaluate = 2 * (4 + 4), 2 + 2  # two passes on task and reference; task + reference
    assert first == collect + 2 * evaluate  # collection, baseline, pruned
    assert second == evaluate  # only the pruned evaluation: stats and baseline are cached


def test_overlap_analysis_writes_matrices_and_twin(make_cfg):
    cfg = make_cfg(
        "+model=tiny_llama",
        "analysis=overlap",
        "tasks=[code,prose,biology]",
        "compare_random=true",
        *SMALL,
    )
    result = run(cfg)
    out = Path(cfg.output_dir)
    jaccard = pd.read_csv(out / "overlap_jaccard_all.csv", index_col=0)
    assert list(jaccard.index) == ["code", "prose", "biology"]
    assert (jaccard.values.diagonal() == 1).all()
    assert (jaccard.values == jaccard.values.T).all()
    twin = pd.read_csv(out / "trained_vs_random.csv")
    assert list(twin.task) == ["code", "prose", "biology"]
    assert {"z", "p_value", "expected_jaccard"} <= set(twin.columns)
    assert result["set_share"]["mean"] == pytest.approx(0.05, abs=0.01)
    for name in (
        "overlap_z_all.png",
        "set_sizes.png",
        "trained_vs_random.png",
        "overlap_table.csv",
    ):
        assert (out / name).is_file(), name


def test_overlap_needs_two_tasks(make_cfg):
    from modularity.errors import ConfigError

    with pytest.raises(ConfigError, match="at least two tasks"):
        run(make_cfg("+model=tiny_llama", "analysis=overlap", "tasks=[code]"))


def test_matched_damage_converges(make_cfg):
    cfg = make_cfg(
        "+model=tiny_vit",
        "analysis=match",
        "tasks=[digits-4,digits-7]",
        "match.target_ratio=0.5",
        "match.tolerance=0.1",
        "match.max_fraction=1.0",
        "model.hf_config.num_labels=10",
        "model.seed=3",
    )
    result = run(cfg)
    for matched in result["matched"].values():
        if matched["converged"]:
            assert abs(matched["ratio"] - 0.5) <= 0.1
        else:  # a random model may not reach the target: then it must say so at max_fraction
            assert matched["fraction"] == 1.0 or matched["steps"] == cfg.match.max_steps
    assert (Path(cfg.output_dir) / "cross_eval.csv").is_file()


def sweep(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MODULARITY_CACHE_DIR": str(tmp_path / "cache"), "WANDB_MODE": "disabled"}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "modularity.run",
            "-m",
            "+model=tiny_llama",
            "task=code,prose",
            "selection.fraction=0.05,0.1",
            "trainer.progress_bar=false",
            *SMALL,
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
            *args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


@pytest.mark.parametrize("launcher", ["basic", "local"])
def test_multirun_sweep_and_report(tmp_path, launcher):
    proc = sweep(tmp_path, f"hydra/launcher={launcher}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = sorted((tmp_path / "sweep").glob("*/metrics.json"))
    assert len(runs) == 4
    frame = report(tmp_path / "sweep")
    drops = frame[frame.metric == "task/drop/top1"]
    assert sorted(drops.task.unique()) == ["code", "prose"]
    assert sorted(drops.fraction.unique()) == [0.05, 0.1]
    assert (tmp_path / "sweep" / "drop_vs_fraction.png").is_file()
    assert (tmp_path / "sweep" / "report.parquet").is_file()


def test_restarted_sweep_reuses_finished_work(tmp_path):
    """A sweep killed half-way (here: only its first task ran) and restarted completes the
    rest, and every statistic computed before the kill is reused, not recomputed."""
    first = sweep(tmp_path, "task=code")
    assert first.returncode == 0, first.stderr[-2000:]
    entries = set((tmp_path / "cache").iterdir())
    second = sweep(tmp_path)
    assert second.returncode == 0, second.stderr[-2000:]
    assert len(list((tmp_path / "sweep").glob("*/metrics.json"))) == 4
    after = set((tmp_path / "cache").iterdir())
    assert entries < after
    created = {p.name: json.loads((p / "meta.json").read_text())["created"] for p in entries}
    assert all(
        json.loads((tmp_path / "cache" / name / "meta.json").read_text())["created"] == stamp
        for name, stamp in created.items()
    )


def test_report_on_synthetic_multirun(tmp_path):
    for i, (task, fraction, drop) in enumerate(
        [("a", 0.01, 0.1), ("a", 0.1, 0.5), ("b", 0.01, 0.05)]
    ):
        run_dir = tmp_path / str(i)
        run_dir.mkdir()
        metrics = {
            "model": "m",
            "task": task,
            "fraction": fraction,
            "selectivity": 3.0,
            "before": {"task": {"top1": 0.9}, "reference": {"top1": 0.8}},
            "after": {"task": {"top1": 0.9 * (1 - drop)}, "reference": {"top1": 0.8}},
            "drop": {"task": {"top1": drop}, "reference": {"top1": 0.0}},
        }
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
    frame = gather(tmp_path)
    row = frame[(frame.task == "a") & (frame.fraction == 0.1) & (frame.metric == "task/drop/top1")]
    assert row.value.tolist() == [0.5]
    report(tmp_path)
    assert (tmp_path / "drop_vs_fraction.png").is_file()


def test_wandb_offline_run_writes_its_files(make_cfg, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = make_cfg(
        "+model=tiny_llama", "analysis=overlap", "tasks=[code,prose]", "logger=wandb", *SMALL
    )
    run(cfg)
    offline = list((Path(cfg.output_dir) / "wandb").glob("offline-run-*"))
    assert len(offline) == 1
    assert list(offline[0].glob("*.wandb")), "no W&B event file written"
    media = list(offline[0].rglob("*.png")) + list(offline[0].rglob("*.table.json"))
    assert media, "heatmaps and tables should be logged"
