"""End-to-end runs of the entry point on tiny models, and its errors on bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from modularity.run import run

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["task.collect_size=2048", "task.eval_size=1024"]


def test_prune_run_on_tiny_causal_lm_writes_artefacts(make_cfg):
    cfg = make_cfg(
        "+model=tiny_llama", "task=code", "selection.fraction=0.1", *SMALL, "task.block_size=64"
    )
    result = run(cfg)
    out = Path(cfg.output_dir)
    for name in ("scores.safetensors", "metrics.json", "layer_counts.csv", "layer_counts.png"):
        assert (out / name).is_file(), name
    tensors = load_file(out / "scores.safetensors")
    assert tensors["scores"].shape == (2, 64) and tensors["mask"].sum(1).tolist() == [6, 6]
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["before"]["task"]) == {"top1", "top10", "loss", "skip_top1", "skip_top10"}
    assert metrics["n_selected"] == result["n_selected"] == 12
    assert 0 <= metrics["after"]["task"]["top1"] <= 1


def test_prune_run_on_tiny_vit_writes_artefacts(make_cfg):
    cfg = make_cfg(
        "+model=tiny_vit", "task=digits-3", "selection.fraction=0.1", "selection.scope=global"
    )
    result = run(cfg)
    metrics = json.loads((Path(cfg.output_dir) / "metrics.json").read_text())
    assert set(metrics["before"]["task"]) == {"top1", "loss"}
    assert result["n_selected"] == round(0.1 * 2 * 64)


def test_no_model_runs_the_trained_default(make_cfg):
    cfg = make_cfg("task=code", *SMALL, "task.block_size=64")
    result = run(cfg)
    assert result["model"] == "tiny_lm_text" and result["n_selected"] > 0
    assert result["before"]["task"]["top1"] > 0.05  # trained: far above chance (1/4096)


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "MODULARITY_CACHE_DIR": "/tmp/modularity-test-cache",
        "HYDRA_FULL_ERROR": "0",
    }
    return subprocess.run(
        [sys.executable, "-m", "modularity.run", *args, "hydra.run.dir=/tmp/modularity-test-run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.mark.parametrize(
    "args,expected",
    [
        (["+model=nonexistent"], "nonexistent"),
        (["+model=tiny_llama", "task=nonexistent"], "nonexistent"),
        (
            ["+model=tiny_llama", "selection.fraction=1.5"],
            "selection.fraction=1.5 is outside (0, 1]",
        ),
        (
            ["+model=tiny_llama", "layers=[0,9]"],
            "layers [9] out of range: this model has layers 0..1",
        ),
        (["+model=gpt2", "model.path=/no/such/dir"], "model.path '/no/such/dir' does not exist"),
        (
            ["+model=tiny_llama", "task=code", "task.local.corpus=[]", "task.block_size=64"],
            "fewer than 64 tokens",
        ),
        (
            ["+model=tiny_llama", "task=digits-3"],
            "task 'digits-3' has image inputs; this model takes text",
        ),
    ],
)
def test_bad_input_gets_one_clear_line(args, expected):
    proc = cli(*args)
    assert proc.returncode != 0
    assert expected in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
