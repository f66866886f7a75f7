"""Routers, routed inference by hooks, and the sparse routed MLP, on the tiny Llama."""

from __future__ import annotations

import pytest
import torch

from modularity.algorithms.kmeans import random_partition
from modularity.config import load_model_config
from modularity.errors import ConfigError
from modularity.models.loading import load_model
from modularity.neurons.masks import neuron_hooks
from modularity.routing.hooks import RoutedLayer, routed
from modularity.routing.routed_mlp import RoutedGatedMLP, route_model, unroute_model
from modularity.routing.routers import (
    build_router,
    captured_mass,
    expert_mass,
    membership,
    top_experts,
)
from tests.tiny_models import inputs_for

E = 8  # 64 neurons -> 8 experts of 8


@pytest.fixture
def llama():
    """The tiny Llama, loaded for each test: these tests change its modules."""
    return load_model(load_model_config("tiny_llama"))


def add_biases(adapter, layer: int) -> None:
    """Give the layer's projections biases (Llama's mlp_bias), so they are tested too."""
    generator = torch.Generator().manual_seed(layer)
    for path in adapter.projection_paths().values():
        linear = adapter.blocks[layer].get_submodule(path)
        linear.bias = torch.nn.Parameter(torch.randn(linear.out_features, generator=generator))


def layer_labels(adapter, seed: int = 0) -> dict[int, torch.Tensor]:
    return {
        layer: torch.from_numpy(
            random_partition(adapter.input_weight(layer), E, seed=seed + layer).labels
        )
        for layer in range(adapter.n_layers)
    }


def routers_of(adapter, labels, kind):
    return {
        layer: build_router(kind, labels[layer], adapter.input_weight(layer, "gate"), E)
        for layer in labels
    }


def activations(loaded, batch) -> dict[int, torch.Tensor]:
    seen = {}
    with neuron_hooks(loaded.adapter, lambda layer, h: seen.__setitem__(layer, h.clone())):
        loaded.model(**batch)
    return seen


def test_sparse_routed_mlp_equals_the_dense_mlp_with_unselected_experts_zeroed(llama):
    adapter = llama.adapter
    add_biases(adapter, 0)
    labels = layer_labels(adapter)[0]
    block = adapter.blocks[0]
    parts = {name: block.get_submodule(path) for name, path in adapter.projection_paths().items()}
    router = build_router("similarity", labels, adapter.input_weight(0, "gate"), E)
    for k in (1, 3, E):
        module = RoutedGatedMLP(block.mlp, parts, labels, E, router, k)
        x = torch.randn(2, 5, 32)
        chosen = top_experts(router(x), k)  # [2, 5, E]
        h = block.mlp.act_fn(parts["gate"](x)) * parts["up"](x)
        expected = parts["down"](h * chosen[..., labels])
        torch.testing.assert_close(module(x), expected, atol=1e-5, rtol=1e-5)


def test_uneven_experts_and_tokens_that_pick_few_experts_are_computed_exactly(llama):
    adapter = llama.adapter
    labels = torch.arange(64) % 7  # sizes 10 and 9: padded slots
    block = adapter.blocks[1]
    parts = {name: block.get_submodule(path) for name, path in adapter.projection_paths().items()}
    router = build_router("similarity", labels, adapter.input_weight(1, "gate"), 7)
    module = RoutedGatedMLP(block.mlp, parts, labels, 7, router, 2)
    x = torch.randn(1, 32)  # one token: only 2 of 7 experts are touched
    chosen = top_experts(router(x), 2)
    h = block.mlp.act_fn(parts["gate"](x)) * parts["up"](x)
    torch.testing.assert_close(
        module(x), parts["down"](h * chosen[..., labels]), atol=1e-5, rtol=1e-5
    )


def test_oracle_with_every_expert_reproduces_the_dense_logits(llama):
    add_biases(llama.adapter, 1)
    batch = inputs_for(llama)
    dense = llama.model(**batch).logits
    labels = layer_labels(llama.adapter)
    route_model(llama.adapter, labels, E, routers_of(llama.adapter, labels, "oracle"), k=E)
    assert isinstance(llama.model.model.layers[0].mlp, RoutedGatedMLP)
    routed_logits = llama.model(**batch).logits
    assert (routed_logits - dense).abs().max() <= 1e-5
    unroute_model(llama.adapter)
    assert torch.equal(llama.model(**batch).logits, dense)


