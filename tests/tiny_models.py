"""The tiny random-weight model of every registered family, and inputs that fit it.

``FAMILIES`` is every registered ``model_type``, found by adapter discovery, and each one's
tiny model is found too: a ``conf/model/tiny_*.yaml`` built from an HF config of that
``model_type``, or else the tiny config of a family with the same adapter, under the
family's own ``model_type``. A new adapter joins every contract test by itself, and fails
them until one of its families has a tiny config.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from transformers import AutoConfig

from modularity.config import CONF_DIR, load_model_config
from modularity.models import adapter_class, supported_model_types

FAMILIES = supported_model_types()


def _tiny_configs() -> dict[str, str]:
    """``model_type`` -> the tiny model config built from it (configs with a ``layout`` show
    families without an adapter, so they stand for none)."""
    found: dict[str, str] = {}
    for path in sorted(CONF_DIR.glob("model/tiny_*.yaml")):
        node = OmegaConf.load(path)
        model_type = OmegaConf.select(node, "hf_config.model_type")
        if model_type and node.get("layout") is None:
            found.setdefault(model_type, path.stem)
    return found


TINY_CONFIGS = _tiny_configs()


def _sibling_with_tiny_config(family: str) -> str | None:
    """A family with a tiny config and the same adapter as ``family``."""
    adapter = adapter_class(family)
    return next((f for f in TINY_CONFIGS if adapter_class(f) is adapter), None)


def _sibling_head_dim(hf_config: DictConfig) -> dict[str, int]:
    """``{"head_dim": ...}`` where the family's own config class would give the sibling's
    hyperparameters another head size (Qwen3 defaults to 128, not hidden_size / heads)."""
    params = dict(OmegaConf.to_container(hf_config))
    wanted = params.get("head_dim") or params["hidden_size"] // params["num_attention_heads"]
    own = AutoConfig.for_model(params.pop("model_type"), **params)
    return {} if getattr(own, "head_dim", wanted) == wanted else {"head_dim": wanted}


def tiny_config(family: str, overrides: dict[str, Any] | None = None) -> DictConfig:
    """The model config of ``family``'s tiny model; the test fails if it has none."""
    if family in TINY_CONFIGS:
        cfg = load_model_config(TINY_CONFIGS[family])
    elif (sibling := _sibling_with_tiny_config(family)) is not None:
        cfg = load_model_config(TINY_CONFIGS[sibling], {"name": f"tiny_{family}"})
        with open_dict(cfg):
            cfg.hf_config.model_type = family
            cfg.hf_config.merge_with(_sibling_head_dim(cfg.hf_config))
    else:
        pytest.fail(
            f"registered family {family!r} has no tiny model: add conf/model/tiny_<name>.yaml "
            "with an hf_config of that model_type"
        )
    with open_dict(cfg):  # overrides may add hyperparameters the tiny config leaves out
        return OmegaConf.merge(cfg, overrides or {})


def inputs_for(loaded) -> dict[str, torch.Tensor]:
    """A seeded batch of two items for the model's kind (8x8 images or 12 tokens)."""
    torch.manual_seed(0)
    if not loaded.modality.tokens:
        return {"pixel_values": torch.randn(2, 1, 8, 8)}
    return {"input_ids": torch.randint(3, 259, (2, 12))}
