"""The tiny random-weight model of every adapter family, and inputs that fit it."""

import torch

FAMILIES = ["tiny_llama", "tiny_gpt2", "tiny_neox", "tiny_vit"]


def inputs_for(loaded) -> dict[str, torch.Tensor]:
    """A seeded batch of two items for the model's kind (8x8 images or 12 tokens)."""
    torch.manual_seed(0)
    if loaded.kind == "image_classifier":
        return {"pixel_values": torch.randn(2, 1, 8, 8)}
    return {"input_ids": torch.randint(3, 259, (2, 12))}
