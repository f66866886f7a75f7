"""Every read of a Hugging Face hub asset (model, tokenizer, dataset) goes through here.

Without network the HF libraries retry each request with back-off (about 50 s before a model
load fails) and then raise a traceback that does not say what to do. Instead, before the first
hub read the endpoint is probed once, within ``PROBE_TIMEOUT_S``; if it cannot be reached,
or ``HF_HUB_OFFLINE`` is set, the read runs in offline mode (the libraries then read only
the local HF cache and never retry; :func:`offline_mode`, scoped to the read, so the process
is left as it was), and an asset that is not cached fails at once with one line that names
it and says how to run offline. A local path is never treated as a hub id.
"""

from __future__ import annotations

import importlib
import os
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from functools import lru_cache
from pathlib import Path
from typing import Literal

import httpx
from huggingface_hub import constants as hub_constants
from huggingface_hub.errors import LocalEntryNotFoundError
from huggingface_hub.file_download import repo_folder_name

from modularity.errors import ModularityError

PROBE_TIMEOUT_S = 2.0
RepoType = Literal["model", "dataset"]


def _connection_error_types() -> tuple[type[BaseException], ...]:
    """Exceptions that mean 'the hub could not be reached' (or, offline, 'not cached')."""
    types: list[type[BaseException]] = [
        ConnectionError,  # includes huggingface_hub's OfflineModeIsEnabled
        TimeoutError,
        socket.gaierror,
        LocalEntryNotFoundError,
        httpx.TransportError,
    ]
    # huggingface_hub's own HTTP client; requests, for libraries that still use it.
    for module, name in (("httpx2", "TransportError"), ("requests", "ConnectionError")):
        try:
            types.append(getattr(importlib.import_module(module), name))
        except ImportError:
            continue
    return tuple(types)


CONNECTION_ERRORS = _connection_error_types()


def is_local_path(name: str) -> bool:
    """Whether ``name`` names something on this machine (it exists, or is written as a path)."""
    return Path(name).expanduser().exists() or name.startswith(("/", "~", "."))


def hub_endpoint() -> str:
    """The hub the HF libraries talk to: ``$HF_ENDPOINT`` or https://huggingface.co."""
    return os.environ.get("HF_ENDPOINT") or hub_constants.ENDPOINT


