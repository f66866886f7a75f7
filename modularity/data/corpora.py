"""Named offline text domains for selective-pruning experiments.

Selective pruning compares how strongly each MLP neuron fires on a *task* domain with how
strongly it fires on *reference* text, so it needs several topically distinct corpora.
These are built from text that ships with installed software: experiments need no network
access and see the same documents on every machine with the same packages.

=========  ===============================================  ======  =========  =========
name       source                                             docs      chars    ~tokens
=========  ===============================================  ======  =========  =========
code       CPython stdlib ``.py`` files (3.11.7)               601  9_304_000  2_326_000
prose      Debian ``python3.11-doc`` reST, code stripped       497  7_365_000  1_841_000
biology    GCIDE senses labelled Zool./Bot./Anat./...       16_155  2_546_000    637_000
chemistry  GCIDE senses labelled Chem.                       3_428    600_000    150_000
physics    GCIDE senses labelled Physics/Opt./Elec./...      1_185    261_000     65_000
math       GCIDE senses labelled Math./Geom./Alg./...          829    163_000     41_000
law        GCIDE senses labelled Law, Eng. Law, ...          1_962    363_000     91_000
licences   Debian ``/usr/share/common-licenses``, sections     110    237_000     59_000
=========  ===============================================  ======  =========  =========

Measured on Debian 12 (dict-gcide 0.48.5+nmu2, python3.11-doc 3.11.2+deb12u8) with
CPython 3.11.7; ~tokens is characters / 4.  ``code`` reads the running interpreter's
stdlib, so it differs slightly across Python versions.  Without ``python3.11-doc``,
``prose`` falls back to CPython's 79 ``pydoc_data`` topics (~100k tokens).  The GCIDE
domains hold every sense the dictionary labels with their fields; only biology and
chemistry reach 100k tokens.

The cleaners live in ``modularity.data.cleaning`` (reST prose, GCIDE senses), the split
rule in ``modularity.data.splits`` and the system paths, each overridable by an environment
variable, in ``modularity.data.system_paths``.  Each corpus is parsed once per process, and
cleaned once per source: ``modularity.data.corpus_cache`` keeps it on disk.
"""

from __future__ import annotations

import functools
import os
import re
import sysconfig
import tokenize
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from modularity.data.cleaning.gcide import GCIDE_DOMAINS, parse_gcide
from modularity.data.cleaning.rst import plain_text_to_prose, rst_to_prose
from modularity.data.corpus_cache import cached_parts, sources_checksum
from modularity.data.system_paths import (
    COMMON_LICENSES,
    GCIDE_DICT,
    GCIDE_INDEX,
    PYTHON_DOC_SOURCES,
)
from modularity.errors import ModularityError, invalid_choice


class DataUnavailable(ModularityError, RuntimeError):
    """A data source that should ship with installed software is missing."""


class CorpusUnavailable(DataUnavailable):
    """A corpus's source files are missing; the message says what to install."""


@dataclass(frozen=True)
class Document:
    """One unit of text; ``doc_id`` is stable across machines and decides its split."""

    doc_id: str
    text: str


@dataclass(frozen=True)
class CorpusSpec:
    """A registered corpus: a one-line description and a loader."""

    name: str
    description: str
    loader: Callable[[], tuple[Document, ...]]


def _documents(pairs: list[tuple[str, str]]) -> tuple[Document, ...]:
    return tuple(Document(doc_id, text) for doc_id, text in pairs)


# --------------------------------------------------------------------------- code


# Tests are excluded so the corpus is library code; pydoc_data holds the rendered docs as one
# string literal (prose, not code).
_CODE_EXCLUDED_DIRS = frozenset(
    {"site-packages", "dist-packages", "test", "tests", "idle_test", "idlelib", "pydoc_data"}
)
_GENERATED_CODEC = '""" Python Character Mapping Codec'  # 72 machine-made lookup tables


