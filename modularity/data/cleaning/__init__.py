"""Cleaners that turn a source format into plain text for the corpora (reST, GCIDE)."""


def indent_width(line: str) -> int:
    """Columns of leading whitespace: both formats mark structure by indentation."""
    return len(line) - len(line.lstrip())
