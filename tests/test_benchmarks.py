"""The benchmarks ``make bench`` runs still import and parse their arguments (they assert
nothing, so only running them shows a broken import).

Each script runs as ``python <script> --help`` would run it, in this process
(``runpy``, its directory first on ``sys.path``): a subprocess per script spent its seconds
importing torch again.
"""

import runpy
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
def test_benchmark_imports_and_shows_its_options(script, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [str(script), "--help"])
    monkeypatch.syspath_prepend(str(script.parent))
    with pytest.raises(SystemExit) as stopped:
        runpy.run_path(str(script), run_name="__main__")
    assert stopped.value.code == 0
    assert "usage:" in capsys.readouterr().out
