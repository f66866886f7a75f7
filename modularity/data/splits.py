"""The split rules: which document or image belongs to which disjoint pool.

Every split is a property of the data, not of an experiment: the project's models are trained
on the ``train`` pool under ``SPLIT_SEED``, so every task, reference and model must cut the
data the same way or a task could evaluate on training data.  Tasks' own seeds choose the
sample drawn *from* a pool (order, halves), never the pool.

Text: every corpus (and hub stream) is cut by a hash of each document's id into

* ``train``: what the project's language model trains on;
* ``collect`` / ``evaluate``: what a task collects statistics on and is evaluated on;
* ``reference_collect`` / ``reference_evaluate``: what any text config read *as a reference*
  uses, so a reference never contains a task's documents and is shared by all tasks.

Images: sets without an official split are cut per class by ``IMAGE_SPLITS``; sets with one
(Fashion-MNIST) train on the official train images minus a stratified
``HELD_OUT_TRAIN_IMAGES``, collect on those held-out images and evaluate on the official test
images.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from types import MappingProxyType

import numpy as np

from modularity.data.corpora import Document
from modularity.errors import ConfigError, invalid_choice

SPLIT_SEED = 0
TEXT_SPLITS: Mapping[str, float] = MappingProxyType(
    {
        "train": 0.5,
        "collect": 0.2,
        "evaluate": 0.15,
        "reference_collect": 0.1,
        "reference_evaluate": 0.05,
    }
)
IMAGE_SPLITS: Mapping[str, float] = MappingProxyType(
    {"train": 0.6, "collect": 0.2, "evaluate": 0.2}
)
HELD_OUT_TRAIN_IMAGES = 10_000  # official-split sets: train images kept back for collection
_HALF_SALT = 0x4A1F  # separates the halves' random stream from every other use of a seed


def stable_uniform(*parts: object) -> float:
    """A number in [0, 1) from a SHA-256 of ``parts``: the same on every machine and run,
    unlike Python's salted ``hash``."""
    digest = hashlib.sha256("\x00".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def document_half(doc_id: str, seed: int) -> int:
    """0 or 1: which half of a sample a document belongs to, for split-half stability.

    Salted apart from the split hash, so a document's half is independent of its pool.
    """
    return int(stable_uniform("half", seed, doc_id) < 0.5)


def image_halves(n_images: int, seed: int) -> np.ndarray:
    """``[n_images]`` int64 in {0, 1}: each image's half, for split-half stability; from a
    generator salted apart from the split's, so halves are independent of pools."""
    return np.random.default_rng([seed, _HALF_SALT]).integers(0, 2, n_images, dtype=np.int64)


def check_fractions(fractions: Mapping[str, float]) -> dict[str, float]:
    """Validate split fractions (non-negative, summing to 1) and return them as a dict.

    Raises ``ConfigError`` (a ``ValueError``) naming the offending fractions.
    """
    if not fractions:
        raise ConfigError("split fractions must name at least one split")
    bad = {k: v for k, v in fractions.items() if not v >= 0}
    if bad:
        raise ConfigError(f"split fractions must be non-negative, got {bad}")
    total = sum(fractions.values())
    if abs(total - 1.0) > 1e-9:
        raise ConfigError(f"split fractions must sum to 1, got {total} from {dict(fractions)}")
    return dict(fractions)


def split_documents(
    docs: Iterable[Document],
    fractions: Mapping[str, float] = TEXT_SPLITS,
    seed: int = SPLIT_SEED,
) -> dict[str, list[Document]]:
    """Assign each document to one split by a stable hash of ``(seed, doc_id)``.

    Hashing instead of shuffling makes a document's split independent of which other
    documents are present and of their order, so adding documents never moves old ones.
    Split sizes are therefore only approximately proportional to ``fractions`` (binomial
    noise; a tiny corpus may leave a split empty).  The hash range is cut in the order of
    ``fractions``' keys, so reordering the keys reassigns documents.  Each split keeps the
    input order.
    """
    fractions = check_fractions(fractions)
    bounds: list[tuple[float, str]] = []
    cumulative = 0.0
    for name, fraction in fractions.items():
        cumulative += fraction
        bounds.append((cumulative, name))
    last_nonempty = next(name for name, f in reversed(fractions.items()) if f > 0)
    out: dict[str, list[Document]] = {name: [] for name in fractions}
    for doc in docs:
        u = stable_uniform(seed, doc.doc_id)
        split = next((name for bound, name in bounds if u < bound), last_nonempty)
        out[split].append(doc)
    return out


def normalised_text(text: str) -> str:
    """The text with every run of whitespace made one space, ends stripped: two documents
    that differ only in layout are the same text."""
    return " ".join(text.split())


def content_id(text: str) -> str:
    """A document id from its text (whitespace runs made one space), for sources whose
    records have no stable id of their own: the same text gets the same id, hence the same
    pool, in every source, so a task's text never lands in a reference pool elsewhere."""
    return hashlib.sha256(normalised_text(text).encode()).hexdigest()[:32]


def without_duplicates(pools: Mapping[str, list[Document]]) -> dict[str, list[Document]]:
    """``pools`` with every document dropped whose normalised text occurs in an earlier pool
    (in ``pools``' order) or earlier in its own pool, so no text is both trained on and
    evaluated, or both a task's and its reference's.

    The first pool (``train``: what the shipped models were trained on) is kept whole and
    wins every tie: duplicates are removed from the evaluation and reference side.
    """
    seen: set[str] = set()
    out: dict[str, list[Document]] = {}
    for index, (name, docs) in enumerate(pools.items()):
        kept = []
        for doc in docs:
            key = hashlib.sha256(normalised_text(doc.text).encode()).hexdigest()
            if index == 0 or key not in seen:
                kept.append(doc)
            seen.add(key)
        out[name] = kept
    return out


def check_split(split: str, valid: Iterable[str]) -> str:
    """``split`` if it is one of ``valid``, else a ``ConfigError`` listing them."""
    valid = list(valid)
    if split not in valid:
        raise invalid_choice("split", split, valid)
    return split


def split_indices(
    labels: np.ndarray, fractions: Mapping[str, float], seed: int
) -> dict[str, np.ndarray]:
    """Stratified, deterministic, disjoint split of ``range(len(labels))``.

    Every class is shuffled with a generator seeded by ``seed`` and cut so each split holds
    ``fraction * class size`` items rounded up or down (largest remainder), so per-class
    counts are within one item of exact.  Rounding ties rotate across classes so no split
    is systematically favoured.  Returns sorted int64 index arrays keyed like ``fractions``.
    """
    fractions = check_fractions(fractions)
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {labels.shape}")
    names = list(fractions)
    weights = np.array([fractions[n] for n in names], dtype=np.float64)
    rng = np.random.default_rng(seed)
    chosen: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for class_index, cls in enumerate(np.unique(labels)):
        members = rng.permutation(np.flatnonzero(labels == cls))
        exact = weights * len(members)
        counts = np.floor(exact).astype(np.int64)
        remainder = exact - counts
        rotation = (np.arange(len(names)) - class_index) % len(names)
        order = np.lexsort((rotation, -remainder))  # largest remainder, ties rotate
        counts[order[: len(members) - int(counts.sum())]] += 1
        for name, part in zip(names, np.split(members, np.cumsum(counts)[:-1]), strict=True):
            chosen[name].append(part)
    return {
        name: np.sort(np.concatenate(parts)).astype(np.int64) if parts else np.empty(0, np.int64)
        for name, parts in chosen.items()
    }


def image_split_indices(
    labels: np.ndarray, origin: np.ndarray | None, split: str, seed: int = SPLIT_SEED
) -> np.ndarray:
    """Indices of one split (``IMAGE_SPLITS``' names) of an image set: the rule the tasks
    and the project's image models share.

    ``origin`` marks each image "train" or "test" where the set has an official split;
    ``None`` cuts every class by ``IMAGE_SPLITS``.
    """
    check_split(split, IMAGE_SPLITS)
    if origin is None:
        return split_indices(labels, IMAGE_SPLITS, seed)[split]
    if split == "evaluate":
        return np.flatnonzero(origin == "test")
    train = np.flatnonzero(origin == "train")
    held_out = HELD_OUT_TRAIN_IMAGES / len(train)
    pools = split_indices(labels[train], {"train": 1 - held_out, "collect": held_out}, seed)
    return train[pools[split]]
