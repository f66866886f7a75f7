"""What several benchmarks share: a CPU trainer config, a GPT-2-shaped random model (12
layers, d_model 768, 12 heads, 3072 MLP neurons per layer) with random token blocks, and a
timer of wall and CPU seconds."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader
from transformers import GPT2Config, GPT2LMHeadModel

from modularity.data.packing import TextSample
from modularity.data.tasks import TokenBlocks
from modularity.models.adapter import ModelAdapter
from modularity.models.loading import LoadedModel

CPU_TRAINER = OmegaConf.create(
    {
        "accelerator": "cpu",
        "devices": 1,
        "strategy": "auto",
        "precision": "32-true",
        "enable_progress_bar": False,
    }
)
BLOCK = 128  # tokens per block


def gpt2_shaped(tokens: int, batch_size: int = 8) -> tuple[LoadedModel, DataLoader]:
    """The seeded random model and ``tokens // BLOCK`` random blocks, one document each."""
    torch.manual_seed(0)
    vocab = 8192  # special tokens inside it (GPT-2's defaults, 50256, are not)
    config = GPT2Config(
        n_layer=12,
        n_embd=768,
        n_head=12,
        n_positions=512,
        vocab_size=vocab,
        bos_token_id=vocab - 1,
        eos_token_id=vocab - 1,
    )
    model = GPT2LMHeadModel(config).eval()
    blocks = torch.randint(0, config.vocab_size, (tokens // BLOCK, BLOCK))
    units = torch.arange(len(blocks))
    sample = TextSample(blocks, units, units % 2, len(blocks), tokens // BLOCK * BLOCK)
    loader = DataLoader(TokenBlocks(sample), batch_size=batch_size)
    return LoadedModel(model, ModelAdapter.for_model(model)), loader


def timed(run: Callable[[], None]) -> tuple[float, float]:
    """Wall and CPU seconds of ``run()`` (CPU time is the steadier on a loaded machine)."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu
