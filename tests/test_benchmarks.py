"""The benchmarks ``make bench`` runs still import and parse their arguments (they assert
nothing, so only running them shows a broken import)."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parent.parent / "benchmarks").glob("bench_*.py"))


def test_every_benchmark_is_found():
    assert {p.stem for p in BENCHMARKS} >= {
        "bench_collect",
        "bench_kmeans",
        "bench_routed",
        "bench_sweep",
    }


@pytest.mark.slow
@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda p: p.stem)
def test_benchmark_imports_and_shows_its_options(script):
    proc = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage:" in proc.stdout
