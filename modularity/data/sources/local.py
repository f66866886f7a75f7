"""The data that ships with installed software: the registry's text corpora and image sets."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

from modularity.data.corpora import CORPORA, Document, load_corpus
from modularity.data.image_sources import load_image_set
from modularity.data.labelled import LabelledImages
from modularity.data.sources.base import ImageSource, TextSource
from modularity.data.splits import image_split_indices
from modularity.errors import ConfigError, invalid_choice


class LocalCorpora(TextSource):
    """One corpus of ``modularity.data.corpora`` or a mixture of several (``corpus`` a
    list), whose corpora share a token budget equally; its domains are the corpus names."""

    def __init__(self, corpus: str | Sequence[str]) -> None:
        self.corpora = [corpus] if isinstance(corpus, str) else list(corpus)
        for name in self.corpora:
            if name not in CORPORA:
                raise invalid_choice("corpus", name, CORPORA)

    @property
    def label(self) -> str:
        return "+".join(self.corpora)

    def documents(self) -> Iterable[Document]:
        return itertools.chain.from_iterable(load_corpus(name) for name in self.corpora)

    def parts(self) -> dict[str, TextSource]:
        if len(self.corpora) == 1:
            return {self.label: self}
        return {name: LocalCorpora(name) for name in self.corpora}

    def domains(self) -> list[str]:
        return list(self.corpora)

    def without(self, domains: Sequence[str]) -> dict[str, Any]:
        kept = [name for name in self.corpora if name not in set(domains)]
        if kept == self.corpora:
            return {}
        if not kept:
            raise ConfigError(f"none of its corpora {self.corpora} would be left")
        return {"corpus": kept}


class LocalImageSet(ImageSource):
    """An image set of ``modularity.data.image_sources`` (``digits``, ``fashion_mnist``),
    cut into pools by the rule the project's image models were trained with."""

    def __init__(self, image_set: str) -> None:
        self.image_set = image_set

    def images(self, pool: str, seed: int) -> LabelledImages:
        data = load_image_set(self.image_set)
        whole = LabelledImages.whole(
            data.images, data.labels, tuple(data.class_names), dict(data.coarse), seed
        )
        return whole.subset(image_split_indices(data.labels, data.origin, pool))
