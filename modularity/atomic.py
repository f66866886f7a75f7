"""Directories that appear whole or not at all: write into a temporary sibling, then rename.

Every on-disk product (cache entries, de-quantised models, trained models) is written this
way, so a reader never sees a half-written directory: a killed writer leaves only a
``.tmp-*`` sibling, which nothing reads and :func:`remove_stale_temporaries` deletes later.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TMP_PREFIX = ".tmp-"


def _umask_mode() -> int:
    """The mode a plain ``mkdir`` would give: ``mkdtemp``'s 0700 would hide shared caches."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o777 & ~umask


@contextmanager
def atomic_directory(target: Path, *, replace: bool = False) -> Iterator[Path]:
    """Yield an empty temporary directory beside ``target``; rename it to ``target`` when the
    body succeeds, delete it when the body raises.

    If ``target`` exists by then (another writer finished first), ``replace=False`` keeps
    that one, which suits content-keyed entries; ``replace=True`` swaps the new one in.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{target.name}-", dir=target.parent))
    try:
        tmp.chmod(_umask_mode())
        yield tmp
        if replace and target.exists():
            old = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}old-", dir=target.parent))
            os.replace(target, old / target.name)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
            return
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.exists():
                raise
            # Another writer renamed its copy into place first: keep that one.
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def remove_stale_temporaries(root: Path, older_than_s: float = 3600.0) -> int:
    """Delete ``.tmp-*`` directories under ``root`` older than ``older_than_s`` (those of
    killed writers; the age guard spares writes in progress elsewhere). Returns how many."""
    if not root.is_dir():
        return 0
    cutoff = time.time() - older_than_s
    removed = 0
    for tmp in root.glob(f"{TMP_PREFIX}*"):
        try:
            stale = tmp.stat().st_mtime < cutoff
        except FileNotFoundError:  # another process removed it first
            continue
        if stale:
            shutil.rmtree(tmp, ignore_errors=True)
            removed += 1
    return removed
