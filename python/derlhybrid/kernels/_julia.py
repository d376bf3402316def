"""The julia backend: the ONLY module of derlhybrid that imports juliacall.

Contract: *Python allocates, Julia fills.* Every call passes caller-allocated NumPy buffers
to an in-place DERLKernels function; juliacall hands them to Julia as zero-copy ``PyArray``s.

Layout is handled here and nowhere else: a C-ordered NumPy array of shape ``(d0, ..., dk)``
is passed as its transpose ``a.T`` — a column-major view of shape ``(dk, ..., d0)`` over the
same memory, which Julia indexes at native speed — so NumPy axis ``a`` is Julia dimension
``ndim - a`` (1-based). Buffers stay referenced by this frame for the whole call.

juliacall's environment defaults are set before it is imported; Julia is loaded into its
own module (``DERLHybrid``), never ``Main``. Loading never downloads Julia: the backend is
only tried when an executable is already present (see ``availability.status``), and with
``offline=True`` (``auto`` selection) juliapkg may not fetch packages either — for that one
load only (``juliapkg.offline``), never through ``os.environ``, which Ray and subprocess
workers would inherit. A failed offline load is remembered for ``auto`` only: an explicit
``backend="julia"`` later in the same process tries again, online.
"""

from __future__ import annotations

import importlib
import os
import sys

import numpy as np

from . import _julia_state
from .availability import BackendUnavailable, julia_executable, status
from .buffers import check_out_buffer

NAME = "julia"
JULIA_MODULE = "DERLHybrid"

#: In-place DERLKernels functions Python calls besides the kernels of
#: ``derlhybrid.kernels.KERNELS`` (ground-truth generators); tools/check_julia.py checks that
#: the package exports and defines each.
JULIA_GENERATORS = ("solve_ensemble!", "solve_kdv!", "solve_continuity!")

#: Systems whose ODE ensembles DERLKernels solves (the names of its ``ODE_SYSTEMS`` table,
#: checked by tools/check_julia.py); Julia builds their right-hand sides from the name.
JULIA_ODE_SYSTEMS = ("pendulum",)


#: Dataset provenance of the julia backend's ODE ensembles (``generator`` of an HDF5 file):
#: the same method as the python backend's DOP853 with another step-size controller, so the
#: steps (and ``n_steps``) differ and the results agree to the tolerances, not to rounding.
#: The controller values are OrdinaryDiffEq's defaults for ``DP8()`` (OrdinaryDiffEqCore's
#: ``PIController`` with OrdinaryDiffEqHighOrderRK's ``beta1_default``, ``beta2_default``,
#: ``qmin_default``, ``qmax_default`` and the generic ``gamma_default``).
ENSEMBLE_PROVENANCE = {
    "method": (
        "DP8 (OrdinaryDiffEq's Dormand–Prince 8(5,3), Hairer's DOP853) via DERLKernels.jl, "
        "EnsembleThreads, per-trajectory adaptive steps, dense output at the saved times"
    ),
    "step_controller": (
        "OrdinaryDiffEq's PIController defaults for DP8: beta1 = 1/8, beta2 = 0, safety "
        "gamma = 0.9, step factor in [qmin, qmax] = [1/3, 6], OrdinaryDiffEq's initial step; "
        "not the python backend's SciPy-style DOP853 "
        "controller (safety 0.9, factor in [0.2, 10], no growth after a rejection, SciPy's "
        "initial step): steps differ, results agree to the tolerances"
    ),
    "n_rejected": "OrdinaryDiffEq's count of rejected steps (sol.stats.nreject)",
}


def _set_juliacall_defaults(exe: str) -> None:
    """juliacall's and juliapkg's options, read when juliacall is imported.

    Defaults only (anything the user set wins), and only ones that a worker process may
    inherit unchanged: the same Julia, the same runtime options. Offline resolution is not
    one of them (see :func:`_import_juliacall`)."""
    os.environ.setdefault("PYTHON_JULIAPKG_EXE", exe)  # use the Julia found, never download
    os.environ.setdefault("PYTHON_JULIACALL_HANDLE_SIGNALS", "yes")  # needed beside torch
    os.environ.setdefault("PYTHON_JULIACALL_THREADS", "auto")
    os.environ.setdefault("PYTHON_JULIACALL_AUTOLOAD_IPYTHON_EXTENSION", "no")


