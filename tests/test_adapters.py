"""Every adapter finds its family's neuron site on a tiny random model."""

import pytest
import torch
from tiny_models import FAMILIES, inputs_for

from modularity.config import load_model_config
from modularity.errors import ConfigError, ModularityError
from modularity.models.loading import load_model
from modularity.neurons.masks import neuron_hooks


@pytest.mark.parametrize("name", FAMILIES)
def test_adapter_shapes(name):
    loaded = load_model(load_model_config(name))
    adapter = loaded.adapter
    assert adapter.n_layers == 2
    # GPT-2's MLP is 4 x n_embd (32) wide; the others set 64 in their configs.
    assert adapter.n_neurons == (128 if name == "tiny_gpt2" else 64)
    d_model = loaded.model.config.hidden_size
    assert adapter.input_weight(0).shape == (adapter.n_neurons, d_model)
    assert adapter.output_weight(1).shape == (d_model, adapter.n_neurons)
    assert adapter.kind == ("image_classifier" if name == "tiny_vit" else "causal_lm")


@pytest.mark.parametrize("name", FAMILIES)
def test_site_is_the_down_projection_input(name):
    """The hooked activations, pushed through W_out, give the MLP's output; a no-op hook
    leaves the model's output unchanged."""
    loaded = load_model(load_model_config(name))
    adapter, inputs = loaded.adapter, inputs_for(loaded)
    with torch.no_grad():
        plain = loaded.model(**inputs).logits
    seen, mlp_out = {}, {}
    mlp = adapter.blocks[1].get_submodule(adapter.layout.down.rsplit(".", 1)[0])
    handle = mlp.register_forward_hook(lambda m, a, out: mlp_out.setdefault(1, out))
    try:
        with (
            torch.no_grad(),
            neuron_hooks(adapter, lambda layer, x: seen.setdefault(layer, x.clone())),
        ):
            hooked = loaded.model(**inputs).logits
    finally:
        handle.remove()
    assert torch.equal(plain, hooked)
    assert seen[1].shape[-1] == adapter.n_neurons
    site = adapter.neuron_site(1)
    bias = site.bias if site.bias is not None else 0
    manual = seen[1] @ adapter.output_weight(1).T + bias
    out = mlp_out[1][0] if isinstance(mlp_out[1], tuple) else mlp_out[1]
    torch.testing.assert_close(manual, out)


def test_gated_weights():
    adapter = load_model(load_model_config("tiny_llama")).adapter
    assert adapter.is_gated
    up, gate = adapter.input_weight(0, "up"), adapter.input_weight(0, "gate")
    assert not torch.equal(up, gate)
    assert torch.equal(adapter.input_weight(0, "concat"), torch.cat([up, gate], 1))
    ungated = load_model(load_model_config("tiny_gpt2")).adapter
    with pytest.raises(ConfigError, match="gated"):
        ungated.input_weight(0, "gate")


def test_random_twin_differs_and_is_seeded():
    a = load_model(load_model_config("tiny_llama", {"seed": 5})).adapter.input_weight(0).clone()
    b = load_model(load_model_config("tiny_llama", {"seed": 6})).adapter.input_weight(0).clone()
    c = load_model(load_model_config("tiny_llama", {"seed": 5})).adapter.input_weight(0).clone()
    assert torch.equal(a, c) and not torch.equal(a, b)


def test_unknown_family_names_supported_ones():
    cfg = load_model_config("tiny_llama", {"hf_config": {"model_type": "bert"}})
    with pytest.raises(ConfigError, match="'bert'.*gpt2.*llama"):
        load_model(cfg)


def test_missing_local_path():
    with pytest.raises(ModularityError, match="/no/such/model"):
        load_model(load_model_config("gpt2", {"path": "/no/such/model"}))
