"""modularity: how modular are a transformer's MLP neurons?

Notebook API (imported on first use, so ``import modularity`` stays fast)::

    import modularity
    result = modularity.prune(model="smollm2_135m", task="code", fraction=0.02)
    result.effect, result.effect_interval, result.stability
    with modularity.ablate(hf_model, result.mask):
        ...
    modularity.export(result, "pruned-model/")
    routed = modularity.moefy(hf_model, k=0.25, method="kmeans", router="similarity")
    modularity.load("outputs/2026-11-25/10-00-00_tiny_lm_text_code")  # a finished run, reopened

The command line is ``modularity`` (``modularity run|report|export``), or the
``python -m modularity.run|report|export`` forms.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.2.0"
__all__ = [
    "PruneResult",
    "ablate",
    "compose",
    "export",
    "load",
    "moefy",
    "prune",
    "run_analysis",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from modularity import api

        return getattr(api, name)
    raise AttributeError(f"module 'modularity' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
