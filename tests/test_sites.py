"""Attention sites (``site=attn``: attention neurons, ``site=heads``: whole heads) against
hand-made hooks on the attention output projection of every tiny family, including a
Mistral with fewer key/value heads than query heads: statistics, ablation, restore, export."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf, open_dict
from safetensors.torch import load_file
from tiny_models import FAMILIES, inputs_for, tiny_config
from torch.utils.data import DataLoader, Dataset
from transformers import AutoModelForCausalLM, AutoModelForImageClassification

from modularity.checkpoint import export_pruned
from modularity.collect import collect_statistics
from modularity.config import load_model_config
from modularity.errors import ConfigError, ModularityError
from modularity.infra.validate import check_group_choices
from modularity.models.loading import load_model
from modularity.neurons.masks import ablate, neuron_hooks
from modularity.neurons.sites import (
    SITES,
    Site,
    check_site_scorer,
    check_unit_mask,
    reading_hooks,
    site_of,
    split_statistics,
)

TRAINER = OmegaConf.create(
    {"accelerator": "cpu", "devices": 1, "strategy": "auto", "precision": "32-true"}
    | {"enable_progress_bar": False}
)
# Grouped-query attention: 4 query heads share 1 key/value head, and head_dim (16) is not
# hidden_size / heads (8), so the unit layout must come from the projection, not the width.
TINY_MISTRAL = {
    "name": "tiny_mistral",
    "hf_config": {"model_type": "mistral", "num_key_value_heads": 1, "head_dim": 16},
}
ATTENTION_FAMILIES = [*FAMILIES, "tiny_mistral"]
# The attention output projection of each family, written out here (not read from the
# adapters) so the hooks below are independent of the code under test.
O_PROJ = {
    **{
        family: "model.layers.{}.self_attn.o_proj"
        for family in ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text")
    },
    "opt": "model.decoder.layers.{}.self_attn.out_proj",
    "gpt2": "transformer.h.{}.attn.c_proj",
    "gpt_neox": "gpt_neox.layers.{}.attention.dense",
    "vit": "vit.layers.{}.attention.o_proj",
}


def tiny(name: str, seed: int = 0):
    if name == "tiny_mistral":
        cfg = load_model_config("tiny_llama", {"seed": seed})
        with open_dict(cfg):
            cfg.merge_with(TINY_MISTRAL)
        return load_model(cfg)
    return load_model(tiny_config(name, {"seed": seed}))


def o_proj(loaded, layer: int) -> torch.nn.Module:
    return loaded.model.get_submodule(O_PROJ[loaded.model.config.model_type].format(layer))


def logits(loaded, inputs=None):
    with torch.no_grad():
        return loaded.model(**(inputs or inputs_for(loaded))).logits


def random_units(n_layers: int, width: int, share: float = 0.3, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    mask = torch.rand(n_layers, width, generator=gen) < share
    mask[:, 0] = True  # never empty
    return mask


class Items(Dataset):
    """Token blocks (some padded) or images, each with a half label."""

    def __init__(self, loaded, n: int = 12, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.half = torch.randint(0, 2, (n,), generator=gen)
        self.images = not loaded.modality.tokens
        if self.images:
            self.pixels = torch.randn(n, 1, 8, 8, generator=gen)
            return
        self.ids = torch.randint(3, 259, (n, 16), generator=gen)
        self.mask = torch.ones(n, 16, dtype=torch.long)
        for i in range(0, n, 4):
            self.mask[i, 16 - 1 - i % 5 :] = 0

    def __len__(self) -> int:
        return len(self.half)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if self.images:
            return {"pixel_values": self.pixels[i], "half": self.half[i]}
        return {"input_ids": self.ids[i], "attention_mask": self.mask[i], "half": self.half[i]}

    def inputs(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[None] for k, v in self[i].items() if k != "half"}

    def kept(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[1, positions, width]`` at the item's tokens: ``[tokens, width]``."""
        return x[0] if self.images else x[0][self.mask[i].bool()]


def hand_hooked(loaded, data: Items) -> list[np.ndarray]:
    """Each layer's attention output projection input over every token, float64."""
    seen: dict[int, list[torch.Tensor]] = {}
    handles = [
        o_proj(loaded, layer).register_forward_pre_hook(
            lambda m, args, layer=layer: seen.setdefault(layer, []).append(args[0].clone())
        )
        for layer in range(loaded.adapter.n_layers)
    ]
    try:
        with torch.no_grad():
            for i in range(len(data)):
                loaded.model.base_model(**data.inputs(i))
                for layer in seen:
                    seen[layer][-1] = data.kept(i, seen[layer][-1])
    finally:
        for handle in handles:
            handle.remove()
    return [torch.cat(seen[layer]).double().numpy() for layer in sorted(seen)]


