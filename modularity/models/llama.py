"""Llama-style gated SiLU MLPs: Mistral, Llama, Qwen2, SmolLM (``act(gate(x)) * up(x)``)."""

from modularity.models.adapter import MlpLayout, ModelAdapter, register_adapter


@register_adapter
class LlamaAdapter(ModelAdapter):
    model_types = ("llama", "mistral", "qwen2", "qwen3")
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
    # Only LlamaConfig has the switch; Mistral's and Qwen's MLPs are always bias-free.
    mlp_bias_switches = {"llama": "mlp_bias"}
