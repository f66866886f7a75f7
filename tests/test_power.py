"""``analysis=power``: the fits that say how much data a target needs (against hand-made
curves), and the analysis end to end on a tiny model (its full-size effect is the pruning
run's, its smaller evaluation sizes nested subsets)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import special, stats

from modularity.algorithms.data_needed import (
    EXTRAPOLATED,
    INTERPOLATED,
    NOT_REACHED,
    stability_needed,
    width_needed,
)
from modularity.analyses.power import Power
from modularity.errors import ConfigError
from modularity.run import run

TOKENS = np.array([1024, 2048, 4096, 8192])


def test_stability_on_an_exact_logistic_curve_is_solved_exactly():
    stability = special.expit(-6.0 + 0.5 * np.log2(TOKENS))  # 0.38 .. 0.62
    needed = stability_needed(TOKENS, stability, 0.7)
    assert (needed.intercept, needed.slope) == pytest.approx((-6.0, 0.5))
    assert needed.amount == pytest.approx(2 ** ((special.logit(0.7) + 6.0) / 0.5))
    assert needed.label == EXTRAPOLATED
    assert stability_needed(TOKENS, stability, 0.5).label == INTERPOLATED
    assert stability_needed(TOKENS, stability, 0.5).amount == pytest.approx(4096)


def test_the_width_follows_the_largest_sizes_error_by_the_square_root_law():
    z = stats.norm.ppf(0.975)
    errors = np.array([9.0, 1.0, 7.0, 1.0])  # noisy small sizes do not matter
    needed = width_needed(TOKENS, errors, 0.25)
    assert needed.slope == -0.5
    assert needed.amount == pytest.approx(8192 * (2 * z * 1.0 / 0.25) ** 2)  # 2 z se = 0.25
    assert needed.label == EXTRAPOLATED
    at_2048 = 2 * z * 1.0 * np.sqrt(8192 / 2048)  # the width 1/sqrt carries to 2,048 tokens
    assert width_needed(TOKENS, errors, at_2048).amount == pytest.approx(2048)
    assert width_needed(TOKENS, errors, at_2048).label == INTERPOLATED


def test_curves_that_do_not_approach_the_target_give_no_answer():
    falling = stability_needed(TOKENS, np.array([0.5, 0.4, 0.3, 0.2]), 0.7)
    assert falling.label == NOT_REACHED and falling.amount != falling.amount
    one_point = stability_needed(TOKENS[:1], np.array([0.5]), 0.7)
    assert one_point.label == NOT_REACHED
    assert width_needed(TOKENS, np.full(4, np.nan), 1.0).label == NOT_REACHED


def test_bad_settings_are_one_line(make_cfg):
    cfg = make_cfg("model=tiny_llama")
    for power, name in (
        (Power(doublings=0), "doublings"),
        (Power(target_stability=1.0), "target_stability"),
    ):
        with pytest.raises(ConfigError, match=f"analysis.{name}="):
            power.check(cfg)


SMALL = ["model=tiny_llama", "task=code", "data.block_size=64", "data.collect_size=2048"]


@pytest.mark.slow
def test_power_end_to_end_on_a_tiny_model(make_cfg):
    cfg = make_cfg(*SMALL, "data.eval_size=2048", "analysis=power", "analysis.doublings=2")
    result = run(cfg)
    out = Path(cfg.output_dir)
    assert (out / "power.png").is_file()
    table = pd.read_csv(out / "power.csv")
    collection = table[table.split == "collection"]
    evaluation = table[table.split == "evaluation"]
    assert list(collection.share) == ["1/4", "1/2", "1"] == list(evaluation.share)
    assert list(collection.tokens) == [512, 1024, 2048]
    # nested evaluation subsets of about a quarter and a half of the scored tokens
    total = evaluation.tokens.iloc[-1]
    assert evaluation.tokens.iloc[0] <= total / 4 and evaluation.tokens.iloc[1] <= total / 2
    assert list(evaluation.units) == sorted(evaluation.units)
    rows = result.rows
    needed = rows[rows.metric == "data_needed"]
    assert set(needed.measure) == {"stability", "top-1 effect interval width"}
    assert set(needed.label) <= {INTERPOLATED, EXTRAPOLATED, NOT_REACHED}

    # the full-size point is what a pruning run with the same data reports
    prune = run(make_cfg(*SMALL, "data.eval_size=2048"))
    effect = prune.rows[(prune.rows.metric == "effect") & (prune.rows.measure == "top1")].iloc[0]
    full = rows[(rows.metric == "effect_by_size") & (rows.variant == "1")].iloc[0]
    assert (full.value, full.low, full.high) == pytest.approx(
        (effect.value, effect.low, effect.high)
    )
    stability = prune.rows[prune.rows.metric == "stability"].value.iloc[0]
    assert collection.stability.iloc[-1] == pytest.approx(stability)


def unit_sums(hits: list[float], tokens: list[float]):
    from modularity.evaluate import UnitSums

    return UnitSums({"top1": torch.tensor(hits)}, {"top1": torch.tensor(tokens)})


def test_evaluation_subsets_are_nested_shares_and_empty_ones_are_left_out(tmp_path):
    from modularity.algorithms.unit_intervals import MetricSums, drop_difference
    from modularity.analyses.power import evaluation_curve, plot_power

    tokens = [100.0, 300.0, 50.0, 250.0, 200.0, 100.0]
    before = {
        "task": unit_sums([60, 150, 30, 120, 100, 40], tokens),
        "reference": unit_sums([50, 160, 20, 100, 90, 50], tokens),
    }
    after = {
        "task": unit_sums([40, 100, 20, 90, 70, 30], tokens),
        "reference": unit_sums([48, 150, 20, 95, 88, 50], tokens),
    }
    curve = evaluation_curve(before, after, [64, 4, 2, 1], seed=0)
    assert list(curve.share) == ["1/4", "1/2", "1"]  # 1/64 of 1,000 tokens holds no unit
    assert list(curve.tokens) == sorted(curve.tokens) and curve.tokens.iloc[0] <= 250
    full = drop_difference(
        *(
            MetricSums(s[side].num["top1"].numpy(), s[side].den["top1"].numpy())
            for side in ("task", "reference")
            for s in (before, after)
        )
    )
    last = curve.iloc[-1]
    assert (last.effect, last.low, last.high, last.se) == pytest.approx(
        (full.value, full.low, full.high, full.se)
    )
    # a figure whose evaluation panel has no interval at any size is still drawn
    collection = pd.DataFrame([{"split": "collection", "tokens": 1000, "stability": np.nan}])
    table = pd.concat([collection, curve.assign(width=np.nan)], ignore_index=True)
    needed = {
        "stability": stability_needed(TOKENS, np.full(4, np.nan), 0.7),
        "top-1 effect interval width": width_needed(curve.tokens, curve.se * np.nan, 2.0),
    }
    assert plot_power(tmp_path / "p.png", table, needed, (0.7, 2.0), "tokens", "t").is_file()
