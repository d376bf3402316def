"""Numerical kernels behind one interface, with two backends (``python``, ``julia``).

Public API::

    fornberg_weights(x0, xs, order)        # stencil weights on any nodes
    derivative(u, spacing, axis=-1, ...)   # derivative of an N-d array along one axis
    available_backends()                   # status of every backend, with reasons

Mixed partials compose: ``derivative(derivative(u, dx, axis=0), dy, axis=1)``.
"""

from __future__ import annotations

import numpy as np

from . import backends
from .backends import BackendStatus, BackendUnavailable
from .stencils import (
    BOUNDARIES,
    SCHEMES,
    StencilOperator,
    build_operator,
    check_options,
    coordinates_or_step,
    stencil_width,
)
from .stencils import fornberg_weights as _fornberg_python

__all__ = [
    "BOUNDARIES",
    "KERNELS",
    "SCHEMES",
    "BackendStatus",
    "BackendUnavailable",
    "StencilOperator",
    "available_backends",
    "build_operator",
    "derivative",
    "fornberg_weights",
    "stencil_width",
]

#: Kernels every backend implements. The Julia package exports each as ``name!`` (it fills
#: a caller's buffer); CI checks that both sides declare the same set.
KERNELS = ("fornberg_weights", "derivative")


def available_backends() -> list[BackendStatus]:
    """Status of each backend: available or not, and why (never imports juliacall)."""
    return [backends.status(name) for name in backends.BACKENDS]


def fornberg_weights(x0, xs, order: int, *, exact: bool = False, backend: str | None = None):
    """Weights ``w`` with ``f^(order)(x0) ≈ sum_i w[i] f(xs[i])`` on any distinct nodes.

    ``exact=True`` returns exact ``Fraction`` weights for rational nodes (python backend).
    See :func:`derlhybrid.kernels.stencils.fornberg_weights`.
    """
    w = _fornberg_python(x0, xs, order, exact=exact)  # validates, and is the reference
    if exact or backends.resolve(backend) == "python":
        return w
    return backends.module("julia").fornberg_weights(x0, xs, order)


def _as_float_array(u) -> np.ndarray:
    u = np.asarray(u)
    if u.dtype in (np.float32, np.float64):
        return u
    if u.dtype.kind in "biu":
        return u.astype(np.float64)
    raise ValueError(f"derivative: u must be a float32/float64 array, got dtype {u.dtype}")


def derivative(
    u,
    spacing,
    *,
    axis: int = -1,
    order: int = 1,
    accuracy: int = 2,
    boundary: str = "periodic",
    scheme: str = "central",
    out: np.ndarray | None = None,
    backend: str | None = None,
    period: float | None = None,
) -> np.ndarray:
    """Finite-difference derivative of ``u`` along one axis.

    Parameters
    ----------
    u : array_like, float32 or float64, any number of dimensions
    spacing : float or 1-D array
        The grid step, or the coordinates of the points along ``axis`` (non-uniform grids;
        strictly increasing).
    axis : int
        Axis to differentiate along.
    order : int
        Derivative order (1, 2, 3, ...).
    accuracy : int
        Order of accuracy of the stencil (even for ``scheme="central"``).
    boundary : {"periodic", "one-sided"}
        Wrap around, or use one-sided stencils of the same accuracy near the edges.
    scheme : {"central", "forward", "backward"}
        Stencil placement in the interior. ``scheme="forward", accuracy=1`` is the plain
        forward difference used for the paper's empirical derivatives.
    out : ndarray, optional
        Caller's buffer of ``u``'s shape and dtype to fill (returned).
    backend : {"auto", "python", "julia"}, optional
        Defaults to ``$DERL_BACKEND`` or ``auto``.
    period : float, optional
        Domain length, needed for ``boundary="periodic"`` on a coordinate array.

    Returns
    -------
    ndarray of ``u``'s shape and dtype (``out`` if given).
    """
    u = _as_float_array(u)
    if u.ndim == 0:
        raise ValueError("derivative: u must have at least one dimension")
    if not isinstance(axis, int | np.integer) or not -u.ndim <= axis < u.ndim:
        raise ValueError(f"derivative: axis={axis!r} is out of range for a {u.ndim}-d array")
    axis = int(axis) % u.ndim
    n = u.shape[axis]
    order, accuracy, boundary, scheme = check_options(order, accuracy, boundary, scheme)
    grid = coordinates_or_step(spacing, n, boundary, period)
    if out is not None:
        if not isinstance(out, np.ndarray) or out.shape != u.shape or out.dtype != u.dtype:
            raise ValueError(
                f"derivative: out must be an ndarray of shape {u.shape} and dtype {u.dtype}"
            )
    name = backends.resolve(backend)
    src = np.ascontiguousarray(u)
    direct = out is not None and out.flags.c_contiguous and not np.shares_memory(out, src)
    target = out if out is not None and direct else np.empty(u.shape, dtype=u.dtype)
    if name == "python":
        op = build_operator(n, spacing, order, accuracy, boundary, scheme, period)
        backends.module("python").apply(src, target, axis, op)
    else:
        backends.module("julia").derivative(
            src, target, axis, grid, order, accuracy, boundary, scheme
        )
    if out is not None and not direct:
        out[...] = target
        return out
    return target
