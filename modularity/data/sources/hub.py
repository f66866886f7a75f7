"""Hugging Face datasets (a hub id, or a local copy of the repository) as a task's source;
how they load is ``modularity.data.hub``'s job."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from modularity.data.corpora import Document
from modularity.data.hub import DataFiles, load_hub_dataset
from modularity.data.labelled import LabelledImages
from modularity.data.sources.base import ImageSource, TextSource
from modularity.data.splits import content_id
from modularity.errors import ConfigError
from modularity.infra.hub import is_local_path

Patterns = Mapping[str, str | Sequence[str]]


def _loading(**settings: Any) -> dict[str, Any]:
    """The settings ``load_hub_dataset`` reads, those left unset dropped."""
    return {key: value for key, value in settings.items() if value is not None}


def local_copy_fingerprint(dataset: str) -> str | None:
    """For a local copy of a dataset, a digest of its files' paths, sizes and modification
    times (a new download is a new key); None for a hub id, which its settings name."""
    if not is_local_path(dataset):
        return None
    root = Path(dataset).expanduser()
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


class HubText(TextSource):
    """The text column ``field`` of one split of a dataset, streamed (``filter`` keeps rows,
    ``exclude`` drops them; ``modularity.data.hub``). A row's id is its text. Its domains
    are the values of ``domain_field`` that its ``filter`` keeps, or its dataset id, and a
    reference leaves a task's domains out by the values of its own ``domain_field``."""

    streaming = True

    def __init__(
        self,
        dataset: str,
        field: str = "text",
        split: str = "train",
        domain_field: str | None = None,
        name: str | None = None,
        revision: str | None = None,
        builder: str | None = None,
        data_files: DataFiles | None = None,
        filter: Patterns | None = None,  # noqa: A002 - the config key users type
        exclude: Patterns | None = None,
    ) -> None:
        self.dataset, self.field, self.split = dataset, field, split
        self.domain_field = domain_field
        self.filter, self.exclude = dict(filter or {}), dict(exclude or {})
        self.hub = _loading(
            dataset=dataset,
            field=field,
            domain_field=domain_field,
            name=name,
            revision=revision,
            builder=builder,
            data_files=data_files,
            filter=self.filter or None,
            exclude=self.exclude or None,
        )

    @property
    def label(self) -> str:
        return self.dataset

    def documents(self) -> Iterable[Document]:
        for row in load_hub_dataset(self.hub, self.split, streaming=True):
            text = row[self.field]
            if not isinstance(text, str):
                raise ConfigError(
                    f"column {self.field!r} of {self.dataset!r} holds {type(text).__name__}, "
                    "not text; set the source's field to a text column"
                )
            yield Document(content_id(text), text)

    def fingerprint(self) -> str | None:
        return local_copy_fingerprint(self.dataset)

    def domains(self) -> list[str]:
        kept = self.filter.get(self.domain_field) if self.domain_field else None
        if kept is None:
            return [self.dataset]
        return [kept] if isinstance(kept, str) else list(kept)

    def without(self, domains: Sequence[str]) -> dict[str, Any]:
        if self.domain_field is None:
            raise ConfigError(
                f"dataset {self.dataset!r} sets no domain_field (the column naming each "
                "row's domain), so its rows of a domain cannot be told apart"
            )
        old = self.exclude.get(self.domain_field) or []
        old = [old] if isinstance(old, str) else list(old)
        return {"exclude": {**self.exclude, self.domain_field: [*old, *domains]}}


class HubImages(ImageSource):
    """Labelled images of a dataset: ``image_field`` and a ``ClassLabel`` column
    ``label_field``; the pools collect and evaluate read the dataset's splits
    ``collect_split`` and ``evaluate_split``."""

    def __init__(
        self,
        dataset: str,
        image_field: str = "img",
        label_field: str = "label",
        collect_split: str = "train",
        evaluate_split: str = "test",
        name: str | None = None,
        revision: str | None = None,
        builder: str | None = None,
        data_files: DataFiles | None = None,
        filter: Patterns | None = None,  # noqa: A002 - the config key users type
        exclude: Patterns | None = None,
    ) -> None:
        self.image_field, self.label_field = image_field, label_field
        self.splits = {"collect": collect_split, "evaluate": evaluate_split}
        self.hub = _loading(
            dataset=dataset,
            image_field=image_field,
            label_field=label_field,
            name=name,
            revision=revision,
            builder=builder,
            data_files=data_files,
            filter=filter,
            exclude=exclude,
        )

    def fingerprint(self) -> str | None:
        return local_copy_fingerprint(self.hub["dataset"])

    def images(self, pool: str, seed: int) -> LabelledImages:
        data = load_hub_dataset(self.hub, self.splits.get(pool, pool))
        names = tuple(data.features[self.label_field].names)
        images = list(data[self.image_field])
        return LabelledImages.whole(images, data[self.label_field], names, {}, seed)
