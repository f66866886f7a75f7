"""A fresh process pays only for what it uses: ``--help`` loads no heavy library, and a
second ``--help`` with the same configs, code and overrides not even Hydra."""

import os
import subprocess
import sys

HEAVY = ("torch", "scipy", "matplotlib", "sklearn", "transformers", "wandb", "lightning")


def probe(
    *overrides: str, env: dict[str, str] | None = None, flags: tuple[str, ...] = ("--help",)
) -> subprocess.CompletedProcess:
    code = f"""
import runpy, sys
sys.argv = ["modularity.run", *{flags!r}, *{overrides!r}]
try:
    runpy.run_module("modularity.run", run_name="__main__")
except SystemExit:
    pass
print("loaded:", ",".join(m for m in {(*HEAVY, "hydra")!r} if m in sys.modules), file=sys.stderr)
"""
    environment = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=environment
    )


def loaded(proc: subprocess.CompletedProcess) -> list[str]:
    return proc.stderr.strip().splitlines()[-1].removeprefix("loaded:").strip().split(",")


def test_help_imports_no_heavy_library(tmp_path):
    proc = probe(env={"MODULARITY_COMPLETION_DIR": str(tmp_path)})
    assert "== Configuration groups ==" in proc.stdout, proc.stderr
    assert set(loaded(proc)) <= {"hydra"}


def test_a_second_help_reads_the_page_the_first_composed(tmp_path):
    env = {"MODULARITY_COMPLETION_DIR": str(tmp_path)}
    first, second = probe(env=env), probe(env=env)
    assert "hydra" in loaded(first) and loaded(second) == [""], second.stderr
    assert second.stdout == first.stdout
    vit = probe("model=tiny_vit", env=env)
    assert "hydra" in loaded(vit), "other overrides compose their own page"
    assert vit.stdout != first.stdout and "tiny_vit" in vit.stdout


def test_composing_a_job_imports_no_heavy_library(tmp_path):
    """``--cfg job`` (what every README command test and a sweep's check do) composes and
    prints; the run's model cache must not pull in torch before a model is needed."""
    proc = probe("experiment=embedded_text", flags=("--cfg", "job"))
    assert "embedded_text" in proc.stdout or "tiny_lm_text" in proc.stdout, proc.stderr
    assert set(loaded(proc)) <= {"hydra"}, loaded(proc)
