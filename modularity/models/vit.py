"""ViT image classifiers: GELU MLP ``fc1`` -> ``fc2``, attention output ``o_proj``.

transformers 5 keeps blocks at ``vit.layers.N.mlp``; 4.x kept them at
``vit.encoder.layer.N`` with ``intermediate.dense`` / ``output.dense`` and the attention
output at ``attention.output.dense``.
"""

from modularity.models.adapter import MlpLayout, ModelAdapter, register_adapter


@register_adapter
class ViTAdapter(ModelAdapter):
    model_types = ("vit",)
    kind = "image_classifier"
    layouts = (
        MlpLayout(blocks="vit.layers", up="mlp.fc1", down="mlp.fc2", attn_out="attention.o_proj"),
        MlpLayout(
            blocks="vit.encoder.layer",
            up="intermediate.dense",
            down="output.dense",
            attn_out="attention.output.dense",
        ),
    )
