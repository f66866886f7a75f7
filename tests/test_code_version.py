"""Cache versions derived from the producing code: a change to what computes a value gives it
a new key, an unchanged setup (or an edit that cannot change a result) hits the cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pytest
import torch
from code_edits import pretend_edited

import modularity.collect
from modularity.infra import code_version as versions
from modularity.infra.code_version import code_version
from modularity.pipeline import Pipeline, statistics

SMALL = ["data.collect_size=512", "data.eval_size=256", "data.block_size=64"]


def write(path: Path, text: str) -> None:
    """Write ``text`` and move the file's time on, so an edit is seen within a process even
    where the file system's clock is coarse."""
    stamp = path.stat().st_mtime_ns + 10**9 if path.exists() else None
    path.write_text(text)
    if stamp is not None:
        os.utime(path, ns=(stamp, stamp))


@pytest.fixture
def package(tmp_path, monkeypatch) -> tuple[str, Path]:
    """A fresh importable package: ``producer`` imports ``helper`` inside a function, which
    imports ``factors`` relatively; ``unrelated`` is imported by nobody."""
    name = f"producers_{uuid.uuid4().hex[:12]}"
    root = tmp_path / name
    root.mkdir()
    write(root / "__init__.py", "")
    write(root / "factors.py", "TWO = 2\n")
    write(root / "helper.py", "from .factors import TWO\n\n\ndef double(x):\n    return 2 * x\n")
    write(root / "unrelated.py", "VALUE = 1\n")
    write(
        root / "producer.py",
        f'"""Doc."""\n\n\ndef compute(x):\n    from {name}.helper import double\n\n'
        "    return double(x) + 1\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return name, root


def test_a_change_to_a_producer_or_what_it_imports_changes_the_version(package) -> None:
    name, root = package
    before = code_version(f"{name}.producer")
    assert len(before) == versions.DIGEST_CHARS

    write(
        root / "producer.py",
        f'"""Another docstring."""\n\n# a comment\n\n\ndef compute(x):\n'
        f"    from {name}.helper import double  # imported late\n\n"
        "    return double(x) + 1  # plus one\n",
    )
    write(root / "unrelated.py", "VALUE = 2\n")
    assert code_version(f"{name}.producer") == before, "comments, docstrings, layout, others"

    write(root / "helper.py", "from .factors import TWO\n\n\ndef double(x):\n    return x + x\n")
    edited_helper = code_version(f"{name}.producer")
    assert edited_helper != before, "a module the producer imports inside a function"

    write(root / "helper.py", "from .factors import TWO\n\n\ndef double(x):\n    return 2 * x\n")
    assert code_version(f"{name}.producer") == before
    write(root / "factors.py", "TWO = 2.0\n")
    assert code_version(f"{name}.producer") != before, "a module imported relatively, in turn"
    write(root / "factors.py", "TWO = 2\n")
    write(root / "producer.py", (root / "producer.py").read_text().replace("+ 1", "+ 2"))
    assert code_version(f"{name}.producer") not in {before, edited_helper}


def test_the_version_is_the_same_in_every_process(package) -> None:
    """Sets of constants iterate in an order that follows the hash seed; the digest must not."""
    name, root = package
    write(root / "helper.py", 'def double(x):\n    return x in {"a", "b", "c", "d", 1.5}\n')
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from modularity.infra.code_version import code_version;"
        f"print(code_version('{name}.producer'))"
    )
    seen = {
        subprocess.run(
            [sys.executable, "-c", script, str(root.parent)],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2", "3")
    }
    assert seen == {code_version(f"{name}.producer")}


def test_an_unknown_module_is_named() -> None:
    with pytest.raises(ModuleNotFoundError, match="'modularity.no_such_module'"):
        code_version("modularity.no_such_module")


def kinds(cache_dir: Path) -> Counter[str]:
    """How many cache entries of each kind there are."""
    return Counter(
        json.loads((entry / "meta.json").read_text())["meta"]["kind"]
        for entry in cache_dir.iterdir()
        if (entry / "meta.json").is_file()
    )


def test_changed_producing_code_misses_the_cache_and_unchanged_code_hits_it(
    make_cfg, monkeypatch
) -> None:
    cfg = make_cfg("model=tiny_llama", *SMALL, "task=code")
    cache_dir = Path(cfg.cache.dir)
    pipe = Pipeline(cfg)
    spec = pipe.task("code")
    first = pipe.statistics(spec)
    assert kinds(cache_dir) == {"tokens": 1, "stats": 1}

    collected = []
    original_collect = statistics.collect_statistics

    def counting_collect(*args, **kwargs):
        collected.append(1)
        return original_collect(*args, **kwargs)

    monkeypatch.setattr(statistics, "collect_statistics", counting_collect)
    again = Pipeline(cfg).statistics(spec)
    assert collected == [] and kinds(cache_dir) == {"tokens": 1, "stats": 1}
    assert torch.equal(again.full.mean, first.full.mean)

    # The collection code changes (as its digest says): the statistics are collected again,
    # under a new key; the tokens, which that code does not produce, are still reused.
    pretend_edited(monkeypatch, Path(modularity.collect.__file__))
    Pipeline(cfg).statistics(spec)
    assert collected == [1] and kinds(cache_dir) == {"tokens": 1, "stats": 2}


def test_an_analysis_product_is_keyed_by_the_code_of_its_compute(make_cfg, monkeypatch) -> None:
    pipe = Pipeline(make_cfg("model=tiny_llama", *SMALL, "task=code"))
    calls = []

    def compute() -> dict[str, torch.Tensor]:
        calls.append(1)
        return {"x": torch.arange(3.0)}

    assert torch.equal(pipe.cached("demo", compute, n=1)["x"], torch.arange(3.0))
    pipe.cached("demo", compute, n=1)
    assert len(calls) == 1
    pipe.cached("demo", compute, n=2)
    assert len(calls) == 2, "a changed setting"
    pretend_edited(monkeypatch, Path(__file__))
    pipe.cached("demo", compute, n=1)
    assert len(calls) == 3, "changed code of the compute's module"


def test_a_site_of_another_package_versions_its_statistics(make_cfg, monkeypatch) -> None:
    """A plug-in site's own code reads its units: editing it collects them again."""
    import test_sites

    from modularity.neurons.sites import SITES

    site = test_sites.UpInputSite("up_in", noun="MLP inputs")
    monkeypatch.setattr("modularity.neurons.sites.SITES", {**SITES, "up_in": site})
    cfg = make_cfg("model=tiny_llama", *SMALL, "task=code")
    spec = Pipeline(cfg).task("code")
    Pipeline(cfg).statistics(spec, site="up_in")
    Pipeline(cfg).statistics(spec, site="up_in")
    assert kinds(Path(cfg.cache.dir)) == {"tokens": 1, "stats": 1}
    pretend_edited(monkeypatch, Path(test_sites.__file__))
    Pipeline(cfg).statistics(spec, site="up_in")
    assert kinds(Path(cfg.cache.dir)) == {"tokens": 1, "stats": 2}
