"""Read a task's Hugging Face dataset, from the hub or from a local copy, without scripts.

The installed ``datasets`` refuses loading scripts, so a task's ``hub:`` section says how the
data files load directly (each task YAML says why, per dataset):

* ``dataset``: hub id, or a local directory holding a copy of the repository's files;
* ``builder``: a packaged builder (``parquet``, ``json``) to read ``data_files`` with, for a
  repository whose loading script would otherwise be found and refused;
* ``data_files``: glob(s) relative to the repository (or to the local copy), a string, a
  list, or a mapping from split to globs;
* ``revision``: branch, tag or commit of the hub repository (e.g. ``refs/convert/parquet``);
* ``name``: the repository's config name, where it has several;
* ``filter``: ``{column: pattern or [patterns]}``, shell-style patterns (``*.py``), keeping
  rows whose every named column matches one of its patterns;
* ``exclude``: the same form, dropping rows where any named column matches one of its
  patterns (how a reference leaves out a task's domain).

The same ``hub:`` section therefore works for ``task.hub.dataset=/local/dir`` pointing at a
download of the repository (``hf download <id> --repo-type dataset --local-dir DIR``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any
from urllib.parse import quote

import datasets
from omegaconf import DictConfig, OmegaConf

from modularity.errors import ConfigError
from modularity.infra.hub import hub_access, is_local_path

DataFiles = str | Sequence[str] | Mapping[str, str | Sequence[str]]
HubData = datasets.Dataset | datasets.IterableDataset
# Keys of a hub section that name columns.
COLUMN_KEYS = ("field", "image_field", "label_field", "domain_field")


def repository_root(dataset: str, revision: str | None) -> str:
    """Where a packaged builder finds the repository's files: the local copy, or an
    ``hf://`` URL (a revision such as ``refs/convert/parquet`` is URL-encoded there)."""
    if is_local_path(dataset):
        return str(Path(dataset).expanduser())
    at = "" if revision is None else "@" + quote(revision, safe="")
    return f"hf://datasets/{dataset}{at}"


def rooted(root: str, data_files: DataFiles) -> DataFiles:
    """``data_files`` with every glob prefixed by ``root``."""
    if isinstance(data_files, str):
        return f"{root}/{data_files}"
    if isinstance(data_files, Mapping):
        return {split: rooted(root, globs) for split, globs in data_files.items()}
    return [f"{root}/{glob}" for glob in data_files]


def _load(hub: Mapping[str, Any], split: str, streaming: bool) -> HubData:
    dataset = hub["dataset"]
    data_files = hub.get("data_files")
    builder = hub.get("builder")
    if builder is not None:
        if data_files is None:
            raise ConfigError(f"hub dataset {dataset!r}: builder {builder!r} needs data_files")
        root = repository_root(dataset, hub.get("revision"))
        return datasets.load_dataset(
            builder, data_files=rooted(root, data_files), split=split, streaming=streaming
        )
    local = is_local_path(dataset)
    return datasets.load_dataset(
        str(Path(dataset).expanduser()) if local else dataset,
        hub.get("name"),
        data_files=data_files,
        revision=None if local else hub.get("revision"),
        split=split,
        streaming=streaming,
    )


def row_filter(wanted: Mapping[str, str | Sequence[str]]) -> Callable[[Mapping[str, Any]], bool]:
    """A predicate on a row: every column in ``wanted`` matches one of its patterns."""
    patterns = _patterns(wanted)

    def keep(row: Mapping[str, Any]) -> bool:
        return all(
            any(fnmatchcase(str(row[column]), p) for p in column_patterns)
            for column, column_patterns in patterns.items()
        )

    return keep


def row_exclusion(
    unwanted: Mapping[str, str | Sequence[str]],
) -> Callable[[Mapping[str, Any]], bool]:
    """A predicate on a row: no column in ``unwanted`` matches one of its patterns."""
    patterns = _patterns(unwanted)

    def keep(row: Mapping[str, Any]) -> bool:
        return not any(
            fnmatchcase(str(row[column]), p)
            for column, column_patterns in patterns.items()
            for p in column_patterns
        )

    return keep


def _patterns(by_column: Mapping[str, str | Sequence[str]]) -> dict[str, list[str]]:
    return {
        column: [value] if isinstance(value, str) else list(value)
        for column, value in by_column.items()
    }


def _check_columns(hub: Mapping[str, Any], data: HubData) -> None:
    columns = data.column_names
    if columns is None:  # a stream whose schema is only known once read
        return
    wanted = [hub[key] for key in COLUMN_KEYS if hub.get(key) is not None]
    wanted += [*(hub.get("filter") or {}), *(hub.get("exclude") or {})]
    missing = [column for column in wanted if column not in columns]
    if missing:
        raise ConfigError(
            f"hub dataset {hub['dataset']!r} has no column {', '.join(map(repr, missing))}; "
            f"its columns: {', '.join(columns)}"
        )


def load_hub_dataset(
    hub: Mapping[str, Any] | DictConfig, split: str, streaming: bool = False
) -> HubData:
    """One split of a task's hub dataset (a ``datasets.Dataset``, or an ``IterableDataset``
    when ``streaming``), filtered by ``hub.filter`` and ``hub.exclude``; its columns are the
    hub dataset's own.

    Offline, it reads the local cache only, and fails in one line (``ModularityError``)
    naming the dataset and how to run offline when that has nothing. (A stream reads its
    files lazily: a connection lost while iterating raises the datasets library's error.)
    """
    if isinstance(hub, DictConfig):
        hub = OmegaConf.to_container(hub, resolve=True)
    if "dataset" not in hub:
        raise ConfigError("a hub dataset needs hub.dataset (a hub id or a local directory)")
    with hub_access(hub["dataset"], "dataset", "task.hub.dataset"):
        try:
            data = _load(hub, split, streaming)
        except (ValueError, FileNotFoundError) as err:
            if not is_local_path(hub["dataset"]):
                raise
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ConfigError(
                f"local dataset {hub['dataset']!r} has no data files the datasets library "
                f"can read (parquet, json, csv, text, arrow) for split {split!r}: {reason}"
            ) from err
    _check_columns(hub, data)
    if hub.get("filter"):
        data = data.filter(row_filter(hub["filter"]))
    if hub.get("exclude"):
        data = data.filter(row_exclusion(hub["exclude"]))
    return data
