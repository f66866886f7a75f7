"""Model adapters (one per architecture family, found by discovery) and loading."""

from modularity.models.adapter import ModelAdapter, adapter_class, supported_model_types

__all__ = ["ModelAdapter", "adapter_class", "supported_model_types"]
