"""Verdicts: the four labels mean what they say, Holm's adjustment equals its definition,
and bad settings stop with one line."""

import numpy as np
import pytest
from omegaconf import OmegaConf

from modularity.algorithms.unit_intervals import Estimate
from modularity.errors import ConfigError
from modularity.verdicts import (
    EFFECT,
    INCONCLUSIVE,
    NULL,
    REVERSE,
    STABLE,
    UNSTABLE,
    VerdictConfig,
    check_verdict_config,
    holm,
    selection_flag,
    verdict,
)


def label(value: float, se: float, df: float = 20.0, margin: float = 1.0) -> str:
    est = Estimate(value, value - 2.086 * se, value + 2.086 * se, 21, 21, se, df)
    return verdict(est.value, est.p_value(), est.p_within(margin))


def test_labels_follow_the_interval():
    assert label(3.0, 0.5) == EFFECT  # [1.96, 4.04]
    assert label(-3.0, 0.5) == REVERSE
    assert label(0.1, 0.2) == NULL  # [-0.32, 0.52] inside +-1
    assert label(0.5, 0.5) == INCONCLUSIVE  # [-0.54, 1.54]: neither
    assert label(0.3, 0.1) == EFFECT  # small but excludes 0: an effect, not a null
    nan = float("nan")
    assert verdict(2.0, nan, nan) == INCONCLUSIVE  # no interval


def test_holm_equals_its_definition():
    p = np.array([0.01, 0.04, 0.03, np.nan, 0.005])
    # sorted finite: 0.005, 0.01, 0.03, 0.04 (m = 4): 4*0.005, 3*0.01, 2*0.03, 1*0.04,
    # then running maxima
    expected = [0.03, 0.06, 0.06, np.nan, 0.02]
    assert np.allclose(holm(p), expected, equal_nan=True)
    assert holm([0.9, 0.8]).tolist() == [1.0, 1.0]


def test_holm_turns_borderline_effects_inconclusive():
    values, p = [2.0, 2.5, 3.0], [0.04, 0.03, 0.001]  # Holm: 0.06, 0.06, 0.003
    raw = [verdict(v, q, 1.0) for v, q in zip(values, p)]
    corrected = [verdict(v, q, 1.0) for v, q in zip(values, holm(p))]
    assert raw == [EFFECT] * 3
    assert corrected == [INCONCLUSIVE, INCONCLUSIVE, EFFECT]


def test_stability_flag():
    assert selection_flag(0.69, 0.7) == UNSTABLE
    assert selection_flag(0.7, 0.7) == STABLE
    assert selection_flag(float("nan"), 0.7) == UNSTABLE


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("null_margin_pp", 0.0, "verdict.null_margin_pp=0.0 must be > 0"),
        ("null_margin_nats", -1.0, "verdict.null_margin_nats=-1.0 must be > 0"),
        ("min_stability", 1.5, r"verdict.min_stability=1.5 is outside \(0, 1\]"),
    ],
)
def test_bad_settings_are_one_line(key, value, message):
    cfg = OmegaConf.structured(VerdictConfig)
    cfg[key] = value
    with pytest.raises(ConfigError, match=message):
        check_verdict_config(cfg)
