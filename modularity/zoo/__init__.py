"""The project's own small models, trained on data that ships with installed software so
experiments run offline on trained weights: recipes (``conf/recipe``), training with
checkpoints, and the model directories that loading reads (``make models`` writes them).

================  ================================================  ======  =============
name              model (MLP neurons)                                params  data
================  ================================================  ======  =============
tiny_vit_digits   ViT, 8x8 grey, patch 2, 4 layers x 256 (GELU)       0.20M  digits
tiny_vit_fashion  ViT, 28x28 grey, patch 4, 4 layers x 256 (GELU)     0.21M  Fashion-MNIST
tiny_lm_text      Llama, context 128, 4 layers x 512 (gated SiLU)     1.57M  8 text domains
================  ================================================  ======  =============
"""

from modularity.zoo.model_dirs import Checkpoint, builtin_model_dir, list_checkpoints

__all__ = ["Checkpoint", "builtin_model_dir", "list_checkpoints"]
