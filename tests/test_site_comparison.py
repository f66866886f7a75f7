"""``analysis=sites``: the same fraction of MLP neurons, attention neurons and heads removed
per task, and as many weights; their depth profiles, the rank correlation between them (with
its interval and permutation p), and each site's task-set overlap against chance."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from tiny_models import FAMILIES, inputs_for, tiny_config

from modularity.algorithms.rank_correlation import spearman_interval, spearman_permutation_p
from modularity.analyses.base import Row
from modularity.analyses.sites import (
    Sites,
    layer_agreement,
    matched_fraction,
    overlap_rows,
    overlap_table,
    site_table,
)
from modularity.errors import ConfigError
from modularity.models.loading import load_model
from modularity.neurons.masks import ablate
from modularity.neurons.sites import SITES
from modularity.pipeline import facade, statistics
from modularity.run import run


def test_spearman_matches_scipy_and_has_no_interval_below_ten_pairs():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=12), rng.normal(size=12)
    result = spearman_interval(x, y)
    assert result.rho == pytest.approx(stats.spearmanr(x, y).statistic)
    assert result.low < result.rho < result.high and result.n == 12
    nine = spearman_interval(x[:9], y[:9])
    assert not math.isnan(nine.rho) and math.isnan(nine.low) and math.isnan(nine.high)
    perfect = spearman_interval(np.arange(12.0), -(np.arange(12.0) ** 3))
    assert perfect.rho == -1 and math.isnan(perfect.low)  # z infinite: no interval
    assert math.isnan(spearman_interval(np.ones(5), y[:5]).rho)


def test_spearman_permutation_p_is_the_share_of_relabellings_as_extreme():
    """Five layers: every one of the 120 orders of y, counted by hand with scipy's rho."""
    x, y = np.array([0.1, 0.4, 0.2, 0.9, 0.5]), np.array([0.3, 0.5, 0.1, 0.8, 0.9])
    rho = stats.spearmanr(x, y).statistic
    permuted = [stats.spearmanr(x, y[list(p)]).statistic for p in itertools.permutations(range(5))]
    expected = np.mean(np.abs(permuted) >= abs(rho) - 1e-9)
    assert spearman_permutation_p(x, y) == pytest.approx(expected)
    assert spearman_permutation_p(np.arange(4.0), np.arange(4.0)) == pytest.approx(2 / 24)


def test_spearman_permutation_p_beyond_eight_layers_is_drawn_and_never_zero():
    x = np.arange(30.0)
    assert spearman_permutation_p(x, x) == pytest.approx(1 / 10000)
    rng = np.random.default_rng(1)
    noise = rng.normal(size=30)
    drawn = spearman_permutation_p(x, noise)
    assert drawn == pytest.approx(stats.spearmanr(x, noise).pvalue, abs=0.03)
    assert math.isnan(spearman_permutation_p(x, np.ones(30)))


def test_a_depth_correlation_is_read_as_shared_opposite_or_not_shown():
    assert layer_agreement(0.8, 0.01) == "same layers"
    assert layer_agreement(-0.8, 0.01) == "opposite layers"
    assert layer_agreement(-0.8, 0.2) == "no association shown"
    assert layer_agreement(-1.0, 2 / 24) == "no association shown"  # 4 layers: p >= 1/12
    assert layer_agreement(math.nan, math.nan).startswith("undefined")


def test_site_table_marks_a_matched_selection_of_every_unit_and_an_undefined_rho():
    effect = {"metric": "effect", "variant": "task-reference", "measure": "top1"}
    rows = [
        Row("n_selected", 256, task="t", partner="attn:params", n=256),
        Row("matched_fraction", 1.0, task="t", partner="attn:params", label="every unit"),
        Row(value=-12.5, low=-14.0, high=-11.0, task="t", partner="attn:params", **effect),
        Row("n_selected", 8, task="t", partner="heads", n=16),
        Row(value=3.0, low=1.0, high=5.0, task="t", partner="heads", **effect),
        Row(
            "layer_rank_correlation",
            math.nan,
            task="t",
            variant="mlp-heads",
            partner="heads",
            label="undefined: a site's shares are equal in every layer",
        ),
    ]
    table, _ = site_table(pd.DataFrame([r.__dict__ for r in rows]))
    assert table[0][:5] == ["t", "attn:params", "256 of 256 (all)", "–", "**-12.5 [-14.0, -11.0]**"]
    assert table[1][2] == "8 of 16" and table[1][-1].startswith("undefined")


