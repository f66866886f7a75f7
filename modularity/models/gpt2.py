"""GPT-2: ungated GELU MLP ``c_fc`` -> ``c_proj`` stored as ``Conv1D`` (transposed weights)."""

import torch

from modularity.models.adapter import MlpLayout, ModelAdapter, register_adapter


@register_adapter
class GPT2Adapter(ModelAdapter):
    model_types = ("gpt2",)
    kind = "causal_lm"
    layouts = (MlpLayout(blocks="transformer.h", up="mlp.c_fc", down="mlp.c_proj"),)

    def _linear_weight(self, layer: int, path: str) -> torch.Tensor:
        # Conv1D keeps weight as [in_features, out_features]; present it like nn.Linear.
        return super()._linear_weight(layer, path).T
