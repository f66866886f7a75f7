"""Importing ``modularity`` registers nothing with Hydra or OmegaConf: configs and resolvers
are registered by the entry points that compose (``modularity.config.register_configs``,
``modularity.zoo.cli.register_configs``), so a library user's own Hydra app sees only what
it registered itself."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# Imports every module of the package in a fresh process and prints what Hydra's
# ConfigStore and OmegaConf's resolvers gained ("-" when nothing).
PROBE = textwrap.dedent(
    """
    import importlib
    import pkgutil

    import hydra.conf  # Hydra's own schemas, stored by Hydra when it is imported
    from hydra.core.config_store import ConfigStore
    from omegaconf.basecontainer import BaseContainer

    import modularity

    # Only run, never imported: importing it raises by design (see its docstring).
    RUN_ONLY = {"modularity.export"}


    def stored(node, prefix=""):
        names = set()
        for key, value in node.items():
            names.add(prefix + key)
            if isinstance(value, dict):
                names |= stored(value, f"{prefix}{key}/")
        return names


    def state():
        return stored(ConfigStore.instance().repo), set(BaseContainer._resolvers)


    configs, resolvers = state()
    names = [m.name for m in pkgutil.walk_packages(modularity.__path__, "modularity.")]
    imported = 0
    for name in names:
        if name in RUN_ONLY or name.endswith(".__main__"):
            continue
        importlib.import_module(name)
        imported += 1
    new_configs, new_resolvers = state()
    print(imported)
    print(",".join(sorted(new_configs - configs)) or "-")
    print(",".join(sorted(new_resolvers - resolvers)) or "-")
    """
)


@pytest.mark.slow
def test_importing_every_module_registers_no_config_or_resolver():
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported, configs, resolvers = proc.stdout.split()
    assert int(imported) > 100  # the walk reached the whole package
    assert configs == "-", f"stored in Hydra's ConfigStore at import: {configs}"
    assert resolvers == "-", f"OmegaConf resolvers registered at import: {resolvers}"
