"""Offline text corpora: determinism, plausible content, clear errors, stable splits."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from modularity.data import corpora
from modularity.data.corpora import (
    CorpusUnavailable,
    Document,
    available_corpora,
    describe,
    load_corpus,
    split_documents,
)
from modularity.errors import ModularityError

GCIDE_INSTALLED = corpora.GCIDE_DICT.is_file() and corpora.GCIDE_INDEX.is_file()
needs_gcide = pytest.mark.skipif(
    not GCIDE_INSTALLED, reason="Debian dict-gcide not installed (apt-get install dict-gcide)"
)
needs_licences = pytest.mark.skipif(
    not corpora.COMMON_LICENSES.is_dir(), reason="/usr/share/common-licenses absent (not Debian)"
)

# Words a reader would expect in each domain; each must occur in the corpus.
EXPECTED_WORDS = {
    "code": ["def ", "import ", "return"],
    "prose": ["function", "module", "argument"],
    "biology": ["species", "genus"],
    "chemistry": ["acid", "compound"],
    "physics": ["force", "electric"],
    "math": ["equation", "angle"],
    "law": ["court", "estate"],
    "medicine": ["disease", "treatment"],
    "licences": ["License", "warranty"],
}


def _installed(name: str) -> bool:
    if name in corpora.GCIDE_DOMAINS:
        return GCIDE_INSTALLED
    if name == "licences":
        return corpora.COMMON_LICENSES.is_dir()
    return True


def test_registry_lists_every_domain() -> None:
    assert set(available_corpora()) == set(EXPECTED_WORDS)
    for name in available_corpora():
        assert describe(name)


@pytest.mark.parametrize("name", sorted(EXPECTED_WORDS))
def test_corpus_is_deterministic_nonempty_and_on_topic(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if not _installed(name):
        pytest.skip(f"source of corpus {name!r} not installed: {describe(name)}")
    docs = load_corpus(name)
    assert docs == load_corpus(name)
    assert docs, name
    assert all(isinstance(d, Document) and d.text.strip() for d in docs)
    ids = [d.doc_id for d in docs]
    assert len(set(ids)) == len(ids), "doc_ids must be unique"
    text = "\n".join(d.text for d in docs)
    for word in EXPECTED_WORDS[name]:
        assert word in text, f"{name!r} lacks {word!r}"
    chars = sum(len(d.text) for d in docs)
    with capsys.disabled():  # report the measured size alongside the test results
        print(f"\n{name}: {len(docs):,} docs, {chars:,} chars, ~{chars // 4:,} tokens")


def test_returned_list_is_a_copy() -> None:
    docs = load_corpus("code")
    docs.clear()
    assert load_corpus("code")


def test_code_corpus_skips_tests_and_site_packages() -> None:
    ids = [d.doc_id for d in load_corpus("code")]
    assert "os.py" in ids
    for doc_id in ids:
        parts = doc_id.split("/")[:-1]
        assert not {"test", "tests", "site-packages", "idlelib"} & set(parts), doc_id


def test_prose_has_no_doctests_or_code_blocks() -> None:
    docs = load_corpus("prose")
    for doc in docs:
        assert not re.search(r"^\s*>>> ", doc.text, re.MULTILINE), doc.doc_id
        assert ".. code-block::" not in doc.text, doc.doc_id
        assert not re.search(r"^\s*def \w+\(.*\):\s*$", doc.text, re.MULTILINE), doc.doc_id


def test_rst_to_prose_strips_code_and_markup() -> None:
    source = """\
Title
=====

.. function:: spam(eggs)
   :noindex:

   Return the :func:`spam` of *eggs*, see ``ham``. Example::

      def spam(eggs):
          return eggs

   >>> spam(1)
   1

.. code-block:: python

   print("hidden")

