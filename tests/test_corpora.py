"""Offline text corpora: determinism, plausible content, clear errors."""

from __future__ import annotations

import re

import pytest

from modularity.data.cleaning.gcide import GCIDE_DOMAINS
from modularity.data.corpora import (
    CORPORA,
    LICENCE_SECTION_CHARS,
    CorpusUnavailable,
    Document,
    describe,
    licence_sections,
    load_corpus,
)
from modularity.data.system_paths import (
    COMMON_LICENSES,
    GCIDE_DICT,
    GCIDE_INDEX,
    PYTHON_DOC_SOURCES,
)
from modularity.errors import ModularityError

GCIDE_INSTALLED = GCIDE_DICT.path.is_file() and GCIDE_INDEX.path.is_file()
needs_gcide = pytest.mark.skipif(
    not GCIDE_INSTALLED, reason="Debian dict-gcide not installed (apt-get install dict-gcide)"
)
needs_licences = pytest.mark.skipif(
    not COMMON_LICENSES.path.is_dir(), reason="/usr/share/common-licenses absent (not Debian)"
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
    "licences": ["License", "warranty"],
}


def _installed(name: str) -> bool:
    if name in GCIDE_DOMAINS:
        return GCIDE_INSTALLED
    if name == "licences":
        return COMMON_LICENSES.path.is_dir()
    return True


def test_registry_lists_every_domain() -> None:
    assert set(CORPORA) == set(EXPECTED_WORDS)
    for name in CORPORA:
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


def test_prose_falls_back_to_pydoc_topics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PYTHON_DOC_SOURCES.env_var, "/nonexistent/python-doc")
    docs = load_corpus("prose")
    assert len(docs) > 50
    assert all(d.doc_id.startswith("pydoc_data/") for d in docs)
    assert not any(re.search(r"^\s*>>> ", d.text, re.MULTILINE) for d in docs)
    assert "python3.11-doc" in describe("prose")


@needs_gcide
def test_gcide_domains_are_disjoint_and_clean() -> None:
    seen: dict[str, str] = {}
    for name in GCIDE_DOMAINS:
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


def test_unknown_corpus_names_valid_choices() -> None:
    with pytest.raises(ValueError, match="'astrology'") as err:
        load_corpus("astrology")
    for name in CORPORA:
        assert name in str(err.value)
    with pytest.raises(ValueError, match="biology"):
        describe("astrology")


def test_missing_gcide_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(GCIDE_DICT.env_var, "/nonexistent/gcide.dict.dz")
    with pytest.raises(CorpusUnavailable, match="apt-get install dict-gcide.*MODULARITY_GCIDE"):
        load_corpus("biology")
    assert issubclass(CorpusUnavailable, ModularityError)


def test_missing_licences_say_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(COMMON_LICENSES.env_var, "/nonexistent/common-licenses")
    with pytest.raises(CorpusUnavailable, match="apt-get install base-files"):
        load_corpus("licences")


def test_environment_variable_points_a_loader_at_a_copy(tmp_path, monkeypatch) -> None:
    (tmp_path / "MIT").write_text("Permission is hereby granted, free of charge")
    monkeypatch.setenv(COMMON_LICENSES.env_var, str(tmp_path))
    assert load_corpus("licences") == [
        Document("MIT/000", "Permission is hereby granted, free of charge")
    ]


def test_licences_are_cut_into_sections_at_paragraph_breaks() -> None:
    paragraphs = [f"Paragraph {i}." + " term" * 150 for i in range(10)]  # ~760 chars each
    sections = licence_sections("\n\n".join(paragraphs))
    assert [len(s) >= LICENCE_SECTION_CHARS for s in sections] == [True, True, True, False]
    assert "\n\n".join(sections) == "\n\n".join(paragraphs)  # nothing lost, nothing cut


@needs_licences
def test_licences_skip_symlinked_aliases() -> None:
    ids = {d.doc_id.split("/")[0] for d in load_corpus("licences")}
    for path in COMMON_LICENSES.path.iterdir():
        assert (path.name in ids) == (path.is_file() and not path.is_symlink())
