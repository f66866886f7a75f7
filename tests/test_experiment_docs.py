"""Every ``python -m modularity.run`` line in the experiments' READMEs composes, and every
experiment config has a README.

A line is composed, not run: ``--cfg job`` makes Hydra build the job's config (every config
group, override and interpolation it names) and print it, which needs no model or data;
the entry point runs in the test's process (``in_process``, tests/conftest.py).
``-m``/``--multirun`` is dropped, so a sweep is checked as its first job. The lines are
many, so they run with the slow tests (``make test``), not in ``make test-fast``.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from modularity.infra.paths import CONF_DIR

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = ROOT / "experiments"
CONFIGS = CONF_DIR / "experiment"
assert any(CONFIGS.glob("*.yaml")), f"no experiment configs under {CONFIGS}"
PROGRAM = ["python", "-m", "modularity.run"]


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def run_commands() -> list[tuple[str, str]]:
    """(README path relative to the repository, command line) for every line of a bash
    block that starts with ``python -m modularity.run``."""
    found = []
    for readme in sorted(EXPERIMENTS.glob("**/README.md")):
        for block in bash_blocks(readme.read_text()):
            for line in block.splitlines():
                line = line.strip()
                if line.startswith(" ".join(PROGRAM)):
                    found.append((str(readme.relative_to(ROOT)), line))
    return found


COMMANDS = run_commands()


def test_the_readmes_have_commands():
    assert len(COMMANDS) >= 10
    assert {file for file, _ in COMMANDS} >= {
        f"experiments/{c.stem}/README.md" for c in CONFIGS.glob("*.yaml")
    }


@pytest.mark.slow
@pytest.mark.parametrize(("file", "command"), COMMANDS)
def test_command_composes(file, command, in_process, monkeypatch):
    words = shlex.split(command, comments=True)
    assert words[:3] == PROGRAM, command
    arguments = [w for w in words[3:] if w not in ("-m", "--multirun")]
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    done = in_process(*arguments, "--cfg", "job")
    assert done.returncode == 0, f"{file}: {command}\n{done.stderr[-3000:]}"
    assert "analysis:" in done.stdout, done.stdout[-3000:]  # the job's config was printed


@pytest.mark.parametrize("config", sorted(p.stem for p in CONFIGS.glob("*.yaml")))
def test_every_experiment_has_a_readme(config):
    assert (EXPERIMENTS / config / "README.md").is_file(), f"experiments/{config}/README.md"
