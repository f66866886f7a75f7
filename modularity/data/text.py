"""Text tasks: documents from a local corpus or an HF dataset, tokenised and packed.

Documents, not tokens, are assigned to pools (``modularity.data.splits.TEXT_SPLITS``, by a
stable hash of their id), so no text the project's models train on is collected or evaluated
on, and no task's documents are in any reference.  Within a pool the task's seed chooses the
order in which documents fill the token budget, and each document's half.
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import Callable, Iterable, Iterator

from omegaconf import DictConfig

from modularity.config import Source, checked_choice
from modularity.data.corpora import Document, load_corpus
from modularity.data.hub import load_hub_dataset
from modularity.data.packing import TextSample, pack_documents
from modularity.data.splits import (
    TEXT_SPLITS,
    check_split,
    split_documents,
    stable_uniform,
    without_duplicates,
)
from modularity.errors import ConfigError, ModularityError

DOC_BLOCKS = 4  # most blocks one document contributes to a task's sample
HUB_CHUNK = 1024  # records hashed into pools at a time while streaming

log = logging.getLogger(__name__)


def _shuffled(docs: list[Document], seed: int) -> list[Document]:
    """A seeded order independent of the corpus order, so a token budget samples widely."""
    return sorted(docs, key=lambda d: stable_uniform("order", seed, d.doc_id))


def local_corpora(task: DictConfig) -> list[str]:
    """The local corpus names of a task (one, or several for a mixture such as ``pile``)."""
    corpora = task.local.get("corpus")
    if corpora is None:
        raise ConfigError(f"task {task.name!r}: local text tasks need local.corpus")
    return [corpora] if isinstance(corpora, str) else list(corpora)


def corpus_documents(name: str, split: str, seed: int) -> list[Document]:
    """One pool (a ``TEXT_SPLITS`` name) of one corpus, in an order seeded by ``seed``,
    without texts that an earlier pool already holds (``without_duplicates``)."""
    check_split(split, TEXT_SPLITS)
    return list(_ordered_pool(tuple(load_corpus(name)), split, seed))


@functools.lru_cache(maxsize=64)
def _ordered_pool(docs: tuple[Document, ...], split: str, seed: int) -> tuple[Document, ...]:
    """Hashed into pools, rid of texts an earlier pool holds, and ordered once per corpus
    (keyed by its documents, so a corpus read from another source is another key): a
    sweep packs each pool many times."""
    return tuple(_shuffled(without_duplicates(split_documents(list(docs)))[split], seed))


def local_documents(task: DictConfig, split: str) -> list[Document]:
    """One pool of the task's corpus; several corpora are interleaved document by document."""
    per_corpus = [corpus_documents(name, split, task.seed) for name in local_corpora(task)]
    return [doc for group in itertools.zip_longest(*per_corpus) for doc in group if doc is not None]


def hub_documents(task: DictConfig, split: str) -> Iterator[Document]:
    """Stream one pool of an HF dataset: records (numbered in stream order) are assigned to
    pools by the same hash rule as local documents."""
    check_split(split, TEXT_SPLITS)
    hub = task.hub
    if "dataset" not in hub:
        raise ConfigError(f"task {task.name!r}: hub text tasks need hub.dataset")
    stream = load_hub_dataset(hub, hub.get("split", "train"), streaming=True)
    field = hub.get("field", "text")
    records = (
        Document(doc_id=str(i), text=_text(row[field], task, field)) for i, row in enumerate(stream)
    )
    while chunk := list(itertools.islice(records, HUB_CHUNK)):
        yield from split_documents(chunk)[split]


def _text(value: object, task: DictConfig, field: str) -> str:
    """A record's text; a column of bytes or numbers is named, not tokenised."""
    if not isinstance(value, str):
        raise ConfigError(
            f"task {task.name!r}: column {field!r} of {task.hub.dataset!r} holds "
            f"{type(value).__name__}, not text; set task.hub.field to a text column"
        )
    return value


def _sources(task: DictConfig, split: str) -> dict[str, Callable[[], Iterable[Document]]]:
    """The task's document streams by name (one per corpus of a local mixture, else one),
    each as a function that starts it afresh."""
    if checked_choice(Source, task.source, f"source of task {task.name!r}") == "local":
        return {
            name: functools.partial(corpus_documents, name, split, task.seed)
            for name in local_corpora(task)
        }
    return {task.hub.get("dataset", task.name): functools.partial(hub_documents, task, split)}


def _pack_source(
    docs: Callable[[], Iterable[Document]],
    tokenizer: object,
    block_size: int,
    n_tokens: int,
    seed: int,
) -> TextSample:
    """Pack one source with at most ``DOC_BLOCKS`` blocks a document; where that cannot fill
    the budget, each document may give twice as many, and so on, until the budget is met or
    no document was cut (the pool is exhausted)."""
    cap = DOC_BLOCKS * block_size
    part = pack_documents(docs(), tokenizer, block_size, n_tokens, cap, seed=seed)
    while part.n_tokens < part.requested_tokens:
        wider = pack_documents(docs(), tokenizer, block_size, n_tokens, 2 * cap, seed=seed)
        if wider.n_tokens == part.n_tokens:
            break
        part, cap = wider, 2 * cap
    return part


def text_blocks(
    task: DictConfig, split: str, tokenizer: object, block_size: int, n_tokens: int
) -> TextSample:
    """The token blocks of one pool of a text task; an empty sample is an error.

    A document gives at most ``DOC_BLOCKS`` blocks (more only where the pool cannot fill
    the budget otherwise), so a budget of a few thousand tokens still samples many documents
    rather than one long source file; a local mixture gives each of its corpora an equal
    share of the budget.  A source that runs short is reported in one warning line.
    """
    check_split(split, TEXT_SPLITS)
    sources = _sources(task, split)
    empty = ModularityError(
        f"task {task.name!r}: the {split!r} split has fewer than {block_size} tokens"
    )
    if not sources:  # a mixture of no corpora
        raise empty
    share = max(block_size, n_tokens // len(sources))
    parts = {
        name: _pack_source(docs, tokenizer, block_size, share, task.seed)
        for name, docs in sources.items()
    }
    short = [
        f"{name} {part.n_tokens:,} of {part.requested_tokens:,}"
        for name, part in parts.items()
        if part.n_tokens < part.requested_tokens
    ]
    if short:
        log.warning(
            "task %r, split %r: fewer tokens than requested: %s", task.name, split, "; ".join(short)
        )
    sample = TextSample.concat(list(parts.values()))
    if sample.n_blocks == 0:
        raise empty
    return sample
