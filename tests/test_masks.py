"""Masks equal manual weight ablation, and removing them restores the model bit for bit."""

import pytest
import torch
from tiny_models import FAMILIES, inputs_for, tiny_config

from modularity.config import load_model_config
from modularity.models.loading import load_model
from modularity.neurons.masks import ablate


def random_mask(adapter, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(adapter.n_layers, adapter.n_neurons, generator=gen) < 0.2


def logits(loaded, inputs):
    with torch.no_grad():
        return loaded.model(**inputs).logits


@pytest.mark.parametrize("family", FAMILIES)
def test_zero_mask_equals_zeroed_output_weights(family):
    loaded = load_model(tiny_config(family, {"seed": 11}))
    adapter, inputs = loaded.adapter, inputs_for(loaded)
    mask = random_mask(adapter)
    with ablate(adapter, mask, "zero"):
        masked = logits(loaded, inputs)
    originals = [adapter.output_weight(layer).detach().clone() for layer in range(adapter.n_layers)]
    try:
        with torch.no_grad():
            for layer in range(adapter.n_layers):
                adapter.output_weight(layer)[:, mask[layer]] = 0
        manual = logits(loaded, inputs)
    finally:
        with torch.no_grad():
            for layer, w in enumerate(originals):
                adapter.output_weight(layer).copy_(w)
    torch.testing.assert_close(masked, manual)


@pytest.mark.parametrize("name", ["tiny_llama", "tiny_gpt2"])
def test_mean_mask_equals_bias_shift(name):
    """Mean ablation = zero ablation plus W_out @ means as a constant added after the MLP."""
    loaded = load_model(load_model_config(name, {"seed": 12}))
    adapter, inputs = loaded.adapter, inputs_for(loaded)
    mask = random_mask(adapter, 1)
    means = torch.randn(adapter.n_layers, adapter.n_neurons)
    with ablate(adapter, mask, "mean", means):
        masked = logits(loaded, inputs)
    shifts = [
        adapter.output_weight(i).detach() @ (means[i] * mask[i]) for i in range(adapter.n_layers)
    ]
    handles = [
        adapter.neuron_site(i).register_forward_hook(lambda m, a, out, s=shifts[i]: out + s)
        for i in range(adapter.n_layers)
    ]
    try:
        with ablate(adapter, mask, "zero"):
            manual = logits(loaded, inputs)
    finally:
        for h in handles:
            h.remove()
    torch.testing.assert_close(masked, manual)


@pytest.mark.parametrize("family", FAMILIES)
def test_removed_masks_restore_bit_identical_outputs(family):
    loaded = load_model(tiny_config(family, {"seed": 13}))
    inputs = inputs_for(loaded)
    before = logits(loaded, inputs)
    with ablate(loaded.adapter, random_mask(loaded.adapter), "zero"):
        assert not torch.equal(logits(loaded, inputs), before)
    assert torch.equal(logits(loaded, inputs), before)


def test_masks_removed_when_body_raises():
    loaded = load_model(load_model_config("tiny_llama", {"seed": 14}))
    inputs = inputs_for(loaded)
    before = logits(loaded, inputs)
    with pytest.raises(RuntimeError), ablate(loaded.adapter, random_mask(loaded.adapter), "zero"):
        raise RuntimeError("boom")
    assert torch.equal(logits(loaded, inputs), before)
