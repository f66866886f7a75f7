"""Model adapters (one per architecture family, found by discovery) and loading.

The adapter API is imported on first use (PEP 562): importing a light submodule such as
:mod:`modularity.models.cache` must not cost a process torch and transformers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modularity.models.adapter import ModelAdapter, adapter_class, supported_model_types

__all__ = ["ModelAdapter", "adapter_class", "supported_model_types"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from modularity.models import adapter

        return getattr(adapter, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
