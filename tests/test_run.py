"""Every command line of the README, run as a subprocess exactly as written (with small
sizes appended), and the README's Python example run as a script.

Commands that need a hub model or a cluster (Mistral 7B, the CIFAR-100 ViT, SLURM) cannot
run offline; Hydra composes them in full instead (``--cfg``), which checks every config
group, override and launcher they name.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()

# Names that mark a command as needing a hub download or a cluster.
NEEDS_HUB_OR_CLUSTER = ("mistral7b", "vit_cifar100", "mistral_domains", "vit_cifar20", "slurm")
IMAGE_SIZES = ["data.collect_size=100", "data.eval_size=100"]
TEXT_SIZES = ["data.collect_size=1024", "data.eval_size=512"]


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def commands(program: str) -> list[str]:
    """Every README line (comment stripped) that runs ``program``."""
    found = []
    for block in code_blocks("bash"):
        for line in block.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line.startswith(program):
                found.append(line)
    return found


RUN_COMMANDS = commands("python -m modularity.run")
HUB_COMMANDS = [c for c in RUN_COMMANDS if any(n in c for n in NEEDS_HUB_OR_CLUSTER)]
# Opt-in models (a package outside the default setup): tests/test_gemma.py runs them.
OPT_IN_COMMANDS = [c for c in RUN_COMMANDS if "gemma3_270m" in c]
LOCAL_COMMANDS = [c for c in RUN_COMMANDS if c not in HUB_COMMANDS + OPT_IN_COMMANDS]


def test_readme_has_the_commands_this_module_runs():
    assert len(LOCAL_COMMANDS) >= 8 and len(HUB_COMMANDS) >= 2
    assert commands("make run") and commands("make test")
    assert commands("python -m modularity.report") and commands("python -m modularity.export")


def shell(command: str, cwd: Path, env_extra: dict | None = None, timeout: int = 600):
    # ``python`` in a README line is this interpreter (the project's .venv under make test).
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "PATH": path, "HYDRA_FULL_ERROR": "0", **(env_extra or {})}
    return subprocess.run(
        command, shell=True, cwd=cwd, capture_output=True, text=True, env=env, timeout=timeout
    )


def warning_lines(proc: subprocess.CompletedProcess) -> list[str]:
    """Lines of a command's output that warn: Python's warnings (stderr) and logged ones
    (``[WARNING]``, on stdout through Hydra's job logging). A README example has none."""
    lines = (proc.stdout + proc.stderr).splitlines()
    return [line for line in lines if "warning" in line.lower()]


def small(command: str) -> str:
    """The command with small data sizes and quiet bars appended."""
    words = shlex.split(command)
    image = any(
        w.startswith(("task=fashion", "+model=tiny_vit", "experiment=embedded_fashion"))
        for w in words
    )
    extra = IMAGE_SIZES if image else TEXT_SIZES
    extra = [*extra, "trainer.enable_progress_bar=false"]
    return command + " " + " ".join(shlex.quote(e) for e in extra)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A directory that looks like a clone for the commands (outputs land here)."""
    return tmp_path_factory.mktemp("readme")


@pytest.fixture(scope="module")
def cache_env(tmp_path_factory) -> dict:
    return {"MODULARITY_CACHE_DIR": str(tmp_path_factory.mktemp("cache"))}


@pytest.mark.slow
@pytest.mark.parametrize("command", LOCAL_COMMANDS)
def test_readme_command_runs(command, workdir, cache_env):
    proc = shell(small(command), workdir, cache_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert warning_lines(proc) == []


@pytest.mark.parametrize("command", HUB_COMMANDS)
def test_readme_hub_command_composes(command, tmp_path):
    """The full config (Hydra's included, so the launcher too) composes as written."""
    program, arguments = shlex.split(command)[:3], shlex.split(command)[3:]
    words = [*program, *(w for w in arguments if w not in ("-m", "--multirun"))]
    proc = shell(shlex.join([*words, "--cfg", "hydra"]), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    job = shell(shlex.join([*words, "--cfg", "job"]), tmp_path)
    assert job.returncode == 0, job.stderr[-3000:]
    model = next(w.split("=", 1)[1] for w in words if "model=" in w or "experiment=" in w)
    assert model.split("_")[0] in job.stdout


@pytest.mark.slow
def test_readme_report_and_export_read_what_a_run_wrote(workdir, cache_env):
    """``modularity.report`` on a sweep directory, ``modularity.export`` on a pruning run,
    with the README's placeholder paths replaced by real ones."""
    sweep = workdir / "multirun-readme"
    proc = shell(
        small("python -m modularity.run -m task=code,prose selection.fraction=0.05")
        + f" hydra.sweep.dir={sweep}",
        workdir,
        cache_env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (report,) = commands("python -m modularity.report")
    proc = shell(f"{shlex.split(report)[0]} -m modularity.report {sweep}", workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert warning_lines(proc) == []
    assert (sweep / "report.csv").is_file()
    (export,) = commands("python -m modularity.export")
    run_dir = next(p.parent for p in sweep.glob("*/scores.safetensors"))
    words = shlex.split(export)
    words[3:5] = [str(run_dir), str(workdir / "pruned")]
    proc = shell(shlex.join(words), workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert warning_lines(proc) == []
    assert (workdir / "pruned" / "config.json").is_file()


@pytest.mark.slow
def test_readme_python_example_runs(workdir, cache_env):
    (example,) = code_blocks("python")
    script = workdir / "example.py"
    script.write_text(example)
    proc = shell(f"{sys.executable} {script}", workdir, cache_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert warning_lines(proc) == []
    assert proc.stdout.strip(), "the example prints its result"
