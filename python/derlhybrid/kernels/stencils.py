"""Finite-difference stencils: Fornberg weights and derivative operators.

This module holds the *mathematics* shared by every backend: the Fornberg recursion for
stencil weights on arbitrary nodes, and the rules that turn ``(order, accuracy, scheme,
boundary)`` into one stencil per grid point (a :class:`StencilOperator`). Backends only apply
operators (``python``) or rebuild them with the same rules (``julia``, mirrored in
``julia/DERLKernels/src/stencils.jl``).

Stencil rules (the contract both backends implement)
----------------------------------------------------
Let ``d`` be the derivative order and ``p`` the requested accuracy.

* ``scheme="central"`` (``p`` even): on a uniform grid the symmetric stencil of
  ``2*floor((d+1)/2) - 1 + p`` points (3 points for d=1, p=2; 5 for d=1, p=4; ...).
* ``scheme="forward"`` / ``"backward"``: ``d + p`` points starting at / ending at the
  evaluation point (``scheme="forward", accuracy=1`` is the plain forward difference).
* Non-uniform grids: ``d + p`` points for every scheme (centred, with the extra point on the
  right for even ``d``), which guarantees accuracy ``p`` on *any* node spacing, not only on
  smoothly mapped grids.
* ``boundary="one-sided"``: points whose stencil would leave the grid use ``d + p`` points
  flush with the nearest edge (a biased stencil that contains the point), so the requested
  accuracy holds up to the boundary.
* ``boundary="periodic"``: every point uses the interior stencil with indices wrapped; on a
  coordinate array the period ``L`` must be given (node ``j + n`` sits at ``x[j] + L``).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import numpy as np

BOUNDARIES = ("periodic", "one-sided")
SCHEMES = ("central", "forward", "backward")


# --------------------------------------------------------------------------------------
# Fornberg weights
# --------------------------------------------------------------------------------------
def _fornberg_batch(x0, xs, order: int):
    """Weights of the ``order``-th derivative for a batch of stencils.

    ``x0`` has shape (B,), ``xs`` shape (B, N); returns (B, N). Works on float arrays and on
    object arrays of :class:`fractions.Fraction` (exact rational weights). Fornberg (1988),
    "Generation of finite difference formulas on arbitrarily spaced grids", Math. Comp. 51.
    """
    n_nodes = xs.shape[1]
    zero = xs[:, 0] * 0
    c = [[zero for _ in range(order + 1)] for _ in range(n_nodes)]
    c[0][0] = zero + 1
    c1 = zero + 1
    c4 = xs[:, 0] - x0
    for i in range(1, n_nodes):
        mn = min(i, order)
        c2 = zero + 1
        c5 = c4
        c4 = xs[:, i] - x0
        for j in range(i):
            c3 = xs[:, i] - xs[:, j]
            c2 = c2 * c3
            if j == i - 1:
                for k in range(mn, 0, -1):
                    c[i][k] = c1 * (k * c[i - 1][k - 1] - c5 * c[i - 1][k]) / c2
                c[i][0] = -c1 * c5 * c[i - 1][0] / c2
            for k in range(mn, 0, -1):
                c[j][k] = (c4 * c[j][k] - k * c[j][k - 1]) / c3
            c[j][0] = c4 * c[j][0] / c3
        c1 = c2
    return np.stack([c[j][order] for j in range(n_nodes)], axis=1)


def fornberg_weights(x0, xs, order: int, *, exact: bool = False) -> np.ndarray:
    """Weights ``w`` with ``f^(order)(x0) ≈ sum_i w[i] f(xs[i])`` for any distinct nodes.

    Parameters
    ----------
    x0 : float
        Evaluation point (need not be a node).
    xs : sequence of float
        Distinct nodes, uniform or not, at least ``order + 1`` of them.
    order : int
        Derivative order (0 gives interpolation weights).
    exact : bool
        Return exact rational weights (an object array of ``Fraction``) for rational
        inputs, e.g. ``fornberg_weights(0, [-2, -1, 0, 1, 2], 1, exact=True)``.

    Examples
    --------
    >>> fornberg_weights(0.0, [-2, -1, 0, 1, 2], 1)
    array([ 0.08333333, -0.66666667,  0.        ,  0.66666667, -0.08333333])
    """
    order = _check_int("order", order, minimum=0)
    if exact:
        nodes = np.array([Fraction(x) for x in np.ravel(np.asarray(xs, dtype=object))], object)
        x0v = np.array([Fraction(x0)], dtype=object)
    else:
        nodes = np.asarray(xs, dtype=np.float64).ravel()
        x0v = np.array([float(x0)], dtype=np.float64)
        if not (np.all(np.isfinite(nodes)) and np.isfinite(x0v[0])):
            raise ValueError("fornberg_weights: nodes and x0 must be finite numbers")
    if nodes.size < order + 1:
        raise ValueError(
            f"fornberg_weights: a derivative of order {order} needs at least {order + 1} "
            f"nodes, got {nodes.size}; pass more nodes"
        )
    if len(set(nodes.tolist())) != nodes.size:
        raise ValueError("fornberg_weights: nodes must be distinct; remove repeated nodes")
    return _fornberg_batch(x0v, nodes[None, :], order)[0]


# --------------------------------------------------------------------------------------
# Stencil operators
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StencilOperator:
    """One stencil per grid point along an axis of ``n`` points.

    Points ``lo <= j < hi`` use the shared interior stencil: ``sum_s w_int[s] *
    u[j + offset + s]``. Every other point ``j = b_index[k]`` uses its own stencil
    ``sum_s b_weights[k, s] * u[(b_start[k] + s) mod n]`` (the modulo only matters for
    periodic operators). Weights already include the grid spacing.
    """

    n: int
    w_int: np.ndarray  # (W,) float64
    offset: int
    lo: int
    hi: int
    b_index: np.ndarray  # (nb,) int64
    b_start: np.ndarray  # (nb,) int64
    b_weights: np.ndarray  # (nb, Wb) float64

    def matrix(self) -> np.ndarray:
        """Dense (n, n) matrix of the operator (for tests and small problems)."""
        m = np.zeros((self.n, self.n), dtype=np.result_type(self.w_int, self.b_weights))
        for j in range(self.lo, self.hi):
            m[j, j + self.offset : j + self.offset + self.w_int.size] += self.w_int
        for k, j in enumerate(self.b_index):
            for s, w in enumerate(self.b_weights[k]):
                m[j, (self.b_start[k] + s) % self.n] += w
        return m


def _check_int(name: str, value, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_options(order, accuracy, boundary, scheme) -> tuple[int, int, str, str]:
    """Validate the stencil options shared by every backend (one-line errors)."""
    order = _check_int("order", order, minimum=1)
    accuracy = _check_int("accuracy", accuracy, minimum=1)
    if boundary not in BOUNDARIES:
        raise ValueError(f"boundary must be one of {BOUNDARIES}, got {boundary!r}")
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    if scheme == "central" and accuracy % 2:
        raise ValueError(
            f"central stencils have even accuracy, got accuracy={accuracy}; use an even "
            "accuracy or scheme='forward'/'backward'"
        )
    return order, accuracy, boundary, scheme


def stencil_width(order: int, accuracy: int, scheme: str, *, uniform: bool = True) -> int:
    """Number of points of the interior stencil (see the module docstring)."""
    if scheme == "central" and uniform:
        return 2 * ((order + 1) // 2) - 1 + accuracy
    return order + accuracy


def _first_offset(width: int, scheme: str) -> int:
    if scheme == "forward":
        return 0
    if scheme == "backward":
        return -(width - 1)
    return -((width - 1) // 2)


def _interior_range(n: int, width: int, offset: int) -> tuple[int, int]:
    lo = -offset
    hi = n - (width - 1 + offset)
    return lo, max(lo, hi)


def _weights(x0, nodes, order: int, number):
    """Fornberg weights in float64 (``number=float``) or in another number type such as
    ``mpmath.mpf`` (object arrays; used by the tests to measure convergence without
    rounding)."""
    if number is float:
        return fornberg_weights(x0, nodes, order)
    xs = np.array([number(v) for v in nodes], dtype=object)
    return _fornberg_batch(np.array([number(x0)], dtype=object), xs[None, :], order)[0]


def uniform_operator(n, h, order, accuracy, boundary, scheme, *, number=float):
    """Operator on ``n`` points with uniform step ``h``."""
    width = stencil_width(order, accuracy, scheme)
    offset = _first_offset(width, scheme)
    w_int = _weights(0, range(offset, offset + width), order, number) / h**order
    lo, hi = _interior_range(n, width, offset)
    b_index = np.array([j for j in range(n) if not lo <= j < hi], dtype=np.int64)
    if boundary == "periodic":
        if n < width:
            raise ValueError(
                f"a periodic stencil of {width} points needs at least {width} grid points "
                f"along the axis, got {n}; lower the accuracy or refine the grid"
            )
        b_start = b_index + offset
        b_weights = np.broadcast_to(w_int, (b_index.size, width)).copy()
    else:
        wb = order + accuracy
        if n < wb:
            raise ValueError(
                f"one-sided boundary stencils of {wb} points need at least {wb} grid points "
                f"along the axis, got {n}; lower the accuracy or refine the grid"
            )
        b_start = np.where(b_index < lo, 0, n - wb).astype(np.int64)
        # rows of the same offset share weights: compute once per distinct offset
        b_weights = np.empty((b_index.size, wb), dtype=np.float64 if number is float else object)
        rel = b_index - b_start
        for r in np.unique(rel):
            w = _weights(int(r), range(wb), order, number) / h**order
            b_weights[rel == r] = w
    return StencilOperator(n, w_int, offset, lo, hi, b_index, b_start.astype(np.int64), b_weights)


@lru_cache(maxsize=256)
def _uniform_cached(n, h, order, accuracy, boundary, scheme) -> StencilOperator:
    """Uniform operators are pure functions of their arguments: build each once (calls in
    a time loop then cost only the kernel). Callers never modify operator arrays."""
    op = uniform_operator(n, h, order, accuracy, boundary, scheme)
    for arr in (op.w_int, op.b_index, op.b_start, op.b_weights):
        arr.setflags(write=False)
    return op


def nonuniform_operator(x, order, accuracy, boundary, scheme, period=None) -> StencilOperator:
    """Operator on the increasing coordinates ``x`` (one Fornberg stencil per point)."""
    n = x.size
    width = stencil_width(order, accuracy, scheme, uniform=False)
    if n < width:
        raise ValueError(
            f"a stencil of {width} points needs at least {width} grid points along the "
            f"axis, got {n}; lower the accuracy or refine the grid"
        )
    j = np.arange(n)
    start = j + _first_offset(width, scheme)
    if boundary == "one-sided":
        start = np.clip(start, 0, n - width)
    idx = start[:, None] + np.arange(width)[None, :]
    nodes = x[idx % n] + period * (idx // n) if boundary == "periodic" else x[idx]
    # shift to the evaluation point before the recursion: better conditioning
    weights = _fornberg_batch(x * 0, nodes - x[:, None], order)
    empty = np.zeros(0, dtype=x.dtype)
    return StencilOperator(n, empty, 0, 0, 0, j.astype(np.int64), start.astype(np.int64), weights)


def coordinates_or_step(spacing, n: int, boundary: str, period):
    """Resolve ``spacing`` into ``("uniform", h)`` or ``("coords", x, period)``.

    A coordinate array whose steps agree to 1e-12 (relative) is treated as uniform, so both
    spellings give the same (fast) operator.
    """
    arr = np.asarray(spacing, dtype=np.float64)
    if arr.ndim == 0:
        h = float(arr)
        if not (np.isfinite(h) and h > 0):
            raise ValueError(f"spacing must be a positive finite step, got {spacing!r}")
        return ("uniform", h)
    if arr.ndim != 1 or arr.size != n:
        raise ValueError(
            f"spacing must be a step or a 1-D coordinate array of length {n} (the axis "
            f"length), got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError("spacing coordinates must be finite")
    dx = np.diff(arr)
    if not np.all(dx > 0):
        raise ValueError("spacing coordinates must be strictly increasing")
    if boundary == "periodic":
        if period is None:
            raise ValueError(
                "periodic derivative on a coordinate array needs period=L (the domain "
                "length, so that node j+n sits at x[j] + L)"
            )
        period = float(period)
        if not period > arr[-1] - arr[0]:
            raise ValueError(f"period={period} must exceed the coordinate span {arr[-1] - arr[0]}")
        wrap = arr[0] + period - arr[-1]
        steps = np.append(dx, wrap)
    else:
        steps = dx
    if np.ptp(steps) <= 1e-12 * np.mean(steps):
        return ("uniform", float(np.mean(steps)))
    return ("coords", arr, period)


def build_operator(n, spacing, order, accuracy, boundary, scheme, period=None, *, number=float):
    """Validate options and build the :class:`StencilOperator` for an axis of ``n`` points.

    ``number`` other than ``float`` (e.g. ``mpmath.mpf``) builds the operator in that number
    type, from a step or coordinates already given in it (no uniform-grid detection).
    """
    order, accuracy, boundary, scheme = check_options(order, accuracy, boundary, scheme)
    if number is not float:
        if np.ndim(spacing) == 0:
            return uniform_operator(n, spacing, order, accuracy, boundary, scheme, number=number)
        x = np.asarray(spacing, dtype=object)
        return nonuniform_operator(x, order, accuracy, boundary, scheme, period)
    grid = coordinates_or_step(spacing, n, boundary, period)
    if grid[0] == "uniform":
        return _uniform_cached(n, grid[1], order, accuracy, boundary, scheme)
    return nonuniform_operator(grid[1], order, accuracy, boundary, scheme, grid[2])
