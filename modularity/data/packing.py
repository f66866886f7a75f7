"""Pack tokenised documents into full blocks, keeping what the statistics need per block.

Documents are concatenated (each followed by EOS) into ``block_size`` blocks with no padding.
Each block also records its evaluation unit, the document it starts in, so intervals take
documents, not correlated blocks, as their units, and the half of the sample that document
belongs to, so split-half stability can be measured from one pass.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from modularity.data.corpora import Document
from modularity.data.splits import document_half

FIRST_CHUNK = 4  # documents in the first tokenizer call; each next call doubles it
TOKENIZE_CHUNK = 64  # documents per tokenizer call, at most
CHARS_PER_TOKEN = 64  # far above any text's average: a text cut there keeps its first tokens


@dataclass(frozen=True, eq=False)
class TextSample:
    """Token blocks of one split of a text task, with per-block unit and half.

    ``unit[i]`` is the index, in sample order, of the document block ``i`` starts in (ids run
    from 0 to ``n_documents - 1``, with gaps where a document lies inside one block);
    ``half[i]`` in {0, 1} is that document's half, a seeded hash of its id, so the blocks of
    one document share a half.  ``requested_tokens`` is the budget asked for, in whole
    blocks: a sample with fewer ``n_tokens`` ran out of documents.
    """

    input_ids: torch.Tensor  # [n_blocks, block_size] long
    unit: torch.Tensor  # [n_blocks] long
    half: torch.Tensor  # [n_blocks] long in {0, 1}
    n_documents: int  # documents with at least one token in the blocks
    requested_tokens: int

    @property
    def n_tokens(self) -> int:
        return self.input_ids.numel()

    @property
    def n_blocks(self) -> int:
        return self.input_ids.shape[0]

    @classmethod
    def concat(cls, samples: Sequence[TextSample]) -> TextSample:
        """One sample from several (a mixture's corpora), numbering units on."""
        offsets = itertools.accumulate((s.n_documents for s in samples[:-1]), initial=0)
        return cls(
            input_ids=torch.cat([s.input_ids for s in samples]),
            unit=torch.cat([s.unit + offset for s, offset in zip(samples, offsets)]),
            half=torch.cat([s.half for s in samples]),
            n_documents=sum(s.n_documents for s in samples),
            requested_tokens=sum(s.requested_tokens for s in samples),
        )


def pack_documents(
    docs: Iterable[Document],
    tokenizer: Any,
    block_size: int,
    n_tokens: int,
    max_doc_tokens: int | None = None,
    seed: int = 0,
) -> TextSample:
    """Tokenise documents in order and pack them into ``[n_blocks, block_size]`` token ids,
    stopping once ``n_tokens`` tokens are gathered (fewer if the documents run out); each
    document contributes at most its first ``max_doc_tokens`` tokens when that is set.
    ``seed`` assigns the documents' halves."""
    eos = tokenizer.eos_token_id
    n_blocks = max(1, n_tokens // block_size)
    needed = n_blocks * block_size
    buffer: list[int] = []
    starts: list[int] = []  # offset in ``buffer`` where each document begins
    doc_ids: list[str] = []
    docs = iter(docs)
    chunk_size = FIRST_CHUNK
    while len(buffer) < needed:
        chunk = list(itertools.islice(docs, chunk_size))
        if not chunk:
            break
        chunk_size = min(2 * chunk_size, TOKENIZE_CHUNK)
        # No document of this chunk can contribute more tokens than are still needed (or
        # than the cap): each text is cut there, with room to spare, before tokenising.
        limit = needed - len(buffer)
        limit = limit if max_doc_tokens is None else min(limit, max_doc_tokens)
        for doc, ids in zip(chunk, _tokenise_prefixes(chunk, tokenizer, limit)):
            starts.append(len(buffer))
            doc_ids.append(doc.doc_id)
            buffer.extend(ids[:max_doc_tokens])
            if eos is not None:
                buffer.append(eos)
    kept = min(n_blocks, len(buffer) // block_size)
    unit = [bisect.bisect_right(starts, b * block_size) - 1 for b in range(kept)]
    n_documents = bisect.bisect_left(starts, kept * block_size)
    return TextSample(
        input_ids=torch.tensor(buffer[: kept * block_size], dtype=torch.long).view(-1, block_size),
        unit=torch.tensor(unit, dtype=torch.long),
        half=torch.tensor([document_half(doc_ids[u], seed) for u in unit], dtype=torch.long),
        n_documents=n_documents,
        requested_tokens=n_blocks * block_size,
    )


def _tokenise_prefixes(chunk: list[Document], tokenizer: Any, limit: int) -> list[list[int]]:
    """Token ids of each document, exact in their first ``limit`` tokens at least, at the
    cost of its first ``CHARS_PER_TOKEN * limit`` characters (a large file costs the tokens
    a sample can use, not all of them). A cut text that still falls short of ``limit``
    tokens (unusually long tokens) is tokenised whole."""
    cut = CHARS_PER_TOKEN * limit

    def encode(texts: list[str]) -> list[list[int]]:
        # verbose=False: texts longer than the model context are expected; packing cuts them.
        return tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]

    encoded = encode([d.text[:cut] for d in chunk])
    short = [
        i
        for i, (d, ids) in enumerate(zip(chunk, encoded))
        if len(d.text) > cut and len(ids) <= limit
    ]
    for i, ids in zip(short, encode([chunk[i].text for i in short]) if short else []):
        encoded[i] = ids
    return encoded
