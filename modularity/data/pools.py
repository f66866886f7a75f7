"""The documents of one pool of any text source, cut by the split rule
(``modularity.data.splits``): what keeps a task's documents out of every reference.

A held source is hashed into pools, rid of texts an earlier pool holds, and put in a seeded
order; a streaming one is hashed chunk by chunk in stream order. A source of several parts
(a mixture's corpora) is pooled part by part and interleaved document by document.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator

from modularity.data.corpora import Document
from modularity.data.sources import TextSource
from modularity.data.splits import (
    TEXT_SPLITS,
    check_split,
    split_documents,
    stable_uniform,
    without_duplicates,
)

STREAM_CHUNK = 1024  # records hashed into pools at a time while streaming


def pool_documents(source: TextSource, pool: str, seed: int) -> Iterator[Document]:
    """One pool (a ``TEXT_SPLITS`` name) of ``source``: a held source's in an order seeded
    by ``seed``, a streaming one's in stream order."""
    check_split(pool, TEXT_SPLITS)
    parts = list(source.parts().values())
    if len(parts) == 1 and parts[0] is source:
        held = not source.streaming
        yield from _held_pool(source, pool, seed) if held else _streamed_pool(source, pool)
        return
    streams = [pool_documents(part, pool, seed) for part in parts]
    for group in itertools.zip_longest(*streams):
        yield from (doc for doc in group if doc is not None)


def _held_pool(source: TextSource, pool: str, seed: int) -> tuple[Document, ...]:
    return _ordered_pool(tuple(source.documents()), pool, seed)


@functools.lru_cache(maxsize=64)
def _ordered_pool(docs: tuple[Document, ...], pool: str, seed: int) -> tuple[Document, ...]:
    """Pooled, rid of duplicates and ordered once per set of documents (the key): a sweep
    packs each pool many times."""
    kept = without_duplicates(split_documents(docs))[pool]
    return tuple(sorted(kept, key=lambda d: stable_uniform("order", seed, d.doc_id)))


def _streamed_pool(source: TextSource, pool: str) -> Iterator[Document]:
    records = iter(source.documents())
    while chunk := list(itertools.islice(records, STREAM_CHUNK)):
        yield from split_documents(chunk)[pool]
