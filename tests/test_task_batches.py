"""Every batch carries what the statistics need beside the inputs: each item's evaluation
unit (document or image) and its half, as long tensors."""

from __future__ import annotations

import numpy as np
import torch

from modularity.config import load_model_config, load_task_config
from modularity.data.images import image_split
from modularity.data.tasks import image_loader, text_loader, text_sample
from modularity.models.loading import load_model


def test_image_batches_carry_image_index_and_half():
    task = load_task_config("digits-3")
    loader, n_units = image_loader(task, "collect", None, batch_size=16)
    batches = list(loader)
    batch = batches[0]
    assert set(batch) == {"pixel_values", "labels", "unit", "half"}
    assert batch["unit"].dtype == batch["half"].dtype == torch.long
    units = torch.cat([b["unit"] for b in batches])
    halves = torch.cat([b["half"] for b in batches])
    assert len(set(units.tolist())) == len(units)  # one unit per image
    assert set(halves.tolist()) == {0, 1}
    images = image_split(task, "collect")
    np.testing.assert_array_equal(units.numpy(), images.unit)
    assert n_units > units.max()
    evaluate = image_split(task, "evaluate")
    assert not set(images.unit) & set(evaluate.unit)  # units index the whole image set


def test_an_images_half_does_not_depend_on_the_split_or_filter():
    everything = image_split(load_task_config("digits"), "collect")
    half_of = dict(zip(everything.unit, everything.half))
    three = image_split(load_task_config("digits-3"), "collect")
    assert all(half_of[u] == h for u, h in zip(three.unit, three.half))


def test_reference_roles_read_the_task_pools_for_images():
    task = load_task_config("digits")
    for role, pool in (("reference_collect", "collect"), ("reference_evaluate", "evaluate")):
        np.testing.assert_array_equal(image_split(task, role).unit, image_split(task, pool).unit)


def test_text_batches_carry_document_unit_and_half():
    loaded = load_model(load_model_config("tiny_lm_text"))
    task = load_task_config("chemistry")
    blocks = text_sample(task, "collect", loaded.tokenizer, 64, 4096)
    batch = next(iter(text_loader(blocks, batch_size=8)))
    assert set(batch) == {"input_ids", "unit", "half"}
    assert batch["input_ids"].shape == (8, 64)
    assert batch["unit"].dtype == batch["half"].dtype == torch.long
    assert batch["unit"].tolist() == sorted(batch["unit"].tolist())
