"""The one build setting ``pyproject.toml`` cannot express: the Hydra configs live in
``conf/`` at the repository's top (beside ``modularity/``, ``experiments/`` and ``tests/``),
and the wheel ships them inside the package as ``modularity/conf`` so that an installed
``modularity`` runs from any directory. ``make run``'s sweeper ships as the Hydra plug-in
``hydra_plugins.modularity_plan_sweeper`` (Hydra loads sweepers from that namespace only)."""

from setuptools import find_namespace_packages, setup

CONF = ["modularity.conf", *(f"modularity.conf.{p}" for p in find_namespace_packages(where="conf"))]

setup(
    packages=[
        *find_namespace_packages(include=["modularity*", "hydra_plugins.modularity*"]),
        *CONF,
    ],
    package_dir={"modularity.conf": "conf"},
)