@functools.lru_cache(maxsize=4)
def _code_documents(stdlib: str) -> tuple[Document, ...]:
    root = Path(stdlib)
    if not (root / "os.py").is_file():
        raise CorpusUnavailable(
            f"corpus 'code' needs the Python standard library sources, not found at {root}: "
            "install your Python's stdlib .py files (Debian: apt-get install libpython3.11-stdlib)"
        )
    files = []
    for folder, subfolders, names in os.walk(root):
        # Pruned while walking: site-packages alone can hold more files than the stdlib.
        subfolders[:] = [d for d in subfolders if d not in _CODE_EXCLUDED_DIRS]
        files += [Path(folder, n) for n in names if n.endswith(".py")]
    files = sorted(path for path in files if path.is_file())

    def build() -> dict[str, list[tuple[str, str]]]:
        docs = []
        for path in files:
            try:
                with tokenize.open(path) as f:
                    text = f.read()
            except (SyntaxError, UnicodeDecodeError):
                continue  # deliberately mis-encoded fixtures; not representative code
            if text.strip() and not text.startswith(_GENERATED_CODEC):
                docs.append((path.relative_to(root).as_posix(), text))
        return {"code": docs}

    return _documents(cached_parts("code", sources_checksum(files, root), build)["code"])


def _load_code() -> tuple[Document, ...]:
    return _code_documents(sysconfig.get_paths()["stdlib"])


# --------------------------------------------------------------------------- prose


@functools.lru_cache(maxsize=4)
def _python_doc_documents(root: str) -> tuple[Document, ...]:
    base = Path(root)
    files = sorted(base.rglob("*.rst.txt"))

    def build() -> dict[str, list[tuple[str, str]]]:
        docs = []
        for path in files:
            text = rst_to_prose(path.read_text(encoding="utf-8"))
            if text:
                docs.append((path.relative_to(base).as_posix().removesuffix(".txt"), text))
        return {"prose": docs}

    return _documents(cached_parts("prose", sources_checksum(files, base), build)["prose"])


@functools.lru_cache(maxsize=1)
def _pydoc_topic_documents() -> tuple[Document, ...]:
    try:
        from pydoc_data.topics import topics
    except ImportError as err:
        raise CorpusUnavailable(
            f"corpus 'prose' needs Debian's python3.11-doc ({PYTHON_DOC_SOURCES.install_hint()}) "
            "or CPython's pydoc_data package; neither was found"
        ) from err
    docs = (
        Document(f"pydoc_data/{key}", plain_text_to_prose(text))
        for key, text in sorted(topics.items())
    )
    return tuple(doc for doc in docs if doc.text)


def _load_prose() -> tuple[Document, ...]:
    if PYTHON_DOC_SOURCES.path.is_dir():
        return _python_doc_documents(str(PYTHON_DOC_SOURCES.path))
    return _pydoc_topic_documents()


# --------------------------------------------------------------------------- licences


LICENCE_SECTION_CHARS = 2000  # licences are cut into sections of about this size


def licence_sections(text: str, min_chars: int = LICENCE_SECTION_CHARS) -> list[str]:
    """Consecutive paragraphs joined until each section holds ``min_chars`` characters (the
    last may be shorter).  Fourteen whole files are too few documents to split into five
    pools; ~120 sections are enough."""
    sections, current = [], ""
    for paragraph in re.split(r"\n\s*\n", text.strip()):
        current = f"{current}\n\n{paragraph}" if current else paragraph
        if len(current) >= min_chars:
            sections.append(current)
            current = ""
    return [*sections, current] if current else sections


@functools.lru_cache(maxsize=4)
def _licence_documents(root: str) -> tuple[Document, ...]:
    base = Path(root)
    files = sorted(p for p in base.iterdir() if p.is_file() and not p.is_symlink())
    return tuple(
        Document(f"{path.name}/{i:03d}", section)
        for path in files
        for i, section in enumerate(
            licence_sections(path.read_text(encoding="utf-8", errors="replace"))
        )
    )


def _load_licences() -> tuple[Document, ...]:
    base = COMMON_LICENSES.path
    if not base.is_dir():
        raise CorpusUnavailable(f"corpus 'licences' needs {base}: {COMMON_LICENSES.install_hint()}")
    return _licence_documents(str(base))


# --------------------------------------------------------------------------- GCIDE