def _import_module(name: str):
    """``importlib.import_module`` (one seam for the tests, which fake juliapkg/juliacall)."""
    return importlib.import_module(name)


def _import_juliacall(offline: bool):
    """Import juliacall, which resolves the Julia environment with juliapkg and starts Julia.

    With ``offline``, juliapkg resolves offline (no registry, no package installs) for this
    import only: its ``offline`` state is set and then restored, and ``os.environ`` is not
    touched, so processes started later (Ray workers, subprocesses) resolve as the user
    configured them. Without it the user's setting (``PYTHON_JULIAPKG_OFFLINE``) applies."""
    juliapkg = _import_module("juliapkg")
    before = juliapkg.offline(None)  # None: read the state, change nothing
    if offline:
        juliapkg.offline(True)
    try:
        return _import_module("juliacall")
    finally:
        if offline:
            juliapkg.offline(before)


#: Why the offline load (``auto`` selection) failed in this process, if it did: ``auto`` does
#: not try again, an explicit ``backend="julia"`` does (online).
_auto_error: str | None = None
#: Whether that offline attempt started Julia (imported juliacall) before failing: then the
#: online retry resolves the environment again, installing what offline mode could not.
_started_offline = False


def load(offline: bool = False):
    """Start Julia (once per process) and load DERLKernels; returns the Julia module.

    ``offline=True`` (``auto`` selection) lets juliapkg resolve offline only; its failure is
    cached for ``auto`` and does not refuse a later ``load()``. A failed ``load()`` is cached
    and refuses later loads of this process with its reason.

    Never after a fork: a forked child inherits the parent's started runtime without its
    threads, and using it hangs or crashes. Worker processes (Ray's, ``multiprocessing``
    with ``spawn``) start their own Julia once each."""
    global _auto_error, _started_offline
    if _julia_state.module is not None:
        if _julia_state.pid != os.getpid():
            raise BackendUnavailable(
                "julia backend unavailable in this process: Julia was started in its parent "
                "before a fork, and a forked process cannot use it; start worker processes "
                "with 'spawn' (Ray workers are) so that each starts Julia once"
            )
        return _julia_state.module
    if offline and _auto_error is not None:
        raise BackendUnavailable(f"julia backend unavailable: {_auto_error}")
    st = status("julia")
    if not st.available:
        raise BackendUnavailable(f"julia backend unavailable: {st.detail}")
    exe = julia_executable()
    if exe is None:  # status() has just found it: it went away since
        raise BackendUnavailable("julia backend unavailable: the Julia executable is gone")
    _set_juliacall_defaults(exe)
    try:
        juliacall = _import_juliacall(offline)
        if not offline and _started_offline:
            # An offline attempt started Julia without installing DERLKernels: resolve (and
            # install) online now; the running Julia finds what Pkg adds to its project.
            _import_module("juliapkg").resolve(force=True)
        jl = juliacall.newmodule(JULIA_MODULE)
        jl.seval("using DERLKernels")
        _julia_state.module = jl.DERLKernels
        _julia_state.pid = os.getpid()
    except Exception as exc:  # juliacall raises many types; keep one clear line
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        error = (
            f"Julia is present but loading DERLKernels failed ({type(exc).__name__}: "
            f"{first}); see docs/julia.md"
        )
        if offline:
            _auto_error = f"{error} (offline, as backend 'auto' loads; backend='julia' retries)"
            _started_offline = _started_offline or "juliacall" in sys.modules
            raise BackendUnavailable(f"julia backend unavailable: {_auto_error}") from None
        _julia_state.load_error = error
        raise BackendUnavailable(f"julia backend unavailable: {error}") from None
    return _julia_state.module


