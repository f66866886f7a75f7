"""Prose from Python's documentation: reST sources, or Sphinx's plain-text rendering
(``pydoc_data`` topics), with code, doctests, directive headers and markup removed.

The ``prose`` corpus should be English about programming, not programming: code would make
it overlap the ``code`` corpus, so every construct that holds code is dropped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from modularity.data.cleaning import indent_width

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


def _skip_block(lines: Sequence[str], i: int, indent: int) -> int:
    """Index of the first line from ``i`` on that is non-blank and indented <= ``indent``."""
    while i < len(lines) and (not lines[i].strip() or indent_width(lines[i]) > indent):
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
        indent = indent_width(line)
        directive = _DIRECTIVE.match(stripped)
        name = directive.group(1) if directive else ""
        if name in _SIGNATURE_DIRECTIVES:
            i = _skip_paragraph(lines, i)
        elif name in _PROSE_DIRECTIVES or name in _ADMONITIONS:
            if name in _ADMONITIONS and directive and directive.group(2):
                out.append(directive.group(2))
            i += 1
            while (
                i < len(lines) and indent_width(lines[i]) > indent and lines[i].lstrip()[:1] == ":"
            ):
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
            i = _skip_block(lines, i, indent_width(line))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()
