"""How text tasks sample their token budget: mixtures are balanced across corpora, no single
long document fills a small budget, every block knows its document (unit) and half, and no
reference ever contains a task's documents."""

from __future__ import annotations

import logging

import pytest
import torch
from omegaconf import OmegaConf
from transformers import AutoTokenizer

from modularity.config import group_options, load_task_config
from modularity.data.corpora import Document
from modularity.data.packing import TextSample, pack_documents
from modularity.data.pools import pool_documents
from modularity.data.sources import LocalCorpora, TextFiles, source_of
from modularity.data.splits import TEXT_SPLITS, content_id, document_half, split_documents
from modularity.data.text import DOC_BLOCKS, text_blocks
from modularity.errors import ModularityError
from modularity.zoo.model_dirs import PACKAGED_MODELS

TOKENIZER = AutoTokenizer.from_pretrained(PACKAGED_MODELS / "tiny_lm_text")
BLOCK = 32
TASK_POOLS = ("collect", "evaluate")
REFERENCE_POOLS = ("reference_collect", "reference_evaluate")


def _docs(n: int, words: int = 30) -> list[Document]:
    return [Document(f"doc-{i}", " ".join(f"w{i}x{j}" for j in range(words))) for i in range(n)]


def test_long_document_is_capped():
    doc = Document(doc_id="long", text="word " * 5000)
    budget = 64 * BLOCK
    assert pack_documents([doc], TOKENIZER, BLOCK, budget).n_blocks == 64
    capped = pack_documents([doc], TOKENIZER, BLOCK, budget, DOC_BLOCKS * BLOCK)
    assert capped.n_blocks == DOC_BLOCKS
    assert capped.n_documents == 1 and capped.unit.tolist() == [0] * DOC_BLOCKS


def _packed_whole(docs: list[Document], budget: int, cap: int | None) -> torch.Tensor:
    """Every document tokenised whole, capped, followed by EOS, cut to full blocks."""
    ids: list[int] = []
    for doc in docs:
        ids += TOKENIZER(doc.text, add_special_tokens=False)["input_ids"][:cap]
        ids.append(TOKENIZER.eos_token_id)
        if len(ids) >= budget:
            break
    kept = min(budget, len(ids)) // BLOCK * BLOCK
    return torch.tensor(ids[:kept]).view(-1, BLOCK)


@pytest.mark.parametrize("chars_per_token", [64, 2, 1])
@pytest.mark.parametrize(("budget", "cap"), [(BLOCK, None), (40 * BLOCK, None), (40 * BLOCK, 50)])
def test_packing_reads_only_the_text_it_needs_and_packs_what_whole_documents_give(
    monkeypatch, chars_per_token, budget, cap
):
    """Texts are cut where no more tokens can be used, before tokenising; a cut that leaves
    too few tokens (forced here by 1-2 characters a token) falls back to the whole text."""
    monkeypatch.setattr("modularity.data.packing.CHARS_PER_TOKEN", chars_per_token)
    texts = ["x = 1  # " + "code " * 400, "word " * 3000, "short one", "ab " * 50] * 3
    docs = [Document(f"d{i}", text) for i, text in enumerate(texts)]
    sample = pack_documents(docs, TOKENIZER, BLOCK, budget, cap)
    assert torch.equal(sample.input_ids, _packed_whole(docs, budget, cap))


def test_units_index_the_document_each_block_starts_in():
    docs = _docs(40)
    sample = pack_documents(docs, TOKENIZER, BLOCK, 10**9, seed=3)
    owner: list[int] = []  # the document of every packed token
    for i, doc in enumerate(docs):
        ids = TOKENIZER(doc.text, add_special_tokens=False)["input_ids"]
        owner += [i] * (len(ids) + 1)  # + EOS
    assert sample.unit.tolist() == [owner[b * BLOCK] for b in range(sample.n_blocks)]
    assert sample.n_documents == owner[sample.n_tokens - 1] + 1
    assert sample.input_ids.dtype == sample.unit.dtype == sample.half.dtype == torch.long
    halves = [document_half(docs[u].doc_id, 3) for u in sample.unit.tolist()]
    assert sample.half.tolist() == halves


