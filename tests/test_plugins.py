"""Plug-ins declared outside this package are found from one place: an analysis from a
temporary package runs, and ``modularity.report`` (another process) draws its figures and
``summary.md`` writes its section; one failing plug-in does not stop the others."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
from omegaconf import OmegaConf, open_dict

from modularity.analyses.base import execute
from modularity.summary import write_summary

PLUGIN = '''
"""A plug-in analysis outside modularity: how many tasks a run names."""
from dataclasses import dataclass
from modularity.analyses.base import Analysis, Row


@dataclass
class TaskCount(Analysis):
    weight: float = 2.0

    def run(self, ctx):
        return [Row(metric="task_count", value=self.weight * (1 + len(ctx.cfg.tasks)))]

    @classmethod
    def summary(cls, rows):
        return [f"task_count {rows['value'].iloc[0]:g}"]

    @classmethod
    def figures(cls, rows, out):
        path = out / "task_count.txt"
        path.write_text(str(len(rows)))
        return [path]
'''


@pytest.mark.slow
def test_outside_analysis_runs_and_reports(make_cfg, tmp_path, monkeypatch):
    package = tmp_path / "plugins" / "extpkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "counting.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(package.parent))
    cfg = make_cfg()
    with open_dict(cfg):
        cfg.analysis = OmegaConf.create({"_target_": "extpkg.counting.TaskCount", "weight": 3})
    result = execute(cfg)
    assert result.rows["value"].tolist() == [3.0]
    assert result.rows["analysis"].tolist() == ["counting"]

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(package.parent), *sys.path])}
    proc = subprocess.run(
        [sys.executable, "-m", "modularity.report", str(result.out_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (result.out_dir / "task_count.txt").read_text() == "1"

    summary = write_summary(result.rows, tmp_path, {}, 1.0, "plugins").read_text()
    assert "task_count 3" in summary


def test_one_failing_summary_does_not_stop_the_others(tmp_path, monkeypatch):
    import importlib

    package = tmp_path / "plugins" / "extpkg2"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "counting.py").write_text(textwrap.dedent(PLUGIN))
    (package / "broken.py").write_text(
        "from modularity.analyses.base import Analysis\n"
        "class Broken(Analysis):\n"
        "    @classmethod\n"
        "    def summary(cls, rows):\n"
        "        raise RuntimeError('plug-in bug')\n"
    )
    monkeypatch.syspath_prepend(str(package.parent))
    importlib.import_module("extpkg2.counting")
    importlib.import_module("extpkg2.broken")
    rows = pd.DataFrame({"model": ["m", "m"], "analysis": ["broken", "counting"], "value": [1, 2]})
    text = write_summary(rows, tmp_path, {}, 1.0, "t").read_text()
    assert "task_count 2" in text
    assert "## Steps that failed" in text
    assert "`summary of broken (m)`: RuntimeError: plug-in bug" in text
