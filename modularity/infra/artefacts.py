"""A run's files, written whole or not at all and checked before they are read again.

Every artefact (``results.csv``, ``metrics.json``, ``scores.safetensors``, parquet tables,
figures) is written into a temporary sibling and renamed into place, so a killed or failed
writer never leaves half a file, and its SHA-256 is recorded in ``manifest.json`` beside
it. Readers (export, report, ``modularity.load``) call :func:`verify_run_dir` and refuse a
file that no longer matches, in one line naming it: a flipped byte in a mask or a
truncated table is never used silently. Directories written before manifests existed have
none; their files are read unverified.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from modularity.errors import ConfigError, DamagedFileError, ModularityError
from modularity.infra.atomic import TMP_PREFIX, owner_tag

MANIFEST = "manifest.json"


class OutputError(ModularityError):
    """A file could not be written (a full disk, a read-only directory)."""


def writable_directory(path: Path, what: str = "run directory") -> Path:
    """Create ``path`` and prove it takes files, before anything is computed."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f"{TMP_PREFIX}{owner_tag()}~write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ConfigError(f"{what} {str(path)!r} is not writable ({reason})") from err
    return path


def check_free_space(directory: Path, needed: int, what: str) -> None:
    """Refuse to start writing ``needed`` bytes of ``what`` into ``directory`` when its disk
    has less free: one line before the work, not a full disk halfway through."""
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise OutputError(
            f"{what} needs about {needed / 1e6:,.1f} MB but {directory} has "
            f"{free / 1e6:,.1f} MB free; free some space or choose another directory"
        )


@contextmanager
def atomic_file(path: Path, record: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix, so writers that infer the format
    from it work); rename it to ``path`` when the body succeeds and, if ``record``, enter its
    checksum in the directory's manifest. A failed write raises :class:`OutputError` naming
    ``path`` and leaves no file behind."""
    tmp = path.with_name(f"{TMP_PREFIX}{owner_tag()}~{path.name}")
    try:
        yield tmp
        os.replace(tmp, path)
        if record:
            _record(path)
    except OSError as err:
        reason = err.strerror or str(err) or type(err).__name__
        raise OutputError(f"cannot write {path}: {reason}") from err
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: Path, write: Callable[[Path], object], record: bool = True) -> Path:
    """``write(tmp)`` then rename to ``path``: see :func:`atomic_file`."""
    with atomic_file(path, record) as tmp:
        write(tmp)
    return path


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(directory: Path) -> dict[str, dict[str, object]]:
    """``file name -> {"sha256", "bytes"}`` of ``directory``; empty where it has none."""
    path = directory / MANIFEST
    if not path.is_file():
        return {}
    try:
        files = json.loads(path.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DamagedFileError(f"{path} is unreadable ({type(err).__name__}); re-run") from err
    if not isinstance(files, dict):
        raise DamagedFileError(f"{path} lists no files; re-run")
    return files


def _record(path: Path) -> None:
    """Enter ``path``'s checksum and size in its directory's manifest (itself atomic)."""
    files = read_manifest(path.parent)
    files[path.name] = {"sha256": sha256(path), "bytes": path.stat().st_size}
    text = json.dumps({"files": dict(sorted(files.items()))}, indent=2) + "\n"
    write_atomic(path.parent / MANIFEST, lambda tmp: tmp.write_text(text), record=False)


def verify_run_dir(path: str | os.PathLike, names: Iterable[str] | None = None) -> list[str]:
    """Check the files ``path``'s manifest lists (only ``names``, if given, where listed)
    against their recorded checksums; returns the names checked. Raises
    :class:`DamagedFileError` naming the first missing or changed file."""
    directory = Path(path)
    files = read_manifest(directory)
    wanted = list(files) if names is None else [n for n in names if n in files]
    for name in wanted:
        file = directory / name
        recorded = files[name]
        if not file.is_file():
            raise DamagedFileError(f"{file} is missing (the run's {MANIFEST} lists it); re-run")
        size = file.stat().st_size
        if size != recorded.get("bytes") or sha256(file) != recorded.get("sha256"):
            raise DamagedFileError(
                f"{file} is damaged: it no longer matches the checksum the run recorded in "
                f"{MANIFEST} ({size} bytes, {recorded.get('bytes')} written); re-run"
            )
    return wanted
