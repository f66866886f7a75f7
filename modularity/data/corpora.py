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
medicine   GCIDE senses labelled Med./Surg./Pharm./...       2_672    324_000     81_000
licences   Debian ``/usr/share/common-licenses``                14    237_000     59_000
=========  ===============================================  ======  =========  =========

Measured on Debian 12 (dict-gcide 0.48.5+nmu2, python3.11-doc 3.11.2+deb12u8) with
CPython 3.11.7; ~tokens is characters / 4.  ``code`` reads the running interpreter's
stdlib, so it differs slightly across Python versions.  Without ``python3.11-doc``,
``prose`` falls back to CPython's 79 ``pydoc_data`` topics (~100k tokens).  The GCIDE
domains hold every sense the dictionary labels with their fields; only biology and
chemistry reach 100k tokens.

GCIDE (Webster's 1913 dictionary plus later additions) marks field-specific senses with
labels such as ``(Zool.)`` or ``(Eng. Law)``.  A sense joins a domain when every component
of its label (``Bot. & Zool.`` has two) names that domain; senses whose labels span two
domains (``Chem. & Physics``) are left out so the domains stay disjoint.  Quotations,
citations, etymologies, pronunciations and source tags are removed, and each document
gathers one headword's senses for that domain.  Parsing the whole dictionary takes 2-3 s
and happens once per process.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import re
import sysconfig
import tokenize
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from modularity.errors import ConfigError, ModularityError, invalid_choice

GCIDE_DICT = Path("/usr/share/dictd/gcide.dict.dz")
GCIDE_INDEX = Path("/usr/share/dictd/gcide.index")
PYTHON_DOC_SOURCES = Path("/usr/share/doc/python3.11/html/_sources")
COMMON_LICENSES = Path("/usr/share/common-licenses")

DEFAULT_FRACTIONS: Mapping[str, float] = MappingProxyType(
    {"train": 0.8, "collect": 0.1, "evaluate": 0.1}
)


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


def check_fractions(fractions: Mapping[str, float]) -> dict[str, float]:
    """Validate split fractions (non-negative, summing to 1) and return them as a dict.

    Raises ``ConfigError`` (a ``ValueError``) naming the offending fractions.
    """
    if not fractions:
        raise ConfigError("split fractions must name at least one split")
    bad = {k: v for k, v in fractions.items() if not v >= 0}
    if bad:
        raise ConfigError(f"split fractions must be non-negative, got {bad}")
    total = sum(fractions.values())
    if abs(total - 1.0) > 1e-9:
        raise ConfigError(f"split fractions must sum to 1, got {total} from {dict(fractions)}")
    return dict(fractions)


def split_documents(
    docs: Iterable[Document],
    fractions: Mapping[str, float] = DEFAULT_FRACTIONS,
    seed: int = 0,
) -> dict[str, list[Document]]:
    """Assign each document to one split by a stable hash of ``(seed, doc_id)``.

    Hashing instead of shuffling makes a document's split independent of which other
    documents are present and of their order, so adding documents never moves old ones.
    Split sizes are therefore only approximately proportional to ``fractions`` (binomial
    noise; a tiny corpus may leave a split empty).  The hash range is cut in the order of
    ``fractions``' keys, so reordering the keys reassigns documents.  Each split keeps the
    input order.
    """
    fractions = check_fractions(fractions)
    bounds: list[tuple[float, str]] = []
    cumulative = 0.0
    for name, fraction in fractions.items():
        cumulative += fraction
        bounds.append((cumulative, name))
    last_nonempty = next(name for name, f in reversed(fractions.items()) if f > 0)
    out: dict[str, list[Document]] = {name: [] for name in fractions}
    for doc in docs:
        digest = hashlib.sha256(f"{seed}\x00{doc.doc_id}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        split = next((name for bound, name in bounds if u < bound), last_nonempty)
        out[split].append(doc)
    return out


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
    docs = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if _CODE_EXCLUDED_DIRS.intersection(rel.parts[:-1]) or not path.is_file():
            continue
        try:
            with tokenize.open(path) as f:
                text = f.read()
        except (SyntaxError, UnicodeDecodeError):
            continue  # deliberately mis-encoded fixtures; not representative code
        if text.strip() and not text.startswith(_GENERATED_CODEC):
            docs.append(Document(rel.as_posix(), text))
    return tuple(docs)


def _load_code() -> tuple[Document, ...]:
    return _code_documents(sysconfig.get_paths()["stdlib"])


# --------------------------------------------------------------------------- prose

# Directives describing an API object: the header (signature lines, options) is code, the
# indented body after the first blank line is prose.
# fmt: off
_SIGNATURE_DIRECTIVES = frozenset((
    "abstractmethod", "attribute", "awaitablefunction", "awaitablemethod", "c:function",
    "c:macro", "c:member", "c:struct", "c:type", "c:var", "class", "classmethod", "cmdoption",
    "coroutinefunction", "coroutinemethod", "data", "decorator", "decoratormethod", "describe",
    "envvar", "exception", "function", "method", "object", "opcode", "pdbcommand",
    "staticmethod",
))
# Directives whose content is prose; for admonitions the argument is prose too, for the rest
# it is a version number or a condition.
_PROSE_DIRECTIVES = frozenset((
    "availability", "deprecated", "deprecated-removed", "epigraph", "glossary", "impl-detail",
    "list-table", "only", "table", "versionadded", "versionchanged",
))
_ADMONITIONS = frozenset((
    "attention", "caution", "danger", "hint", "important", "note", "rubric", "seealso",
    "sidebar", "tip", "topic", "warning",
))
# fmt: on
_DIRECTIVE = re.compile(r"^\.\.\s+([\w:-]+)::\s*(.*)$")
_FIELD_MARKER = re.compile(r"^:[\w][\w -]*:(?:\s+|$)")  # ":Author: ...", ":noindex:"
_ADORNMENT = re.compile(r"^\s*([=\-~^\"'`#*+<>_.:])\1{2,}\s*$")
_TABLE_BORDER = re.compile(r"^\s*[+=|-][-+=| ]{2,}$")
_ROLE = re.compile(r":[\w:-]+:`([^`]*)`")  # :func:`~a.b`, :ref:`title <target>`
_INLINE = [
    (re.compile(r"`([^`<]+?)\s*<[^`>]*>`__?"), r"\1"),  # `text <url>`_
    (re.compile(r"``(.+?)``", re.DOTALL), r"\1"),
    (re.compile(r"`([^`]+)`_{0,2}"), r"\1"),
    (re.compile(r"\*\*(.+?)\*\*", re.DOTALL), r"\1"),
    (re.compile(r"(?<![\w*])\*(?=\S)([^*]+?)(?<=\S)\*(?![\w*])"), r"\1"),
    (re.compile(r"\s?\[(?:#\w*|\d+)\]_"), ""),  # footnote references
    (re.compile(r"\|(\w+)\|"), r"\1"),  # substitutions such as |version|
    (re.compile(r"\\(.)"), r"\1"),
]


def _role_text(match: re.Match[str]) -> str:
    content = match.group(1).lstrip("~!")
    titled = re.fullmatch(r"(.+?)\s*<[^<>]*>", content, re.DOTALL)
    return titled.group(1) if titled else content


def _inline_to_text(text: str) -> str:
    text = _ROLE.sub(_role_text, text)
    for pattern, repl in _INLINE:
        text = pattern.sub(repl, text)
    return text


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _skip_block(lines: Sequence[str], i: int, indent: int) -> int:
    """Index of the first line from ``i`` on that is non-blank and indented <= ``indent``."""
    while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > indent):
        i += 1
    return i


def _skip_paragraph(lines: Sequence[str], i: int) -> int:
    """Index of the first blank line (or the end) from ``i`` on."""
    while i < len(lines) and lines[i].strip():
        i += 1
    return i


def rst_to_prose(source: str) -> str:
    """Strip code, doctests, directive headers and markup from reST, keeping the prose.

    Literal blocks (after ``::``), code/meta directives (``code-block``, ``index``,
    comments, ...), doctest paragraphs, API signatures, directive options, section
    adornments and table borders are dropped; inline markup is reduced to its text.
    """
    lines = source.expandtabs().splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        indent = _indent(line)
        directive = _DIRECTIVE.match(stripped)
        name = directive.group(1) if directive else ""
        if name in _SIGNATURE_DIRECTIVES:
            i = _skip_paragraph(lines, i)
        elif name in _PROSE_DIRECTIVES or name in _ADMONITIONS:
            if name in _ADMONITIONS and directive and directive.group(2):
                out.append(directive.group(2))
            i += 1
            while i < len(lines) and _indent(lines[i]) > indent and lines[i].lstrip()[:1] == ":":
                i += 1  # directive options such as :noindex:
        elif stripped.startswith(".."):  # code/meta directives, comments, link targets
            i = _skip_block(lines, i + 1, indent)
        elif stripped.startswith(">>>"):
            i = _skip_paragraph(lines, i)
        elif stripped.endswith("::") and i + 1 < len(lines) and not lines[i + 1].strip():
            intro = stripped[:-2].rstrip()  # "Example::" -> "Example:"; a bare "::" vanishes
            if intro:
                out.append(intro if intro.endswith(":") else intro + ":")
            out.append("")
            i = _skip_block(lines, i + 1, indent)
        elif _ADORNMENT.match(line) or _TABLE_BORDER.match(line):
            i += 1
        else:
            out.append(_FIELD_MARKER.sub("", stripped))
            i += 1
    # Inline markup may wrap across lines, so it is resolved on the joined text.
    return _inline_to_text(re.sub(r"\n{3,}", "\n\n", "\n".join(out))).strip()


_PLAIN_ADMONITION = re.compile(r"^(?:Note|Warning|See also|Important|Caution|Attention):$")


def plain_text_to_prose(text: str) -> str:
    """Drop doctests, grammar rules and code blocks from Sphinx's plain-text rendering.

    In ``pydoc_data`` topics a code block is an indented block after a line ending in ``:``
    and a blank line (except after admonition headings such as ``Note:``).
    """
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith(">>>") or "::=" in stripped:
            i = _skip_paragraph(lines, i)
            continue
        out.append(line.rstrip())
        i += 1
        intro = stripped.endswith(":") and not _PLAIN_ADMONITION.match(stripped)
        if intro and i < len(lines) and not lines[i].strip():
            out.append("")
            i = _skip_block(lines, i, _indent(line))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()


@functools.lru_cache(maxsize=4)
def _python_doc_documents(root: str) -> tuple[Document, ...]:
    base = Path(root)
    docs = []
    for path in sorted(base.rglob("*.rst.txt")):
        text = rst_to_prose(path.read_text(encoding="utf-8"))
        if text:
            docs.append(Document(path.relative_to(base).as_posix().removesuffix(".txt"), text))
    return tuple(docs)


@functools.lru_cache(maxsize=1)
def _pydoc_topic_documents() -> tuple[Document, ...]:
    try:
        from pydoc_data.topics import topics
    except ImportError as err:
        raise CorpusUnavailable(
            "corpus 'prose' needs Debian's python3.11-doc (apt-get install python3.11-doc) "
            "or CPython's pydoc_data package; neither was found"
        ) from err
    docs = (
        Document(f"pydoc_data/{key}", plain_text_to_prose(text))
        for key, text in sorted(topics.items())
    )
    return tuple(doc for doc in docs if doc.text)


def _load_prose() -> tuple[Document, ...]:
    if PYTHON_DOC_SOURCES.is_dir():
        return _python_doc_documents(str(PYTHON_DOC_SOURCES))
    return _pydoc_topic_documents()


# --------------------------------------------------------------------------- licences


@functools.lru_cache(maxsize=4)
def _licence_documents(root: str) -> tuple[Document, ...]:
    base = Path(root)
    if not base.is_dir():
        raise CorpusUnavailable(
            f"corpus 'licences' needs Debian's base-files ({base} is missing): "
            "apt-get install base-files"
        )
    files = sorted(p for p in base.iterdir() if p.is_file() and not p.is_symlink())
    return tuple(Document(p.name, p.read_text(encoding="utf-8", errors="replace")) for p in files)


def _load_licences() -> tuple[Document, ...]:
    return _licence_documents(str(COMMON_LICENSES))


# --------------------------------------------------------------------------- GCIDE

GCIDE_DOMAINS = ("biology", "chemistry", "physics", "math", "law", "medicine")

# Domain -> head words of label components (the last word, lower-cased, accents and dots
# removed).  "Phys. Geog." has head "geog" and so is no physics; "Physiol. Chem." is chemistry.
_DOMAIN_LABEL_HEADS = {
    "biology": "zool zoology bot botany biol biology anat anatomy physiol physiology genetics "
    "embryol embryology microbiol microbiology bacteriol bacteriology immunology histol histology",
    "chemistry": "chem chemistry",
    "physics": "physics phys opt optics elec electricity elect mech mechanics magnetism "
    "thermodynamics thermotics kinematics dynamics statics hydrostatics acoustics pneumatics",
    "math": "math mathematics geom geometry alg algebra arith arithmetic trig trigonometry "
    "calculus quaternions statistics",
    "law": "law",
    "medicine": "med medicine surg surgery pharm pharmacy pathol pathology therap",
}
_LABEL_HEADS = {head: dom for dom, heads in _DOMAIN_LABEL_HEADS.items() for head in heads.split()}
_LABEL = re.compile(r"\(([A-Z][A-Za-z\u00c0-\u024f.,&' -]{0,40})\)")
_ANY_LABEL = re.compile(r"\(([A-Z][^()\n]{0,60})\)")  # a superset of _LABEL before decoding
_QUOTE_INDENT = 12  # GCIDE indents literary quotations by 12+ columns, definitions by < 12
_CITATION = re.compile(r"\s*--[A-Z].*$", re.MULTILINE)  # "--Shak." to the end of the line
_ACCENT = re.compile(r"\[([=~\"'`.^*,-]?)([A-Za-z]{1,2})(\^?)\]")
_COMBINING = {
    "'": "\u0301", "`": "\u0300", '"': "\u0308", "~": "\u0303", "^": "\u0302", "=": "\u0304",
    "-": "\u0304", ".": "\u0323", "*": "\u030a", ",": "\u0327",
}  # fmt: skip
_ENTITIES = {
    "ae": "ae", "AE": "Ae", "oe": "oe", "OE": "Oe", "imac": "\u012b", "aum": "\u00e4",
    "asl": "a", "add": "a", "udd": "u", "eth": "\u00f0", "thorn": "\u00fe", "yogh": "\u021d",
    "deg": "\u00b0", "root": "\u221a", "sect": "\u00a7", "pounds": "\u00a3", "times": "\u00d7",
    "middot": "\u00b7", "nbsp": " ", "flat": "\u266d", "sharp": "\u266f", "rarr": "\u2192",
    "para": "\u00b6", "prime": "\u2032", "bprime": "\u2033",
}  # fmt: skip
_ENTITY = re.compile(r"\[([A-Za-z]{2,7})\]")


def _entity(match: re.Match[str]) -> str:
    name = match.group(0)[1:-1]
    if name in _ENTITIES:
        return _ENTITIES[name]
    case = "CAPITAL" if name[0].isupper() else "SMALL"
    try:
        return unicodedata.lookup(f"GREEK {case} LETTER {name.upper()}")
    except KeyError:
        return match.group(0)  # an editorial tag such as [Obs.]; removed later


def _accent(match: re.Match[str]) -> str:
    prefix, letters, suffix = match.groups()
    if not prefix and not suffix:
        return _entity(match)
    mark = "\u0306" if suffix else _COMBINING[prefix]  # a trailing ^ is a breve
    return unicodedata.normalize("NFC", letters + mark)


def _decode_markup(text: str) -> str:
    """Turn GCIDE's ASCII accent and entity codes (``['e]``, ``[ae]``) into Unicode."""
    return _ENTITY.sub(_entity, _ACCENT.sub(_accent, text))


def _label_domain(label: str) -> str | None:
    """The single domain every component of a field label names, else None."""
    plain = unicodedata.normalize("NFKD", label).encode("ascii", "ignore").decode()
    domains = set()
    for component in re.split(r"\s*(?:&|,|\band\b|\bor\b)\s*", plain):
        words = component.replace(".", " ").lower().split()
        if not words:
            continue
        domains.add(_LABEL_HEADS.get(words[-1]))
    return domains.pop() if len(domains) == 1 else None


_EDITORIAL = re.compile(r"\[[^\[\]]*\]|\\[^\\]{0,80}\\")  # [etymology], [Obs.], \Pro*nun"ci*a`tion\


def _clean_definition(text: str) -> str:
    text = re.sub(r"_\{([^{}]*)\}", r"\1", text)  # subscripts: H_{2}O -> H2O
    text = re.sub(r"\^\{([^{}]*)\}", r"^\1", text)  # superscripts: x^{2} -> x^2
    text = text.replace("{", "").replace("}", "")  # cross-references, possibly nested
    text = re.sub(r"(?<=[A-Za-z])[*\"`](?=[A-Za-z])", "", text)  # syllable marks: Bar"ra*try
    text = re.sub(r"\s+", " ", text).strip(" ,;:")
    return text[:1].upper() + text[1:]


def _entry_senses(headword: str, entry: str) -> list[tuple[str, str]]:
    """(domain, sense text) for each field-labelled sense of one dictionary entry."""
    senses: list[tuple[str, str]] = []
    previous_domain = None  # "Note:" paragraphs extend the sense before them
    entry_domain = None  # a label on the headword line covers unlabelled numbered senses
    for position, paragraph in enumerate(re.split(r"\n[ \t]*\n", entry)):
        lines = [ln for ln in paragraph.split("\n") if _indent(ln) < _QUOTE_INDENT]
        text = _EDITORIAL.sub(" ", _CITATION.sub("", "\n".join(lines))).strip()
        if not text:
            continue
        if text.startswith("Note:"):
            if previous_domain is not None:
                note = _clean_definition(text.removeprefix("Note:"))
                senses[-1] = (previous_domain, f"{senses[-1][1]} {note}")
            continue
        previous_domain = None
        label = _LABEL.search(text)
        number = re.match(r"\d+\.", text)
        if label is not None:
            domain, rest = _label_domain(label.group(1)), text[label.end() :]
            if position == 0 and re.match(r"\s*1\.", rest):
                entry_domain = domain
        elif number is not None and entry_domain is not None:
            domain, rest = entry_domain, text[number.end() :]
        else:
            continue
        definition = _clean_definition(re.sub(r"^\s*\d+\.", "", rest))
        if domain is None or len(definition) < 3:
            continue
        phrase = re.match(r"\{([^{}]+)\}", text)
        term = _clean_definition(phrase.group(1)) if phrase else headword
        senses.append((domain, f"{term}: {definition}"))
        previous_domain = domain
    return senses


_B64 = {
    c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
}


def _b64_number(text: str) -> int:
    """Decode dictd's base-64 offsets and lengths (most significant digit first)."""
    value = 0
    for char in text:
        value = value * 64 + _B64[char]
    return value


def _parse_gcide(dict_path: Path, index_path: Path) -> dict[str, list[tuple[str, str]]]:
    """Domain -> [(headword, text), ...] in dictionary index order."""
    with gzip.open(dict_path, "rb") as f:
        data = f.read()
    docs: dict[str, dict[str, list[str]]] = {domain: {} for domain in GCIDE_DOMAINS}
    seen: set[tuple[int, int]] = set()
    for line in index_path.read_text(encoding="utf-8").splitlines():
        headword, offset_code, length_code = line.split("\t")[:3]
        span = (_b64_number(offset_code), _b64_number(length_code))
        if headword.startswith("00-") or span in seen:
            continue  # dictd metadata, or an alternate spelling of an entry already seen
        seen.add(span)
        # The file is ASCII apart from three stray Windows-1252 bytes.
        raw = data[span[0] : span[0] + span[1]].decode("cp1252", "replace")
        if not any(_label_domain(_decode_markup(m)) for m in _ANY_LABEL.findall(raw)):
            continue  # most entries carry no field label of ours: skip them cheaply
        entry = _decode_markup(raw)
        first_line = entry.split("\n", 1)[0]
        if "\\" in first_line:  # 'Acid \Ac"id\, n.' -> 'Acid'; else keep the index name
            headword = first_line.split("\\", 1)[0].strip()
        for domain, sense in _entry_senses(headword, entry):
            docs[domain].setdefault(headword, []).append(sense)
    return {
        domain: [(word, "\n".join(senses)) for word, senses in by_word.items()]
        for domain, by_word in docs.items()
    }


@functools.lru_cache(maxsize=4)
def _gcide_domains(
    dict_path: str, index_path: str, mtime_ns: int
) -> dict[str, tuple[Document, ...]]:
    """Parse once per process for all domains; ``mtime_ns`` makes an upgrade re-parse."""
    parsed = _parse_gcide(Path(dict_path), Path(index_path))
    return {
        domain: tuple(Document(f"gcide/{word}", text) for word, text in parsed[domain])
        for domain in GCIDE_DOMAINS
    }


def _gcide_loader(domain: str) -> Callable[[], tuple[Document, ...]]:
    def load() -> tuple[Document, ...]:
        if not (GCIDE_DICT.is_file() and GCIDE_INDEX.is_file()):
            raise CorpusUnavailable(
                f"corpus {domain!r} needs Debian's dict-gcide ({GCIDE_DICT} and {GCIDE_INDEX}): "
                "apt-get install dict-gcide"
            )
        mtime_ns = GCIDE_DICT.stat().st_mtime_ns
        return _gcide_domains(str(GCIDE_DICT), str(GCIDE_INDEX), mtime_ns)[domain]

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
                "medicine",
                f"GCIDE senses labelled Med./Surg./Pharm./Pathol. ({_GCIDE_NOTE}; ~81k tokens, "
                "all there is)",
                _gcide_loader("medicine"),
            ),
            CorpusSpec(
                "licences",
                "Free-software licence texts from Debian's /usr/share/common-licenses, one per "
                "file, symlinked aliases skipped (~59k tokens)",
                _load_licences,
            ),
        ]
    }
)


def available_corpora() -> list[str]:
    """Names of all registered corpora (whether or not their sources are installed)."""
    return list(CORPORA)


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
    if name == "prose" and not PYTHON_DOC_SOURCES.is_dir():
        return (
            f"{spec.description}. {PYTHON_DOC_SOURCES} is missing, so this falls back to "
            "CPython's 79 pydoc_data topics (~100k tokens); apt-get install python3.11-doc "
            "for the full ~1.8M-token corpus"
        )
    return spec.description
