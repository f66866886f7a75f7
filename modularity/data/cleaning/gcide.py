"""Field-labelled senses from GCIDE, the GNU edition of Webster's 1913 dictionary.

GCIDE marks field-specific senses with labels such as ``(Zool.)`` or ``(Eng. Law)``.  A sense
joins a domain when every component of its label (``Bot. & Zool.`` has two) names that
domain; senses whose labels span two domains (``Chem. & Physics``) are left out so the
domains stay disjoint.  Quotations, citations, etymologies, pronunciations and source tags
are removed, and each headword's senses for a domain are gathered into one text.  The file
is dictd's format: a gzip-compatible ``.dict.dz`` and a tab-separated index of base-64
offsets.
"""

from __future__ import annotations

import gzip
import re
import unicodedata
from pathlib import Path

from modularity.data.cleaning import indent_width

GCIDE_DOMAINS = ("biology", "chemistry", "physics", "math", "law")

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


def label_domain(label: str) -> str | None:
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
        lines = [ln for ln in paragraph.split("\n") if indent_width(ln) < _QUOTE_INDENT]
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
            domain, rest = label_domain(label.group(1)), text[label.end() :]
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


def parse_gcide(dict_path: Path, index_path: Path) -> dict[str, list[tuple[str, str]]]:
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
        if not any(label_domain(_decode_markup(m)) for m in _ANY_LABEL.findall(raw)):
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
