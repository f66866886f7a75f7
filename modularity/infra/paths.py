"""Where modularity finds its configs, and keeps what it computes once (statistics, models)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

MODELS_ENV_VAR = "MODULARITY_MODELS_DIR"
PACKAGE_DIR = Path(__file__).resolve().parents[1]


def _conf_dir() -> Path:
    """The Hydra config groups: ``conf/`` beside the package in a source checkout (editable
    installs included), else the copy the wheel ships inside the package."""
    checkout = PACKAGE_DIR.parent / "conf"
    if (checkout / "config.yaml").is_file() and (PACKAGE_DIR.parent / "pyproject.toml").is_file():
        return checkout
    return PACKAGE_DIR / "conf"


CONF_DIR = _conf_dir()


def user_cache_dir(kind: str, env_var: str) -> Path:
    """``$env_var`` if set, else the ``kind`` folder of the user cache directory."""
    env = os.environ.get(env_var)
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("modularity")) / kind


def models_root() -> Path:
    """Trained and de-quantised models: ``$MODULARITY_MODELS_DIR`` or the user cache."""
    return user_cache_dir("models", MODELS_ENV_VAR)
