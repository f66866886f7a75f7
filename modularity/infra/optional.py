"""Optional packages, imported where a feature first needs them: a missing one is one line
that names the feature and the command that installs it, not an import traceback."""

from __future__ import annotations

import importlib
from types import ModuleType

from modularity.errors import MissingPackageError, missing_package

# module -> (what uses it, the command that installs it)
PACKAGES: dict[str, tuple[str, str]] = {
    "faiss": ("k-means (analysis=moefy)", "pip install faiss-cpu (or faiss-gpu)"),
    "pyarrow": ("writing parquet tables", "pip install pyarrow"),
    "pymetis": ("METIS partitioning of co-activation experts", "pip install pymetis"),
    "wandb": ("the W&B logger (logger=wandb)", "pip install wandb"),
    "bitsandbytes": ("model.quantization=8bit|4bit", 'pip install -e ".[quant]" (CUDA only)'),
    "gguf": ("reading GGUF weights (model.gguf_file)", "pip install gguf"),
}


def missing(module: str) -> MissingPackageError:
    """The one-line error for ``module`` not being installed (what needs it, how to add it)."""
    purpose, install = PACKAGES.get(module, (module, f"pip install {module}"))
    return missing_package(module, purpose, install)


def require(module: str) -> ModuleType:
    """Import ``module``, or raise :class:`MissingPackageError` naming what needs it and the
    command that installs it (:data:`PACKAGES`)."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        if err.name is not None and err.name.split(".")[0] != module.split(".")[0]:
            raise  # the package is there but one of its own imports failed
        raise missing(module.split(".")[0]) from err


def parquet_engine() -> str:
    """The installed engine pandas writes parquet with (checked before a run computes
    anything, so a missing one does not cost the run)."""
    for engine in ("pyarrow", "fastparquet"):
        try:
            importlib.import_module(engine)
        except ImportError:
            continue
        return engine
    raise missing("pyarrow")
