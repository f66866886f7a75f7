"""Model adapters (one per architecture family) and loading."""

from modularity.models import gpt2, gpt_neox, llama, vit  # noqa: F401  (registers adapters)
from modularity.models.adapter import ModelAdapter, adapter_class, supported_model_types

__all__ = ["ModelAdapter", "adapter_class", "supported_model_types"]
