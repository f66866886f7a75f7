"""``CollectedStats`` to and from the cache's flat tensors, and the errors on bad entries."""

import pytest
import torch

from modularity.neurons.stats import CollectedStats, NeuronStats


def random_collected(seed: int = 0, empty_half: bool = False) -> CollectedStats:
    gen = torch.Generator().manual_seed(seed)

    def stats(count: float) -> NeuronStats:
        values = {
            name: torch.rand(3, 5, generator=gen, dtype=torch.float64)
            for name in ("mean", "std", "abs_mean", "rms", "freq", "mad", "mad_error")
        }
        if count == 0:
            values = {
                name: torch.full((3, 5), float("nan"), dtype=torch.float64) for name in values
            }
        return NeuronStats(count=torch.full((3, 5), count, dtype=torch.float64), **values)

    return CollectedStats(
        full=stats(70.0),
        halves=(stats(70.0 if empty_half else 30.0), stats(0.0 if empty_half else 40.0)),
        method="one-pass",
        max_relative_mad_error=3e-5,
        n_items=(7, 0) if empty_half else (3, 4),
        n_tokens=(70, 0) if empty_half else (30, 40),
    )


@pytest.mark.parametrize("empty_half", [False, True])
def test_round_trip(empty_half):
    stats = random_collected(empty_half=empty_half)
    tensors = stats.to_tensors()
    assert "full/mad" in tensors and "half1/count" in tensors
    back = CollectedStats.from_tensors(tensors)
    assert (back.method, back.max_relative_mad_error) == ("one-pass", 3e-5)
    assert (back.n_items, back.n_tokens) == (stats.n_items, stats.n_tokens)
    for mine, theirs in zip((back.full, *back.halves), (stats.full, *stats.halves)):
        for name, value in mine.to_tensors().items():
            torch.testing.assert_close(value, theirs.to_tensors()[name], equal_nan=True)


def test_mad_error_defaults_to_exact():
    stats = random_collected().full
    fields = {k: v for k, v in stats.to_tensors().items() if k != "mad_error"}
    assert (NeuronStats(**fields).mad_error == 0).all()


@pytest.mark.parametrize(
    "spoil, message",
    [
        (lambda t: t.pop("half1/mad"), "lack 'half1/mad'"),
        (lambda t: t.pop("meta/method"), "lack 'meta/method'"),
        (lambda t: t.update({"half0/std": torch.zeros(3, 4)}), "'half0/std' have shape"),
        (lambda t: t.update({"meta/n_tokens": torch.zeros(3)}), "'meta/n_tokens' have shape"),
        (lambda t: t["full/mad"].__setitem__((1, 2), float("nan")), "'full/mad' hold NaN"),
        (lambda t: t["half0/mad_error"].__setitem__((0, 0), float("inf")), "'half0/mad_error'"),
        (lambda t: t["full/count"].__setitem__((0, 0), float("nan")), "'full/count' are not"),
        (lambda t: t.update({"meta/method": torch.tensor(7)}), "'meta/method' is 7"),
    ],
)
def test_bad_entries_are_refused_with_the_name(spoil, message):
    tensors = random_collected().to_tensors()
    spoil(tensors)
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        CollectedStats.from_tensors(tensors)
