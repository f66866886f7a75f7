"""On-disk cache of expensive tensors (neuron statistics), keyed by what they were computed from.

Statistics cost forward passes over a model, so they are computed once per identity (model,
weights revision or seed, task, split, token count, seed, code version) and reused by later
runs and by every job of a Hydra multirun, including jobs running in parallel.

An entry is a directory ``<root>/<key>/`` holding ``tensors.safetensors`` and a human-readable
``meta.json``. It appears through one rename of a finished temporary directory in the same
root, so a reader sees a whole entry or none: a killed run leaves only a ``.tmp-*`` directory,
which lookups ignore and pruning removes, and of concurrent writers of one key the first rename
wins while the others discard their copies. Entries are never modified after that. Nothing
locks: two jobs that miss at once both compute, which costs time but never correctness.

A cached value is used only if it is intact: ``meta.json`` records the sha256 of the tensors
file, and the caller's check (shapes, finiteness, value ranges) runs on every read. An entry
that fails either is moved aside (``.corrupt-*``, with a one-line warning naming it) and
recomputed, never used. A cache directory that cannot be written is detected before anything
is computed: results are then kept for the run only, with a warning.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from modularity.infra.atomic import atomic_directory, remove_stale_temporaries
from modularity.infra.code_version import code_version
from modularity.infra.paths import user_cache_dir

ENV_VAR = "MODULARITY_CACHE_DIR"
KEY_CHARS = 24  # hex digits of sha256 kept: 96 bits, no collisions in practice
_TENSORS = "tensors.safetensors"
_META = "meta.json"
_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # one path component, never a temp dir

Tensors = dict[str, torch.Tensor]
Check = Callable[[Tensors], None]  # raises ValueError when cached tensors are not usable
log = logging.getLogger(__name__)
_CORRUPT_PREFIX = ".corrupt-"


@functools.cache
def entry_format() -> str:
    """The entry layout's version, part of every key: the digest of this module's code (and
    of the package modules it imports), so a changed layout never reads old entries and no
    number is bumped by hand."""
    return code_version(__name__)


def default_cache_root() -> Path:
    """``$MODULARITY_CACHE_DIR`` if set, else the user cache directory's ``stats`` folder."""
    return user_cache_dir("stats", ENV_VAR)


def _reject(value: object) -> object:
    raise TypeError(
        "cache keys and meta hold JSON values only (str, int, float, bool, None, lists, dicts "
        f"with str keys); got {type(value).__name__} {value!r}"
    )


def _to_json(value: object, **options: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=_reject, **options)


def _cpu_tensors(tensors: Mapping[str, torch.Tensor]) -> Tensors:
    """Detached, contiguous CPU copies where needed; safetensors stores nothing else."""
    out: Tensors = {}
    storages: set[int] = set()
    for name, tensor in tensors.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise TypeError(f"cache entries map str to torch.Tensor; got {name!r}: {tensor!r}")
        tensor = tensor.detach().to("cpu").contiguous()
        if tensor.untyped_storage().data_ptr() in storages:
            tensor = tensor.clone()  # safetensors refuses two names for one storage
        storages.add(tensor.untyped_storage().data_ptr())
        out[name] = tensor
    return out


