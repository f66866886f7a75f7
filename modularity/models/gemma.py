"""Gemma, Gemma 2 and Gemma 3 (text): gated GELU MLPs (GeGLU, ``gelu(gate(x)) * up(x)``)."""

from modularity.models.adapter import MlpLayout, ModelAdapter, register_adapter


@register_adapter
class GemmaAdapter(ModelAdapter):
    # gemma3_text: Gemma3ForCausalLM, the text-only model (Gemma 3 270M and 1B).
    model_types = ("gemma", "gemma2", "gemma3_text")
    kind = "causal_lm"
    layouts = (
        MlpLayout(
            blocks="model.layers",
            up="mlp.up_proj",
            down="mlp.down_proj",
            gate="mlp.gate_proj",
            attn_out="self_attn.o_proj",
        ),
    )
