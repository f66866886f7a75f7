"""``analysis=sites``: the same fraction of MLP neurons, attention neurons and heads removed
per task, their depth profiles, and the rank correlation between them (with its interval)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from modularity import pipeline
from modularity.algorithms.rank_correlation import spearman_interval
from modularity.analyses.sites import Sites
from modularity.errors import ConfigError
from modularity.run import run


def test_spearman_matches_scipy_and_has_no_interval_below_four_pairs():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=12), rng.normal(size=12)
    result = spearman_interval(x, y)
    assert result.rho == pytest.approx(stats.spearmanr(x, y).statistic)
    assert result.low < result.rho < result.high and result.n == 12
    three = spearman_interval(x[:3], y[:3])
    assert not math.isnan(three.rho) and math.isnan(three.low) and math.isnan(three.high)
    assert math.isnan(spearman_interval(np.ones(5), y[:5]).rho)


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
    collect = pipeline.collect_statistics
    monkeypatch.setattr(
        pipeline,
        "collect_statistics",
        lambda *a, **k: calls.append(k["sites"]) or collect(*a, **k),
    )
    cfg = make_cfg("model=tiny_vit", "task=digits-3", "analysis=sites", *SMALL)
    result = run(cfg)
    rows = result.rows
    assert calls == [("mlp", "attn", "heads")] * 2  # the task and its reference, once each
    effects = rows[(rows.metric == "effect") & (rows.measure == "top1")]
    assert sorted(effects.partner) == ["attn", "heads", "mlp"]
    assert (effects.low <= effects.value).all() and (effects.value <= effects.high).all()
    removed = rows[rows.metric == "n_selected"].set_index("partner")
    assert removed.loc["mlp"].n == 2 * 64 and removed.loc["attn"].n == 2 * 32
    assert removed.loc["heads"].n == 2 * 4
    shares = rows[rows.metric == "depth_share"].groupby("partner").value.sum()
    assert np.allclose(shares.to_numpy(), 1.0)
    rho = rows[rows.metric == "layer_rank_correlation"].set_index("variant")
    assert sorted(rho.index) == ["mlp-attn", "mlp-heads"]
    assert rho.n.tolist() == [2, 2] and rho.low.isna().all()  # two layers: no interval
    assert (result.out_dir / "depth_shares.csv").is_file()
    summary = "\n".join(Sites.summary(rows))
    assert "rho with mlp" in summary and "| digits-3 | heads | 2 of 8 |" in summary


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
