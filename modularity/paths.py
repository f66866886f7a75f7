"""Where modularity keeps what it computes once (statistics, models): the user cache."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

MODELS_ENV_VAR = "MODULARITY_MODELS_DIR"


def user_cache_dir(kind: str, env_var: str) -> Path:
    """``$env_var`` if set, else the ``kind`` folder of the user cache directory."""
    env = os.environ.get(env_var)
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("modularity")) / kind


def models_root() -> Path:
    """Trained and de-quantised models: ``$MODULARITY_MODELS_DIR`` or the user cache."""
    return user_cache_dir("models", MODELS_ENV_VAR)