def test_halves_are_per_document_and_roughly_balanced():
    task = load_task_config("biology")
    sample = text_blocks(task, "collect", TOKENIZER, BLOCK, 400 * BLOCK)
    by_unit: dict[int, set[int]] = {}
    for unit, half in zip(sample.unit.tolist(), sample.half.tolist()):
        by_unit.setdefault(unit, set()).add(half)
    assert all(len(halves) == 1 for halves in by_unit.values())  # a document has one half
    doc_halves = [next(iter(h)) for h in by_unit.values()]
    assert len(doc_halves) > 100
    assert 0.35 < sum(doc_halves) / len(doc_halves) < 0.65
    assert 0.3 < sample.half.float().mean() < 0.7  # blocks too, roughly


def test_mixture_gives_every_corpus_an_equal_share_and_numbers_units_on():
    pile = load_task_config("pile")
    names = source_of(pile).domains()
    per_corpus = 2
    sample = text_blocks(
        pile, "reference_collect", TOKENIZER, BLOCK, per_corpus * len(names) * BLOCK
    )
    assert sample.input_ids.shape == (per_corpus * len(names), BLOCK)
    assert sample.requested_tokens == sample.n_tokens
    rows = {tuple(r.tolist()) for r in sample.input_ids}
    documents = 0
    for name in names:
        alone = load_task_config(name)
        own = text_blocks(alone, "reference_collect", TOKENIZER, BLOCK, per_corpus * BLOCK)
        assert all(tuple(r.tolist()) in rows for r in own.input_ids), name
        documents += own.n_documents
    assert sample.n_documents == documents
    assert sample.unit.tolist() == sorted(sample.unit.tolist())  # units never repeat across corpora
    assert int(sample.unit.max()) < sample.n_documents


def test_sampling_is_deterministic():
    task = load_task_config("code")
    first = text_blocks(task, "evaluate", TOKENIZER, BLOCK, 16 * BLOCK)
    again = text_blocks(task, "evaluate", TOKENIZER, BLOCK, 16 * BLOCK)
    for field in ("input_ids", "unit", "half"):
        assert torch.equal(getattr(first, field), getattr(again, field))


def test_cutting_long_documents_before_tokenising_keeps_their_first_tokens():
    docs = list(pool_documents(LocalCorpora("code"), "collect", 0))[:40]
    cap = DOC_BLOCKS * BLOCK
    expected = []
    for doc in docs:
        expected += TOKENIZER(doc.text, add_special_tokens=False, verbose=False)["input_ids"][:cap]
        expected.append(TOKENIZER.eos_token_id)
    sample = pack_documents(docs, TOKENIZER, BLOCK, 10**9, cap)
    assert sample.input_ids.flatten().tolist() == expected[: sample.n_tokens]


@pytest.mark.slow
def test_shortfall_is_one_warning_line_per_sample(caplog):
    caplog.set_level(logging.WARNING, logger="modularity.data.text")
    math = load_task_config("math")
    sample = text_blocks(math, "reference_evaluate", TOKENIZER, BLOCK, 10**7)
    assert sample.n_tokens < sample.requested_tokens == 10**7 // BLOCK * BLOCK
    (record,) = caplog.records
    message = record.getMessage()
    assert "\n" not in message
    for part in ("'math'", "'reference_evaluate'", f"{sample.n_tokens:,}", "10,000,000"):
        assert part in message, (part, message)

    caplog.clear()
    text_blocks(load_task_config("pile"), "reference_evaluate", TOKENIZER, BLOCK, 10**7)
    (record,) = caplog.records
    assert all(name in record.getMessage() for name in ("math", "physics", "law"))

    caplog.clear()
    text_blocks(math, "collect", TOKENIZER, BLOCK, 8 * BLOCK)
    assert not caplog.records


def test_a_mixture_of_no_corpora_has_no_tokens():
    task = OmegaConf.merge(load_task_config("pile"), {"local": {"corpus": []}})
    with pytest.raises(ModularityError, match="fewer than 32 tokens"):
        text_blocks(task, "collect", TOKENIZER, BLOCK, 8 * BLOCK)


