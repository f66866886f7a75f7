"""Every registered family (found by discovery, not listed) on its tiny random model: neuron
site, statistics against hooked activations, discovery of modules and entry points."""

import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from tiny_models import FAMILIES, inputs_for, tiny_config

import modularity.models as models_package
from modularity.collect import collect_statistics
from modularity.config import load_model_config
from modularity.errors import ConfigError, ModularityError
from modularity.models import adapter as adapter_module
from modularity.models import discovery
from modularity.models.adapter import adapter_class, supported_model_types
from modularity.models.loading import load_model
from modularity.neurons.masks import neuron_hooks

TRAINER = OmegaConf.create(
    {"accelerator": "cpu", "devices": 1, "strategy": "auto", "precision": "32-true"}
    | {"enable_progress_bar": False}
)


@pytest.mark.parametrize("family", FAMILIES)
def test_adapter_shapes(family):
    loaded = load_model(tiny_config(family))
    adapter = loaded.adapter
    assert adapter.n_layers == 2
    # GPT-2's MLP is 4 x n_embd (32) wide; the others set 64 in their configs.
    assert adapter.n_neurons == (128 if family == "gpt2" else 64)
    d_model = loaded.model.config.hidden_size
    assert adapter.input_weight(0).shape == (adapter.n_neurons, d_model)
    assert adapter.output_weight(1).shape == (d_model, adapter.n_neurons)
    assert adapter.kind == ("image_classifier" if family == "vit" else "causal_lm")


@pytest.mark.parametrize("family", FAMILIES)
def test_site_is_the_down_projection_input(family):
    """The hooked activations, pushed through W_out, give the MLP's output; a no-op hook
    leaves the model's output unchanged."""
    loaded = load_model(tiny_config(family))
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


FAKE_ADAPTER = """
from modularity.models.adapter import MlpLayout, ModelAdapter, register_adapter


@register_adapter
class FakeAdapter(ModelAdapter):
    model_types = ("{model_type}",)
    kind = "causal_lm"
    layouts = (MlpLayout(blocks="model.layers", up="mlp.fc1", down="mlp.fc2"),)
"""


@pytest.fixture
def fresh_registry(monkeypatch):
    """A copy of the registry and a discovery that runs again; both restored after."""
    monkeypatch.setattr(adapter_module, "_ADAPTERS", dict(adapter_module._ADAPTERS))
    discovery.discover_adapters.cache_clear()
    yield
    discovery.discover_adapters.cache_clear()


def test_a_new_adapter_module_is_found_without_an_import_list(
    fresh_registry, tmp_path, monkeypatch
):
    """A module dropped into the package (here: a second folder of it) registers itself."""
    (tmp_path / "fake_family.py").write_text(FAKE_ADAPTER.format(model_type="fake_family"))
    monkeypatch.setattr(models_package, "__path__", [*models_package.__path__, str(tmp_path)])
    monkeypatch.delitem(sys.modules, "modularity.models.fake_family", raising=False)
    assert "fake_family" in supported_model_types()
    assert adapter_class("fake_family").__name__ == "FakeAdapter"
    assert {"gpt2", "llama", "opt", "gemma3_text", "vit"} <= set(supported_model_types())


def install_entry_point(site: Path, distribution: str, entry: str) -> None:
    """An installed distribution's metadata in ``site`` (put on sys.path) declaring one
    adapter entry point, ``name = module:Class``."""
    info = site / f"{distribution}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{discovery.ENTRY_POINT_GROUP}]\n{entry}\n")


def test_an_outside_package_registers_through_its_entry_point(
    fresh_registry, tmp_path, monkeypatch
):
    package = tmp_path / "outside_adapters"
    package.mkdir()
    (package / "__init__.py").write_text(FAKE_ADAPTER.format(model_type="outside_family"))
    install_entry_point(tmp_path, "outside_adapters", "outside = outside_adapters:FakeAdapter")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert adapter_class("outside_family").__module__ == "outside_adapters"


def test_a_broken_entry_point_is_one_line(fresh_registry, tmp_path, monkeypatch):
    install_entry_point(tmp_path, "broken_adapters", "broken = no_such_module_here:Adapter")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModularityError, match="entry point 'broken'.*no_such_module_here") as err:
        supported_model_types()
    assert "\n" not in str(err.value)


def test_every_registered_family_has_a_tiny_model():
    """The contract tests above run over FAMILIES; one without a tiny model fails them."""
    assert supported_model_types() == FAMILIES
    for family in FAMILIES:
        assert tiny_config(family).hf_config.model_type == family


class Items(torch.utils.data.Dataset):
    """The rows of a batch as items (all in half 0)."""

    def __init__(self, batch: dict[str, torch.Tensor]) -> None:
        self.batch = batch

    def __len__(self) -> int:
        return len(next(iter(self.batch.values())))

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {**{k: v[i] for k, v in self.batch.items()}, "half": torch.tensor(0)}


@pytest.mark.parametrize("family", FAMILIES)
def test_collected_statistics_equal_the_hooked_activations(family):
    loaded = load_model(tiny_config(family, {"seed": 2}))
    inputs = inputs_for(loaded)
    seen: dict[int, torch.Tensor] = {}
    with torch.no_grad(), neuron_hooks(loaded.adapter, lambda k, x: seen.setdefault(k, x)):
        loaded.model(**inputs)
    stats = collect_statistics(
        loaded, torch.utils.data.DataLoader(Items(inputs), batch_size=2), TRAINER
    ).full
    for layer in range(loaded.adapter.n_layers):
        acts = seen[layer].reshape(-1, loaded.adapter.n_neurons).double()
        torch.testing.assert_close(torch.as_tensor(stats.mean[layer]), acts.mean(0))
        torch.testing.assert_close(
            torch.as_tensor(stats.std[layer]), acts.std(0, correction=0), rtol=1e-5, atol=1e-7
        )
