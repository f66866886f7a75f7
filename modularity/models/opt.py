"""OPT: ungated ReLU MLP ``fc1`` -> ``fc2`` directly in the decoder block, width ``ffn_dim``."""

from modularity.models.adapter import MlpLayout, ModelAdapter, register_adapter


@register_adapter
class OPTAdapter(ModelAdapter):
    model_types = ("opt",)
    kind = "causal_lm"
    layouts = (
        MlpLayout(
            blocks="model.decoder.layers", up="fc1", down="fc2", attn_out="self_attn.out_proj"
        ),
    )
    width_attribute = "ffn_dim"
