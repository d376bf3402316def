"""The julia backend: the ONLY module of derlhybrid that imports juliacall.

Contract: *Python allocates, Julia fills.* Every call passes caller-allocated NumPy buffers
to an in-place DERLKernels function; juliacall hands them to Julia as zero-copy ``PyArray``s.

Layout is handled here and nowhere else: a C-ordered NumPy array of shape ``(d0, ..., dk)``
is passed as its transpose ``a.T`` — a column-major view of shape ``(dk, ..., d0)`` over the
same memory, which Julia indexes at native speed — so NumPy axis ``a`` is Julia dimension
``ndim - a`` (1-based). Buffers stay referenced by this frame for the whole call.

juliacall's environment defaults are set before it is imported; Julia is loaded into its
own module (``DERLHybrid``), never ``Main``. Loading never downloads Julia: the backend is
only tried when an executable is already present (see ``backends.status``), and with
``offline=True`` (``auto`` selection) juliapkg may not fetch packages either.
"""

from __future__ import annotations

import os

import numpy as np

from . import _julia_state
from .backends import BackendUnavailable, julia_executable, status

NAME = "julia"
JULIA_MODULE = "DERLHybrid"


def _set_juliacall_defaults(exe: str, offline: bool) -> None:
    # Respect anything the user already set; these are defaults only.
    os.environ.setdefault("PYTHON_JULIAPKG_EXE", exe)  # use the Julia found, never download
    os.environ.setdefault("PYTHON_JULIACALL_HANDLE_SIGNALS", "yes")  # needed beside torch
    os.environ.setdefault("PYTHON_JULIACALL_THREADS", "auto")
    os.environ.setdefault("PYTHON_JULIACALL_AUTOLOAD_IPYTHON_EXTENSION", "no")
    if offline:
        os.environ.setdefault("PYTHON_JULIAPKG_OFFLINE", "yes")


def load(offline: bool = False):
    """Start Julia (once per process) and load DERLKernels; returns the Julia module."""
    if _julia_state.module is not None:
        return _julia_state.module
    st = status("julia")
    if not st.available:
        raise BackendUnavailable(f"julia backend unavailable: {st.detail}")
    _set_juliacall_defaults(julia_executable(), offline)
    try:
        import juliacall

        jl = juliacall.newmodule(JULIA_MODULE)
        jl.seval("using DERLKernels")
        _julia_state.module = jl.DERLKernels
    except Exception as exc:  # juliacall raises many types; keep one clear line
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        _julia_state.load_error = (
            f"Julia is present but loading DERLKernels failed ({type(exc).__name__}: "
            f"{first}); a source checkout (pip install -e .) provides julia/DERLKernels"
        )
        raise BackendUnavailable(f"julia backend unavailable: {_julia_state.load_error}") from None
    return _julia_state.module


def fornberg_weights(x0: float, xs: np.ndarray, order: int) -> np.ndarray:
    """Python allocates ``w``; ``DERLKernels.fornberg_weights!`` fills it."""
    nodes = np.ascontiguousarray(xs, dtype=np.float64)
    w = np.empty(nodes.size, dtype=np.float64)
    load().fornberg_weights_b(w, float(x0), nodes, int(order))
    return w


def derivative(u, out, axis, grid, order, accuracy, boundary, scheme) -> None:
    """Fill ``out`` (C-contiguous, like ``u``) with the derivative of ``u`` along ``axis``.

    ``grid`` is ``("uniform", h)`` or ``("coords", x, period)`` as returned by
    ``stencils.coordinates_or_step``.
    """
    dim = u.ndim - axis  # NumPy axis -> Julia dimension of the transposed (column-major) view
    if grid[0] == "uniform":
        spacing, period = float(grid[1]), None
    else:
        spacing, period = np.ascontiguousarray(grid[1], dtype=np.float64), grid[2]
    load().derivative_b(
        out.T,
        u.T,
        spacing,
        dim=dim,
        order=order,
        accuracy=accuracy,
        boundary=boundary,
        scheme=scheme,
        period=period,
    )
