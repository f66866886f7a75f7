"""Pools without duplicates: no normalised text is in two pools, the training pool is kept
as the shipped model saw it, and no text a task or reference is evaluated or collected on
occurs in the shipped tiny_lm_text model's training data."""

import hashlib
from pathlib import Path

import pytest
from omegaconf import OmegaConf

import modularity
from modularity.data.corpora import CorpusUnavailable, Document, load_corpus
from modularity.data.pools import pool_documents
from modularity.data.sources import LocalCorpora
from modularity.data.splits import (
    TEXT_SPLITS,
    normalised_text,
    split_documents,
    without_duplicates,
)

RECIPE = Path(modularity.__file__).parent / "zoo" / "conf" / "recipe" / "tiny_lm_text.yaml"
DOMAINS = list(OmegaConf.load(RECIPE).domains)


def docs(*texts: str) -> list[Document]:
    return [Document(f"d{i}-{t[:5]}", t) for i, t in enumerate(texts)]


def test_later_pools_lose_texts_an_earlier_pool_holds():
    pools = {
        "train": docs("a b", "a  b", "c"),  # train keeps its own repeats: it is what was trained
        "collect": docs("c", "d", "d\n"),  # "c" is trained on; the second "d" repeats the first
        "evaluate": docs(" d ", "e"),
        "reference_collect": docs("e", "f"),
    }
    kept = without_duplicates(pools)
    texts = {name: [d.text for d in pool] for name, pool in kept.items()}
    assert texts == {
        "train": ["a b", "a  b", "c"],
        "collect": ["d"],
        "evaluate": ["e"],
        "reference_collect": ["f"],
    }


def test_normalisation_only_collapses_whitespace():
    assert normalised_text("  def f():\n\n    return 1 ") == "def f(): return 1"
    assert normalised_text("Return") != normalised_text("return")


def digest(doc: Document) -> str:
    return hashlib.sha256(normalised_text(doc.text).encode()).hexdigest()


@pytest.mark.slow
def test_no_evaluation_text_is_in_the_shipped_models_training_data():
    """Every pool of every domain tiny_lm_text was trained on, across domains: nothing
    outside ``train`` repeats a training text, and no reference text is a task's."""
    try:
        train_raw = {name: split_documents(load_corpus(name))["train"] for name in DOMAINS}
    except CorpusUnavailable as err:
        pytest.skip(f"a training corpus is not installed: {err}")
    train = {digest(d) for name in DOMAINS for d in pool_documents(LocalCorpora(name), "train", 0)}
    # the training pool is exactly what the split rule gave the model (nothing removed)
    assert len(train) == len({digest(d) for pool in train_raw.values() for d in pool})
    task, reference = set(), set()
    for name in DOMAINS:
        for split in list(TEXT_SPLITS)[1:]:
            pool = {digest(d) for d in pool_documents(LocalCorpora(name), split, 0)}
            assert not pool & train, (name, split)
            (reference if split.startswith("reference") else task).update(pool)
    assert not task & reference
