"""What a text task is scored against: its reference config, without the task's domains
when the run asks (``data.exclude_from_reference=domain``).

Both exclusions hold for any source. ``documents`` needs nothing here: a reference reads
only the reference pools (``modularity.data.pools``), which hold none of any task's
documents, nor their exact duplicates where ids come from the text. ``domain`` also leaves
out what the task's source calls its domains (``TextSource.domains``): the reference's
source says which of its settings do that (``TextSource.without``).
"""

from __future__ import annotations

import copy
import logging

from omegaconf import DictConfig, open_dict

from modularity.config import choice
from modularity.data.sources import TextSource, source_of
from modularity.errors import ConfigError

log = logging.getLogger(__name__)


def text_reference(task: DictConfig, reference: DictConfig, exclude: str) -> DictConfig:
    """``reference`` as text task ``task``'s reference under ``exclude`` (``documents`` or
    ``domain``); without the domains, it is renamed ``<reference>-without-<task>``."""
    if exclude == "documents":
        return reference
    own, source = source_of(task), source_of(reference)
    assert isinstance(own, TextSource) and isinstance(source, TextSource)
    domains = own.domains()
    try:
        settings = source.without(domains)
    except ConfigError as err:
        raise ConfigError(
            f"reference {reference.name!r} without task {task.name!r}'s domains {domains}: "
            f"{err}; use data.exclude_from_reference=documents"
        ) from None
    if not settings:
        log.warning(
            "reference %r holds none of task %r's domains %s: excluding the domain leaves it "
            "as it is",
            reference.name,
            task.name,
            domains,
        )
        return reference
    slot = choice(reference.source)
    reference = copy.deepcopy(reference)
    with open_dict(reference):  # a source's settings may be ones its node leaves unset
        reference.merge_with({"name": f"{reference.name}-without-{task.name}", slot: settings})
    return reference
