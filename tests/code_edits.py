"""Pretend that a module's code was edited, as ``modularity.infra.code_version`` sees it."""

from __future__ import annotations

from pathlib import Path

import pytest

from modularity.infra import code_version


def pretend_edited(monkeypatch: pytest.MonkeyPatch, edited: Path) -> None:
    """From now on the digest of the file ``edited`` differs from its real one."""
    real_digest = code_version._code_digest

    def digest(path: str, *stamp: int) -> str:
        return real_digest(path, *stamp) + ("-edited" if Path(path) == edited else "")

    monkeypatch.setattr(code_version, "_code_digest", digest)
