"""Find every adapter without an import list: the modules of this package, then the
``modularity.adapters`` entry points of other installed packages.

An adapter registers itself when its module is imported (``@register_adapter``), so
discovery only imports: each module of ``modularity.models`` and each entry point, whose
value may name a module or an adapter class (a class is registered if it was not already).
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from importlib.metadata import entry_points

from modularity.errors import ModularityError

ENTRY_POINT_GROUP = "modularity.adapters"


@functools.cache
def discover_adapters() -> None:
    """Import every adapter module once per process (repeat calls do nothing)."""
    import modularity.models as package

    for module in pkgutil.iter_modules(package.__path__, f"{package.__name__}."):
        importlib.import_module(module.name)
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        _load_entry_point(entry_point)


def _load_entry_point(entry_point) -> None:
    from modularity.models.adapter import ModelAdapter, register_adapter

    try:
        loaded = entry_point.load()
    except Exception as err:  # a third-party package: any failure is its, reported in one line
        message = f"{err}".splitlines()[0] if str(err) else type(err).__name__
        raise ModularityError(
            f"adapter entry point {entry_point.name!r} ({entry_point.value}) of group "
            f"{ENTRY_POINT_GROUP!r} failed to load: {message}"
        ) from err
    if isinstance(loaded, type) and issubclass(loaded, ModelAdapter):
        register_adapter(loaded)
