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
