"""The split rules: disjoint, complete, deterministic pools; halves independent of pools."""

from __future__ import annotations

import numpy as np
import pytest

from modularity.data.corpora import Document
from modularity.data.image_sources import load_image_set
from modularity.data.splits import (
    HELD_OUT_TRAIN_IMAGES,
    IMAGE_SPLITS,
    TEXT_SPLITS,
    document_half,
    image_halves,
    image_split_indices,
    split_documents,
    split_indices,
)

FRACTIONS = {"train": 0.8, "collect": 0.1, "evaluate": 0.1}


def _docs(n: int) -> list[Document]:
    return [Document(f"doc-{i}", f"text {i}") for i in range(n)]


def test_split_documents_is_disjoint_complete_and_deterministic() -> None:
    docs = _docs(2000)
    splits = split_documents(docs)
    assert list(splits) == list(TEXT_SPLITS)
    ids = [d.doc_id for part in splits.values() for d in part]
    assert sorted(ids) == sorted(d.doc_id for d in docs)
    assert splits == split_documents(docs)
    assert 900 < len(splits["train"]) < 1100  # ~50%, binomial spread (sd 22)
    assert 30 < len(splits["reference_evaluate"]) < 170  # ~5% (sd 10)
    assert splits != split_documents(docs, seed=1)


def test_split_of_a_document_ignores_the_rest_of_the_list() -> None:
    docs = _docs(300)
    where = {d.doc_id: s for s, part in split_documents(docs, seed=7).items() for d in part}
    shuffled_subset = list(reversed(docs[::3]))
    for split, part in split_documents(shuffled_subset, seed=7).items():
        for doc in part:
            assert where[doc.doc_id] == split


def test_split_documents_keeps_input_order() -> None:
    docs = _docs(100)
    for part in split_documents(docs, {"a": 0.5, "b": 0.5}).values():
        assert part == sorted(part, key=docs.index)


@pytest.mark.parametrize(
    "fractions",
    [{"train": 0.8, "test": 0.1}, {"train": 1.2, "test": -0.2}, {}],
)
def test_split_documents_rejects_bad_fractions(fractions: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="fractions"):
        split_documents(_docs(3), fractions)


def test_zero_fraction_split_stays_empty() -> None:
    splits = split_documents(_docs(500), {"train": 0.5, "none": 0.0, "test": 0.5})
    assert splits["none"] == []
    assert len(splits["train"]) + len(splits["test"]) == 500


def _check_split(labels: np.ndarray, splits: dict[str, np.ndarray], fractions: dict) -> None:
    assert list(splits) == list(fractions)
    everything = np.concatenate(list(splits.values()))
    np.testing.assert_array_equal(np.sort(everything), np.arange(len(labels)))  # disjoint+complete
    for name, indices in splits.items():
        assert indices.dtype == np.int64
        for cls in np.unique(labels):
            expected = fractions[name] * np.sum(labels == cls)
            assert abs(np.sum(labels[indices] == cls) - expected) < 1, (name, cls)


def test_split_indices_on_digits_is_stratified_and_deterministic() -> None:
    labels = load_image_set("digits").labels
    splits = split_indices(labels, FRACTIONS, seed=0)
    _check_split(labels, splits, FRACTIONS)
    again = split_indices(labels, FRACTIONS, seed=0)
    for name in FRACTIONS:
        np.testing.assert_array_equal(splits[name], again[name])
    other = split_indices(labels, FRACTIONS, seed=1)
    assert not np.array_equal(splits["collect"], other["collect"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_split_indices_small_uneven_classes(seed: int) -> None:
    labels = np.array([3] * 7 + [0] * 11 + [9] * 1 + [4] * 2)
    fractions = {"a": 0.5, "b": 0.3, "c": 0.2}
    splits = split_indices(labels, fractions, seed)
    _check_split(labels, splits, fractions)


def test_split_indices_rotates_rounding_across_classes() -> None:
    labels = np.repeat(np.arange(10), 3)
    splits = split_indices(labels, {"a": 0.5, "b": 0.5}, seed=0)
    assert abs(len(splits["a"]) - len(splits["b"])) <= 1


def test_split_indices_rejects_bad_fractions() -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        split_indices(np.zeros(4, dtype=np.int64), {"a": 0.5, "b": 0.6}, seed=0)
    with pytest.raises(ValueError, match="one-dimensional"):
        split_indices(np.zeros((2, 2), dtype=np.int64), {"a": 1.0}, seed=0)


def test_halves_are_balanced_and_independent_of_pools() -> None:
    docs = _docs(4000)
    pools = split_documents(docs)
    for pool in ("collect", "reference_collect"):
        halves = [document_half(d.doc_id, seed=0) for d in pools[pool]]
        assert abs(np.mean(halves) - 0.5) < 0.06, pool  # sd ~0.018 and ~0.025
    assert [document_half(d.doc_id, 1) for d in docs] != [document_half(d.doc_id, 0) for d in docs]
    halves = image_halves(10_000, seed=0)
    assert set(np.unique(halves)) == {0, 1} and abs(halves.mean() - 0.5) < 0.02
    np.testing.assert_array_equal(halves, image_halves(10_000, seed=0))


def test_images_without_an_official_split_use_image_splits() -> None:
    labels = load_image_set("digits").labels
    for name in IMAGE_SPLITS:
        expected = split_indices(labels, IMAGE_SPLITS, seed=0)[name]
        np.testing.assert_array_equal(image_split_indices(labels, None, name), expected)


def test_official_split_holds_out_stratified_train_images_for_collection() -> None:
    """Fashion-MNIST's shape without its pixels: 6,000 train and 1,000 test images a class."""
    labels = np.concatenate([np.repeat(np.arange(10), 6000), np.repeat(np.arange(10), 1000)])
    origin = np.array(["train"] * 60_000 + ["test"] * 10_000)
    pools = {name: image_split_indices(labels, origin, name) for name in IMAGE_SPLITS}
    assert len(pools["collect"]) == HELD_OUT_TRAIN_IMAGES
    np.testing.assert_array_equal(np.bincount(labels[pools["collect"]]), [1000] * 10)
    np.testing.assert_array_equal(np.bincount(labels[pools["evaluate"]]), [1000] * 10)
    assert (origin[pools["collect"]] == "train").all() and (origin[pools["train"]] == "train").all()
    assert (origin[pools["evaluate"]] == "test").all()
    everything = np.sort(np.concatenate(list(pools.values())))
    np.testing.assert_array_equal(everything, np.arange(70_000))  # disjoint and complete


def test_unknown_split_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="'test'.*train, collect, evaluate"):
        image_split_indices(np.zeros(4, dtype=np.int64), None, "test")