def assert_matches_numpy(stats, acts: list[np.ndarray]) -> None:
    for layer, x in enumerate(acts):
        mean = x.mean(0)
        np.testing.assert_allclose(stats.mean[layer], mean, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(stats.std[layer], x.std(0), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(stats.abs_mean[layer], np.abs(x).mean(0), rtol=1e-5)
        np.testing.assert_allclose(stats.rms[layer], np.sqrt((x**2).mean(0)), rtol=1e-5)
        np.testing.assert_allclose(stats.freq[layer], (x > 0).mean(0))
        mad = np.abs(x - mean).mean(0)
        slack = stats.mad_error[layer].numpy() + 1e-5 * mad + 1e-9
        assert (np.abs(stats.mad[layer].numpy() - mad) <= slack).all()
        assert (stats.count[layer] == x.shape[0]).all()


@pytest.mark.parametrize("name", ATTENTION_FAMILIES)
def test_adapter_declares_the_attention_output(name):
    loaded = tiny(name)
    adapter, config = loaded.adapter, loaded.model.config
    assert adapter.attention_output(1) is o_proj(loaded, 1)
    assert adapter.n_heads == 4
    head_dim = 16 if name == "tiny_mistral" else 8
    assert (adapter.head_dim, adapter.attention_width) == (head_dim, 4 * head_dim)
    assert adapter.attention_output_weight(0).shape == (config.hidden_size, 4 * head_dim)
    assert site_of("heads").width(adapter) == 4


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) for n in FAMILIES] + ["tiny_mistral"]
)
def test_statistics_of_every_site_from_one_collection_match_hand_hooks(name):
    """attn: the o_proj input itself; heads: per token the L2 norm of each head's slice;
    mlp: unchanged by collecting the other sites beside it."""
    loaded = tiny(name, seed=2)
    data = Items(loaded)
    loader = DataLoader(data, batch_size=4)
    sites = ("attn", "heads", "mlp")
    stats = collect_statistics(loaded, loader, TRAINER, sites=sites)
    mlp_alone = collect_statistics(loaded, loader, TRAINER)
    split = split_statistics(stats, loaded.adapter, sites)
    attn = hand_hooked(loaded, data)
    assert_matches_numpy(split["attn"].full, attn)
    heads = [np.linalg.norm(x.reshape(len(x), 4, -1), axis=-1) for x in attn]
    assert_matches_numpy(split["heads"].full, heads)
    for field in ("mean", "std", "abs_mean", "freq", "count"):
        torch.testing.assert_close(
            getattr(split["mlp"].full, field), getattr(mlp_alone.full, field), rtol=1e-5, atol=1e-7
        )
    tokens = [len(data.kept(i, torch.zeros(1, 17 if data.images else 16, 1))) for i in range(12)]
    for half in (0, 1):
        expected = sum(n for n, h in zip(tokens, data.half.tolist()) if h == half)
        assert (split["heads"].halves[half].count == expected).all()


@pytest.mark.parametrize("tolerance", [0.0, pytest.param(float("inf"), marks=pytest.mark.slow)])
def test_several_sites_cost_no_extra_forward(tolerance):
    """The same passes (exact: one pass and the second; one-pass: pilot and main) and
    forwards whether the MLP alone or every site is collected."""
    loaded = tiny("llama", seed=2)
    loader = DataLoader(Items(loaded), batch_size=4)
    forwards = []
    handle = loaded.model.base_model.register_forward_hook(lambda *a: forwards.append(1))
    counts = []
    try:
        for sites in (("mlp",), ("mlp", "attn", "heads")):
            collect_statistics(loaded, loader, TRAINER, mad_tolerance=tolerance, sites=sites)
            counts.append(len(forwards) - sum(counts))
    finally:
        handle.remove()
    assert counts[0] == counts[1] > 0


@pytest.mark.parametrize("name", ATTENTION_FAMILIES)
def test_attention_ablation_equals_zeroed_projection_columns(name):
    loaded = tiny(name, seed=3)
    adapter = loaded.adapter
    mask = random_units(adapter.n_layers, adapter.attention_width)
    with ablate(adapter, mask, "zero", site="attn"):
        masked = logits(loaded)
    originals = [adapter.attention_output_weight(i).detach().clone() for i in range(2)]
    try:
        with torch.no_grad():
            for layer in range(adapter.n_layers):
                adapter.attention_output_weight(layer)[:, mask[layer]] = 0
        manual = logits(loaded)
    finally:
        with torch.no_grad():
            for layer, weight in enumerate(originals):
                adapter.attention_output_weight(layer).copy_(weight)
    torch.testing.assert_close(masked, manual)


