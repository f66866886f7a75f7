"""GPT-2: ungated GELU MLP ``c_fc`` -> ``c_proj`` stored as ``Conv1D`` (transposed weights)."""

from modularity.models.adapter import MlpLayout, ModelAdapter, register_adapter


@register_adapter
class GPT2Adapter(ModelAdapter):
    model_types = ("gpt2",)
    kind = "causal_lm"
    layouts = (
        MlpLayout(blocks="transformer.h", up="mlp.c_fc", down="mlp.c_proj", attn_out="attn.c_proj"),
    )
    width_attribute = "n_inner"  # None in most configs, meaning 4 * n_embd
    transposed_weights = True
