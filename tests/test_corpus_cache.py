"""Cleaned corpora on disk: built once per source checksum, never stale, never required."""

from pathlib import Path

import pytest
from code_edits import pretend_edited

from modularity.data import corpora
from modularity.data.corpus_cache import CORPORA_ENV_VAR, cached_parts


@pytest.fixture(autouse=True)
def corpora_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(CORPORA_ENV_VAR, str(tmp_path / "corpora"))
    return tmp_path / "corpora"


def test_parts_are_built_once_per_checksum():
    calls = []

    def build():
        calls.append(1)
        return {"a": [("doc-1", "text one"), ("doc-2", "text two ü")]}

    first = cached_parts("demo", "sum-1", build)
    assert cached_parts("demo", "sum-1", build) == first == build()
    assert len(calls) == 2  # the explicit call above; the second read came from disk
    cached_parts("demo", "sum-2", build)
    assert len(calls) == 3  # another checksum: built again


def test_an_unreadable_entry_is_parsed_again(corpora_dir):
    cached_parts("demo", "sum", lambda: {"a": [("d", "t")]})
    (entry,) = corpora_dir.glob("demo-*.json")
    entry.write_text("{not json")
    assert cached_parts("demo", "sum", lambda: {"a": [("d", "fresh")]}) == {"a": [("d", "fresh")]}


def test_an_unwritable_directory_only_costs_the_parse(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv(CORPORA_ENV_VAR, str(blocker / "corpora"))
    assert cached_parts("demo", "sum", lambda: {"a": [("d", "t")]}) == {"a": [("d", "t")]}


def test_a_changed_source_file_changes_the_documents(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    page = docs / "page.rst.txt"
    page.write_text("Title\n=====\n\nFirst version of the prose.\n")
    corpora._python_doc_documents.cache_clear()
    before = corpora._python_doc_documents(str(docs))
    page.write_text("Title\n=====\n\nSecond version of the prose.\n")
    corpora._python_doc_documents.cache_clear()
    after = corpora._python_doc_documents(str(docs))
    corpora._python_doc_documents.cache_clear()
    assert "First" in before[0].text and "Second" in after[0].text


def test_changed_cleaning_code_builds_again(monkeypatch):
    """The entry's version is the digest of the code that builds it (here: this module's)."""
    calls = []

    def build():
        calls.append(1)
        return {"a": [("d", "t")]}

    cached_parts("demo", "sum", build)
    cached_parts("demo", "sum", build)
    assert len(calls) == 1
    pretend_edited(monkeypatch, Path(__file__))
    cached_parts("demo", "sum", build)
    assert len(calls) == 2