@pytest.mark.parametrize("name", ATTENTION_FAMILIES)
def test_head_ablation_zeroes_the_heads_slices_and_restores_bit_for_bit(name):
    loaded = tiny(name, seed=4)
    adapter = loaded.adapter
    before = logits(loaded)
    heads = torch.tensor([[True, False, False, True], [False, True, False, False]])
    with ablate(adapter, heads, "zero", site="heads"):
        masked = logits(loaded)
    assert torch.equal(logits(loaded), before)
    d = adapter.head_dim

    def zero_slices(module, args, layer):
        x = args[0].clone()
        for head in heads[layer].nonzero().flatten().tolist():
            x[..., head * d : (head + 1) * d] = 0
        return (x,)

    handles = [
        o_proj(loaded, layer).register_forward_pre_hook(
            lambda m, a, layer=layer: zero_slices(m, a, layer)
        )
        for layer in range(2)
    ]
    try:
        manual = logits(loaded)
    finally:
        for handle in handles:
            handle.remove()
    assert torch.equal(masked, manual)
    assert not torch.equal(masked, before)


@pytest.mark.parametrize("site", ["attn", "heads"])
def test_attention_masks_restore_bit_identical_outputs(site):
    loaded = tiny("tiny_mistral", seed=5)
    before = logits(loaded)
    width = site_of(site).width(loaded.adapter)
    means = torch.randn(2, loaded.adapter.attention_width)
    for mode, fill in (("zero", None), ("mean", means)):
        with ablate(loaded.adapter, random_units(2, width), mode, fill, site=site):
            assert not torch.equal(logits(loaded), before)
        assert torch.equal(logits(loaded), before)
    with pytest.raises(RuntimeError), ablate(loaded.adapter, random_units(2, width), site=site):
        raise RuntimeError("boom")
    assert torch.equal(logits(loaded), before)


def test_head_mean_ablation_puts_the_attention_means_in_the_slice():
    loaded = tiny("gpt2", seed=6)
    adapter = loaded.adapter
    heads = torch.tensor([[False, True, False, False], [True, False, False, False]])
    means = torch.randn(2, adapter.attention_width)
    with ablate(adapter, heads, "mean", means, site="heads"):
        masked = logits(loaded)
    columns = heads.repeat_interleave(adapter.head_dim, dim=1)
    with ablate(adapter, columns, "mean", means, site="attn"):
        as_units = logits(loaded)
    assert torch.equal(masked, as_units)
    seen = {}
    with (
        torch.no_grad(),
        ablate(adapter, heads, "mean", means, site="heads"),
        reading_hooks(adapter, ["attn"], lambda layer, x: seen.setdefault(layer, x.clone())),
    ):
        loaded.model(**inputs_for(loaded))
    # The reading hook runs after the ablation's: the slice holds the means at every token.
    for layer in (0, 1):
        expected = means[layer][columns[layer]].expand(*seen[layer].shape[:-1], -1)
        torch.testing.assert_close(seen[layer][..., columns[layer]], expected)


def reload(loaded, out_dir):
    auto = AutoModelForImageClassification if not loaded.modality.tokens else AutoModelForCausalLM
    return auto.from_pretrained(out_dir).eval()


@pytest.mark.parametrize("name", ATTENTION_FAMILIES)
@pytest.mark.parametrize("site", ["attn", "heads"])
def test_exported_attention_pruning_reproduces_the_ablated_logits(name, site, tmp_path):
    loaded = tiny(name, seed=7)
    adapter = loaded.adapter
    mask = random_units(adapter.n_layers, site_of(site).width(adapter), seed=1)
    with ablate(adapter, mask, "zero", site=site):
        masked = logits(loaded)
    report = export_pruned(loaded.model, mask, tmp_path / "out", site=site)
    with torch.no_grad():
        exported = reload(loaded, tmp_path / "out")(**inputs_for(loaded)).logits
    assert (exported - masked).abs().max() <= 1e-4
    assert report.structure == "zeroed" and report.site == site
    assert report.params_after == report.params_before
    assert report.neurons_pruned == int(mask.sum())
    assert "zeroed (their input columns of the attention output projection)" in report.summary()


