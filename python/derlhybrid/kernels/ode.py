"""Adaptive DOP853 for ensembles of small ODE systems: ground truth at speed.

``solve_ensemble(rhs, y0, t_eval, params)`` integrates ``n_traj`` independent initial value
problems ``y' = rhs(t, y, p)`` (one parameter vector ``p`` per trajectory) with the
Dormand–Prince 8(5,3) method, each trajectory with its own step-size control, trajectories in
parallel, and fills ``states`` and ``derivatives`` (the vector field at every saved state) at
the requested times from the method's 7th-order dense output.

The algorithm is scipy's ``DOP853`` (``scipy.integrate.solve_ivp``) step for step: the same
Butcher tables (read from ``scipy.integrate._ivp.dop853_coefficients`` at import time), the
same error norm (Hairer's combination of the 5th- and 3rd-order estimates), the same step-size
controller (safety 0.9, factor limits 0.2 and 10, no growth right after a rejection) and the
same initial step selection. Given the same tolerances it takes the same steps as scipy up to
rounding. The tables, the controller's constants and the helpers that do not call ``rhs``
live in ``dop853.py``, shared by both paths. See ``docs/ode.md``.

This module is the public entry point: it checks the arguments, allocates (or checks) the
output buffers, and runs a per-rhs driver over the trajectories. Execution: each call splits
the trajectories into chunks that a pool of Python threads runs through one ``nogil`` Numba
function (as many threads as ``numba.get_num_threads()``, i.e. all cores unless
``NUMBA_NUM_THREADS`` says otherwise). That function is the scalar path's
(``ode_scalar.py``: one trajectory at a time, compiled per ``rhs`` and cached on disk) or,
given ``rhs_lanes`` (the vector field at many points at once), the lane path's
(``ode_lanes.py``: 16 trajectories per thread in lockstep over SIMD lanes, about 2.5x faster
on the pendulum with the vectorised ``sin`` of ``vmath.py``).
"""

from __future__ import annotations

import itertools
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .buffers import check_out_buffer
from .ode_scalar import (
    STATUS_MAX_STEPS,
    STATUS_NON_FINITE,
    STATUS_OK,
    STATUS_STEP_UNDERFLOW,
    kernels,
)

try:  # Numba is a dependency; without it the ODE kernels are unavailable (one-line error).
    import numba
    import numba.core.dispatcher
    import numba.core.errors
except ImportError:  # pragma: no cover - exercised only on platforms without numba
    numba = None

__all__ = [
    "STATUS_MAX_STEPS",
    "STATUS_MESSAGES",
    "STATUS_NON_FINITE",
    "STATUS_OK",
    "STATUS_STEP_UNDERFLOW",
    "EnsembleResult",
    "solve_ensemble",
]

#: What the per-trajectory status codes (``EnsembleResult.status``; ``ode_scalar.py``) mean.
STATUS_MESSAGES = {
    STATUS_OK: "ok",
    STATUS_STEP_UNDERFLOW: "step size underflow (the solution is singular or too stiff)",
    STATUS_MAX_STEPS: "max_steps exceeded",
    STATUS_NON_FINITE: "non-finite state or vector field (inf/NaN)",
}

METHODS = ("dop853",)


@dataclass
class EnsembleResult:
    """What :func:`solve_ensemble` returns.

    ``states`` and ``derivatives`` have shape ``(n_traj, n_t, n_state)``; a trajectory whose
    ``status`` is not 0 has every row NaN. ``n_steps`` counts accepted steps and
    ``n_rejected`` rejected ones, per trajectory.
    """

    t: np.ndarray
    states: np.ndarray
    derivatives: np.ndarray
    n_steps: np.ndarray
    n_rejected: np.ndarray
    status: np.ndarray

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask of the trajectories that reached ``t[-1]``."""
        return self.status == STATUS_OK

    @property
    def failed(self) -> np.ndarray:
        """Indices of the failed trajectories."""
        return np.flatnonzero(self.status != STATUS_OK)

    def message(self, i: int) -> str:
        """One line naming trajectory ``i``'s outcome."""
        s = int(self.status[i])
        return f"trajectory {i}: {STATUS_MESSAGES.get(s, f'status {s}')}"


# --- running a driver over the trajectories --------------------------------------------------


_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = [0]
_POOL_LOCK = threading.Lock()
_CHUNKS_PER_THREAD = 8  # load balance: trajectories differ in their number of steps


_RHS_ERROR = (
    "solve_ensemble: rhs must be a numba.njit function rhs(t, y, p, dy) taking a float and "
    "three 1-D float64 arrays"
)
_LANES_ERROR = (
    "solve_ensemble: rhs_lanes must be a numba.njit function rhs_lanes(t, y, p, dy) taking "
    "a 1-D float64 array of L times and three 2-D (rows, L) float64 arrays"
)


