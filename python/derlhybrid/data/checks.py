"""Range checks of generation settings shared by the flat request (:mod:`.request`) and
the typed objects (:mod:`.sampling`): one-line ``ValueError`` naming the key path
``name``."""

from __future__ import annotations

import math

__all__ = ["check_at_least", "check_noise", "check_positive", "check_seed", "check_split"]


def check_positive(name: str, v) -> None:
    if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a positive number, got {v!r}")


def check_at_least(name: str, v, low: int) -> None:
    if v is not None and (not isinstance(v, int) or v < low):
        raise ValueError(f"{name} must be >= {low}, got {v!r}")


def check_seed(name: str, v) -> None:
    if v is not None and not 0 <= v < 2**63:
        raise ValueError(f"{name} must be an integer in [0, 2**63), got {v}")


def check_noise(name: str, v) -> None:
    if not (isinstance(v, int | float) and 0 <= v < math.inf):
        raise ValueError(f"{name} must be a non-negative number, got {v!r}")


def check_split(name: str, v) -> None:
    if len(v) != 3 or min(v) < 0 or abs(sum(v) - 1) > 1e-9:
        raise ValueError(f"{name} fractions must be 3 non-negatives summing to 1: {v}")
