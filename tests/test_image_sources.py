"""Offline image sets: shapes, labels, superclasses, clear errors, stratified splits."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from modularity.data.image_classes import (
    CIFAR100_SUPERCLASSES,
    FASHION_MNIST_SUPERCLASSES,
    image_classes,
)
from modularity.data.image_sources import (
    ImageSetUnavailable,
    load_image_set,
)
from modularity.data.images import class_ids
from modularity.data.system_paths import FASHION_MNIST_DIR
from modularity.errors import ModularityError

FASHION_INSTALLED = (FASHION_MNIST_DIR.path / "train-images-idx3-ubyte.gz").is_file()
needs_fashion = pytest.mark.skipif(
    not FASHION_INSTALLED,
    reason="Debian dataset-fashion-mnist not installed (apt-get install dataset-fashion-mnist)",
)


def test_unknown_image_set_names_the_registered_ones() -> None:
    with pytest.raises(ModularityError, match="'cifar'.*digits.*fashion_mnist"):
        load_image_set("cifar")


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
    footwear = OmegaConf.create({"name": "footwear", "classes": ["footwear"]})
    assert class_ids(footwear, fashion.class_names, fashion.coarse) == {5, 7, 9}


def test_missing_fashion_mnist_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FASHION_MNIST_DIR.env_var, "/nonexistent/fashion-mnist")
    with pytest.raises(ImageSetUnavailable, match="apt-get install dataset-fashion-mnist"):
        load_image_set("fashion_mnist")
    assert issubclass(ImageSetUnavailable, ModularityError)


def test_unknown_image_set_names_valid_choices() -> None:
    with pytest.raises(ValueError, match="'cifar100'.*digits, fashion_mnist"):
        load_image_set("cifar100")


def test_class_constants_match_the_loaded_labels() -> None:
    for name in ("digits", *(["fashion_mnist"] if FASHION_INSTALLED else [])):
        loaded, constants = load_image_set(name), image_classes(name)
        assert loaded.class_names == constants.class_names
        assert loaded.coarse == dict(constants.superclasses)
    assert list(FASHION_MNIST_SUPERCLASSES) == ["tops", "bottoms", "dresses", "footwear", "bags"]
    assert len(CIFAR100_SUPERCLASSES) == 20 and image_classes("cifar100").superclasses == {}


def test_cifar20_task_configs_name_the_cifar100_superclasses() -> None:
    from modularity.config import group_options, load_task_config

    names = [n for n in group_options("task") if n.startswith("cifar20-")]
    classes = {c for n in names for c in load_task_config(n).classes}
    assert classes == set(CIFAR100_SUPERCLASSES)
