"""The tiny random-weight model of every registered family, and inputs that fit it.

``FAMILIES`` is every registered ``model_type``, found by adapter discovery: a new adapter
joins every contract test by itself, and fails them until it has a tiny config here.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from modularity.config import load_model_config
from modularity.models import supported_model_types

FAMILIES = supported_model_types()
# Each family's tiny model: a config in conf/model ...
TINY_CONFIGS = {
    "llama": "tiny_llama",
    "gpt2": "tiny_gpt2",
    "gpt_neox": "tiny_neox",
    "vit": "tiny_vit",
    "opt": "tiny_opt",
    "gemma3_text": "tiny_gemma3",
}
# ... or, for a family that shares its module tree with one of those, that config's
# hyperparameters under the family's own model_type (and any its defaults would change:
# Qwen3's head_dim defaults to 128, not hidden_size / heads).
TINY_VARIANTS = {
    "mistral": ("llama", {}),
    "qwen2": ("llama", {}),
    "qwen3": ("llama", {"head_dim": 8}),
    "gemma": ("gemma3_text", {}),
    "gemma2": ("gemma3_text", {}),
}


def tiny_config(family: str, overrides: dict[str, Any] | None = None) -> DictConfig:
    """The model config of ``family``'s tiny model; the test fails if it has none."""
    if family in TINY_CONFIGS:
        cfg = load_model_config(TINY_CONFIGS[family])
    elif family in TINY_VARIANTS:
        base, extra = TINY_VARIANTS[family]
        cfg = load_model_config(TINY_CONFIGS[base], {"name": f"tiny_{family}"})
        with open_dict(cfg):
            cfg.hf_config.merge_with({"model_type": family, **extra})
    else:
        pytest.fail(
            f"registered family {family!r} has no tiny model: add it to TINY_CONFIGS or "
            "TINY_VARIANTS in tests/tiny_models.py"
        )
    with open_dict(cfg):  # overrides may add hyperparameters the tiny config leaves out
        return OmegaConf.merge(cfg, overrides or {})


def inputs_for(loaded) -> dict[str, torch.Tensor]:
    """A seeded batch of two items for the model's kind (8x8 images or 12 tokens)."""
    torch.manual_seed(0)
    if not loaded.modality.tokens:
        return {"pixel_values": torch.randn(2, 1, 8, 8)}
    return {"input_ids": torch.randint(3, 259, (2, 12))}
