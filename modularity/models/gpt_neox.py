"""GPT-NeoX / Pythia: ungated GELU MLP ``dense_h_to_4h`` -> ``dense_4h_to_h``."""

from modularity.models.adapter import MlpLayout, ModelAdapter, register_adapter


@register_adapter
class GPTNeoXAdapter(ModelAdapter):
    model_types = ("gpt_neox",)
    kind = "causal_lm"
    layouts = (
        MlpLayout(
            blocks="gpt_neox.layers",
            up="mlp.dense_h_to_4h",
            down="mlp.dense_4h_to_h",
            attn_out="attention.dense",
        ),
    )
