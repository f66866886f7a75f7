"""Data sources as plug-ins: text files, hub datasets and sources from other packages read
through a task's ``_target_``; both reference exclusions for each; cache keys that follow
what a source yields; one-line errors for a bad source."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import datasets
import pytest
from omegaconf import DictConfig, OmegaConf

from modularity.config import load_task_config
from modularity.data.pools import pool_documents
from modularity.data.reference import text_reference
from modularity.data.sources import LocalCorpora, TextFiles, source_identity, source_of
from modularity.data.splits import TEXT_SPLITS
from modularity.errors import ConfigError
from modularity.pipeline import DataSpec
from modularity.run import run

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["model=tiny_llama", "data.collect_size=512", "data.eval_size=256", "data.block_size=64"]
TASK_POOLS, REFERENCE_POOLS = ("collect", "evaluate"), ("reference_collect", "reference_evaluate")


def write_notes(folder: Path, topic: str, n: int = 60) -> list[Path]:
    """``n`` files of distinct sentences about ``topic``, a few hundred tokens each."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"{topic}-{i:03d}.txt"
        words = " ".join(f"{topic}{i}w{j}" for j in range(60))
        path.write_text(f"Note {i} on {topic}.\n{words}\nThe end of note {i} on {topic}.\n")
        paths.append(path)
    return paths


def pooled(source, pools, seed: int = 0) -> set[str]:
    return {d.text for pool in pools for d in pool_documents(source, pool, seed)}


def task_node(name: str, slot: str, node: dict) -> DictConfig:
    return OmegaConf.create(
        {"name": name, "kind": "text", "source": slot, slot: node, "seed": 0, "reference": "x"}
    )


# --------------------------------------------------------------------------- text files


def test_text_files_give_one_document_per_file_or_per_line(tmp_path):
    write_notes(tmp_path / "a", "alpha", n=3)
    (tmp_path / "a" / "blank.txt").write_text("\n  \n")
    files = TextFiles(paths=[str(tmp_path / "a" / "*.txt")])
    assert len(list(files.documents())) == 3  # a blank file is no document
    lines = TextFiles(paths=str(tmp_path / "a" / "*.txt"), unit="line")
    assert len(list(lines.documents())) == 9
    less = TextFiles(paths=[str(tmp_path / "**" / "*.txt")], exclude=["*-001.txt"])
    assert [Path(p).name for p in less.domains()] == ["alpha-000.txt", "alpha-002.txt", "blank.txt"]


def test_the_same_text_in_two_files_is_one_document_in_one_pool(tmp_path):
    """Ids come from the text, so two sources reading the same text put it in one pool, and
    a task's text never reaches another source's reference pools."""
    paths = write_notes(tmp_path / "a", "alpha", n=40)
    copies = tmp_path / "b"
    copies.mkdir()
    for path in paths:
        (copies / path.name).write_text(path.read_text().replace("\n", "  \n"))  # layout only
    task = TextFiles(paths=[str(tmp_path / "a" / "*")])
    both = TextFiles(paths=[str(tmp_path / "*" / "*")])
    for pool in TEXT_SPLITS:
        ids = [d.doc_id for d in pool_documents(both, pool, 0)]
        assert set(ids) == {d.doc_id for d in pool_documents(task, pool, 0)}, pool
        if pool != "train":  # the training pool is kept as the shipped models saw it
            assert len(ids) == len(set(ids)), pool  # the copy is dropped


def test_text_files_that_match_nothing_or_are_not_text_are_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"match no file; relative paths start at"):
        TextFiles(paths=[str(tmp_path / "*.md")]).files()
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.txt' is not utf-8.*encoding"):
        list(TextFiles(paths=[str(tmp_path / "*.txt")]).documents())
    assert [d.text for d in TextFiles(str(tmp_path / "*"), encoding="latin-1").documents()] == [
        "café"
    ]


def test_a_text_files_task_samples_only_its_files(tmp_path):
    from transformers import AutoTokenizer

    from modularity.data.text import text_blocks
    from modularity.zoo.model_dirs import PACKAGED_MODELS

    tokenizer = AutoTokenizer.from_pretrained(PACKAGED_MODELS / "tiny_lm_text")
    paths = write_notes(tmp_path, "ledger")
    task = OmegaConf.merge(
        load_task_config("files"), {"local": {"paths": [str(tmp_path / "*.txt")]}}
    )
    sample = text_blocks(task, "collect", tokenizer, 32, 32 * 16)
    assert sample.n_tokens == 32 * 16 and sample.n_documents > 1
    texts = [path.read_text() for path in paths]
    for block in sample.input_ids:
        for piece in tokenizer.decode(block).split(tokenizer.eos_token):
            assert any(piece in text for text in texts), piece


