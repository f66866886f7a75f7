"""The report reads any run's tidy rows, keeps swept keys apart, and never writes into a
directory that holds no results."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
from omegaconf import OmegaConf

from modularity.analyses.base import ROW_COLUMNS
from modularity.infra.tidy import panels
from modularity.report import gather, report


def write_run(root, name, task, fraction, layers, drop, overrides=()):
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    OmegaConf.save(list(overrides), run / ".hydra" / "overrides.yaml")
    settings = {
        "model": "m",
        "checkpoint": "",
        "init": "pretrained",
        "analysis": "prune",
        "fraction": fraction,
        "scope": "layer",
        "scorer": "mad",
        "ablation": "zero",
        "layers": layers,
        "reference_excludes": "documents",
    }
    rows = []
    for side, value in (("task", drop), ("reference", drop / 4)):
        rows.append(
            {
                "metric": "drop",
                "value": value,
                "task": task,
                "measure": "top1",
                "variant": side,
                "partner": "",
                "layer": "all",
                "low": value - 1,
                "high": value + 1,
                "p_value": float("nan"),
                "n": 100.0,
                "label": "",
            }
        )
    frame = pd.DataFrame([{**settings, **r} for r in rows])
    frame[[*settings, *ROW_COLUMNS]].to_csv(run / "results.csv", index=False)
    return run


def test_swept_keys_are_columns_and_figures_do_not_pool_them(tmp_path):
    for i, (fraction, layers) in enumerate([(0.01, "all"), (0.1, "all"), (0.01, "0"), (0.1, "0")]):
        write_run(
            tmp_path,
            str(i),
            "code",
            fraction,
            layers,
            10.0 * (i + 1),
            [f"selection.fraction={fraction}", f"layers={layers}", "data.collect_size=64"],
        )
    frame, bad = gather(tmp_path)
    assert bad == []
    assert {"layers", "data.collect_size", "fraction"} <= set(frame.columns)
    assert sorted(frame.layers.unique()) == ["0", "all"]
    drops = frame[frame.metric == "drop"]
    groups = panels(drops, exclude=("task", "fraction", "run"))
    assert [label for label, _ in groups] == ["layers=0", "layers=all"]
    report(tmp_path)
    assert (tmp_path / "drop_vs_fraction.png").is_file()
    assert (tmp_path / "report.parquet").is_file()


@pytest.mark.slow
def test_empty_directory_writes_nothing_and_says_so(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "modularity.report", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0 and "nothing to report" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_truncated_result_is_named_and_the_rest_reported(tmp_path):
    write_run(tmp_path, "good", "code", 0.1, "all", 5.0)
    broken = write_run(tmp_path, "broken", "prose", 0.1, "all", 5.0)
    (broken / "results.csv").write_text("metric,val")
    proc = subprocess.run(
        [sys.executable, "-m", "modularity.report", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert "broken" in proc.stderr and "Traceback" not in proc.stderr
    assert set(pd.read_csv(tmp_path / "report.csv").task) == {"code"}
