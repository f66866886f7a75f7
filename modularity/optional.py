"""Optional packages, imported where a feature first needs them: a missing one is one line
that names the feature and the command that installs it, not an import traceback."""

from __future__ import annotations

import importlib
from types import ModuleType

from modularity.errors import missing_package

# module -> (what uses it, the command that installs it)
PACKAGES: dict[str, tuple[str, str]] = {
    "faiss": ("k-means (analysis=moefy)", "pip install faiss-cpu (or faiss-gpu)"),
    "pyarrow": ("writing parquet tables", "pip install pyarrow"),
    "pymetis": ("graph partitioning", "pip install pymetis"),
    "wandb": ("the W&B logger (logger=wandb)", "pip install wandb"),
    "bitsandbytes": ("model.quantization=8bit|4bit", 'pip install -e ".[quant]" (CUDA only)'),
    "gguf": ("reading GGUF weights (model.gguf_file)", "pip install gguf"),
}


def require(module: str, purpose: str | None = None, install: str | None = None) -> ModuleType:
    """Import ``module``, or raise :class:`MissingPackageError` naming ``purpose`` and the
    ``install`` command (defaults from :data:`PACKAGES`)."""
    default_purpose, default_install = PACKAGES.get(module, (module, f"pip install {module}"))
    try:
        return importlib.import_module(module)
    except ImportError as err:
        top = module.split(".")[0]
        if err.name is not None and err.name.split(".")[0] != top:
            raise  # the package is there but one of its own imports failed
        raise missing_package(top, purpose or default_purpose, install or default_install) from err


def parquet_engine() -> str:
    """The installed engine pandas writes parquet with (checked before a run computes
    anything, so a missing one does not cost the run)."""
    for engine in ("pyarrow", "fastparquet"):
        try:
            importlib.import_module(engine)
        except ImportError:
            continue
        return engine
    raise missing_package("pyarrow", PACKAGES["pyarrow"][0], PACKAGES["pyarrow"][1])