def _run(drive, n_traj: int, args, *, lanes: int = 1, error: str = _RHS_ERROR) -> None:
    """Run ``drive(lo, hi, *args)`` (a per-rhs driver) over all trajectories on
    ``numba.get_num_threads()`` threads; ``lanes``: trajectories the driver runs together."""
    global _POOL
    assert numba is not None  # solve_ensemble has checked rhs is a Numba dispatcher
    try:  # the first call compiles (or loads from the cache); do it on one trajectory, here
        drive(0, 1, *args)
    except numba.core.errors.NumbaError as exc:
        first = next((ln for ln in str(exc).splitlines() if ln.strip()), "")
        raise ValueError(f"{error}; compiling it failed: {first.strip()}") from None
    if n_traj == 1:
        return
    threads = max(1, min(numba.get_num_threads(), n_traj - 1))
    if threads == 1:
        drive(1, n_traj, *args)
        return
    with _POOL_LOCK:
        if _POOL is None or _POOL_SIZE[0] < threads:
            _POOL = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="derl-ode")
            _POOL_SIZE[0] = threads
        pool = _POOL
    chunks = min(n_traj - 1, _CHUNKS_PER_THREAD * threads)
    if lanes > 1:  # chunks of at least 4 blocks of lanes (a chunk's last block runs partly idle)
        chunks = max(min(chunks, (n_traj - 1) // (4 * lanes)), threads)
    edges = np.linspace(1, n_traj, chunks + 1).astype(np.int64)
    futures = [
        pool.submit(drive, int(lo), int(hi), *args)
        for lo, hi in itertools.pairwise(edges)
        if hi > lo
    ]
    for f in futures:
        f.result()


def _buffer(buf, name: str, shape: tuple[int, ...]) -> np.ndarray:
    if buf is None:
        return np.empty(shape, dtype=np.float64)
    return check_out_buffer(buf, f"solve_ensemble: {name}", shape)


def _float_array(v, name: str) -> np.ndarray:
    try:
        a = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"solve_ensemble: {name} must be an array of numbers") from None
    if a.ndim == 0:
        return a
    # C-contiguous and writeable: a read-only array is another Numba type (a recompile)
    return a if a.flags.c_contiguous and a.flags.writeable else a.copy(order="C")


def _tolerance(v, name: str, n_state: int) -> np.ndarray:
    a = _float_array(v, name)
    if a.ndim > 1 or (a.ndim == 1 and a.size != n_state):
        raise ValueError(
            f"solve_ensemble: {name} must be a number or an array of n_state={n_state} numbers"
        )
    if not (np.all(np.isfinite(a)) and np.all(a > 0)):
        raise ValueError(f"solve_ensemble: {name} must be positive and finite, got {v!r}")
    return np.array(np.broadcast_to(a, (n_state,)))  # a writeable copy


def _positive(v, name: str, *, allow_inf: bool = False) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        x = math.nan
    if not (x > 0 and (allow_inf or math.isfinite(x))):
        raise ValueError(f"solve_ensemble: {name} must be a positive number, got {v!r}")
    return x


def solve_ensemble(
    rhs,
    y0,
    t_eval,
    params,
    *,
    rtol=1e-10,
    atol=1e-10,
    method: str = "dop853",
    first_step: float | None = None,
    max_step: float = np.inf,
    max_steps: int = 100_000,
    fixed_step: float | None = None,
    out_states: np.ndarray | None = None,
    out_derivatives: np.ndarray | None = None,
    rhs_lanes=None,
) -> EnsembleResult:
    """Integrate ``n_traj`` initial value problems ``y' = rhs(t, y, p)`` with DOP853.

    Parameters
    ----------
    rhs : numba.njit function ``rhs(t, y, p, dy)``
        Writes the vector field at ``(t, y)`` with parameters ``p`` into ``dy`` (``t`` a
        float, the others 1-D float64 arrays). It must not modify ``y`` or ``p``, nor keep
        references to any of them.
    y0 : (n_traj, n_state) float array
        Initial states at ``t_eval[0]``.
    t_eval : (n_t,) strictly increasing float array
        Output times; the integration runs from ``t_eval[0]`` to ``t_eval[-1]``.
    params : (n_traj, n_par) or (n_par,) float array
        One parameter vector per trajectory, or one for all.
    rtol, atol : float or (n_state,) array
        Local error tolerances (scipy's meaning). Default 1e-10 each.
    method : {"dop853"}
        Dormand–Prince 8(5,3) with its 7th-order dense output.
    first_step : float, optional
        Initial step; default: scipy's ``select_initial_step``, per trajectory.
    max_step : float
        Upper bound on the step size (default unbounded).
    max_steps : int
        Upper bound on the step attempts (accepted + rejected) per trajectory.
    fixed_step : float, optional
        Integrate with this constant step and no error control (the last step ends on
        ``t_eval[-1]``); for convergence studies.
    out_states, out_derivatives : (n_traj, n_t, n_state) C-contiguous float64, optional
        Caller's buffers, filled in place (and returned in the result).
    rhs_lanes : numba.njit function ``rhs_lanes(t, y, p, dy)``, optional
        The same vector field at ``L`` points at once: ``t`` of shape ``(L,)``, ``y`` and
        ``dy`` of shape ``(n_state, L)``, ``p`` of shape ``(n_par, L)``; column ``l`` is one
        point. Given, the trajectories are integrated several at a time in lockstep over
        SIMD lanes (:mod:`derlhybrid.kernels.ode_lanes`) and ``rhs_lanes`` is used for
        every evaluation (``derivatives`` included); ``rhs`` is then not called. Written as
        a loop over the columns with branch-free code (:func:`derlhybrid.kernels.vmath.sin`
        for ``sin``, ``error_model="numpy"``), LLVM vectorises it.

    Returns
    -------
    EnsembleResult
        ``states``, ``derivatives`` (``rhs`` at every saved state), and per trajectory
        ``n_steps``, ``n_rejected`` and ``status`` (:data:`STATUS_MESSAGES`); the rows of a
        failed trajectory are NaN.
    """
    if numba is None or not isinstance(rhs, numba.core.dispatcher.Dispatcher):
        raise ValueError("solve_ensemble: rhs must be a numba.njit function rhs(t, y, p, dy)")
    if rhs_lanes is not None and not isinstance(rhs_lanes, numba.core.dispatcher.Dispatcher):
        raise ValueError(
            "solve_ensemble: rhs_lanes must be a numba.njit function rhs_lanes(t, y, p, dy)"
        )
    if not isinstance(method, str) or method.lower() not in METHODS:
        raise ValueError(f"solve_ensemble: method must be one of {METHODS}, got {method!r}")
    y0 = _float_array(y0, "y0")
    if y0.ndim != 2 or y0.shape[1] == 0:
        raise ValueError(
            f"solve_ensemble: y0 must have shape (n_traj, n_state), got shape {y0.shape}"
        )
    n_traj, n_state = y0.shape
    t_eval = _float_array(t_eval, "t_eval")
    if t_eval.ndim != 1 or t_eval.size == 0:
        raise ValueError(
            f"solve_ensemble: t_eval must be a non-empty 1-D array, got shape {t_eval.shape}"
        )
    if not np.all(np.isfinite(t_eval)) or np.any(np.diff(t_eval) <= 0):
        raise ValueError("solve_ensemble: t_eval must be finite and strictly increasing")
    params = _float_array(params, "params")
    if params.ndim == 1:
        params = params[None, :]
    if params.ndim != 2 or params.shape[0] not in (1, n_traj):
        raise ValueError(
            f"solve_ensemble: params must have shape (n_traj={n_traj}, n_par) or (n_par,), "
            f"got shape {params.shape}"
        )
    if params.shape[1] == 0:  # an rhs without parameters still receives an array
        params = np.zeros((params.shape[0], 1))
    params = np.ascontiguousarray(params)  # a row of a 1-D input: contiguous, writeable
    rtol_a = _tolerance(rtol, "rtol", n_state)
    atol_a = _tolerance(atol, "atol", n_state)
    h0 = 0.0 if first_step is None else _positive(first_step, "first_step")
    hmax = _positive(max_step, "max_step", allow_inf=True)
    hfix = 0.0 if fixed_step is None else _positive(fixed_step, "fixed_step")
    if isinstance(max_steps, bool) or not isinstance(max_steps, int | np.integer) or max_steps < 1:
        raise ValueError(f"solve_ensemble: max_steps must be a positive integer, got {max_steps!r}")
    shape = (n_traj, t_eval.size, n_state)
    states = _buffer(out_states, "out_states", shape)
    derivs = _buffer(out_derivatives, "out_derivatives", shape)
    if np.shares_memory(states, derivs):
        raise ValueError("solve_ensemble: out_states and out_derivatives must not overlap")
    n_steps = np.zeros(n_traj, dtype=np.int64)
    n_rej = np.zeros(n_traj, dtype=np.int64)
    status = np.zeros(n_traj, dtype=np.int64)
    if n_traj:
        args = (t_eval, y0, params, rtol_a, atol_a, h0, hmax, int(max_steps), hfix)
        args = (*args, states, derivs, n_steps, n_rej, status)
        if rhs_lanes is None:
            _run(kernels(rhs)["_drive_range"], n_traj, args)
        else:
            # imported here: it needs ``_jitcache`` (and so Numba), which importing this
            # module does not; ode_lanes does not import this module
            from . import ode_lanes

            drive = ode_lanes.kernels(rhs_lanes, n_state, params.shape[1])["drive"]
            _run(drive, n_traj, args, lanes=ode_lanes.LANES, error=_LANES_ERROR)
    return EnsembleResult(t_eval, states, derivs, n_steps, n_rej, status)