@pytest.mark.parametrize("n", [10, pytest.param(30, marks=pytest.mark.slow)])
def test_spearman_interval_covers_at_the_layer_counts_we_run(n):
    """Bivariate normal with Pearson 0.5: Spearman's population value is
    (6 / pi) asin(0.25); the interval must hold it about 95% of the time."""
    rng = np.random.default_rng(n)
    truth = 6 / math.pi * math.asin(0.25)
    cov = [[1, 0.5], [0.5, 1]]
    hits = 0
    trials = 1000
    for _ in range(trials):
        x, y = rng.multivariate_normal([0, 0], cov, size=n).T
        result = spearman_interval(x, y)
        hits += result.low <= truth <= result.high
    assert 0.925 <= hits / trials <= 0.975  # 3.5 standard errors around 0.95


SMALL = ["data.collect_size=128", "data.eval_size=128"]


@pytest.mark.slow
def test_sites_analysis_compares_every_site_from_one_collection(make_cfg, monkeypatch):
    calls = []
    collect = statistics.collect_statistics
    monkeypatch.setattr(
        statistics,
        "collect_statistics",
        lambda *a, **k: calls.append(k["sites"]) or collect(*a, **k),
    )
    evaluated = []
    evaluate = facade.Pipeline.evaluate
    monkeypatch.setattr(
        facade.Pipeline,
        "evaluate",
        lambda self, *a, **k: evaluated.append(k.get("site")) or evaluate(self, *a, **k),
    )
    tasks = "tasks=[digits-3,digits-5]"
    cfg = make_cfg("model=tiny_vit", "task=digits-3", tasks, "analysis=sites", *SMALL)
    result = run(cfg)
    rows = result.rows
    assert calls == [("mlp", "attn", "heads")] * 4  # each task and its reference, once each
    rows3 = rows[rows.task == "digits-3"]
    effects = rows3[(rows3.metric == "effect") & (rows3.measure == "top1")]
    assert sorted(effects.partner) == ["attn", "attn:params", "heads", "heads:params", "mlp"]
    assert (effects.low <= effects.value).all() and (effects.value <= effects.high).all()
    removed = rows3[rows3.metric == "n_selected"].set_index("partner")
    assert removed.loc["mlp"].n == 2 * 64 and removed.loc["attn"].n == 2 * 32
    assert removed.loc["heads"].n == 2 * 4
    # tiny_vit: an MLP neuron and an attention neuron both take out 2 x 32 weights, a head
    # 8 x 32 x 4; 3 of 64 neurons a layer (fraction 0.05) are matched by 3 of 32 attention
    # neurons, and by the one head a layer that a selection keeps at least.
    weights = rows3[rows3.metric == "parameters_removed"].set_index("partner").value
    assert weights["mlp"] == weights["attn:params"] == 2 * 3 * 64
    assert weights["heads:params"] == 2 * 1024 and weights["attn"] == 2 * 2 * 64
    matched = rows3[rows3.metric == "matched_fraction"].set_index("partner").value
    assert matched["attn:params"] == pytest.approx(6 / 64)
    # Matched heads are the plain selection's one head a layer: evaluated once per task.
    assert [s for s in evaluated if s] == ["mlp", "attn", "heads", "attn"] * 2
    assert (
        effects.set_index("partner").value["heads:params"]
        == effects.set_index("partner").value["heads"]
    )
    shares = rows3[rows3.metric == "depth_share"].groupby("partner").value.sum()
    assert np.allclose(shares.to_numpy(), 1.0)
    rho = rows3[rows3.metric == "layer_rank_correlation"].set_index("variant")
    assert sorted(rho.index) == ["mlp-attn", "mlp-heads"]
    assert rho.n.tolist() == [2, 2] and rho.low.isna().all()  # two layers: no interval
    z = rows[rows.metric == "overlap_z"].set_index("partner")
    assert sorted(z.index) == ["attn", "heads", "mlp"] and set(z.variant) == {"digits-5"}
    assert (result.out_dir / "depth_shares.csv").is_file()
    summary = "\n".join(Sites.summary(rows))
    assert "rho with mlp" in summary and "| digits-3 | heads | 2 of 8 | 2,048 |" in summary
    assert "| attn | 1 | " in summary  # the overlap table: one task pair per site


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["analysis=sites", "scoring=freq"], "scoring=freq cannot score site=heads"),
        (["analysis=sites", "analysis.sites=[attn]"], "mlp among them"),
        (["analysis=sites", "analysis.sites=[mlp,bogus]"], "unknown site in analysis.sites"),
        (["analysis=moefy", "site=attn"], "analysis=moefy works on site=mlp, not site=attn"),
        (["site=heads", "scoring=freq"], "valid scorers for site=heads: mad"),
    ],
)
def test_bad_site_settings_fail_before_anything_loads(make_cfg, overrides, message):
    with pytest.raises(ConfigError, match=message):
        run(make_cfg("model=tiny_llama", *overrides))


