"""The README's CPU-only install: with the CPU build of torch present, installing the
package adds no CUDA package (asked of pip itself, ``--dry-run``)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from cli import ROOT


@pytest.mark.slow
def test_installing_the_package_beside_cpu_torch_adds_no_cuda_package(tmp_path):
    if torch.version.cuda is not None:
        pytest.skip("this interpreter has the CUDA build of torch")
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--report",
         str(report), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = [item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]]
    assert "modularity" in names
    assert not [n for n in names if n.startswith(("nvidia", "triton", "torch"))], names
