"""Every bad input a user can type is one line that names the value and what is valid: no
traceback, exit status 2, nothing computed first. Each case runs the real command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TINY = ["model=tiny_llama", "data.collect_size=512", "data.eval_size=256", "data.block_size=64"]


def modularity(tmp_path: Path, *args: str, module: str = "modularity.run", **env: str):
    environment = {
        **os.environ,
        "MODULARITY_CACHE_DIR": str(tmp_path / "cache"),
        "WANDB_MODE": "disabled",
        "HF_HUB_OFFLINE": "1",
        **env,
    }
    extra = [f"hydra.run.dir={tmp_path / 'run'}"] if module == "modularity.run" else []
    return subprocess.run(
        [sys.executable, "-m", module, *args, *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=environment,
        timeout=600,
    )


def one_line_error(proc: subprocess.CompletedProcess, word: str, status: int = 2) -> None:
    assert proc.returncode == status, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors, proc.stderr[-3000:]
    assert word in errors[0], errors[0]


# (arguments, a word the one-line message must contain). Checked before any model loads.
CONFIG_ERRORS = [
    (["+modle=tiny_llama"], "modle"),
    (["data.collect_size=0"], "data.collect_size=0"),
    (["data.block_size=0"], "data.block_size=0"),
    (["model.batch_size=0"], "model.batch_size=0"),
    (["selection.fraction=1.5"], "selection.fraction=1.5 is outside (0, 1]"),
    (["task=pile"], "its own reference"),
    (["model=tiny_vit", "task=digits"], "its own reference"),
    (["analysis=overlap", "tasks=[code,code]"], "more than once"),
    (["analysis=overlap", "tasks=[code]"], "at least 2 tasks"),
    (["trainer.precision=fp8"], "fp8"),
    (["trainer.accelerator=gpu"], "gpu"),
    (["model.path=/no/such/dir"], "model.path"),
    (["analysis=moefy", "analysis.n_null=0"], "analysis.n_null=0"),
    (["analysis=match", "analysis.target_ratio=2"], "target_ratio=2.0"),
    (["task=nonexistent"], "nonexistent"),
    (["scoring.scorer=variance"], "unknown scorer 'variance'; valid: mad, abs"),
]


@pytest.mark.parametrize(("args", "word"), CONFIG_ERRORS[:4])
def test_config_errors_fast(tmp_path, args, word):
    one_line_error(modularity(tmp_path, *args), word)


@pytest.mark.slow
@pytest.mark.parametrize(("args", "word"), CONFIG_ERRORS[4:])
def test_config_errors(tmp_path, args, word):
    one_line_error(modularity(tmp_path, *args), word)


@pytest.mark.slow
def test_layer_out_of_range_names_the_valid_range(tmp_path):
    one_line_error(modularity(tmp_path, *TINY, "layers=[0,9]"), "layers 0..1")


@pytest.mark.slow
def test_text_task_on_an_image_model(tmp_path):
    proc = modularity(tmp_path, "model=tiny_vit", "task=code")
    one_line_error(proc, "has text inputs; this model takes image")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("missing", "word"),
    [
        ("config.json", "cannot load model"),
        ("model.safetensors", "weights"),
        ("tokenizer.json", "tokenizer"),
    ],
)
def test_an_incomplete_model_directory(tmp_path, missing, word):
    from modularity.config import load_model_config
    from modularity.models.loading import load_model

    model_dir = tmp_path / "model"
    loaded = load_model(load_model_config("tiny_lm_text"))
    loaded.model.save_pretrained(model_dir)
    loaded.tokenizer.save_pretrained(model_dir)
    (model_dir / missing).unlink()
    args = ["model.builtin=null", "model.name=mine", f"model.path={model_dir}", *TINY[1:]]
    one_line_error(modularity(tmp_path, *args), word)


@pytest.mark.slow
def test_a_truncated_weights_file(tmp_path):
    from modularity.config import load_model_config
    from modularity.models.loading import load_model

    model_dir = tmp_path / "model"
    loaded = load_model(load_model_config("tiny_lm_text"))
    loaded.model.save_pretrained(model_dir)
    loaded.tokenizer.save_pretrained(model_dir)
    weights = model_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    args = ["model.builtin=null", "model.name=mine", f"model.path={model_dir}", *TINY[1:]]
    one_line_error(modularity(tmp_path, *args), "weights")


@pytest.mark.slow
def test_a_read_only_run_directory(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only directories")
    run = tmp_path / "ro"
    run.mkdir()
    run.chmod(0o500)
    proc = modularity(tmp_path, *TINY, f"hydra.run.dir={run}")
    one_line_error(proc, "not writable")


@pytest.mark.slow
def test_a_cache_that_is_a_file_warns_and_the_run_completes(tmp_path):
    blocker = tmp_path / "cache-file"
    blocker.write_text("")
    proc = modularity(tmp_path, *TINY, f"cache.dir={blocker}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "not writable" in proc.stdout + proc.stderr and "Traceback" not in proc.stderr
    assert (tmp_path / "run" / "results.csv").is_file()


@pytest.mark.slow
def test_a_sweep_with_invalid_jobs_names_them_all_and_runs_none(tmp_path):
    proc = modularity(
        tmp_path,
        "-m",
        *TINY,
        "task=code,pile",
        "selection.fraction=0.1,1.5",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "3 of 4 jobs are invalid" in proc.stderr and "Traceback" not in proc.stderr
    assert "its own reference" in proc.stderr and "outside (0, 1]" in proc.stderr
    assert not list((tmp_path / "sweep").rglob("results.csv"))


@pytest.mark.slow
def test_a_missing_core_package_is_named(tmp_path):
    shim = tmp_path / "shim" / "pyarrow"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('pyarrow is broken', name='pyarrow')\n")
    proc = modularity(tmp_path, *TINY, PYTHONPATH=str(shim.parent))
    one_line_error(proc, "pyarrow")


def test_report_on_an_empty_directory(tmp_path):
    proc = modularity(tmp_path, str(tmp_path), module="modularity.report")
    assert proc.returncode == 1 and "nothing to report" in proc.stderr
    assert "Traceback" not in proc.stderr and list(tmp_path.iterdir()) == []
