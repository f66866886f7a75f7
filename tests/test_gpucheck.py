"""The GPU check: one line and exit 0 without CUDA, FLOP/s arithmetic, peak table, and the
measured passes running end to end (on CPU, on a tiny model)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from torch import nn

from modularity import gpucheck
from modularity.config import load_model_config
from modularity.models.loading import load_model

REPO = Path(__file__).resolve().parents[1]


def test_without_cuda_it_prints_one_line_and_exits_0(monkeypatch, capsys):
    monkeypatch.setattr(gpucheck.torch.cuda, "is_available", lambda: False)
    assert gpucheck.main() == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert "no CUDA GPU" in out


@pytest.mark.skipif(gpucheck.torch.cuda.is_available(), reason="this machine has CUDA")
def test_module_entry_point_exits_0_without_cuda():
    done = subprocess.run(
        [sys.executable, "-m", "modularity.gpucheck"], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0
    assert done.stdout.strip().startswith("gpu-check: no CUDA GPU")


def test_model_flops_per_second_by_hand():
    # 2 FLOPs per multiply-add x 1,000,000 weights x 4,096 tokens in 0.5 s = 1.6384e10 FLOP/s
    assert gpucheck.model_flops_per_second(1_000_000, 4096, 0.5) == pytest.approx(1.6384e10)


def test_linear_parameters_count_matmul_weights_once():
    embedding = nn.Embedding(10, 4)
    head = nn.Linear(4, 10, bias=False)
    head.weight = embedding.weight  # tied, as in SmolLM2: the head's matmul counts
    model = nn.Sequential(embedding, nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 4), head)
    assert gpucheck.linear_parameters(model) == 4 * 3 + 3 * 4 + 10 * 4


@pytest.mark.parametrize(
    ("name", "tflops"),
    [
        ("NVIDIA H100 80GB HBM3", 989.4),
        ("NVIDIA H100 PCIe", 756.0),
        ("NVIDIA H200", 989.4),
        ("NVIDIA A100-SXM4-40GB", 312.0),
        ("NVIDIA A100 80GB PCIe", 312.0),
        ("NVIDIA A10G", 70.0),
        ("NVIDIA A10", 125.0),
        ("NVIDIA L4", 121.0),
        ("NVIDIA L40S", 362.05),
        ("NVIDIA GeForce RTX 4090", 165.2),
    ],
)
def test_peak_table_matches_device_names(name, tflops):
    assert gpucheck.peak_bf16_tflops(name)[0] == tflops


def test_unknown_card_has_no_peak():
    assert gpucheck.peak_bf16_tflops("Tesla T4") is None


def test_a_pass_line_reports_tokens_flops_and_share_of_peak():
    line = gpucheck.PassTiming("evaluation forward", 1000, 0.5, 10**9).line((8.0, "card"))
    assert "2,000 tokens/s" in line
    assert "4.0 TFLOP/s" in line  # 2 x 1e9 x 1000 / 0.5
    assert "50.0% of peak" in line


def test_measured_passes_run_on_a_tiny_model():
    cfg = load_model_config("tiny_llama", {"batch_size": 1})
    lines = gpucheck.measure_model(cfg, load_model(cfg), None, tokens_per_pass=512)
    assert lines[0].startswith("tiny_llama: float32, 2 layers x 64 neurons")
    assert "512 random tokens a pass, in batches of 1 x 512" in lines[0]
    assert "evaluation forward" in lines[1] and "peak unknown" in lines[1]
    assert "statistics collection" in lines[2]
    # 512 tokens x 2 layers x 64 neurons x 4 bytes are kept, beside the float64 sums.
    assert "collection state" in lines[3] and "activations kept, exact MAD" in lines[3]
