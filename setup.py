"""The one build setting ``pyproject.toml`` cannot express: the Hydra configs live in
``conf/`` at the repository's top (beside ``modularity/``, ``experiments/`` and ``tests/``),
and the wheel ships them inside the package as ``modularity/conf`` so that an installed
``modularity`` runs from any directory. ``make run``'s sweeper ships as the Hydra plug-in
``hydra_plugins.modularity_sweepers`` (Hydra loads sweepers from that namespace only);
the namespace itself is listed too, so that an editable install maps it to this checkout and
Hydra's plug-in scan finds the sweeper from any directory."""

from setuptools import find_namespace_packages, setup

CONF = ["modularity.conf", *(f"modularity.conf.{p}" for p in find_namespace_packages(where="conf"))]

setup(
    packages=[
        *find_namespace_packages(
            include=["modularity*", "hydra_plugins", "hydra_plugins.modularity*"]
        ),
        *CONF,
    ],
    package_dir={"modularity.conf": "conf"},
)
