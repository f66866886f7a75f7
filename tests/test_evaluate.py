"""Evaluation metrics against a direct computation: per-unit sums of top-1, top-10, loss and
the skip metrics of a causal LM, with padding, several blocks per unit and chunked scoring."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from tiny_models import tiny_config
from torch.utils.data import DataLoader, Dataset

from modularity import evaluate as evaluate_module
from modularity.evaluate import LMHead, evaluate
from modularity.modality import TEXT
from modularity.models.loading import load_model

TRAINER = OmegaConf.create(
    {"accelerator": "cpu", "devices": 1, "strategy": "auto", "precision": "32-true"}
    | {"enable_progress_bar": False}
)


class Padded(Dataset):
    def __init__(self, ids, mask, unit):
        self.ids, self.mask, self.unit = ids, mask, unit

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": self.mask[i], "unit": self.unit[i]}


def direct(model, ids, mask, unit, n_units, frequent):
    """The per-unit sums, position by position, from the model's logits."""
    num = {m: torch.zeros(n_units, dtype=torch.float64) for m in TEXT.measures}
    den = {m: torch.zeros(n_units, dtype=torch.float64) for m in TEXT.measures}
    with torch.inference_mode():
        logits = model(input_ids=ids, attention_mask=mask).logits.double()
    for b in range(ids.shape[0]):
        for t in range(ids.shape[1] - 1):
            if not (mask[b, t] and mask[b, t + 1]):
                continue
            target, row, u = ids[b, t + 1], logits[b, t], int(unit[b])
            order = row.argsort(descending=True)
            hit1, hit10 = float(order[0] == target), float(target in order[:10])
            loss = float(F.cross_entropy(row[None], target[None]))
            rare = float(target not in frequent)
            for m, value, weight in (
                ("top1", hit1, 1.0),
                ("top10", hit10, 1.0),
                ("loss", loss, 1.0),
                ("skip_top1", hit1, rare),
                ("skip_top10", hit10, rare),
            ):
                num[m][u] += value * weight
                den[m][u] += weight
    return num, den


def padded_batches():
    """Six items of 17 tokens in three units, two of them padded."""
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 200, (6, 17), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0
    mask[4, 3:] = 0
    unit = torch.tensor([0, 0, 1, 2, 2, 2])
    return ids, mask, unit


# gemma2: its logits are soft-capped after the head (a cap small enough to matter here).
FAMILY_SETTINGS = {
    "llama": {},
    "opt": {},
    "gemma2": {"hf_config": {"final_logit_softcapping": 0.5}},
}


@pytest.mark.parametrize("family", sorted(FAMILY_SETTINGS))
@pytest.mark.parametrize("rows_per_chunk", [1, 5, None])  # None: all of a batch at once
def test_chunked_metrics_equal_the_full_logits(family, rows_per_chunk, monkeypatch):
    loaded = load_model(tiny_config(family, FAMILY_SETTINGS[family]))
    assert LMHead.checked(loaded.model, {"input_ids": torch.arange(3, 9)[None]}).split
    if rows_per_chunk is not None:  # chunks then cut through items and batches
        monkeypatch.setattr(evaluate_module, "ELEMENTS_PER_CHUNK", 259 * rows_per_chunk)
    ids, mask, unit = padded_batches()
    frequent = torch.tensor([5, 17, 42, 99])
    loader = DataLoader(Padded(ids, mask, unit), batch_size=4)
    sums = evaluate(loaded, loader, 3, TRAINER, frequent)
    num, den = direct(loaded.model, ids, mask, unit, 3, frequent)
    for m in TEXT.measures:
        torch.testing.assert_close(sums.num[m], num[m], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(sums.den[m], den[m], rtol=0, atol=0)
    assert sums.den["top1"].sum() == 4 * 16 + 11 + 2  # positions with a valid target


def test_a_forward_that_changes_the_logits_after_the_head_is_scored_from_its_logits():
    """A forward that changes the logits after the head: the split would be wrong, so the
    full logits are scored (the check runs on the first batch)."""
    loaded = load_model(tiny_config("llama", {"seed": 2}))
    ids, mask, unit = padded_batches()
    frequent = torch.tensor([5, 17])

    def shuffle_logits(module, args, kwargs, output):
        output.logits = output.logits.flip(-1)
        return output

    handle = loaded.model.register_forward_hook(shuffle_logits, with_kwargs=True)
    try:
        assert not LMHead.checked(loaded.model, {"input_ids": torch.arange(3, 9)[None]}).split
        sums = evaluate(
            loaded, DataLoader(Padded(ids, mask, unit), batch_size=4), 3, TRAINER, frequent
        )
        num, _ = direct(loaded.model, ids, mask, unit, 3, frequent)
    finally:
        handle.remove()
    for m in TEXT.measures:
        torch.testing.assert_close(sums.num[m], num[m], rtol=1e-5, atol=1e-6)


def test_the_loop_builds_no_key_value_cache_and_leaves_the_config_as_it_was():
    """A causal LM's config asks for a key/value cache (for generation); the loop's
    forwards build none, and the config is as it was afterwards (an export keeps it)."""
    loaded = load_model(tiny_config("llama"))
    assert loaded.model.config.use_cache
    caches = []
    handle = loaded.model.base_model.register_forward_hook(
        lambda module, args, output: caches.append(output.past_key_values)
    )
    ids, mask, unit = padded_batches()
    try:
        evaluate(loaded, DataLoader(Padded(ids, mask, unit), batch_size=4), 3, TRAINER)
    finally:
        handle.remove()
    assert len(caches) >= 2 and all(cache is None for cache in caches)
    assert loaded.model.config.use_cache