@pytest.mark.slow
def test_overlap_and_match_work_on_heads(make_cfg):
    """Task x task overlap (z against random sets of the same sizes) and matched damage
    on whole heads: the analyses written for MLP neurons read the run's site."""
    cfg = make_cfg(
        "model=tiny_vit", "site=heads", "analysis=overlap", "tasks=[digits-3,digits-5]", *SMALL
    )
    rows = run(cfg).rows
    assert set(rows.site) == {"heads"}
    sizes = rows[(rows.metric == "share_selected") & (rows.layer == "all")]
    assert sizes.value.tolist() == [0.25, 0.25]  # one of 4 heads in each of 2 layers
    (intersection,) = rows[rows.metric == "intersection"].itertuples()
    assert 0 <= intersection.value <= 2 and 0 <= intersection.p_value <= 1
    match = make_cfg(
        "model=tiny_vit", "site=attn", "analysis=match", "tasks=[digits-3,digits-5]", *SMALL
    )
    rows = run(match).rows
    assert set(rows.site) == {"attn"} and not rows.empty


def dead_weights(loaded, site: str, unit: int) -> int:
    """Weights of layer 0's matrices whose gradient ablating ``unit`` of ``site`` makes 0."""
    adapter = loaded.adapter
    weights = [p for p in adapter.blocks[0].parameters() if p.ndim == 2]
    inputs = inputs_for(loaded)

    def zero_gradients() -> list[torch.Tensor]:
        loaded.model.zero_grad()
        with torch.enable_grad():
            for weight in weights:
                weight.requires_grad_(True)
            loaded.model(**inputs).logits.pow(2).sum().backward()
        return [weight.grad == 0 for weight in weights]

    before = zero_gradients()
    mask = torch.zeros(adapter.n_layers, SITES[site].width(adapter), dtype=torch.bool)
    mask[0, unit] = True
    with ablate(adapter, mask, "zero", None, site):
        after = zero_gradients()
    return sum(int((a & ~b).sum()) for a, b in zip(after, before))


@pytest.mark.parametrize("family", FAMILIES)
def test_a_units_weights_are_those_its_removal_cuts_off(family):
    """Per site and family, the weights counted for a unit are exactly the weights whose
    gradient ablating it makes zero (with grouped-query attention, as in tiny Llama and
    Gemma 3, the shared key/value rows stay alive)."""
    loaded = load_model(tiny_config(family))
    for site, chosen in SITES.items():
        assert dead_weights(loaded, site, 1) == chosen.unit_parameters(loaded.adapter), site


def test_unit_weights_by_hand():
    """tiny_llama: d_model 32, gated MLP, 4 query heads of 8 over 2 key/value heads;
    tiny_gpt2: d_model 32, ungated MLP, 4 heads each with its own key/value head."""
    llama = load_model(tiny_config("llama")).adapter
    assert [SITES[s].unit_parameters(llama) for s in ("mlp", "attn", "heads")] == [
        3 * 32,  # up row, gate row, down column
        32,  # output-projection column only: its value row is shared by two query heads
        8 * 32 * 2,  # 8 output columns and 8 query rows
    ]
    gpt2 = load_model(tiny_config("gpt2")).adapter
    assert [SITES[s].unit_parameters(gpt2) for s in ("mlp", "attn", "heads")] == [
        2 * 32,
        2 * 32,  # output column and its own value row
        8 * 32 * 4,  # query, key, value rows and output columns
    ]


