"""Cleaned corpora cached on disk, once per source.

Parsing a dictionary or cleaning a thousand reST files takes seconds of CPU; every fresh
process (a job of a sweep, a test) would pay them again. The cleaned documents are written
once as JSON, keyed by a checksum of the source files' contents and by the digest of the
code that builds them (``modularity.infra.code_version``), so an upgraded package or a changed
cleaner never reuses a stale entry. An unwritable cache
directory only costs the parse.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from modularity.infra.code_version import code_version
from modularity.infra.paths import user_cache_dir

log = logging.getLogger(__name__)

CORPORA_ENV_VAR = "MODULARITY_CORPORA_DIR"

Parts = Mapping[str, Iterable[tuple[str, str]]]  # part name -> (doc_id, text) pairs


def corpora_cache_dir() -> Path:
    """``$MODULARITY_CORPORA_DIR`` or the user cache directory's ``corpora`` folder."""
    return user_cache_dir("corpora", CORPORA_ENV_VAR)


def sources_checksum(files: Iterable[Path], root: Path | None = None) -> str:
    """SHA-256 over each file's name (relative to ``root``) and contents, in the given order."""
    digest = hashlib.sha256()
    for path in files:
        name = path.relative_to(root).as_posix() if root is not None else path.name
        digest.update(name.encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def cached_parts(
    name: str, checksum: str, build: Callable[[], Parts]
) -> dict[str, list[tuple[str, str]]]:
    """``build()`` (named parts of (doc_id, text) pairs) for sources with ``checksum``, read
    from the disk cache when an entry exists, else built and written there."""
    version = code_version(build, cached_parts)  # the cleaners and this entry format
    key = hashlib.sha256(f"{name}\0{version}\0{checksum}".encode()).hexdigest()[:32]
    entry = corpora_cache_dir() / f"{name}-{key}.json"
    try:
        parts = json.loads(entry.read_text(encoding="utf-8"))
        return {part: [(doc, text) for doc, text in docs] for part, docs in parts.items()}
    except FileNotFoundError:
        pass
    except (OSError, ValueError, TypeError) as err:
        log.warning("corpus cache entry %s is unreadable (%s): parsed again", entry, err)
    parts = {part: [(doc, text) for doc, text in docs] for part, docs in build().items()}
    _write(entry, parts)
    return parts


def _write(entry: Path, parts: dict[str, list[tuple[str, str]]]) -> None:
    """Write ``entry`` whole or not at all (a temporary file renamed into place)."""
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=entry.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(parts, f, ensure_ascii=False)
            os.replace(tmp, entry)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError as err:
        log.info("corpus cache %s not written (%s)", entry.parent, err)