@pytest.mark.parametrize("site", ["attn", "heads"])
def test_exported_attention_mean_ablation_folds_the_means_into_the_bias(site, tmp_path):
    loaded = tiny("gpt_neox", seed=8)
    adapter = loaded.adapter
    mask = random_units(2, site_of(site).width(adapter), seed=2)
    means = torch.randn(2, adapter.attention_width)
    with ablate(adapter, mask, "mean", means, site=site):
        masked = logits(loaded)
    export_pruned(loaded.model, mask, tmp_path / "out", "mean", means, site=site)
    with torch.no_grad():
        exported = reload(loaded, tmp_path / "out")(**inputs_for(loaded)).logits
    assert (exported - masked).abs().max() <= 1e-4


def test_attention_mean_export_without_a_bias_is_refused(tmp_path):
    loaded = tiny("llama")
    mask = random_units(2, loaded.adapter.attention_width)
    means = torch.zeros(2, loaded.adapter.attention_width)
    with pytest.raises(ModularityError, match="attention output projection has no bias"):
        export_pruned(loaded.model, mask, tmp_path / "out", "mean", means, site="attn")
    assert not (tmp_path / "out").exists()


@dataclass(frozen=True)
class UpInputSite(Site):
    """A site outside the built-in three: the residual dimensions the MLP's up projection
    reads (its input columns), to show a new site needs its class and nothing else."""

    reader = "the MLP's up projection"

    def module(self, adapter, layer):
        return adapter.blocks[layer].get_submodule(adapter.layout.up)

    def parameter_name(self, adapter, layer, tensor):
        return adapter.parameter_name(layer, "up", tensor)

    def width(self, adapter):
        return adapter.input_weight(0).shape[1]

    def unit_parameters(self, adapter):
        return adapter.input_weight(0).shape[0]


@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_a_registered_site_is_selectable_ablated_and_exported(mode, monkeypatch, tmp_path):
    monkeypatch.setitem(SITES, "up_in", UpInputSite("up_in", noun="MLP inputs"))
    check_group_choices(["site=up_in"])
    loaded = tiny("gpt_neox", seed=9)
    adapter = loaded.adapter
    width = site_of("up_in").width(adapter)
    assert width == adapter.model.config.hidden_size
    mask = random_units(adapter.n_layers, width, seed=3)
    means = torch.randn(adapter.n_layers, width) if mode == "mean" else None
    seen = {}
    with (
        torch.no_grad(),
        reading_hooks(adapter, ["up_in"], lambda k, x: seen.setdefault(k, x.clone())),
    ):
        unablated = logits(loaded)
    with ablate(adapter, mask, mode, means, site="up_in"):
        masked = logits(loaded)
    assert not torch.equal(masked, unablated)
    assert seen[0].shape[-1] == width
    report = export_pruned(loaded.model, mask, tmp_path / "out", mode, means, site="up_in")
    with torch.no_grad():
        exported = reload(loaded, tmp_path / "out")(**inputs_for(loaded)).logits
    assert (exported - masked).abs().max() <= 1e-4
    assert "MLP inputs zeroed (their input columns of the MLP's up projection)" in report.summary()


def test_sites_of_installed_packages_are_found_from_their_entry_points(tmp_path, monkeypatch):
    """A package's ``modularity.sites`` entry point names a Site object; one that names
    anything else is one line naming the entry point."""
    (tmp_path / "extsites.py").write_text(
        "from test_sites import UpInputSite\n"
        "UP_INPUT = UpInputSite('up_in', noun='MLP inputs')\n"
        "NOT_A_SITE = 'up_in'\n"
    )
    info = tmp_path / "extsites-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: extsites\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[modularity.sites]\nup_in = extsites:UP_INPUT\nbroken = extsites:NOT_A_SITE\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr("modularity.neurons.sites.SITES", dict(SITES))
    with pytest.raises(ConfigError, match=r"site entry point 'broken' \(extsites:NOT_A_SITE\)"):
        site_of("up_in")
    (info / "entry_points.txt").write_text("[modularity.sites]\nup_in = extsites:UP_INPUT\n")
    assert site_of("up_in").noun == "MLP inputs"
    check_group_choices(["site=up_in"])


# --------------------------------------------------------------------------- bad input


def test_unknown_site_is_one_line():
    with pytest.raises(ConfigError, match=r"unknown site 'bogus'; valid: mlp, attn, heads"):
        check_group_choices(["site=bogus"])
    with pytest.raises(ConfigError, match=r"unknown site 'bogus'; valid: mlp, attn, heads"):
        site_of("bogus")


