"""Gemma, Gemma 2 and Gemma 3 (text): gated GELU MLPs (GeGLU, ``gelu(gate(x)) * up(x)``)."""

from modularity.models.adapter import ModelAdapter, register_adapter
from modularity.models.llama import LlamaAdapter


@register_adapter
class GemmaAdapter(ModelAdapter):
    # gemma3_text: Gemma3ForCausalLM, the text-only model (Gemma 3 270M and 1B).
    model_types = ("gemma", "gemma2", "gemma3_text")
    kind = "causal_lm"
    layouts = LlamaAdapter.layouts  # the same module tree as Llama's
