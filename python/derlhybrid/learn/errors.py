"""The error of a training configuration that cannot be used (its own module, so that the
configuration's modules — :mod:`.config`, :mod:`.optimizers` — import it without a cycle)."""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the key and the fix."""