def _write_synced(path: Path, data: bytes) -> None:
    """Write ``data`` and flush it to disk before the entry is renamed into place."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


class StatsCache:
    """Content-keyed store of ``dict[str, torch.Tensor]`` under ``root``.

    ``root`` defaults to ``default_cache_root()``. With ``enabled=False`` every lookup misses
    and nothing is written, so callers need no second code path. Temporary directories that
    killed runs left behind are removed at construction once older than an hour.
    """

    def __init__(self, root: str | Path | None = None, *, enabled: bool = True) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_root()
        self.enabled = enabled
        self.writable = enabled and self._probe_writable()
        if self.writable:
            self.prune_temporary()

    def __repr__(self) -> str:
        return f"StatsCache(root={str(self.root)!r}, enabled={self.enabled})"

    def _probe_writable(self) -> bool:
        """Whether entries can be written; if not, say so once, before any computation."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.root):
                pass
            return True
        except OSError as err:
            log.warning(
                "cache %s is not writable (%s): results are kept for this run only",
                self.root,
                err.strerror or err,
            )
            return False

    @staticmethod
    def key(**parts: object) -> str:
        """Stable hex key of the identity ``parts``: sha256 of their canonical JSON.

        The same parts give the same key in any process, Python or platform; any change to a
        part (including int 1 vs float 1.0 vs True) gives another key. Tuples count as lists.
        """
        canonical = _to_json(
            {"format": entry_format(), "parts": parts},
            sort_keys=True,
            separators=(",", ":"),
            allow_nan=False,
        )
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:KEY_CHARS]

    def path(self, key: str) -> Path:
        """Directory of the entry for ``key`` (which may not exist)."""
        if not _KEY_RE.fullmatch(key):
            raise ValueError(f"invalid cache key {key!r}: letters, digits, '_', '.', '-' only")
        return self.root / key

    def get(self, key: str, check: Check | None = None) -> Tensors | None:
        """The cached tensors (on CPU) if the entry exists and is intact, else None.

        An entry whose checksum or ``check`` fails is moved aside and reported, never used.
        """
        entry = self.path(key)
        if not self.enabled or not (entry / _TENSORS).is_file():
            return None
        try:
            meta = json.loads((entry / _META).read_text(encoding="utf-8"))
            data = (entry / _TENSORS).read_bytes()
            if hashlib.sha256(data).hexdigest() != meta["sha256"]:
                raise ValueError("checksum mismatch")
            tensors = load(data)
            if check is not None:
                check(tensors)
        except (OSError, ValueError, KeyError, TypeError, SafetensorError) as err:
            self._quarantine(entry, err)
            return None
        return tensors

    def _quarantine(self, entry: Path, err: Exception) -> None:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        aside = entry.with_name(f"{_CORRUPT_PREFIX}{entry.name}-{time.time_ns()}")
        try:
            os.rename(entry, aside)
        except OSError:
            aside = entry  # read-only cache, or another process moved it first
        message = "cache entry %s is corrupt (%s): moved to %s; recomputing"
        log.warning(message, entry, reason, aside)

    def put(
        self, key: str, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, object]
    ) -> Path | None:
        """Store ``tensors`` under ``key`` atomically; returns the entry directory.

        ``meta`` (JSON values; typically the key's parts) goes into ``meta.json`` for humans.
        An existing entry is kept as is, since the first writer of a key wins. Returns None,
        writing nothing, when the cache is disabled or not writable.
        """
        entry = self.path(key)
        if not self.writable:
            return None
        cpu = _cpu_tensors(tensors)
        data = save(cpu)
        shapes = {name: {"dtype": str(t.dtype), "shape": list(t.shape)} for name, t in cpu.items()}
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        meta_text = _to_json(
            {
                "key": key,
                "sha256": hashlib.sha256(data).hexdigest(),
                "created": created,
                "tensors": shapes,
                "meta": dict(meta),
            },
            indent=2,
            sort_keys=True,
        )
        if entry.exists():
            return entry
        with atomic_directory(entry) as tmp:
            _write_synced(tmp / _TENSORS, data)
            _write_synced(tmp / _META, meta_text.encode("utf-8"))
        return entry

    def get_or_compute(
        self,
        key: str,
        compute: Callable[[], Mapping[str, torch.Tensor]],
        meta: Mapping[str, object],
        check: Check | None = None,
    ) -> tuple[Tensors, bool]:
        """Cached tensors and True, or ``compute()``'s (stored, as CPU tensors) and False.

        ``meta`` is checked before computing, so a bad value cannot waste the computation;
        ``check`` validates a cached entry before it is used.
        """
        cached = self.get(key, check)
        if cached is not None:
            return cached, True
        _to_json(dict(meta))  # fail now, not after the computation
        tensors = _cpu_tensors(compute())
        self.put(key, tensors, meta)
        return tensors, False

    def prune_temporary(self, older_than_s: float = 3600.0) -> int:
        """Remove temporary directories of killed writes older than ``older_than_s``."""
        return remove_stale_temporaries(self.root, older_than_s)
