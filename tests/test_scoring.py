"""Scorer formulas against numpy, and selection counts."""

import numpy as np
import pytest
import torch

from modularity.errors import ConfigError
from modularity.neurons.scoring import register_scorer, score_neurons, scorer_names
from modularity.neurons.selection import select_top_fraction
from modularity.neurons.stats import NeuronStats


def random_stats(seed: int) -> NeuronStats:
    gen = torch.Generator().manual_seed(seed)
    fields = {
        n: torch.rand(3, 10, generator=gen, dtype=torch.float64)
        for n in ("count", "std", "abs_mean", "rms", "freq", "mad")
    }
    fields["mean"] = torch.randn(3, 10, generator=gen, dtype=torch.float64)
    return NeuronStats(**fields)


@pytest.mark.parametrize(
    "scorer,stat",
    [("mad", "mad"), ("abs", "abs_mean"), ("std", "std"), ("rms", "rms"), ("freq", "freq")],
)
def test_ratio_scorers(scorer, stat):
    task, ref = random_stats(0), random_stats(1)
    got = score_neurons(task, ref, scorer, eps=1e-3)
    want = getattr(task, stat).numpy() / (getattr(ref, stat).numpy() + 1e-3)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)


def test_mean_scorer_is_absolute_difference():
    task, ref = random_stats(0), random_stats(1)
    np.testing.assert_allclose(
        score_neurons(task, ref, "mean").numpy(), np.abs(task.mean.numpy() - ref.mean.numpy())
    )


def test_random_scorer_is_seeded_and_uninformative():
    task, ref = random_stats(0), random_stats(1)
    a, b = score_neurons(task, ref, "random", seed=3), score_neurons(ref, task, "random", seed=3)
    assert torch.equal(a, b)
    assert not torch.equal(a, score_neurons(task, ref, "random", seed=4))


def test_unknown_scorer_names_valid_ones():
    with pytest.raises(ConfigError, match="valid: " + ", ".join(scorer_names())):
        score_neurons(random_stats(0), random_stats(1), "variance")


def test_a_registered_scorer_is_selectable_from_the_config(make_cfg):
    """A scorer declared in one place (its module) needs no schema or YAML edit."""
    from modularity.infra.validate import check_config
    from modularity.neurons import scoring

    @register_scorer("median_shift_test")
    def shift(task, reference, eps, seed):
        return (task.mean - reference.mean) / (reference.std + eps)

    try:
        check_config(make_cfg("scoring.scorer=median_shift_test"))
        task, ref = random_stats(0), random_stats(1)
        got = score_neurons(task, ref, "median_shift_test", eps=1e-6)
        assert torch.allclose(got, (task.mean - ref.mean) / (ref.std + 1e-6))
        with pytest.raises(ConfigError, match="unknown scorer 'median_shfit'"):
            check_config(make_cfg("scoring.scorer=median_shfit"))
    finally:
        scoring._SCORERS.pop("median_shift_test")


def test_layer_scope_takes_top_fraction_of_each_layer():
    scores = torch.arange(30, dtype=torch.float64).view(3, 10)
    mask = select_top_fraction(scores, 0.2)
    assert mask.sum(1).tolist() == [2, 2, 2]
    assert mask[0].nonzero().flatten().tolist() == [8, 9]


def test_global_scope_ranks_all_layers_together():
    scores = torch.arange(30, dtype=torch.float64).view(3, 10)
    mask = select_top_fraction(scores, 0.2, scope="global")
    assert mask.sum(1).tolist() == [0, 0, 6]


def test_layer_subset_selects_only_there():
    scores = torch.rand(4, 10, dtype=torch.float64)
    mask = select_top_fraction(scores, 0.5, layers=[1, 3])
    assert mask.sum(1).tolist() == [0, 5, 0, 5]
    mask = select_top_fraction(scores, 0.5, scope="global", layers=[1, 3])
    assert mask.sum() == 10 and mask[[0, 2]].sum() == 0


@pytest.mark.parametrize("fraction", [0, -0.1, 1.5])
def test_bad_fraction(fraction):
    with pytest.raises(ConfigError, match=str(fraction)):
        select_top_fraction(torch.rand(2, 5), fraction)


def test_layer_out_of_range_names_the_valid_range():
    with pytest.raises(ConfigError, match=r"\[7\].*0\.\.3"):
        select_top_fraction(torch.rand(4, 5), 0.1, layers=[1, 7])
