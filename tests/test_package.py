"""The package as users install it: a wheel with its configs and models, the ``modularity``
command from any directory, its help, and Hydra's tab completion."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1", **env}
    return subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, env=environment, timeout=900
    )


def test_help_names_the_app_and_its_real_groups():
    proc = run(sys.executable, "-m", "modularity.run", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "how modular are a transformer's MLP neurons" in proc.stdout
    groups = proc.stdout.split("== Configuration groups ==")[1].split("== Config ==")[0]
    for group in ("analysis:", "experiment:", "model:", "task:", "scoring:", "logger:"):
        assert group in groups
    assert "schema" not in groups


def test_tab_completion_script_names_the_command():
    proc = run(sys.executable, "-m", "modularity.run", "-sc", "install=bash")
    assert proc.returncode == 0, proc.stderr
    assert "complete" in proc.stdout and "hydra" in proc.stdout.lower()


# Lines a user TABs on: groups, options, generated options, keys, values, Hydra's own
# groups and keys, keys an earlier group choice adds, and a choice that does not compose.
COMPLETION_LINES = [
    "modularity ",
    "modularity mod",
    "modularity model=tiny_l",
    "modularity +model=sm",
    "modularity task=digits-",
    "modularity selection.fr",
    "modularity selection.fraction=",
    "modularity hydra/launcher=",
    "modularity hydra.run.",
    "modularity analysis=moefy analysis.",
    "modularity model=nope mod",
]


@pytest.mark.slow
def test_tab_completion_from_the_cache_answers_as_hydra_does(tmp_path, monkeypatch):
    from hydra._internal.core_plugins.bash_completion import BashCompletion

    from modularity.infra import completion

    monkeypatch.setenv(completion.ENV_VAR, str(tmp_path))
    hydra = BashCompletion(completion._loader())
    for line in COMPLETION_LINES:
        expected = hydra._query("config", line.removeprefix("modularity "))
        assert completion.answer(line) == expected, line
    assert completion.answer("modularity run model=tiny_l") == [
        "model=tiny_llama",
        "model=tiny_lm_text",
    ]
    assert completion.answer("modularity report ") == []  # paths: the shell's own completion


@pytest.mark.slow
def test_a_tab_is_answered_without_importing_hydra(tmp_path):
    """The second TAB on a line reads the cache: no Hydra, no torch (a TAB took 1 s of CPU
    and several seconds on a busy machine). Flags go to Hydra's own completion."""
    code = (
        "import sys; from modularity.run import main; sys.argv = ['modularity', '-sc', "
        "'query=bash']; main(); print('hydra' in sys.modules, 'torch' in sys.modules)"
    )
    env = {"MODULARITY_COMPLETION_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    tab = [sys.executable, "-c", code]
    first = run(*tab, COMP_LINE="modularity model=tiny_l", **env)
    second = run(*tab, COMP_LINE="modularity model=tiny_l", **env)
    assert first.stdout == "model=tiny_llama model=tiny_lm_text\nTrue False\n", first.stderr
    assert second.stdout == "model=tiny_llama model=tiny_lm_text\nFalse False\n", second.stderr
    flagged = run(*tab, COMP_LINE="modularity -m model=tiny_l", **env)
    assert flagged.stdout.startswith("model=tiny_llama model=tiny_lm_text\n"), flagged.stderr


@pytest.mark.slow
def test_wheel_installs_and_runs_from_another_directory(tmp_path):
    dist = tmp_path / "dist"
    build = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                "-w", str(dist), str(ROOT))  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = dist.glob("modularity-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "modularity/conf/config.yaml" in names  # conf/ at the top, shipped inside
    assert "hydra_plugins/modularity_sweepers/plan_sweeper.py" in names  # make run's sweeper
    assert any(n.startswith("modularity/assets/models/tiny_lm_text/") for n in names)
    assert any(n.endswith("LICENSE") for n in names)

    venv = tmp_path / "venv"
    assert run(sys.executable, "-m", "venv", str(venv)).returncode == 0
    python = venv / "bin" / "python"
    # The dependencies come from this environment (no download); the package from the wheel.
    site = run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    deps = sysconfig.get_paths()["purelib"]
    (Path(site.stdout.strip()) / "deps.pth").write_text(deps + "\n")
    install = run(str(python), "-m", "pip", "install", "--no-deps", "-q", str(wheel))
    assert install.returncode == 0, install.stderr[-3000:]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = run(
        str(venv / "bin" / "modularity"),
        "+model=tiny_lm_text",
        "task=code",
        "data.collect_size=2048",
        "data.eval_size=1024",
        cwd=elsewhere,
        MODULARITY_CACHE_DIR=str(tmp_path / "cache"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = list((elsewhere / "outputs").rglob("results.csv"))
    assert len(results) == 1
    where = run(str(python), "-c", "import modularity; print(modularity.__file__)", cwd=elsewhere)
    assert str(venv) in where.stdout  # the wheel's copy ran, not the source tree's
