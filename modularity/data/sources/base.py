"""What every data source is, and how a task's config names one.

A task declares its sources in its ``local:`` and ``hub:`` nodes and ``task.source`` (or
``data.source`` for every task of a run) picks which one it reads. A node's ``_target_``
names the source's class, from this package or any other; its other keys are the class's
keyword arguments. A node without ``_target_`` is the built-in source of its slot and the
task's kind (``DEFAULT_TARGETS``), so configs written before sources were plug-ins still
read the same data.

A source only yields data. Which document lands in which pool (``modularity.data.pools``)
and which images or classes a split keeps (``modularity.data.images``) is decided outside
it, so no source can put a task's documents into its reference.
"""

from __future__ import annotations

import importlib
import inspect
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from omegaconf import DictConfig, OmegaConf

from modularity.config import Source, checked_choice, choice
from modularity.data.corpora import Document
from modularity.data.labelled import LabelledImages
from modularity.errors import ConfigError
from modularity.infra.code_version import code_version

PACKAGE = "modularity.data.sources"
DEFAULT_TARGETS = {
    ("local", "text"): f"{PACKAGE}.LocalCorpora",
    ("local", "image"): f"{PACKAGE}.LocalImageSet",
    ("hub", "text"): f"{PACKAGE}.HubText",
    ("hub", "image"): f"{PACKAGE}.HubImages",
}
BUILT_IN = {
    "text": ("LocalCorpora", "TextFiles", "HubText"),
    "image": ("LocalImageSet", "HubImages"),
}


class TextSource(ABC):
    """A task's text: every document once, each with an id that is the same on every run
    and machine (it decides the document's pool)."""

    # True for data too large to hold: pooled chunk by chunk in stream order, duplicates kept.
    streaming: ClassVar[bool] = False

    @abstractmethod
    def documents(self) -> Iterable[Document]:
        """Every document of the source (all pools: the split rule is not the source's)."""

    @property
    def label(self) -> str:
        """What messages call the source (a corpus name, a dataset id)."""
        return type(self).__name__

    def parts(self) -> dict[str, TextSource]:
        """Sub-sources by label that share a token budget equally (a mixture's corpora)."""
        return {self.label: self}

    def domains(self) -> list[str]:
        """What this source holds, named as a reference's ``without`` matches it: corpus
        names, file paths, the values of a dataset's domain column."""
        return [self.label]

    def without(self, domains: Sequence[str]) -> dict[str, Any]:
        """The settings (keyword arguments of this class) that leave ``domains`` out, ``{}``
        when it holds none of them; a ``ConfigError`` when nothing would be left or the
        source cannot tell its domains apart."""
        raise ConfigError(f"{type(self).__name__} cannot leave out a domain (no without())")

    def fingerprint(self) -> str | None:
        """What the settings do not say about the data (a digest of files read), so a cache
        entry is not reused once the data changed; None where the settings say it all."""
        return None


class ImageSource(ABC):
    """A task's labelled images: one pool's images of every class (the task filters)."""

    @abstractmethod
    def images(self, pool: str, seed: int) -> LabelledImages:
        """The images of pool ``collect``, ``evaluate`` or ``train``, halves by ``seed``."""

    def fingerprint(self) -> str | None:
        """As ``TextSource.fingerprint``."""
        return None


KINDS = {"text": TextSource, "image": ImageSource}


def source_of(task: DictConfig) -> TextSource | ImageSource:
    """The source ``task.source`` picks among the task's declared ones, built from its node;
    a bad ``_target_`` or setting is one ``ConfigError`` line naming the valid ones."""
    name = task.get("name")
    slot = checked_choice(Source, task.source, f"source of task {name!r}")
    kind = choice(task.kind)
    node = OmegaConf.to_container(task[slot], resolve=True)
    target = node.pop("_target_", None) or DEFAULT_TARGETS[slot, kind]
    where = f"task {name!r}: task.{slot}"
    cls = _locate(target, where)
    if not (isinstance(cls, type) and issubclass(cls, KINDS[kind])):
        base = KINDS[kind]
        raise ConfigError(
            f"{where}._target_ {target!r} is not a {base.__module__}.{base.__name__} (the "
            f"task has {kind} inputs); built-in: {_built_in(kind)}"
        )
    _check_settings(cls, node, f"{where} ({target})")
    try:
        return cls(**node)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None


def _check_settings(cls: type, node: dict[str, Any], where: str) -> None:
    """Settings the class does not take, or required ones missing, in one line."""
    params = inspect.signature(cls).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    named = {n: p for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    unknown = [] if takes_any else [key for key in node if key not in named]
    missing = [n for n, p in named.items() if p.default is p.empty and n not in node]
    if unknown or missing:
        problems = [f"unknown setting {', '.join(map(repr, unknown))}"] if unknown else []
        problems += [f"missing {', '.join(map(repr, missing))}"] if missing else []
        raise ConfigError(f"{where}: {'; '.join(problems)}; its settings: {', '.join(named)}")


def source_identity(task: DictConfig) -> dict[str, str | None]:
    """What a cache key needs beyond the task's settings: the digest of the source's code
    (also for a source outside this package) and its fingerprint."""
    source = source_of(task)
    return {"code": code_version(type(source)), "content": source.fingerprint()}


def _locate(target: str, where: str) -> Any:
    module, _, attribute = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError, ValueError) as err:
        raise ConfigError(
            f"{where}._target_ {target!r} cannot be imported ({err}); a source is a class, "
            f"e.g. {_built_in('text')}, {_built_in('image')}"
        ) from None


def _built_in(kind: str) -> str:
    return ", ".join(f"{PACKAGE}.{name}" for name in BUILT_IN[kind])