def fornberg_weights(x0: float, xs: np.ndarray, order: int) -> np.ndarray:
    """Python allocates ``w``; ``DERLKernels.fornberg_weights!`` fills it.

    The nodes are flattened in C order first, as the python reference does (an N-d node
    array gives one weight per node, in ``np.ravel`` order)."""
    nodes = np.ascontiguousarray(xs, dtype=np.float64).ravel()
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


def _tolerance(v):
    a = np.asarray(v, dtype=np.float64)
    return float(a) if a.ndim == 0 else np.ascontiguousarray(a)


def solve_ensemble(
    system_name: str,
    y0,
    t_eval,
    params,
    rtol,
    atol,
    out_states: np.ndarray,
    out_derivatives: np.ndarray,
    out_rejected: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Integrate the ODE system ``system_name`` from every initial state with DP8 in Julia.

    The julia counterpart of :func:`derlhybrid.kernels.ode.solve_ensemble` for a system of
    :data:`JULIA_ODE_SYSTEMS` (Julia builds its own right-hand side from the name; any other
    name raises ``ValueError`` before Julia starts): ``y0`` is ``(n_traj,
    n_state)``, ``params`` ``(n_traj, n_par)`` or ``(n_par,)`` in the system's declaration
    order, ``rtol``/``atol`` numbers or ``(n_state,)`` arrays. ``DERLKernels.solve_ensemble!``
    fills ``out_states`` and ``out_derivatives`` (C-contiguous float64, ``(n_traj, n_t,
    n_state)``) in place. Returns ``(n_steps, status)``, int64 arrays of ``n_traj``: accepted
    steps, and ``kernels.ode``'s status codes (0 ok; a failed trajectory's rows are NaN).
    ``out_rejected``, a C-contiguous int64 ``(n_traj,)`` buffer, receives the rejected steps.
    The step-size controller is OrdinaryDiffEq's, not the python backend's:
    :data:`ENSEMBLE_PROVENANCE` says how they differ, for a dataset's provenance.
    """
    if system_name not in JULIA_ODE_SYSTEMS:
        raise ValueError(
            f"solve_ensemble: the julia backend has no ODE solver for {system_name!r} (it "
            f"solves {', '.join(JULIA_ODE_SYSTEMS)}); use backend='python'"
        )
    y0 = np.ascontiguousarray(y0, dtype=np.float64)
    if y0.ndim != 2:
        raise ValueError(f"solve_ensemble: y0 must have shape (n_traj, n_state), got {y0.shape}")
    t = np.ascontiguousarray(t_eval, dtype=np.float64)
    if t.ndim != 1:
        raise ValueError(f"solve_ensemble: t_eval must be a 1-D array, got shape {t.shape}")
    p = np.asarray(params, dtype=np.float64)
    p = np.ascontiguousarray(p[None, :] if p.ndim == 1 else p)  # (1 or n_traj, n_par)
    n_traj, n_state = y0.shape
    if p.ndim != 2 or p.shape[0] not in (1, n_traj):
        raise ValueError(
            f"solve_ensemble: params must have shape (n_traj={n_traj}, n_par) or (n_par,), "
            f"got {np.shape(params)}"
        )
    shape = (n_traj, t.size, n_state)
    what = "(n_traj, n_t, n_state)"
    states = check_out_buffer(out_states, "solve_ensemble: out_states", shape, what)
    derivs = check_out_buffer(out_derivatives, "solve_ensemble: out_derivatives", shape, what)
    if np.shares_memory(states, derivs):
        raise ValueError("solve_ensemble: out_states and out_derivatives must not overlap")
    n_steps = np.zeros(n_traj, dtype=np.int64)
    status = np.zeros(n_traj, dtype=np.int64)
    if out_rejected is not None:
        if not (
            isinstance(out_rejected, np.ndarray)
            and out_rejected.dtype == np.int64
            and out_rejected.shape == (n_traj,)
            and out_rejected.flags.c_contiguous
            and out_rejected.flags.writeable
        ):
            raise ValueError(
                f"solve_ensemble: out_rejected must be a writeable C-contiguous int64 array of "
                f"shape ({n_traj},) (n_traj)"
            )
    # transposed views: Julia sees (n_state, n_t, n_traj), (n_state, n_traj), (n_par, m)
    load().solve_ensemble_b(
        states.T,
        derivs.T,
        n_steps,
        status,
        str(system_name),
        y0.T,
        t,
        p.T,
        rtol=_tolerance(rtol),
        atol=_tolerance(atol),
        n_rejected=out_rejected,
    )
    return n_steps, status


# --------------------------------------------------------------------------------------
# PDE ground truth (DERLKernels' pde.jl; the python reference is kernels/pde.py)
# --------------------------------------------------------------------------------------
#: Methods of :func:`solve_continuity` (the velocity is always the rigid rotation ``(-y, x)``).
CONTINUITY_METHODS = ("mol", "upwind-fv")


def _vector(name: str, v) -> np.ndarray:
    a = np.ascontiguousarray(v, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {a.shape}")
    return a


def _optional_float(v):
    return None if v is None else float(v)


def solve_kdv(nu, x, t_eval, u0, tol, dt, out: np.ndarray) -> None:
    """KdV ``u_t + u u_x + nu u_xxx = 0`` on the periodic grid ``x`` (no duplicated end):
    ``DERLKernels.solve_kdv!`` fills ``out`` (C-contiguous float64, ``(n_t, n_x)``, seen by
    Julia as ``(n_x, n_t)``) with Fourier pseudo-spectral ETDRK4, steps from ``tol`` or at
    most ``dt`` (:func:`derlhybrid.kernels.pde.solve_kdv`, ``dealias=False``). ``u0`` is an
    array or a callable evaluated here, in Python."""
    x = _vector("solve_kdv: x", x)
    t = _vector("solve_kdv: t_eval", t_eval)
    u0 = _vector("solve_kdv: u0", u0(x) if callable(u0) else u0)
    out = check_out_buffer(out, "solve_kdv: out", (t.size, x.size), "(n_t, n_x)")
    load().solve_kdv_b(out.T, float(nu), x, t, u0, tol=float(tol), dt=_optional_float(dt))


def solve_continuity(
    x, y, t_eval, rho0, method, accuracy, cfl, dt, paper_edges, out: np.ndarray
) -> None:
    """Continuity ``rho_t + div(rho u) = 0`` under the rigid rotation ``u = (-y, x)``:
    ``DERLKernels.solve_continuity!`` fills ``out`` (C-contiguous float64, ``(n_t, n_x,
    n_y)``, seen by Julia as ``(n_y, n_x, n_t)``) by ``method`` ``"mol"`` or ``"upwind-fv"``
    (:func:`derlhybrid.kernels.pde.solve_continuity` with ``velocity=rigid_rotation``,
    ``boundary="periodic"``). Julia builds the velocity itself: no callable crosses the
    boundary. ``rho0`` is an ``(n_x, n_y)`` array or a callable ``rho0(X, Y)`` evaluated here.
    """
    if method not in CONTINUITY_METHODS:
        raise ValueError(
            f"solve_continuity: method must be one of {CONTINUITY_METHODS}, got {method!r}"
        )
    x = _vector("solve_continuity: x", x)
    y = _vector("solve_continuity: y", y)
    t = _vector("solve_continuity: t_eval", t_eval)
    rho0 = rho0(x[:, None], y[None, :]) if callable(rho0) else rho0
    rho0 = np.ascontiguousarray(rho0, dtype=np.float64)
    if rho0.shape != (x.size, y.size):
        raise ValueError(
            f"solve_continuity: rho0 must have shape {(x.size, y.size)} (len(x), len(y)), got "
            f"{rho0.shape}"
        )
    out = check_out_buffer(
        out, "solve_continuity: out", (t.size, x.size, y.size), "(n_t, n_x, n_y)"
    )
    load().solve_continuity_b(
        out.T,
        x,
        y,
        t,
        rho0.T,
        method=str(method),
        accuracy=int(accuracy),
        cfl=float(cfl),
        dt=_optional_float(dt),
        paper_edges=bool(paper_edges),
    )