@lru_cache(maxsize=8)
def hub_reachable(endpoint: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether ``endpoint`` answers an HTTP request within ``timeout_s`` (any status counts).

    The request runs in a daemon thread so that a hanging DNS lookup, which no socket
    timeout bounds, cannot hold the caller past the deadline. Cached per process.
    """
    answers: list[bool] = []
    done = threading.Event()

    def probe() -> None:
        try:
            httpx.head(endpoint, timeout=timeout_s)
            answers.append(True)
        except Exception:  # any failure (DNS, refused, TLS, bad URL) means unusable
            answers.append(False)
        finally:
            done.set()

    threading.Thread(target=probe, daemon=True).start()
    return done.wait(timeout_s) and answers[0]


# The libraries' offline switches: environment variables (read by each library when it is
# imported, and by child processes) and the globals they copied them into.
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
_offline_because: list[str] = []  # why each enclosing offline_mode block is offline


def _is_true(value: str | None) -> bool:
    return (value or "").upper() in {"1", "ON", "YES", "TRUE"}


def _datasets_flags(environment: dict[str, str | None], hub_offline: bool) -> bool:
    """The value datasets.config computes for its offline flags when it is imported."""
    own = environment["HF_DATASETS_OFFLINE"]
    return hub_offline if own is None else _is_true(own)


@contextmanager
def offline_mode(reason: str) -> Iterator[None]:
    """Within the block huggingface_hub, transformers and datasets read only the local cache
    and never retry a request; after it, even after an exception, the environment variables
    and the libraries' flags are what they were (a library first imported inside the block
    gets the flags it would have had outside)."""
    environment = {name: os.environ.get(name) for name in OFFLINE_VARIABLES}
    hub_offline = hub_constants.HF_HUB_OFFLINE
    datasets_config = sys.modules.get("datasets.config")
    saved_datasets = (
        None
        if datasets_config is None
        else (datasets_config.HF_HUB_OFFLINE, datasets_config.HF_DATASETS_OFFLINE)
    )
    _offline_because.append(reason)
    os.environ.update(dict.fromkeys(OFFLINE_VARIABLES, "1"))
    hub_constants.HF_HUB_OFFLINE = True
    if datasets_config is not None:
        datasets_config.HF_HUB_OFFLINE = datasets_config.HF_DATASETS_OFFLINE = True
    try:
        yield
    finally:
        _offline_because.pop()
        for name, value in environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        hub_constants.HF_HUB_OFFLINE = hub_offline
        datasets_config = sys.modules.get("datasets.config")
        if datasets_config is not None:
            flags = saved_datasets or (_datasets_flags(environment, hub_offline),) * 2
            datasets_config.HF_HUB_OFFLINE, datasets_config.HF_DATASETS_OFFLINE = flags


def offline_reason() -> str | None:
    """None when the hub can be used; otherwise why not (offline mode is on, or the endpoint
    does not answer the probe)."""
    if hub_constants.HF_HUB_OFFLINE:
        return _offline_because[-1] if _offline_because else "offline mode is on (HF_HUB_OFFLINE)"
    endpoint = hub_endpoint()
    if hub_reachable(endpoint):
        return None
    return f"{endpoint} cannot be reached"


def offline_error(repo_id: str, repo_type: RepoType, setting: str, reason: str) -> ModularityError:
    """The one-line error for a hub asset that is needed but not available offline."""
    if repo_type == "model":
        fetch = (
            f"download it where there is network (hf download {repo_id}) and copy "
            f"{hub_constants.HF_HUB_CACHE} here, or set {setting}=/local/dir to a local copy"
        )
    else:
        fetch = (
            f"download it where there is network (hf download {repo_id} --repo-type dataset "
            f"--local-dir DIR) and set {setting}=DIR, or use data.source=local"
        )
    return ModularityError(
        f"{repo_type} {repo_id!r} is not available: {reason} and it is not in the local "
        f"Hugging Face cache; {fetch}; `python -m modularity.run` with no model runs offline "
        "on the embedded default"
    )


def in_hub_cache(repo_id: str, repo_type: RepoType) -> bool:
    """Whether any snapshot of the repository is in the local HF hub cache."""
    folder = Path(hub_constants.HF_HUB_CACHE) / repo_folder_name(
        repo_id=repo_id, repo_type=repo_type
    )
    snapshots = folder / "snapshots"
    return snapshots.is_dir() and any(snapshots.iterdir())


def _from_connection_failure(err: BaseException) -> bool:
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, CONNECTION_ERRORS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@contextmanager
def hub_access(repo_id: str, repo_type: RepoType, setting: str) -> Iterator[None]:
    """Wrap the loading of one asset: nothing for a local path; for a hub id, decide online
    or offline first (a model missing from the cache fails before any loading; offline, the
    block runs in :func:`offline_mode`), and turn a connection failure raised while loading
    into the one-line error. ``setting`` is the
    config key that can point at a local copy instead (e.g. ``model.path``)."""
    if is_local_path(repo_id):
        yield
        return
    reason = offline_reason()
    # A model's files all come from the hub cache; a dataset may also be served from the
    # datasets library's own cache, which only the datasets library can judge.
    if reason is not None and repo_type == "model" and not in_hub_cache(repo_id, repo_type):
        raise offline_error(repo_id, repo_type, setting, reason)
    try:
        with offline_mode(reason) if reason is not None else nullcontext():
            yield
    except Exception as err:
        if isinstance(err, ModularityError) or not _from_connection_failure(err):
            raise
        why = reason or offline_reason() or f"the connection to {hub_endpoint()} failed"
        raise offline_error(repo_id, repo_type, setting, why) from err
