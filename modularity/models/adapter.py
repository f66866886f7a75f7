"""Architecture adapters: where one family keeps its MLP neurons and its attention output.

Every family exposes the same neuron site, the input of the MLP's down/out projection (the
activation after the nonlinearity, and after gating for gated MLPs), and, where its layout
declares ``attn_out``, the input of the attention output projection (the heads' value
outputs side by side, ``n_heads x head_dim``), so the rest of the code never asks which
family a model belongs to. Adding a family means one small subclass that declares its
module layout, registered for the ``model_type`` values of its HF configs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from modularity.errors import ConfigError, invalid_choice
from modularity.modality import Modality, modality_of_model

ModelKind = Literal["causal_lm", "image_classifier"]
WeightChoice = Literal["up", "gate", "concat"]
Projection = Literal["up", "gate", "down"]


@dataclass(frozen=True)
class MlpLayout:
    """Dotted paths of one release's module tree: the block list and, inside a block, the MLP
    and the attention output projection (``attn_out``; None where it is not declared)."""

    blocks: str
    up: str
    down: str
    gate: str | None = None
    attn_out: str | None = None


_ADAPTERS: dict[str, type[ModelAdapter]] = {}


def register_adapter(cls: type[ModelAdapter]) -> type[ModelAdapter]:
    """Class decorator: make ``cls`` the adapter for each of its ``model_types``."""
    for model_type in cls.model_types:
        _ADAPTERS[model_type] = cls
    return cls


def adapter_class(model_type: str) -> type[ModelAdapter]:
    """The adapter registered for an HF ``config.model_type``."""
    from modularity.models.discovery import discover_adapters

    discover_adapters()
    try:
        return _ADAPTERS[model_type]
    except KeyError:
        raise ConfigError(
            f"{invalid_choice('model family (config.model_type)', model_type, sorted(_ADAPTERS))}"
            "; either write an adapter (a ModelAdapter subclass in modularity/models/ or under "
            "the 'modularity.adapters' entry point) or state the module paths in the model "
            "config: model.layout={kind, blocks, up, gate, down, attn_out}"
        ) from None


def supported_model_types() -> list[str]:
    """Every ``model_type`` with an adapter, after discovering all adapter modules."""
    from modularity.models.discovery import discover_adapters

    discover_adapters()
    return sorted(_ADAPTERS)


class ModelAdapter:
    """Uniform access to the MLP neurons of one model.

    Subclasses set ``model_types``, ``kind`` and ``layouts`` (module layouts tried in order,
    since module names change between transformers releases), and where they differ from the
    defaults the facts that exporting a pruned checkpoint needs: the config attribute holding
    the MLP width, whether weights are stored transposed, and a config switch adding biases.
    """

    model_types: ClassVar[tuple[str, ...]] = ()
    kind: ClassVar[ModelKind]
    layouts: ClassVar[tuple[MlpLayout, ...]]
    # None where the config has no such attribute: exports then zero weights, never cut.
    width_attribute: ClassVar[str | None] = "intermediate_size"
    # True where projections keep ``weight`` as [in_features, out_features] (GPT-2's Conv1D).
    transposed_weights: ClassVar[bool] = False
    # Config switches, by model_type, that give every MLP projection a bias (Llama's mlp_bias).
    mlp_bias_switches: ClassVar[Mapping[str, str]] = {}

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.layout, self.blocks = self._find_blocks(model)

    @property
    def modality(self) -> Modality:
        """The kind of input the model takes (text or images), from its ``kind``."""
        return modality_of_model(self.kind)

    @classmethod
    def for_model(cls, model: nn.Module) -> ModelAdapter:
        """Pick the adapter from the model's HF config, not from its module names."""
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        if not isinstance(model, nn.Module) or not isinstance(model_type, str):
            raise ConfigError(
                f"expected a Hugging Face transformers model (a torch module with "
                f"config.model_type), got {type(model).__name__}; supported families: "
                f"{', '.join(supported_model_types())}"
            )
        return adapter_class(model_type)(model)

    def _find_blocks(self, model: nn.Module) -> tuple[MlpLayout, list[nn.Module]]:
        for layout in self.layouts:
            try:
                blocks = model.get_submodule(layout.blocks)
            except AttributeError:
                continue
            return layout, list(blocks)
        tried = ", ".join(layout.blocks for layout in self.layouts)
        raise ConfigError(
            f"{type(self).__name__}: none of the known block paths ({tried}) exists in this "
            f"{type(model).__name__}; the installed transformers release may have moved them"
        )

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    @property
    def n_neurons(self) -> int:
        """MLP width (neurons per layer)."""
        return self.input_weight(0).shape[0]

    @property
    def is_gated(self) -> bool:
        return self.layout.gate is not None

    def neuron_site(self, layer: int) -> nn.Module:
        """The module whose input is the neuron activation vector (hook it with a pre-hook)."""
        return self.blocks[layer].get_submodule(self.layout.down)

    def _linear_weight(self, layer: int, path: str) -> torch.Tensor:
        """Weight of an MLP linear in PyTorch's ``[out_features, in_features]`` convention."""
        weight = self.blocks[layer].get_submodule(path).weight
        return weight.T if self.transposed_weights else weight

    def input_weight(self, layer: int, which: WeightChoice = "up") -> torch.Tensor:
        """Neuron input weights ``[d_mlp, d_model]`` (one row per neuron).

        For gated MLPs ``which`` picks the up projection, the gate, or both side by side
        (``concat``: ``[d_mlp, 2 * d_model]``).
        """
        if which == "up" or not self.is_gated:
            if which != "up":
                raise ConfigError(f"which={which!r} needs a gated MLP; this model has only 'up'")
            return self._linear_weight(layer, self.layout.up)
        gate = self._linear_weight(layer, self.layout.gate)
        if which == "gate":
            return gate
        if which == "concat":
            return torch.cat([self._linear_weight(layer, self.layout.up), gate], dim=1)
        raise invalid_choice("input weight", which, ["up", "gate", "concat"])

    def output_weight(self, layer: int) -> torch.Tensor:
        """Neuron output weights ``[d_model, d_mlp]`` (one column per neuron)."""
        return self._linear_weight(layer, self.layout.down)

    def projection_paths(self) -> dict[Projection, str]:
        """The MLP's projections, inputs first: ``up`` (and ``gate``), then ``down``."""
        inputs: dict[Projection, str] = {"up": self.layout.up}
        if self.layout.gate is not None:
            inputs["gate"] = self.layout.gate
        return {**inputs, "down": self.layout.down}

    def parameter_name(
        self, layer: int, projection: Projection, tensor: Literal["weight", "bias"]
    ) -> str:
        """The state-dict key of a projection's weight or bias in ``layer``."""
        return f"{self.layout.blocks}.{layer}.{self.projection_paths()[projection]}.{tensor}"

    def neuron_axis(self, projection: Projection) -> int:
        """The axis of a projection's stored weight that runs over neurons."""
        axis = 1 if projection == "down" else 0
        return 1 - axis if self.transposed_weights else axis

    # ------------------------------------------------------------------ attention

    def attention_output(self, layer: int) -> nn.Module:
        """The attention output projection, whose input holds every query head's value
        output side by side (``[..., n_heads * head_dim]``, head-major)."""
        if self.layout.attn_out is None:
            raise ConfigError(
                f"{type(self).__name__} declares no attention output projection (attn_out) for "
                f"model type {self.model.config.model_type!r}; attention sites (site=attn, "
                "site=heads) need one in its MlpLayout; use site=mlp"
            )
        return self.blocks[layer].get_submodule(self.layout.attn_out)

    @property
    def n_heads(self) -> int:
        """Query heads per layer (with grouped-query attention, more than key/value heads):
        every HF config maps ``num_attention_heads`` to its own name for it."""
        return int(self.model.config.num_attention_heads)

    @property
    def n_kv_heads(self) -> int:
        """Key/value heads per layer: fewer than ``n_heads`` with grouped-query attention;
        configs without ``num_key_value_heads`` have one per query head."""
        return int(getattr(self.model.config, "num_key_value_heads", None) or self.n_heads)

    @property
    def attention_width(self) -> int:
        """Inputs of the attention output projection per layer: ``n_heads * head_dim``."""
        weight = self.attention_output_weight(0)
        return weight.shape[1]

    @property
    def head_dim(self) -> int:
        """Dimensions of one head's value output (read off the projection, so a config whose
        ``head_dim`` differs from ``hidden_size / n_heads`` is handled)."""
        width, heads = self.attention_width, self.n_heads
        if width % heads:
            raise ConfigError(
                f"{type(self).__name__}: the attention output projection takes {width} inputs, "
                f"not a multiple of the {heads} heads in the config"
            )
        return width // heads

    def attention_output_weight(self, layer: int) -> torch.Tensor:
        """Attention output weights ``[d_model, n_heads * head_dim]`` (one column per unit)."""
        weight = self.attention_output(layer).weight
        return weight.T if self.transposed_weights else weight

    def attention_parameter_name(self, layer: int, tensor: Literal["weight", "bias"]) -> str:
        """The state-dict key of the attention output projection's weight or bias."""
        self.attention_output(layer)  # a clear error where the layout declares none
        return f"{self.layout.blocks}.{layer}.{self.layout.attn_out}.{tensor}"

    @property
    def input_axis(self) -> int:
        """The axis of a stored projection weight (``weight``) that runs over its inputs."""
        return 0 if self.transposed_weights else 1

    @property
    def mlp_bias_switch(self) -> str | None:
        """The config flag that adds MLP biases to this model's family, if it has one."""
        return self.mlp_bias_switches.get(self.model.config.model_type)
