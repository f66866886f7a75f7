"""A family without an adapter, described by the model config: ``model.layout``.

``layout: {kind, blocks, up, gate, down, attn_out}`` names the block list (from the model's
top) and, inside a block, the MLP's projections and the attention output projection, as
dotted module paths. Every analysis then runs as on a registered family. Each path is
checked on the loaded model, so a typo fails at once with the modules that do exist there,
instead of hooking the wrong module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from modularity.errors import ConfigError
from modularity.modality import TEXT
from modularity.models.adapter import MlpLayout, ModelAdapter, ModelKind

REQUIRED = ("blocks", "up", "down")
BLOCK_PATHS = ("up", "gate", "down", "attn_out")


class LayoutAdapter(ModelAdapter):
    """The adapter of one model whose module paths come from its config's ``layout``."""

    def __init__(self, model: nn.Module, layout: MlpLayout, kind: ModelKind) -> None:
        check_paths(model, layout)
        self.kind = kind
        self.layouts = (layout,)
        super().__init__(model)
        # GPT-2-style Conv1D keeps weights as [in, out]; every other projection is a Linear.
        self.transposed_weights = type(self.neuron_site(0)).__name__ == "Conv1D"
        self._check_widths()
        # Structural export narrows the width in the config: only where the config says it.
        width = getattr(getattr(model, "config", None), "intermediate_size", None)
        self.width_attribute = "intermediate_size" if width == self.n_neurons else None

    def _check_widths(self) -> None:
        n_out = self.output_weight(0).shape[1]
        for key in ("up", "gate") if self.is_gated else ("up",):
            n_in = self.input_weight(0, key).shape[0]
            if n_in != n_out:
                raise ConfigError(
                    f"model.layout: {key} {getattr(self.layout, key)!r} has {n_in} outputs but "
                    f"down {self.layout.down!r} takes {n_out} inputs; are they the MLP's "
                    "projections?"
                )


def layout_of(layout: Mapping[str, Any]) -> tuple[MlpLayout, ModelKind]:
    """The module layout and model kind stated by a ``model.layout`` config node."""
    missing = [key for key in REQUIRED if layout.get(key) in (None, "???")]
    if missing:
        raise ConfigError(
            f"model.layout needs {', '.join(REQUIRED)} (missing: {', '.join(missing)}); "
            "optional: gate, attn_out, kind"
        )
    kind = str(layout.get("kind") or TEXT.model_kind)  # the schema checked its value
    paths = {key: layout.get(key) for key in ("blocks", *BLOCK_PATHS)}
    return MlpLayout(**paths), kind  # type: ignore[arg-type]


def check_paths(model: nn.Module, layout: MlpLayout) -> None:
    """Every path of ``layout`` names a module of ``model``; else one line naming it."""
    blocks = resolve(model, layout.blocks, "model.layout.blocks", type(model).__name__)
    if not isinstance(blocks, (nn.ModuleList, nn.Sequential)) or len(blocks) == 0:
        raise ConfigError(
            f"model.layout.blocks={layout.blocks!r} is a {type(blocks).__name__}, not a "
            "non-empty list of blocks (a ModuleList)"
        )
    for index, block in enumerate(blocks):
        for key in BLOCK_PATHS:
            path = getattr(layout, key)
            if path is None:
                continue
            module = resolve(block, path, f"model.layout.{key}", f"block {index}")
            weight = getattr(module, "weight", None)
            if getattr(weight, "ndim", None) != 2:
                raise ConfigError(
                    f"model.layout.{key}={path!r} is a {type(module).__name__} without a "
                    "2-D weight; it must name a linear projection"
                )


def resolve(root: nn.Module, path: str, setting: str, where: str) -> nn.Module:
    """The module at dotted ``path`` under ``root``, or one line naming the missing step and
    the modules that exist at that level."""
    module, walked = root, []
    for name in path.split("."):
        children = dict(module.named_children())
        if name not in children:
            level = f"{'.'.join(walked)!r} of {where}" if walked else f"the top of {where}"
            there = ", ".join(children) or "none"
            raise ConfigError(
                f"{setting}={path!r}: no module {name!r} at {level}; modules there: {there}"
            )
        module, walked = children[name], [*walked, name]
    return module