.. note:: Keep this sentence.
"""
    prose = corpora.rst_to_prose(source)
    assert "Return the spam of eggs, see ham. Example:" in prose
    assert "Keep this sentence." in prose
    for code in ("def spam", ">>>", "hidden", ":noindex:", "spam(eggs)", "====", "::"):
        assert code not in prose


def test_prose_falls_back_to_pydoc_topics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(corpora, "PYTHON_DOC_SOURCES", Path("/nonexistent/python-doc"))
    docs = load_corpus("prose")
    assert len(docs) > 50
    assert all(d.doc_id.startswith("pydoc_data/") for d in docs)
    assert not any(re.search(r"^\s*>>> ", d.text, re.MULTILINE) for d in docs)
    assert "python3.11-doc" in describe("prose")


@needs_gcide
def test_gcide_domains_are_disjoint_and_clean() -> None:
    seen: dict[str, str] = {}
    for name in corpora.GCIDE_DOMAINS:
        for doc in load_corpus(name):
            assert doc.doc_id.startswith("gcide/")
            for marker in ("[1913 Webster]", "[PJC]", "{", "}", "\\"):
                assert marker not in doc.text, (name, doc.doc_id, marker)
            for sense in doc.text.split("\n"):
                assert sense not in seen or seen[sense] == name, (sense, seen.get(sense), name)
                seen[sense] = name


@needs_gcide
def test_gcide_sense_labels_choose_the_domain() -> None:
    chemistry = {d.doc_id: d.text for d in load_corpus("chemistry")}
    biology = {d.doc_id: d.text for d in load_corpus("biology")}
    assert "compounds" in chemistry["gcide/Acid"]
    assert "gcide/Acid" not in biology
    assert "assemblage of species" in biology["gcide/Genus"]
    # A sense labelled "(Logic)" stays out even though its headword has a biology sense.
    assert "five predicable" not in biology["gcide/Genus"]


def test_label_domain_needs_every_component_to_agree() -> None:
    assert corpora._label_domain("Zool.") == "biology"
    assert corpora._label_domain("Bot. & Zoöl.") == "biology"
    assert corpora._label_domain("Eng. Law") == "law"
    assert corpora._label_domain("Physiol. Chem.") == "chemistry"
    assert corpora._label_domain("Chem. & Physics") is None
    assert corpora._label_domain("Phys. Geog.") is None
    assert corpora._label_domain("Mus.") is None


def test_unknown_corpus_names_valid_choices() -> None:
    with pytest.raises(ValueError, match="'astrology'") as err:
        load_corpus("astrology")
    for name in available_corpora():
        assert name in str(err.value)
    with pytest.raises(ValueError, match="biology"):
        describe("astrology")


def test_missing_gcide_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(corpora, "GCIDE_DICT", Path("/nonexistent/gcide.dict.dz"))
    with pytest.raises(CorpusUnavailable, match="apt-get install dict-gcide"):
        load_corpus("biology")
    assert issubclass(CorpusUnavailable, ModularityError)


def test_missing_licences_say_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(corpora, "COMMON_LICENSES", Path("/nonexistent/common-licenses"))
    with pytest.raises(CorpusUnavailable, match="apt-get install base-files"):
        load_corpus("licences")


@needs_licences
def test_licences_skip_symlinked_aliases() -> None:
    ids = {d.doc_id for d in load_corpus("licences")}
    for path in corpora.COMMON_LICENSES.iterdir():
        assert (path.name in ids) == (path.is_file() and not path.is_symlink())


def _docs(n: int) -> list[Document]:
    return [Document(f"doc-{i}", f"text {i}") for i in range(n)]


def test_split_documents_is_disjoint_complete_and_deterministic() -> None:
    docs = _docs(2000)
    splits = split_documents(docs)
    assert list(splits) == ["train", "collect", "evaluate"]
    ids = [d.doc_id for part in splits.values() for d in part]
    assert sorted(ids) == sorted(d.doc_id for d in docs)
    assert splits == split_documents(docs)
    assert 1450 < len(splits["train"]) < 1750  # ~80%, binomial spread
    assert splits != split_documents(docs, seed=1)


def test_split_of_a_document_ignores_the_rest_of_the_list() -> None:
    docs = _docs(300)
    where = {d.doc_id: s for s, part in split_documents(docs, seed=7).items() for d in part}
    shuffled_subset = list(reversed(docs[::3]))
    for split, part in split_documents(shuffled_subset, seed=7).items():
        for doc in part:
            assert where[doc.doc_id] == split


def test_split_documents_keeps_input_order() -> None:
    docs = _docs(100)
    for part in split_documents(docs, {"a": 0.5, "b": 0.5}).values():
        assert part == sorted(part, key=docs.index)


@pytest.mark.parametrize(
    "fractions",
    [{"train": 0.8, "test": 0.1}, {"train": 1.2, "test": -0.2}, {}],
)
def test_split_documents_rejects_bad_fractions(fractions: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="fractions"):
        split_documents(_docs(3), fractions)


def test_zero_fraction_split_stays_empty() -> None:
    splits = split_documents(_docs(500), {"train": 0.5, "none": 0.0, "test": 0.5})
    assert splits["none"] == []
    assert len(splits["train"]) + len(splits["test"]) == 500
