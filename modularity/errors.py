"""User-facing errors: one line that names the bad value and what would be valid."""

from __future__ import annotations

from collections.abc import Iterable


class ModularityError(Exception):
    """A problem with the user's input or environment; printed as one line, no traceback."""


class ConfigError(ModularityError, ValueError):
    """A configuration value is invalid."""


def invalid_choice(what: str, value: object, valid: Iterable[object]) -> ConfigError:
    """Build the standard 'unknown X: valid are ...' error."""
    choices = ", ".join(str(v) for v in valid)
    return ConfigError(f"unknown {what} {value!r}; valid: {choices}")


class MissingPackageError(ModularityError, ImportError):
    """An optional package a feature needs is not installed; the line says how to add it."""


class DamagedFileError(ModularityError):
    """A file a run wrote no longer matches the checksum recorded when it was written."""


def missing_package(package: str, purpose: str, install: str) -> MissingPackageError:
    """Build the standard 'X needs package P: install it with ...' error."""
    return MissingPackageError(
        f"{purpose} needs the package {package!r}, which is not installed: {install}",
        name=package,
    )
