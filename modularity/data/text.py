"""Text tasks: documents from the task's source (``modularity.data.sources``), tokenised
and packed.

Documents, not tokens, are assigned to pools (``modularity.data.pools``, by a stable hash
of their id), so no text the project's models train on is collected or evaluated on, and no
task's documents are in any reference.  Within a pool the task's seed chooses the order in
which documents fill the token budget, and each document's half.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable

from omegaconf import DictConfig

from modularity.data.corpora import Document
from modularity.data.packing import TextSample, pack_documents
from modularity.data.pools import pool_documents
from modularity.data.sources import TextSource, source_of
from modularity.data.splits import TEXT_SPLITS, check_split
from modularity.errors import ModularityError

DOC_BLOCKS = 4  # most blocks one document contributes to a task's sample

log = logging.getLogger(__name__)


def _sources(task: DictConfig, split: str) -> dict[str, Callable[[], Iterable[Document]]]:
    """The task's document streams by name (one per part of its source: the corpora of a
    local mixture), each as a function that starts it afresh."""
    source = source_of(task)
    assert isinstance(source, TextSource)  # source_of checks the task's kind
    return {
        name: functools.partial(pool_documents, part, split, task.seed)
        for name, part in source.parts().items()
    }


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