def test_heads_refuse_the_frequency_scorer():
    with pytest.raises(ConfigError, match=r"scoring=freq cannot score site=heads.*valid.*mad"):
        check_site_scorer("heads", "freq")
    for scorer in ("mad", "abs", "std", "rms", "mean", "random"):
        check_site_scorer("heads", scorer)
    check_site_scorer("attn", "freq")


def test_family_without_an_attention_layout_is_one_line():
    adapter = tiny("gpt2").adapter
    adapter.layout = dataclasses.replace(adapter.layout, attn_out=None)
    for site in ("attn", "heads"):
        with pytest.raises(ConfigError, match=r"declares no attention output projection.*mlp"):
            site_of(site).width(adapter)
    assert site_of("mlp").width(adapter) == adapter.n_neurons


def test_a_mask_of_the_wrong_site_is_one_line():
    adapter = tiny("llama").adapter
    with pytest.raises(ConfigError, match=r"site=heads .* \[layers, units\] = \[2, 4\]"):
        check_unit_mask(adapter, "heads", torch.zeros(2, 32, dtype=torch.bool))


def test_neuron_hooks_on_a_site_read_its_module_input():
    loaded = tiny("gpt_neox")
    seen = {}
    with (
        torch.no_grad(),
        neuron_hooks(loaded.adapter, lambda k, x: seen.setdefault(k, x), site="attn"),
    ):
        loaded.model(**inputs_for(loaded))
    assert seen[1].shape[-1] == loaded.adapter.attention_width


# --------------------------------------------------------------------------- runs

SMALL = ["data.collect_size=256", "data.eval_size=256", "data.block_size=64"]


@pytest.mark.slow
def test_prune_on_attention_neurons_exports_what_it_evaluated(tmp_path):
    """``modularity.prune(..., site="attn")`` selects attention neurons, its rows say so,
    and its export (mean ablation folded into the projection's bias) reproduces the ablated
    model's logits."""
    import modularity

    result = modularity.prune(
        "tiny_vit",
        "digits-3",
        0.05,
        site="attn",
        ablation="mean",
        collect_size=256,
        eval_size=256,
        cache_dir=str(tmp_path / "cache"),
        progress_bar=False,
        run_dir=tmp_path / "run",
    )
    mask = result.mask
    assert mask.shape == (2, 32) and mask.sum(1).tolist() == [2, 2]  # 5% of 32, rounded
    assert set(result.rows.site) == {"attn"}
    assert (result.rows.metric == "stability").any()
    report = modularity.export(result, tmp_path / "export")
    assert (report.site, report.structure) == ("attn", "zeroed")
    loaded = load_model(load_model_config("tiny_vit"))
    means = load_file(result.run_dir / "scores.safetensors")["means"]
    assert means.shape == (2, 32)
    with modularity.ablate(loaded.model, mask, "mean", means, site="attn"):
        masked = logits(loaded)
    with torch.no_grad():
        exported = reload(loaded, tmp_path / "export")(**inputs_for(loaded)).logits
    assert (exported - masked).abs().max() <= 1e-4


@pytest.mark.slow
def test_pipeline_collects_several_sites_once_and_caches_each(make_cfg, monkeypatch):
    from modularity.pipeline import Pipeline
    from modularity.pipeline import statistics as pipeline

    cfg = make_cfg("model=tiny_gpt2", *SMALL, "site=heads")
    pipe = Pipeline(cfg)
    calls = []
    collect = pipeline.collect_statistics
    monkeypatch.setattr(
        pipeline, "collect_statistics", lambda *a, **k: calls.append(k["sites"]) or collect(*a, **k)
    )
    task = pipe.main_task()
    stats = pipe.site_statistics(task, ("mlp", "attn", "heads"))
    assert calls == [("mlp", "attn", "heads")]
    assert [stats[s].full.shape for s in ("mlp", "attn", "heads")] == [(2, 128), (2, 32), (2, 4)]
    assert pipe.statistics(task).full.shape == (2, 4)  # the run's site, from the cache
    assert pipe.ablation_means(task).shape == (2, 32)  # heads are replaced by attn means
    assert calls == [("mlp", "attn", "heads")]
    sites = [
        json.loads(meta.read_text())["meta"].get("site")
        for meta in Path(cfg.cache.dir).glob("*/meta.json")
        if json.loads(meta.read_text())["meta"]["kind"] == "stats"
    ]
    assert sorted(sites) == ["attn", "heads", "mlp"]
