"""Data sources as plug-ins: the classes a task's ``local:`` or ``hub:`` node names by
``_target_`` (``modularity.data.sources.base`` says how), from here or any package."""

from modularity.data.sources.base import ImageSource, TextSource, source_identity, source_of
from modularity.data.sources.files import TextFiles
from modularity.data.sources.hub import HubImages, HubText
from modularity.data.sources.local import LocalCorpora, LocalImageSet

__all__ = [
    "HubImages",
    "HubText",
    "ImageSource",
    "LocalCorpora",
    "LocalImageSet",
    "TextFiles",
    "TextSource",
    "source_identity",
    "source_of",
]
