"""The API reference builds from the docstrings (mkdocs, strict: a broken reference fails),
and the example notebook runs top to bottom."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli import ROOT

NOTEBOOK = ROOT / "examples" / "prune_and_reload.ipynb"


@pytest.mark.slow
def test_the_api_reference_builds(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    if mkdocs is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[dev]')")
    proc = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    for name in ("prune", "load", "ablate", "export", "PruneResult", "RunResult"):
        assert f'id="modularity.api.{name}"' in api or f"modularity.analyses.base.{name}" in api
    analyses = (tmp_path / "site" / "analyses" / "index.html").read_text()
    assert "target_ratio" in analyses and "compare_random" in analyses


@pytest.mark.slow
def test_the_example_notebook_runs(tmp_path, monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    monkeypatch.setenv("EXAMPLE_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("MODULARITY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3").execute()
    printed = "".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )
    assert "restored bit for bit: True" in printed and "changed while ablated: True" in printed
    assert (tmp_path / "run" / "results.csv").is_file()
