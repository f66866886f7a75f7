"""Directories that appear whole or not at all: write into a temporary sibling, then rename.

Every on-disk product (cache entries, de-quantised models, trained models) is written this
way, so a reader never sees a half-written directory: a killed writer leaves only a
``.tmp-*`` sibling, which nothing reads and :func:`remove_stale_temporaries` deletes later.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TMP_PREFIX = ".tmp-"


def owner_tag() -> str:
    """``host.pid`` of this process, part of every temporary name, so that a later run on
    the same host can tell a dead writer's leftovers from a live writer's work."""
    return f"{socket.gethostname()}.{os.getpid()}"


def _writer_is_dead(name: str) -> bool:
    """Whether ``name`` (a temporary directory's) was made by a process of this host that
    no longer runs. Other hosts' writers (a shared cache) cannot be checked: False."""
    tag = name.removeprefix(TMP_PREFIX).split("~", 1)[0]
    host, _, pid = tag.rpartition(".")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


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
    prefix = f"{TMP_PREFIX}{owner_tag()}~{target.name}-"
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    try:
        tmp.chmod(_umask_mode())
        yield tmp
        if replace and target.exists():
            old = Path(tempfile.mkdtemp(prefix=f"{prefix}old-", dir=target.parent))
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
    """Delete ``.tmp-*`` directories under ``root`` left by killed writers: at once when
    their writer was a process of this host that has died, else once older than
    ``older_than_s`` (sparing writes in progress on other hosts). Returns how many."""
    if not root.is_dir():
        return 0
    cutoff = time.time() - older_than_s
    removed = 0
    for tmp in root.glob(f"{TMP_PREFIX}*"):
        try:
            stale = _writer_is_dead(tmp.name) or tmp.stat().st_mtime < cutoff
        except FileNotFoundError:  # another process removed it first
            continue
        if stale:
            shutil.rmtree(tmp, ignore_errors=True)
            removed += 1
    return removed
