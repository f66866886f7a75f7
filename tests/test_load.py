"""A finished run reopens in Python as the object the API returned for it, and the
``modularity`` console script runs ``report`` and ``export`` as subcommands."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest
import torch
from cli import ROOT
from test_report import write_run

import modularity
from modularity.errors import ModularityError

SMALL = {"collect_size": 2048, "eval_size": 1024, "block_size": 64, "progress_bar": False}


@pytest.mark.slow
def test_a_pruning_run_reopens_as_its_prune_result(tmp_path):
    run_dir = tmp_path / "run"
    result = modularity.prune(
        "tiny_llama", "code", 0.1, run_dir=run_dir, cache_dir=str(tmp_path / "cache"), **SMALL
    )
    loaded = modularity.load(run_dir)
    assert isinstance(loaded, modularity.PruneResult)
    assert torch.equal(loaded.mask, result.mask) and torch.equal(loaded.scores, result.scores)
    pd.testing.assert_frame_equal(loaded.rows, result.rows)
    assert (loaded.effect, loaded.effect_interval) == (result.effect, result.effect_interval)
    assert loaded.config.model.name == "tiny_llama" and loaded.run_dir == run_dir


@pytest.mark.slow
def test_another_analysis_reopens_as_its_run_result(tmp_path):
    from modularity.analyses.base import RunResult

    run_dir = tmp_path / "moefy"
    overrides = ["model=tiny_llama", "analysis=moefy", f"cache.dir={tmp_path / 'cache'}"]
    result = modularity.run_analysis(*overrides, run_dir=run_dir)
    loaded = modularity.load(run_dir)
    assert isinstance(loaded, RunResult) and loaded.out_dir == run_dir
    pd.testing.assert_frame_equal(loaded.rows, result.rows)


def test_a_directory_that_holds_no_finished_run_is_one_line(tmp_path):
    with pytest.raises(ModularityError, match=r"not a finished run directory: \.hydra"):
        modularity.load(tmp_path)


def console_script(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    """The ``modularity`` console script's entry point, as the installed script calls it."""
    code = "import sys; from modularity.run import main; sys.argv[0] = 'modularity'; main()"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_report_and_export_are_subcommands(tmp_path):
    write_run(tmp_path, "a", "code", 0.1, "all", 5.0)
    write_run(tmp_path, "b", "code", 0.2, "all", 9.0)
    proc = console_script("report", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "rows from" in proc.stdout and (tmp_path / "report.csv").is_file()
    proc = console_script("export", str(tmp_path / "missing"), str(tmp_path / "out"))
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "missing" in proc.stderr
    assert "Traceback" not in proc.stderr