def test_unknown_pool_names_the_valid_ones():
    with pytest.raises(ValueError, match="'test'.*reference_collect"):
        text_blocks(load_task_config("math"), "test", TOKENIZER, BLOCK, 8 * BLOCK)


def _reference_is_local_mixture(name: str) -> bool:
    task = load_task_config(name)
    if task.kind != "text" or not task.reference or isinstance(source_of(task), TextFiles):
        return False  # ``files`` reads the user's files, none until named
    reference = load_task_config(task.reference)
    source = source_of(reference)
    return isinstance(source, LocalCorpora) and len(source.parts()) > 1


REFERENCED_TASKS = [n for n in group_options("task") if _reference_is_local_mixture(n)]


def _pools(task, pools) -> set[tuple[str, str]]:
    source = source_of(task)
    return {(d.doc_id, d.text) for pool in pools for d in pool_documents(source, pool, task.seed)}


@pytest.mark.parametrize("name", REFERENCED_TASKS)
def test_reference_contains_none_of_the_tasks_documents(name):
    task = load_task_config(name)
    reference = load_task_config(task.reference)
    task_docs = _pools(task, TASK_POOLS)
    reference_docs = _pools(reference, REFERENCE_POOLS)
    assert task_docs and reference_docs
    assert not task_docs & reference_docs
    trained_on = _pools(task, ["train"])  # what the project's LM trains on
    assert not trained_on & (task_docs | reference_docs)


def test_every_text_task_is_checked_against_its_reference():
    text = [n for n in group_options("task") if load_task_config(n).kind == "text"]
    # every text task's reference is a local mixture
    assert [n for n in text if n != "files"] == REFERENCED_TASKS


def test_hub_records_are_pooled_by_the_local_rule(tmp_path):
    import datasets

    rows = [{"text": f"record {i}", "lang": "en" if i % 3 else "fr"} for i in range(3000)]
    copy = tmp_path / "nickypro" / "minipile" / "data"
    copy.mkdir(parents=True)
    datasets.Dataset.from_list(rows).to_parquet(copy / "train-00000-of-00001.parquet")
    data = OmegaConf.create({"source": "hub", "hub_mirror": str(tmp_path)})
    task = load_task_config("pile", data)
    records = [Document(content_id(row["text"]), row["text"]) for row in rows]
    expected = split_documents(records)
    for pool in TEXT_SPLITS:
        assert list(pool_documents(source_of(task), pool, task.seed)) == expected[pool]


def test_concat_of_one_sample_is_itself():
    sample = pack_documents(_docs(20), TOKENIZER, BLOCK, 10**9)
    joined = TextSample.concat([sample])
    assert torch.equal(joined.unit, sample.unit) and joined.n_documents == sample.n_documents


def test_a_pool_of_long_documents_fills_its_budget_with_more_blocks_per_document():
    code = load_task_config("code")
    pool = list(pool_documents(LocalCorpora("code"), "collect", code.seed))
    budget = 40 * 1024
    assert len(pool) * DOC_BLOCKS * BLOCK < budget  # the first cap alone cannot fill it
    sample = text_blocks(code, "collect", TOKENIZER, BLOCK, budget)
    assert sample.n_tokens == budget
    blocks_per_document = torch.bincount(sample.unit)
    assert blocks_per_document.max() > DOC_BLOCKS and sample.n_documents >= 20


def test_an_exhausted_pool_gives_every_token_it_has():
    math = load_task_config("math")
    pool = list(pool_documents(LocalCorpora("math"), "reference_evaluate", math.seed))
    encoded = TOKENIZER([d.text for d in pool], add_special_tokens=False, verbose=False)
    total = sum(len(ids) + 1 for ids in encoded["input_ids"])  # + EOS each
    sample = text_blocks(math, "reference_evaluate", TOKENIZER, BLOCK, 10**7)
    assert sample.n_tokens == total // BLOCK * BLOCK
