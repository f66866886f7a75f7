"""The steps every analysis shares (load, sample, collect, select, evaluate), cached on disk.

:class:`Pipeline` composes them; each part is its own module: :mod:`.data` (tasks and
references), :mod:`.inputs` (tokenising, loaders), :mod:`.store` (cache keys),
:mod:`.statistics`, :mod:`.selection` and :mod:`.evaluation`.
"""

from modularity.pipeline.data import DataSpec, RunData, plain
from modularity.pipeline.facade import Pipeline
from modularity.pipeline.inputs import tokenizer_identity
from modularity.pipeline.selection import Selection
from modularity.pipeline.store import PRODUCERS, StatisticsStore, compute_identity

__all__ = [
    "PRODUCERS",
    "DataSpec",
    "Pipeline",
    "RunData",
    "Selection",
    "StatisticsStore",
    "compute_identity",
    "plain",
    "tokenizer_identity",
]