def test_matched_fraction_takes_out_the_mlps_weights():
    """SmolLM2-135M's shapes: 31 of 1536 MLP neurons (1728 weights each) in each of 30
    layers is matched by 93 of 576 attention neurons (576 weights each) per layer."""
    budget = 31 * 30 * 1728
    fraction = matched_fraction(budget, 576, 30 * 576)
    assert round(fraction * 576) == 93 and fraction * 30 * 576 * 576 == pytest.approx(budget)
    assert matched_fraction(100.0, 10, 5) == 2.0  # more than the site has: above 1


def test_overlap_rows_use_the_null_of_random_sets_of_the_same_layer_sizes():
    """Hand-made sets of 2 layers x 10 units: the expected intersection is the sum over
    layers of |A_l| |B_l| / 10, z and the exact p against the convolved hypergeometrics."""
    a = torch.zeros(2, 10, dtype=torch.bool)
    b = torch.zeros(2, 10, dtype=torch.bool)
    a[0, :4], b[0, 2:6] = True, True  # layer 0: 4 and 4, sharing 2
    a[1, :2], b[1, :5] = True, True  # layer 1: 2 and 5, sharing 2
    c = ~a
    rows = overlap_rows({"mlp": {"t1": a, "t2": b, "t3": c}, "attn": {"t1": a, "t2": b}})
    assert len(rows) == 3 * 3 + 3
    got = {(r.partner, r.task, r.variant, r.metric): r for r in rows}
    expected = 4 * 4 / 10 + 2 * 5 / 10
    variance = 4 * 4 * 6 * 6 / (100 * 9) + 2 * 5 * 8 * 5 / (100 * 9)
    pmf = np.convolve(
        stats.hypergeom(10, 4, 4).pmf(range(5)), stats.hypergeom(10, 2, 5).pmf(range(3))
    )
    for site in ("mlp", "attn"):
        assert got[(site, "t1", "t2", "intersection")].value == 4
        assert got[(site, "t1", "t2", "intersection")].p_value == pytest.approx(pmf[4:].sum())
        assert got[(site, "t1", "t2", "expected_intersection")].value == pytest.approx(expected)
        z = got[(site, "t1", "t2", "overlap_z")].value
        assert z == pytest.approx((4 - expected) / math.sqrt(variance))
    assert got[("mlp", "t1", "t3", "intersection")].value == 0  # disjoint sets
    assert got[("mlp", "t1", "t3", "intersection")].p_value == 1.0


def test_overlap_table_summarises_each_site_over_pairs():
    rows = [
        Row("intersection", 4, task="a", variant="b", partner="mlp", p_value=0.01),
        Row("expected_intersection", 2, task="a", variant="b", partner="mlp"),
        Row("overlap_z", 3.0, task="a", variant="b", partner="mlp"),
        Row("intersection", 3, task="a", variant="c", partner="mlp", p_value=0.2),
        Row("expected_intersection", 2, task="a", variant="c", partner="mlp"),
        Row("overlap_z", 1.0, task="a", variant="c", partner="mlp"),
        Row("intersection", 1, task="a", variant="b", partner="heads", p_value=0.9),
        Row("expected_intersection", 2, task="a", variant="b", partner="heads"),
        Row("overlap_z", -1.5, task="a", variant="b", partner="heads"),
    ]
    table, header = overlap_table(pd.DataFrame([r.__dict__ for r in rows]))
    assert header[0] == "site" and [line[0] for line in table] == ["heads", "mlp"]
    assert table[1] == ["mlp", "2", "2.0 (1.0 to 3.0)", "1.75 (1.50 to 2.00)", "1 of 2"]
    assert table[0][3:] == ["0.50 (0.50 to 0.50)", "0 of 1"]
