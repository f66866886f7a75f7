"""Offline image sets: shapes, labels, superclasses, clear errors, stratified splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modularity.data import image_sources
from modularity.data.image_sources import (
    ImageSetUnavailable,
    available_image_sets,
    load_image_set,
    split_indices,
)
from modularity.errors import ModularityError

FASHION_INSTALLED = (image_sources.FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file()
needs_fashion = pytest.mark.skipif(
    not FASHION_INSTALLED,
    reason="Debian dataset-fashion-mnist not installed (apt-get install dataset-fashion-mnist)",
)
FRACTIONS = {"train": 0.8, "collect": 0.1, "evaluate": 0.1}


def test_registry() -> None:
    assert available_image_sets() == ["digits", "fashion_mnist"]


def test_digits_shapes_and_labels() -> None:
    digits = load_image_set("digits")
    assert digits.images.shape == (1797, 1, 8, 8)
    assert digits.images.dtype == np.float32
    assert digits.images.min() == 0.0 and digits.images.max() == 1.0
    assert digits.labels.dtype == np.int64
    assert digits.labels.shape == (1797,)
    assert set(np.unique(digits.labels)) == set(range(10))
    assert digits.class_names == tuple("0123456789")
    assert digits.coarse == {}
    assert digits.origin is None
    with pytest.raises(ValueError, match="no superclasses"):
        digits.coarse_labels()


def test_loads_are_equal_and_read_only() -> None:
    first, second = load_image_set("digits"), load_image_set("digits")
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.labels, second.labels)
    with pytest.raises(ValueError, match="read-only"):
        first.images[0, 0, 0, 0] = 1.0
    first.coarse["mine"] = (0,)
    assert "mine" not in load_image_set("digits").coarse


@needs_fashion
def test_fashion_mnist_shapes_origin_and_superclasses() -> None:
    fashion = load_image_set("fashion_mnist")
    assert fashion.images.shape == (70000, 1, 28, 28)
    assert fashion.images.dtype == np.float32
    assert fashion.images.min() >= 0.0 and fashion.images.max() <= 1.0
    assert fashion.labels.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(fashion.labels), [7000] * 10)
    assert fashion.class_names[0] == "T-shirt/top" and fashion.class_names[9] == "Ankle boot"
    assert fashion.origin is not None
    assert (fashion.origin[:60000] == "train").all() and (fashion.origin[60000:] == "test").all()
    fine_ids = sorted(i for ids in fashion.coarse.values() for i in ids)
    assert fine_ids == list(range(10)), "superclasses must partition the classes"
    coarse = fashion.coarse_labels()
    footwear = list(fashion.coarse).index("footwear")
    assert set(fashion.labels[coarse == footwear]) == {5, 7, 9}


def test_missing_fashion_mnist_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(image_sources, "FASHION_MNIST_DIR", Path("/nonexistent/fashion-mnist"))
    with pytest.raises(ImageSetUnavailable, match="apt-get install dataset-fashion-mnist"):
        load_image_set("fashion_mnist")
    assert issubclass(ImageSetUnavailable, ModularityError)


def test_unknown_image_set_names_valid_choices() -> None:
    with pytest.raises(ValueError, match="'cifar100'.*digits, fashion_mnist"):
        load_image_set("cifar100")


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