@pytest.mark.parametrize("kind", ["similarity", "oracle"])
def test_routed_hooks_and_the_sparse_module_give_the_same_logits(llama, kind):
    batch = inputs_for(llama)
    adapter = llama.adapter
    labels = layer_labels(adapter, seed=3)
    routers = routers_of(adapter, labels, kind)
    counts: dict[int, torch.Tensor] = {}
    layers = {layer: RoutedLayer(labels[layer], routers[layer], E) for layer in labels}
    with routed(adapter, layers, 2, counts):
        hooked = llama.model(**batch).logits
    assert counts[0].sum() == 2 * 12 * 2  # tokens x k
    route_model(adapter, labels, E, routers, k=2)
    torch.testing.assert_close(llama.model(**batch).logits, hooked, atol=1e-5, rtol=1e-5)
    unroute_model(adapter)
    assert not (hooked - llama.model(**batch).logits).abs().max() < 1e-6  # routing changed it


def test_the_oracle_captures_the_most_mass_and_the_mlp_router_is_seeded(llama):
    adapter = llama.adapter
    labels = layer_labels(adapter)[0]
    inputs, h = [], []
    keep = adapter.blocks[0].mlp.up_proj.register_forward_pre_hook(
        lambda _m, args: inputs.append(args[0].reshape(-1, 32))
    )
    with (
        neuron_hooks(adapter, lambda layer, a: h.append(a.reshape(-1, 64)) if layer == 0 else None),
        torch.no_grad(),
    ):
        llama.model(input_ids=torch.randint(3, 259, (16, 12)))
    keep.remove()
    x, acts = torch.cat(inputs), torch.cat(h)
    rows = adapter.input_weight(0, "gate")
    mlp = build_router("mlp", labels, rows, E, (x[:150], acts[:150]), epochs=3, seed=1)
    again = build_router("mlp", labels, rows, E, (x[:150], acts[:150]), epochs=3, seed=1)
    assert torch.equal(mlp(x), again(x))
    mass = expert_mass(acts, membership(labels, E))
    oracle = build_router("oracle", labels, rows, E)
    best = captured_mass(oracle(x, acts), mass, 2)
    for kind in ("similarity", "mlp"):
        router = mlp if kind == "mlp" else build_router(kind, labels, rows, E)
        assert (captured_mass(router(x[150:]), mass[150:], 2) <= best[150:] + 1e-6).all()
    assert captured_mass(oracle(x, acts), mass, E).sub(1).abs().max() < 1e-5


def test_bad_k_and_router_names_fail_in_one_line(llama):
    with pytest.raises(ConfigError, match="between 1 and 8"):
        top_experts(torch.zeros(3, E), 9)
    with pytest.raises(ConfigError, match="similarity, mlp, oracle"):
        build_router("nearest", torch.zeros(64, dtype=torch.long), torch.zeros(64, 32), E)


def test_moefy_api_routes_a_loaded_model_from_data_and_oracle_all_is_dense(llama):
    import modularity

    batch = inputs_for(llama)
    dense = llama.model(**batch).logits
    data = torch.randint(3, 259, (6, 16), generator=torch.Generator().manual_seed(0))
    model = modularity.moefy(
        llama.model, 0.25, method="coactivation", router="mlp", experts=8, data=data
    )
    assert model is llama.model and isinstance(model.model.layers[1].mlp, RoutedGatedMLP)
    assert model.model.layers[0].mlp.k == 2
    sparse = model(**batch).logits
    assert sparse.shape == dense.shape and not torch.allclose(sparse, dense, atol=1e-3)
    unroute_model(llama.adapter)
    modularity.moefy(llama.model, 1.0, router="oracle", experts=8)
    assert (llama.model(**batch).logits - dense).abs().max() <= 1e-5


def test_moefy_api_names_what_is_missing(llama):
    import modularity

    with pytest.raises(ConfigError, match="needs data"):
        modularity.moefy(llama.model, method="coactivation")
    with pytest.raises(ConfigError, match="kmeans, coactivation, random"):
        modularity.moefy(llama.model, method="metis")
    with pytest.raises(ConfigError, match="share in"):
        modularity.moefy(llama.model, 9, experts=8)
