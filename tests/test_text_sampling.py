"""How text tasks sample their token budget: mixtures are balanced across corpora, and no
single long document fills a small budget."""

from __future__ import annotations

import torch
from transformers import AutoTokenizer

from modularity.config import load_task_config
from modularity.data.corpora import Document
from modularity.data.text import (
    DOC_BLOCKS,
    corpus_documents,
    local_corpora,
    pack_documents,
    text_blocks,
)
from modularity.zoo.train import PACKAGED_MODELS

TOKENIZER = AutoTokenizer.from_pretrained(PACKAGED_MODELS / "tiny_lm_text")
BLOCK = 32


def test_long_document_is_capped():
    doc = Document(doc_id="long", text="word " * 5000)
    budget = 64 * BLOCK
    assert pack_documents([doc], TOKENIZER, BLOCK, budget).shape[0] == 64
    assert (
        pack_documents([doc], TOKENIZER, BLOCK, budget, DOC_BLOCKS * BLOCK).shape[0] == DOC_BLOCKS
    )


def test_mixture_gives_every_corpus_an_equal_share():
    pile = load_task_config("pile")
    names = local_corpora(pile)
    per_corpus = 2
    blocks = text_blocks(pile, "collect", TOKENIZER, BLOCK, per_corpus * len(names) * BLOCK)
    assert blocks.shape == (per_corpus * len(names), BLOCK)
    rows = {tuple(r.tolist()) for r in blocks}
    for name in names:
        alone = load_task_config(name)
        own = text_blocks(alone, "collect", TOKENIZER, BLOCK, per_corpus * BLOCK)
        assert all(tuple(r.tolist()) in rows for r in own), name


def test_sampling_is_deterministic():
    task = load_task_config("code")
    first = text_blocks(task, "evaluate", TOKENIZER, BLOCK, 16 * BLOCK)
    assert torch.equal(first, text_blocks(task, "evaluate", TOKENIZER, BLOCK, 16 * BLOCK))


def test_cutting_long_documents_before_tokenising_keeps_their_first_tokens():
    docs = corpus_documents("code", "collect", 0)[:40]
    cap = DOC_BLOCKS * BLOCK
    expected = []
    for doc in docs:
        expected += TOKENIZER(doc.text, add_special_tokens=False, verbose=False)["input_ids"][:cap]
        expected.append(TOKENIZER.eos_token_id)
    blocks = pack_documents(docs, TOKENIZER, BLOCK, 10**9, cap)
    assert blocks.flatten().tolist() == expected[: blocks.numel()]