@functools.lru_cache(maxsize=4)
def _gcide_domains(
    dict_path: str, index_path: str, mtime_ns: int
) -> dict[str, tuple[Document, ...]]:
    """Parse once for all domains (cached on disk by the files' checksum); ``mtime_ns``
    makes an upgrade within a process read it again."""
    files = [Path(dict_path), Path(index_path)]

    def build() -> dict[str, list[tuple[str, str]]]:
        parsed = parse_gcide(*files)
        return {
            domain: [(f"gcide/{word}", text) for word, text in parsed[domain]]
            for domain in GCIDE_DOMAINS
        }

    parts = cached_parts("gcide", sources_checksum(files), build)
    return {domain: _documents(parts[domain]) for domain in GCIDE_DOMAINS}


def _gcide_loader(domain: str) -> Callable[[], tuple[Document, ...]]:
    def load() -> tuple[Document, ...]:
        dict_path, index_path = GCIDE_DICT.path, GCIDE_INDEX.path
        if not (dict_path.is_file() and index_path.is_file()):
            raise CorpusUnavailable(
                f"corpus {domain!r} needs {dict_path} and {index_path}: {GCIDE_DICT.install_hint()}"
            )
        mtime_ns = dict_path.stat().st_mtime_ns
        return _gcide_domains(str(dict_path), str(index_path), mtime_ns)[domain]

    return load


# --------------------------------------------------------------------------- registry

_GCIDE_NOTE = "one document per headword; every sense so labelled"
CORPORA: Mapping[str, CorpusSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in [
            CorpusSpec(
                "code",
                "Python source: the running interpreter's stdlib .py files without tests, one per "
                "file (~2.3M tokens for 3.11; varies slightly across Python versions)",
                _load_code,
            ),
            CorpusSpec(
                "prose",
                "English technical prose: the Python 3.11 docs' reST sources with code, doctests "
                "and markup stripped, one per file (~1.8M tokens)",
                _load_prose,
            ),
            CorpusSpec(
                "biology",
                f"GCIDE senses labelled Zool./Bot./Biol./Anat./Physiol. etc. ({_GCIDE_NOTE}; "
                "~640k tokens)",
                _gcide_loader("biology"),
            ),
            CorpusSpec(
                "chemistry",
                f"GCIDE senses labelled Chem. ({_GCIDE_NOTE}; ~150k tokens)",
                _gcide_loader("chemistry"),
            ),
            CorpusSpec(
                "physics",
                f"GCIDE senses labelled Physics/Opt./Elec./Mech. etc. ({_GCIDE_NOTE}; ~65k tokens, "
                "all there is, under the 100k target)",
                _gcide_loader("physics"),
            ),
            CorpusSpec(
                "math",
                f"GCIDE senses labelled Math./Geom./Alg./Arith./Trig. ({_GCIDE_NOTE}; ~41k tokens, "
                "all there is, under the 100k target)",
                _gcide_loader("math"),
            ),
            CorpusSpec(
                "law",
                f"GCIDE senses labelled Law, Eng. Law, Civil Law etc. ({_GCIDE_NOTE}; ~91k tokens, "
                "all there is)",
                _gcide_loader("law"),
            ),
            CorpusSpec(
                "licences",
                "Free-software licence texts from Debian's /usr/share/common-licenses, cut into "
                "sections of ~2,000 characters at paragraph breaks, symlinked aliases skipped "
                "(~59k tokens)",
                _load_licences,
            ),
        ]
    }
)


def _spec(name: str) -> CorpusSpec:
    try:
        return CORPORA[name]
    except KeyError:
        raise invalid_choice("corpus", name, CORPORA) from None


def load_corpus(name: str) -> list[Document]:
    """Documents of corpus ``name`` in a deterministic order (parsed once per process).

    Raises ``ConfigError`` (a ``ValueError``) for an unknown name and ``CorpusUnavailable``
    (saying what to install) when its source files are missing.
    """
    return list(_spec(name).loader())


def describe(name: str) -> str:
    """One-line description of a corpus, including which source it would load from now."""
    spec = _spec(name)
    if name == "prose" and not PYTHON_DOC_SOURCES.path.is_dir():
        return (
            f"{spec.description}. {PYTHON_DOC_SOURCES.path} is missing, so this falls back to "
            "CPython's 79 pydoc_data topics (~100k tokens); apt-get install python3.11-doc "
            "for the full ~1.8M-token corpus"
        )
    return spec.description