@pytest.mark.slow
def test_a_text_files_task_runs_end_to_end(make_cfg, tmp_path):
    write_notes(tmp_path / "notes", "ledger")
    cfg = make_cfg(*SMALL, "task=files", f"task.local.paths=[{tmp_path}/notes/*.txt]")
    result = run(cfg)
    rows = result.rows
    assert (rows.metric == "effect").any()
    tokens = rows[rows.metric == "collect_tokens"].set_index("variant").value
    assert tokens["task"] == 512 and tokens["reference"] == 512
    # The task's cached blocks are keyed by the files' content.
    metas = [json.loads(p.read_text())["meta"] for p in Path(cfg.cache.dir).glob("*/meta.json")]
    task_keys = [m for m in metas if m["kind"] == "tokens" and m["data"]["task"]["name"] == "files"]
    assert task_keys and all(m["data"]["source"]["content"] for m in task_keys)


def test_a_cache_key_follows_the_files_content(tmp_path):
    paths = write_notes(tmp_path, "delta", n=3)
    task = OmegaConf.merge(
        load_task_config("files"), {"local": {"paths": [str(tmp_path / "*.txt")]}}
    )
    before = DataSpec(task, "task").identity()
    assert DataSpec(task, "task").identity() == before  # nothing changed, same key
    paths[1].write_text(paths[1].read_text() + "one more line\n")
    assert DataSpec(task, "task").identity() != before
    as_lines = OmegaConf.merge(task, {"local": {"unit": "line"}})
    assert DataSpec(as_lines, "task").identity() != DataSpec(task, "task").identity()


# --------------------------------------------------------------------------- exclusions


def test_a_text_files_reference_leaves_out_the_tasks_files(tmp_path):
    write_notes(tmp_path / "mine", "alpha")
    write_notes(tmp_path / "other", "beta")
    task = task_node(
        "mine",
        "local",
        {"_target_": "modularity.data.sources.TextFiles", "paths": [str(tmp_path / "mine" / "*")]},
    )
    reference = task_node(
        "all",
        "local",
        {
            "_target_": "modularity.data.sources.TextFiles",
            "paths": [str(tmp_path / "**" / "*.txt")],
        },
    )
    kept = text_reference(task, reference, "documents")
    assert kept is reference and any("alpha" in t for t in pooled(source_of(kept), REFERENCE_POOLS))
    without = text_reference(task, reference, "domain")
    assert without.name == "all-without-mine"
    texts = pooled(source_of(without), TEXT_SPLITS)
    assert texts and not any("alpha" in t for t in texts)


def write_domain_dataset(folder: Path) -> list[dict]:
    rows = [
        {"text": f"row {i} " + " ".join(f"t{i}w{j}" for j in range(20)), "source": s}
        for i in range(600)
        for s in [("Github", "Wikipedia", "ArXiv")[i % 3]]
    ]
    (folder / "data").mkdir(parents=True)
    datasets.Dataset.from_list(rows).to_parquet(folder / "data" / "train-00000.parquet")
    return rows


def test_a_hub_reference_leaves_out_the_rows_of_the_tasks_domain(tmp_path):
    rows = write_domain_dataset(tmp_path)
    hub = {"dataset": str(tmp_path), "builder": "parquet", "data_files": "data/*.parquet"}
    github_only = {"domain_field": "source", "filter": {"source": "Github"}}
    task = task_node("github", "hub", {**hub, **github_only})
    reference = task_node("mixed", "hub", {**hub, "domain_field": "source"})
    github = {r["text"] for r in rows if r["source"] == "Github"}

    task_texts = pooled(source_of(task), TASK_POOLS)
    assert task_texts and task_texts <= github
    # documents: the reference keeps the domain, never the task's own documents
    same = text_reference(task, reference, "documents")
    reference_texts = pooled(source_of(same), REFERENCE_POOLS)
    assert reference_texts & github and not reference_texts & task_texts
    # domain: none of the domain's rows, whichever pool
    without = text_reference(task, reference, "domain")
    assert without.hub.exclude == {"source": ["Github"]}
    everything = pooled(source_of(without), TEXT_SPLITS)
    assert len(everything) == 400 and not everything & github


def test_a_cache_key_follows_a_local_copy_of_a_dataset(tmp_path):
    rows = write_domain_dataset(tmp_path)
    hub = {"dataset": str(tmp_path), "builder": "parquet", "data_files": "data/*.parquet"}
    task = task_node("t", "hub", hub)
    before = source_identity(task)
    assert before["content"] and source_identity(task) == before
    datasets.Dataset.from_list(rows[:10]).to_parquet(tmp_path / "data" / "train-00000.parquet")
    assert source_identity(task)["content"] != before["content"]


def test_a_hub_reference_without_a_domain_field_cannot_leave_a_domain_out(tmp_path):
    write_domain_dataset(tmp_path)
    hub = {"dataset": str(tmp_path), "builder": "parquet", "data_files": "data/*.parquet"}
    with pytest.raises(ConfigError, match=r"sets no domain_field.*exclude_from_reference="):
        text_reference(task_node("t", "hub", hub), task_node("r", "hub", hub), "domain")


