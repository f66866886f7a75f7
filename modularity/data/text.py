"""Text tasks: documents from a local corpus or an HF dataset, tokenised and packed.

Documents, not tokens, are assigned to splits (by a stable hash of their id), so no text
used to train the project's models or to collect statistics is ever evaluated on. Packing
concatenates documents (separated by EOS) into full ``block_size`` blocks: no padding.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from omegaconf import DictConfig

from modularity.data.corpora import Document, load_corpus, split_documents
from modularity.errors import ConfigError, ModularityError

TEXT_SPLITS = {"train": 0.7, "collect": 0.15, "evaluate": 0.15}
TOKENIZE_CHUNK = 64  # documents per tokenizer call
DOC_BLOCKS = 4  # most blocks one document contributes to a task's sample


def _shuffled(docs: list[Document], seed: int) -> list[Document]:
    """A seeded order independent of the corpus order, so a token budget samples widely."""
    return sorted(docs, key=lambda d: hashlib.sha256(f"{seed}:{d.doc_id}".encode()).digest())


def local_corpora(task: DictConfig) -> list[str]:
    """The local corpus names of a task (one, or several for a mixture such as ``pile``)."""
    corpora = task.local.get("corpus")
    if corpora is None:
        raise ConfigError(f"task {task.name!r}: local text tasks need local.corpus")
    return [corpora] if isinstance(corpora, str) else list(corpora)


def corpus_documents(name: str, split: str, seed: int) -> list[Document]:
    """One split of one corpus, in a seeded order."""
    return _shuffled(split_documents(load_corpus(name), TEXT_SPLITS, seed=seed)[split], seed)


def local_documents(task: DictConfig, split: str) -> list[Document]:
    """One split of the task's corpus; several corpora are interleaved document by document."""
    per_corpus = [corpus_documents(name, split, task.seed) for name in local_corpora(task)]
    return [doc for group in itertools.zip_longest(*per_corpus) for doc in group if doc is not None]


def hub_documents(task: DictConfig, split: str) -> Iterator[Document]:
    """Stream an HF dataset; records are split by the same hash rule as local corpora."""
    import datasets

    hub = task.hub
    if "dataset" not in hub:
        raise ConfigError(f"task {task.name!r}: hub text tasks need hub.dataset")
    stream = datasets.load_dataset(
        hub.dataset, hub.get("name"), split=hub.get("split", "train"), streaming=True
    )
    field = hub.get("field", "text")
    wanted = dict(hub.get("filter", {}) or {})
    records = (
        Document(doc_id=str(i), text=row[field])
        for i, row in enumerate(stream)
        if all(row.get(k) in (v if isinstance(v, list) else [v]) for k, v in wanted.items())
    )
    while chunk := list(itertools.islice(records, 1024)):
        yield from split_documents(chunk, TEXT_SPLITS, seed=task.seed)[split]


def task_documents(task: DictConfig, split: str) -> Iterable[Document]:
    if task.source == "local":
        return local_documents(task, split)
    if task.source == "hub":
        return hub_documents(task, split)
    raise ConfigError(f"task {task.name!r}: unknown source {task.source!r}; valid: local, hub")


def pack_documents(
    docs: Iterable[Document],
    tokenizer: Any,
    block_size: int,
    n_tokens: int,
    max_doc_tokens: int | None = None,
) -> torch.Tensor:
    """Tokenise documents in order and pack them into ``[n_blocks, block_size]`` token ids,
    stopping once ``n_tokens`` tokens are gathered (fewer if the split is smaller); each
    document contributes at most its first ``max_doc_tokens`` tokens when that is set."""
    eos = tokenizer.eos_token_id
    n_blocks = max(1, n_tokens // block_size)
    buffer: list[int] = []
    # A capped document is cut before tokenising, at 64 characters a token (far above any
    # text's average), so a large source file costs its first tokens, not all of them.
    chars = None if max_doc_tokens is None else 64 * max_doc_tokens
    docs = iter(docs)
    while len(buffer) < n_blocks * block_size:
        chunk = [d.text[:chars] for d in itertools.islice(docs, TOKENIZE_CHUNK)]
        if not chunk:
            break
        # verbose=False: documents longer than the model context are expected; packing cuts them.
        for ids in tokenizer(chunk, add_special_tokens=False, verbose=False)["input_ids"]:
            buffer.extend(ids[:max_doc_tokens])
            if eos is not None:
                buffer.append(eos)
    usable = min(n_blocks, len(buffer) // block_size) * block_size
    return torch.tensor(buffer[:usable], dtype=torch.long).view(-1, block_size)


def text_blocks(
    task: DictConfig, split: str, tokenizer: Any, block_size: int, n_tokens: int
) -> torch.Tensor:
    """Token blocks of one split of a text task; an empty split is an error.

    A document gives at most ``DOC_BLOCKS`` blocks, so a budget of a few thousand tokens
    still samples many documents rather than one long source file; a local mixture gives
    each of its corpora an equal share of the budget.
    """
    cap = DOC_BLOCKS * block_size
    names = local_corpora(task) if task.source == "local" else []
    if len(names) > 1:
        share = max(block_size, n_tokens // len(names))
        blocks = torch.cat(
            [
                pack_documents(
                    corpus_documents(n, split, task.seed), tokenizer, block_size, share, cap
                )
                for n in names
            ]
        )
    else:
        blocks = pack_documents(task_documents(task, split), tokenizer, block_size, n_tokens, cap)
    if blocks.shape[0] == 0:
        raise ModularityError(
            f"task {task.name!r}: the {split!r} split has fewer than {block_size} tokens"
        )
    return blocks
