"""What the PDE solvers share: argument checks, equal substeps per output interval, the
options of their Numba kernels. NumPy only."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["NJIT_OPTIONS", "int_at_least", "output_times", "positive", "substeps", "uniform_axis"]

#: Options of every ``numba.njit`` of the PDE solvers (on-disk cache, no fast-math).
NJIT_OPTIONS: dict[str, Any] = {"cache": True, "nogil": True, "fastmath": False}


def int_at_least(name: str, value, minimum: int) -> int:
    """``value`` as an int, refused (``ValueError`` naming ``name``) unless an integer (not a
    bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def positive(name: str, value) -> float:
    """``value`` as a float, refused unless positive and finite."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {value!r}") from None
    if not (np.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return v


def uniform_axis(name: str, x, minimum: int) -> tuple[np.ndarray, float]:
    """A 1-D, finite, strictly increasing, uniform coordinate array and its step."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1 or x.size < minimum:
        raise ValueError(
            f"{name} must be a 1-D array of at least {minimum} points, got shape {x.shape}"
        )
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} must be finite")
    d = np.diff(x)
    if not np.all(d > 0):
        raise ValueError(f"{name} must be strictly increasing")
    h = (x[-1] - x[0]) / (x.size - 1)
    if np.ptp(d) > 1e-9 * h:
        raise ValueError(f"{name} must be uniformly spaced (steps differ by {np.ptp(d):.3g})")
    return x, float(h)


def output_times(t_eval) -> np.ndarray:
    """``t_eval`` as a non-empty, finite, strictly increasing 1-D float64 array."""
    t = np.asarray(t_eval, dtype=np.float64)
    if t.ndim != 1 or t.size < 1:
        raise ValueError(f"t_eval must be a non-empty 1-D array, got shape {t.shape}")
    if not np.all(np.isfinite(t)):
        raise ValueError("t_eval must be finite")
    if t.size > 1 and not np.all(np.diff(t) > 0):
        raise ValueError("t_eval must be strictly increasing (t_eval[0] is the initial time)")
    return t


def substeps(dts: np.ndarray, h_max: float) -> np.ndarray:
    """Equal substeps per output interval, each at most ``h_max`` (1e-9 slack so that an
    interval that is a whole multiple of ``h_max`` is not split once more by rounding)."""
    return np.maximum(1, np.ceil(dts / h_max * (1 - 1e-9))).astype(np.int64)
