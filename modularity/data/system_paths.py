"""Where the offline data sets live on a Debian system, each overridable by an environment
variable (for other distributions, or a copy elsewhere).

==========================  ==============================================  ====================
environment variable        default                                         Debian package
==========================  ==============================================  ====================
MODULARITY_GCIDE_DICT       /usr/share/dictd/gcide.dict.dz                  dict-gcide
MODULARITY_GCIDE_INDEX      /usr/share/dictd/gcide.index                    dict-gcide
MODULARITY_PYTHON_DOC_DIR   /usr/share/doc/python3.11/html/_sources          python3.11-doc
MODULARITY_LICENSES_DIR     /usr/share/common-licenses                      base-files
MODULARITY_FASHION_MNIST    /usr/share/datasets/fashion-mnist               dataset-fashion-mnist
==========================  ==============================================  ====================

The variables are read on every call, so a test or a user can point a loader elsewhere
without re-importing anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SystemPath:
    """A file or directory a system package installs, and how to override its location."""

    env_var: str
    default: Path
    package: str  # the Debian package that installs it

    @property
    def path(self) -> Path:
        """``$env_var`` if it is set and non-empty, else the Debian default."""
        override = os.environ.get(self.env_var)
        return Path(override).expanduser() if override else self.default

    def install_hint(self) -> str:
        """What to do when the path is missing, for one-line error messages."""
        return f"apt-get install {self.package}, or set {self.env_var} to a copy"


GCIDE_DICT = SystemPath(
    "MODULARITY_GCIDE_DICT", Path("/usr/share/dictd/gcide.dict.dz"), "dict-gcide"
)
GCIDE_INDEX = SystemPath(
    "MODULARITY_GCIDE_INDEX", Path("/usr/share/dictd/gcide.index"), "dict-gcide"
)
PYTHON_DOC_SOURCES = SystemPath(
    "MODULARITY_PYTHON_DOC_DIR", Path("/usr/share/doc/python3.11/html/_sources"), "python3.11-doc"
)
COMMON_LICENSES = SystemPath(
    "MODULARITY_LICENSES_DIR", Path("/usr/share/common-licenses"), "base-files"
)
FASHION_MNIST_DIR = SystemPath(
    "MODULARITY_FASHION_MNIST", Path("/usr/share/datasets/fashion-mnist"), "dataset-fashion-mnist"
)