def test_a_local_mixture_leaves_out_the_tasks_corpora_and_not_all_of_them():
    pile = load_task_config("pile")
    without = text_reference(load_task_config("python"), pile, "domain")
    assert "code" not in source_of(without).domains() and len(source_of(without).parts()) == 7
    only_code = OmegaConf.merge(pile, {"local": {"corpus": ["code"]}})
    with pytest.raises(ConfigError, match=r"none of its corpora \['code'\] would be left"):
        text_reference(load_task_config("code"), only_code, "domain")


# --------------------------------------------------------------------------- plug-ins


OUTSIDE_SOURCE = '''
from modularity.data.corpora import Document
from modularity.data.sources import TextSource


class Counting(TextSource):
    """Sentences about numbers, one document each; its domains are the hundreds."""

    def __init__(self, n: int, skip: list[int] = ()):
        self.n, self.skip = n, list(skip)

    def documents(self):
        for i in range(self.n):
            if i // 100 not in self.skip:
                words = " ".join(f"n{i}x{j}" for j in range(40))
                yield Document(f"count-{i}", f"Number {i}: {words}.")

    def domains(self):
        return [str(h) for h in range((self.n + 99) // 100) if h not in self.skip]

    def without(self, domains):
        return {"skip": [*self.skip, *(int(d) for d in domains)]}
'''


@pytest.fixture
def outside_package(tmp_path, monkeypatch) -> Path:
    package = tmp_path / "outside" / "countsrc"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(OUTSIDE_SOURCE))
    monkeypatch.syspath_prepend(str(tmp_path / "outside"))
    return package


COUNTING = {"_target_": "countsrc.Counting", "n": 400}


def test_a_source_from_another_package_is_pooled_keyed_and_excluded(outside_package):
    task = task_node("counts", "local", {**COUNTING, "skip": [1, 2, 3]})
    reference = task_node("all-counts", "local", COUNTING)
    assert len(pooled(source_of(reference), TEXT_SPLITS)) == 400
    # its own without() leaves the task's domains out
    without = text_reference(task, reference, "domain")
    assert without.local.skip == [0]
    texts = pooled(source_of(without), TEXT_SPLITS)
    assert len(texts) == 300 and not any(t.startswith("Number 9:") for t in texts)
    # its code is in the cache key: an edit to what it yields is a new key
    before = source_identity(reference)
    assert source_identity(reference) == before
    init = outside_package / "__init__.py"
    init.write_text(init.read_text().replace("Number {i}", "Count {i}"))
    assert source_identity(reference)["code"] != before["code"]


@pytest.mark.slow
def test_a_source_from_another_package_runs_end_to_end(make_cfg, outside_package):
    cfg = make_cfg(*SMALL, "task=files")
    cfg.task.local = COUNTING
    assert (run(cfg).rows.metric == "effect").any()


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ({"_target_": "nopkg.Source"}, r"task.local._target_ 'nopkg.Source' cannot be imported"),
        ({"_target_": "collections.OrderedDict"}, r"is not a modularity.data.sources.base.TextS"),
        (
            {"_target_": "modularity.data.sources.LocalCorpora", "paths": ["x"]},
            r"LocalCorpora\): unknown setting 'paths'; missing 'corpus'; its settings: corpus$",
        ),
        ({"corpus": "cod"}, r"unknown corpus 'cod'; valid: code"),
    ],
)
def test_a_bad_source_is_one_line_naming_the_valid_ones(node, message):
    with pytest.raises(ConfigError, match=message) as err:
        source_of(task_node("t", "local", node))
    assert "\n" not in str(err.value) and "task 't': task.local" in str(err.value)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["task.local._target_=nopkg.X"], "'nopkg.X' cannot be imported"),
        ([], "text files need paths: set task.local.paths=[glob,...]"),
    ],
)
def test_a_bad_source_on_the_command_line_is_one_line_before_the_model_loads(
    tmp_path, args, message
):
    command = [sys.executable, "-m", "modularity.run", "task=files", *args]
    proc = subprocess.run(
        [*command, f"hydra.run.dir={tmp_path}", f"cache.dir={tmp_path / 'cache'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors and message in errors[0], proc.stderr[-2000:]


def test_old_spellings_still_read_the_same_data():
    """A node without ``_target_`` is its slot's built-in source, as before plug-ins."""
    explicit = load_task_config("code")
    bare = OmegaConf.create(OmegaConf.to_container(explicit))
    del bare.local["_target_"]
    assert isinstance(source_of(bare), LocalCorpora)
    assert source_identity(bare) == source_identity(explicit)
    hub = OmegaConf.merge(explicit, {"source": "hub"})
    assert type(source_of(hub)).__name__ == "HubText"
