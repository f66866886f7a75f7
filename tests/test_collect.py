"""``collect_statistics`` through Lightning on a tiny model, against numpy on the hooked
activations: one pass, the exact fallback, halves, padding, batching, sharding."""

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Dataset

from modularity.collect import ItemShard, collect_statistics, pilot_items, plan_for
from modularity.config import load_model_config
from modularity.models.loading import load_model
from modularity.neurons import memory
from modularity.neurons.masks import neuron_hooks

TRAINER = OmegaConf.create(
    {"accelerator": "cpu", "devices": 1, "strategy": "auto", "precision": "32-true"}
    | {"enable_progress_bar": False}
)
FIELDS = ("count", "mean", "std", "abs_mean", "rms", "freq", "mad", "mad_error")


class Blocks(Dataset):
    """Token blocks with a half label and an attention mask (the last ``pad[i]`` padded)."""

    def __init__(self, n: int, length: int = 24, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(3, 259, (n, length), generator=gen)
        self.half = torch.randint(0, 2, (n,), generator=gen)
        self.mask = torch.ones(n, length, dtype=torch.long)
        for i in range(0, n, 5):
            self.mask[i, length - 1 - i % 7 :] = 0

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "attention_mask": self.mask[i], "half": self.half[i]}


@pytest.fixture(scope="module")
def loaded():
    return load_model(load_model_config("tiny_llama"))


def hooked(loaded, data: Blocks, items) -> list[np.ndarray]:
    """Every layer's kept activations of ``items``, float64 ``[tokens, neurons]``."""
    layers: dict[int, list[torch.Tensor]] = {}
    with torch.inference_mode():
        for i in items:
            row = data[i]
            keep = row["attention_mask"].bool()
            with neuron_hooks(loaded.adapter, lambda k, x: layers.setdefault(k, []).append(x[0])):
                loaded.model.base_model(
                    input_ids=row["input_ids"][None], attention_mask=row["attention_mask"][None]
                )
            for k in layers:
                layers[k][-1] = layers[k][-1][keep]
    return [torch.cat(layers[k]).double().numpy() for k in sorted(layers)]


def check(stats, acts: list[np.ndarray], exact: bool) -> None:
    for k, x in enumerate(acts):
        mean = x.mean(0)
        np.testing.assert_allclose(stats.mean[k], mean, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(stats.std[k], x.std(0), rtol=1e-5)
        np.testing.assert_allclose(stats.abs_mean[k], np.abs(x).mean(0), rtol=1e-5)
        np.testing.assert_allclose(stats.rms[k], np.sqrt((x**2).mean(0)), rtol=1e-5)
        np.testing.assert_allclose(stats.freq[k], (x > 0).mean(0))
        mad = np.abs(x - mean).mean(0)
        slack = 1e-5 * mad if exact else stats.mad_error[k].numpy() + 1e-6 * mad
        assert (np.abs(stats.mad[k].numpy() - mad) <= slack).all()
        assert stats.count[k, 0] == x.shape[0]


@pytest.mark.parametrize(
    ("tolerance", "keep", "method"),
    [
        (1e-4, True, "kept"),
        (1e-4, False, "one-pass"),
        pytest.param(0.0, False, "two-pass", marks=pytest.mark.slow),
        pytest.param(1e-30, False, "two-pass", marks=pytest.mark.slow),
    ],
)
def test_collection_matches_numpy_per_half(loaded, tolerance, keep, method):
    data = Blocks(40)
    stats = collect_statistics(
        loaded,
        DataLoader(data, batch_size=6),
        TRAINER,
        mad_tolerance=tolerance,
        keep_activations=keep,
    )
    assert stats.method == method
    exact = stats.method != "one-pass"
    assert stats.max_relative_mad_error <= tolerance or exact
    check(stats.full, hooked(loaded, data, range(40)), exact)
    for h in (0, 1):
        chosen = (data.half == h).nonzero()[:, 0].tolist()
        check(stats.halves[h], hooked(loaded, data, chosen), exact)
        assert stats.n_items[h] == len(chosen)
        assert stats.n_tokens[h] == int(data.mask[chosen].sum())


@pytest.mark.slow
def test_collection_does_not_depend_on_batching_or_on_keeping_the_pilot(loaded, monkeypatch):
    data = Blocks(50, seed=1)

    def budget(batch_size: int, room_items: int) -> int:
        """The streamed state, plus room for ``room_items`` items' activations."""
        loader = DataLoader(data, batch_size=batch_size)
        plan = plan_for(loaded, loader, TRAINER, 2**40, True, keep=False)
        item = plan.kept_bytes // plan.pilot_items
        return plan.state_bytes - plan.kept_bytes + room_items * item

    def run(batch_size: int, room_items: int):
        loader, room = DataLoader(data, batch_size=batch_size), budget(batch_size, room_items)
        plan = plan_for(loaded, loader, TRAINER, room, True, keep=False)
        # Room for the small pilot's 8 items only: it is kept, or without room recomputed.
        assert plan.pilot_items == 8 and (plan.kept_bytes > 0) == (room_items > 0)
        return collect_statistics(
            loaded, loader, TRAINER, memory_budget=room, keep_activations=False
        )

    runs = [run(size, room_items=8) for size in (1, 7)]
    # A batch streamed one item at a time (work for one item's activations only), the pilot
    # computed again by the main pass.
    item_bytes = 24 * loaded.adapter.n_neurons * memory.STREAM_WORK_BYTES
    monkeypatch.setattr(memory, "WORK_BYTES", item_bytes)
    runs.append(run(4, room_items=0))
    for other in runs[1:]:
        assert other.method == runs[0].method == "one-pass"
        for mine, theirs in zip((other.full, *other.halves), (runs[0].full, *runs[0].halves)):
            for name in FIELDS:
                torch.testing.assert_close(
                    getattr(mine, name), getattr(theirs, name), rtol=1e-12, atol=1e-15
                )


def test_shards_split_items_without_repeats(monkeypatch):
    items = list(range(0, 30, 3))
    shards = []
    for rank in range(3):
        monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
        monkeypatch.setattr(torch.distributed, "get_rank", lambda rank=rank: rank)
        monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 3)
        shards.append(list(ItemShard(items)))
    assert sorted(sum(shards, [])) == items


def test_pilot_items_are_spread_and_bounded():
    for n, count in ((1, 8), (5, 8), (40, 32), (200, 50), (5000, 64)):
        chosen = pilot_items(n, count)
        assert len(chosen) == min(n, count)
        assert chosen == sorted(set(chosen)) and chosen[0] >= 0 and chosen[-1] < n
        gaps = np.diff([0, *chosen, n])
        assert gaps.max() <= 3 * n / len(chosen)  # spread over the whole data
