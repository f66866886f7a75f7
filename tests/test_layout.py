"""A family without an adapter, declared by ``model.layout``: found, checked, one-line errors."""

from __future__ import annotations

import pytest
import torch
from tiny_models import inputs_for

from modularity.config import load_model_config
from modularity.errors import ConfigError
from modularity.models.layout import LayoutAdapter
from modularity.models.loading import load_model
from modularity.neurons.masks import ablate


def phi(layout: dict | None = None):
    return load_model_config("tiny_phi_layout", {"layout": layout or {}})


def one_line_error(cfg, match: str) -> str:
    with pytest.raises(ConfigError, match=match) as err:
        load_model(cfg)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_layout_gives_the_neurons_at_the_stated_paths():
    loaded = load_model(phi())
    adapter = loaded.adapter
    assert isinstance(adapter, LayoutAdapter) and adapter.kind == "causal_lm"
    assert (adapter.n_layers, adapter.n_neurons) == (2, 64)
    block = loaded.model.model.layers[1]
    assert adapter.neuron_site(1) is block.mlp.fc2
    assert torch.equal(adapter.input_weight(1), block.mlp.fc1.weight)
    assert adapter.layout.attn_out == "self_attn.dense" and not adapter.is_gated
    # Ablating a neuron zeroes exactly its column of fc2's input: the same logits as
    # zeroing that column of the weight.
    mask = torch.zeros(2, 64, dtype=torch.bool)
    mask[1, [3, 40]] = True
    inputs = inputs_for(loaded)
    with torch.no_grad(), ablate(adapter, mask, "zero"):
        masked = loaded.model(**inputs).logits
    saved = block.mlp.fc2.weight.detach().clone()
    try:
        with torch.no_grad():
            block.mlp.fc2.weight[:, [3, 40]] = 0
            manual = loaded.model(**inputs).logits
    finally:
        with torch.no_grad():
            block.mlp.fc2.weight.copy_(saved)
    torch.testing.assert_close(masked, manual)


def test_a_layout_overrides_a_registered_family():
    """Stated paths win: a Llama read through a layout whose 'up' is the gate."""
    cfg = load_model_config(
        "tiny_llama",
        {"layout": {"blocks": "model.layers", "up": "mlp.gate_proj", "down": "mlp.down_proj"}},
    )
    loaded = load_model(cfg)
    block = loaded.model.model.layers[0]
    assert torch.equal(loaded.adapter.input_weight(0), block.mlp.gate_proj.weight)


def test_a_wrong_block_path_names_the_modules_at_that_level():
    message = one_line_error(phi({"blocks": "model.layerz"}), "model.layout.blocks='model.layerz'")
    assert "no module 'layerz' at 'model'" in message
    assert "embed_tokens, layers" in message


def test_a_wrong_path_inside_a_block_names_the_blocks_modules():
    message = one_line_error(phi({"up": "mlp.fc_1"}), "model.layout.up='mlp.fc_1'")
    assert "no module 'fc_1' at 'mlp' of block 0" in message
    assert "activation_fn, fc1, fc2" in message
    message = one_line_error(phi({"attn_out": "attn.dense"}), "model.layout.attn_out")
    assert "at the top of block 0" in message and "self_attn, mlp" in message


def test_paths_that_are_not_what_they_claim_are_refused():
    one_line_error(phi({"blocks": "model.embed_tokens"}), "is a Embedding, not a non-empty list")
    one_line_error(phi({"down": "mlp"}), "model.layout.down='mlp' is a PhiMLP without a 2-D weight")
    one_line_error(phi({"up": "self_attn.dense"}), "up 'self_attn.dense' has 32 outputs but down")
    one_line_error(phi({"gate": "self_attn.q_proj"}), "gate 'self_attn.q_proj' has 32 outputs")


def test_missing_keys_and_bad_kind_are_one_line():
    cfg = load_model_config("tiny_phi_layout")
    cfg.layout.down = "???"
    one_line_error(cfg, r"model.layout needs blocks, up, down \(missing: down\)")
    with pytest.raises(ValueError, match="'seq2seq', expected one of .causal_lm, image_classifier"):
        phi({"kind": "seq2seq"})


def test_an_unknown_family_without_layout_names_both_ways():
    cfg = load_model_config("tiny_phi_layout", {"layout": None})
    message = one_line_error(cfg, "'phi'")
    assert "write an adapter" in message and "'modularity.adapters' entry point" in message
    assert "model.layout={kind, blocks, up, gate, down, attn_out}" in message
