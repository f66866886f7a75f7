"""Labelled image sets that ship with installed software, for offline vision experiments.

Modularity is also measured on small vision models, where a "task" is a class or a
superclass (the Fashion-MNIST analogue of CIFAR-100's 20 superclasses).  Both sets load
without network access:

* ``digits``: scikit-learn's bundled 8x8 handwritten digits (1_797 images, 10 classes).
  It has no official train/test split, so ``origin`` is ``None``.
* ``fashion_mnist``: Debian's ``dataset-fashion-mnist`` (70_000 28x28 images, 10 classes,
  5 superclasses); ``origin`` marks the official 60_000 "train" and 10_000 "test" images,
  which ``modularity.data.splits.image_split_indices`` turns into train/collect/evaluate.

Class names and superclasses are constants in ``modularity.data.image_classes``.  Images are
float32 in [0, 1] with shape ``[n, channels, height, width]``.  Loaded arrays are
cached per process and read-only, so callers must copy before modifying them.
"""

from __future__ import annotations

import functools
import gzip
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from modularity.data.corpora import DataUnavailable
from modularity.data.image_classes import IMAGE_CLASSES
from modularity.data.system_paths import FASHION_MNIST_DIR
from modularity.errors import invalid_choice


class ImageSetUnavailable(DataUnavailable):
    """An image set's source files are missing; the message says what to install."""


@dataclass(frozen=True, eq=False)
class ImageSet:
    """Images with fine labels, their names, optional superclasses and official split.

    ``coarse`` maps a superclass name to its fine class ids (empty when the set has no
    natural grouping).  ``origin`` holds "train"/"test" per image where the source defines
    an official split, else ``None``.
    """

    images: np.ndarray  # [n, channels, height, width] float32 in [0, 1]
    labels: np.ndarray  # [n] int64 fine class ids
    class_names: tuple[str, ...]
    coarse: dict[str, tuple[int, ...]] = field(default_factory=dict)
    origin: np.ndarray | None = None


def _read_only(*arrays: np.ndarray) -> None:
    for array in arrays:
        array.setflags(write=False)


@functools.lru_cache(maxsize=1)
def _digits() -> ImageSet:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None, :, :]
    labels = bunch.target.astype(np.int64)
    _read_only(images, labels)
    return ImageSet(images, labels, IMAGE_CLASSES["digits"].class_names)


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """Read a gzipped IDX file (big-endian header: magic, then one int32 per dimension)."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = magic & 0xFF
    header = np.frombuffer(data, dtype=">i4", count=1 + ndim)
    if int(header[0]) != magic:
        raise ImageSetUnavailable(
            f"{path} is corrupt (IDX magic {int(header[0])}, expected {magic}): "
            "reinstall the package that provides it"
        )
    shape = tuple(int(n) for n in header[1:])
    return np.frombuffer(data, dtype=np.uint8, offset=4 * (1 + ndim)).reshape(shape)


@functools.lru_cache(maxsize=2)
def _fashion_mnist(root: str) -> ImageSet:
    base = Path(root)
    files = {
        (split, kind): base / f"{prefix}-{kind}-ubyte.gz"
        for split, prefix in (("train", "train"), ("test", "t10k"))
        for kind in ("images-idx3", "labels-idx1")
    }
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        raise ImageSetUnavailable(
            f"image set 'fashion_mnist' needs {', '.join(missing)}: "
            f"{FASHION_MNIST_DIR.install_hint()}"
        )
    images, labels, origin = [], [], []
    for split in ("train", "test"):
        split_images = _read_idx(files[split, "images-idx3"], magic=2051)
        split_labels = _read_idx(files[split, "labels-idx1"], magic=2049)
        if len(split_images) != len(split_labels):
            raise ImageSetUnavailable(
                f"fashion_mnist {split}: {len(split_images)} images but {len(split_labels)} "
                "labels; reinstall dataset-fashion-mnist"
            )
        images.append(split_images)
        labels.append(split_labels)
        origin.append(np.full(len(split_labels), split))
    all_images = np.concatenate(images).astype(np.float32)
    all_images /= 255.0
    all_images = all_images[:, None, :, :]
    all_labels = np.concatenate(labels).astype(np.int64)
    all_origin = np.concatenate(origin)
    _read_only(all_images, all_labels, all_origin)
    classes = IMAGE_CLASSES["fashion_mnist"]
    return ImageSet(
        all_images, all_labels, classes.class_names, dict(classes.superclasses), all_origin
    )


_LOADERS: Mapping[str, Callable[[], ImageSet]] = {
    "digits": _digits,
    "fashion_mnist": lambda: _fashion_mnist(str(FASHION_MNIST_DIR.path)),
}


def load_image_set(name: str) -> ImageSet:
    """Load image set ``name`` (cached per process; arrays are read-only).

    Raises ``ConfigError`` (a ``ValueError``) for an unknown name and ``ImageSetUnavailable``
    (saying what to install) when its source files are missing.
    """
    try:
        loader = _LOADERS[name]
    except KeyError:
        raise invalid_choice("image set", name, _LOADERS) from None
    cached = loader()
    # A fresh wrapper per call, so a caller editing ``coarse`` cannot change the cached one.
    return ImageSet(
        cached.images, cached.labels, cached.class_names, dict(cached.coarse), cached.origin
    )
