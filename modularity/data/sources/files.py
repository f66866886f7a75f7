"""The user's own text files as a task's source."""

from __future__ import annotations

import functools
import glob
import hashlib
import os
from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from modularity.data.corpora import Document
from modularity.data.sources.base import TextSource
from modularity.data.splits import content_id
from modularity.errors import ConfigError, invalid_choice

UNITS = ("file", "line")


class TextFiles(TextSource):
    """Text files matched by ``paths`` (globs; ``**`` recurses, ``~`` expands, relative
    ones start at the working directory), less those whose absolute path matches a glob of
    ``exclude`` (``*`` there also crosses ``/``); one document per file or per non-blank
    line (``unit``).

    A document's id is its text, so the same text is in the same pool whichever source
    reads it; the source's domains are its files (absolute paths).
    """

    def __init__(
        self,
        paths: str | Sequence[str] = (),
        unit: str = "file",
        exclude: str | Sequence[str] = (),
        encoding: str = "utf-8",
    ) -> None:
        self.paths = [paths] if isinstance(paths, str) else list(paths)
        self.exclude = [exclude] if isinstance(exclude, str) else list(exclude)
        if not self.paths:
            raise ConfigError("text files need paths: set task.local.paths=[glob,...]")
        if unit not in UNITS:
            raise invalid_choice("unit of text files", unit, UNITS)
        self.unit, self.encoding = unit, encoding

    @property
    def label(self) -> str:
        return ", ".join(self.paths)

    def files(self) -> list[Path]:
        """The matched files, absolute, sorted; none is an error naming the globs."""
        excluded = [os.path.expanduser(pattern) for pattern in self.exclude]
        found = {
            Path(os.path.abspath(match))
            for pattern in self.paths
            for match in glob.glob(os.path.expanduser(pattern), recursive=True)
        }
        kept = sorted(
            path
            for path in found
            if path.is_file() and not any(fnmatchcase(str(path), p) for p in excluded)
        )
        if not kept:
            raise ConfigError(
                f"text files {self.paths} (less {self.exclude}) match no file; relative "
                f"paths start at {Path.cwd()}"
            )
        return kept

    def documents(self) -> Iterable[Document]:
        for path in self.files():
            yield from _file_documents(str(path), *_stamp(path), self.unit, self.encoding)

    def domains(self) -> list[str]:
        return [str(path) for path in self.files()]

    def without(self, domains: Sequence[str]) -> dict[str, Any]:
        files = self.domains()
        mine = sorted(set(files) & set(domains))
        if not mine:
            return {}
        if len(mine) == len(files):
            raise ConfigError(f"none of its files {self.paths} would be left")
        return {"exclude": [*self.exclude, *(glob.escape(path) for path in mine)]}

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for content in sorted(_file_digest(str(p), *_stamp(p)) for p in self.files()):
            digest.update(content.encode())
        return digest.hexdigest()[:32]


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=16384)
def _file_documents(
    path: str, mtime_ns: int, size: int, unit: str, encoding: str
) -> tuple[Document, ...]:
    """A file's documents, read once per process while it is unchanged (a run reads its
    task's pools several times)."""
    try:
        text = Path(path).read_text(encoding=encoding)
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"text file {path!r} is not {encoding} ({err.reason} at byte {err.start}); set "
            "the source's encoding"
        ) from None
    pieces = [text] if unit == "file" else text.splitlines()
    return tuple(Document(content_id(piece), piece) for piece in pieces if piece.strip())


@functools.cache
def _file_digest(path: str, mtime_ns: int, size: int) -> str:
    """SHA-256 of a file's bytes, read once per process while it is unchanged."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
