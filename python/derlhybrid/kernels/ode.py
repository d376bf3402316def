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
live in ``dop853.py``, shared with the lane path. See ``docs/ode.md``.

Execution: each call splits the trajectories into chunks that a pool of Python threads runs
through one ``nogil`` Numba function (as many threads as ``numba.get_num_threads()``, i.e.
all cores unless ``NUMBA_NUM_THREADS`` says otherwise). That function is compiled for each
``rhs``, from the source of the ``@_per_rhs`` templates below in a generated module that
imports ``rhs`` as a global (``_jitcache.py``), with Numba's on-disk cache: the first process
on a machine compiles it (~4 s for the pendulum), later ones load it (~0.2 s). An ``rhs``
that cannot be imported by module and name (a closure, a function of ``__main__``) is
compiled in memory for the process instead. The design choices (raw views, leaf functions,
threads instead of ``prange``) are measured in ``docs/ode.md``.

Given ``rhs_lanes`` (the vector field at many points at once), the same algorithm runs 16
trajectories per thread in lockstep over SIMD lanes: ``ode_lanes.py``, about 2.5x faster on
the pendulum with the vectorised ``sin`` of ``vmath.py`` (it imports ``dop853``, not this
module).
"""

from __future__ import annotations

import functools
import inspect
import itertools
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from . import dop853
from .buffers import check_out_buffer

# The method's shared pieces (tables, controller constants, raw views, the helpers that do
# not call rhs); the templates below use them by these names, and so does the generated
# module, which imports them from ``dop853`` (``_kernel_source``).
from .dop853 import (
    A_IDX,
    A_PTR,
    A_VAL,
    B_IDX,
    B_VAL,
    D_IDX,
    D_VAL,
    MAX_FACTOR,
    MIN_FACTOR,
    NS,
    NW,
    NX,
    ORDER_ERR,
    ROW_F,
    ROW_Y,
    ROW_YNEW,
    ROW_YT,
    SAFETY,
    C,
    addr,
    all_finite,
    at1,
    at2,
    error_norm,
    first_at_or_after,
    inv_root8,
    rms_scaled,
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

#: Per-trajectory status codes (``EnsembleResult.status``).
STATUS_OK = 0
STATUS_STEP_UNDERFLOW = 1
STATUS_MAX_STEPS = 2
STATUS_NON_FINITE = 3
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


# --- the Numba kernels ------------------------------------------------------------------------
# Module-level Numba functions compile lazily on first use and are disk-cached. The functions
# that call the right-hand side (``@_per_rhs``) are templates: plain Python here, calling the
# global ``_rhs``; ``_kernels(rhs)`` compiles their source in a module where ``_rhs`` is the
# caller's function (``_jitcache``: a generated module with ``cache=True``, so the compiled
# driver is cached on disk for that rhs, or the same source in memory). A dispatcher passed
# as an argument would be lowered to the address of a live Python object, which Numba cannot
# cache.

_PER_RHS: list = []  # the templates, in order


def _rhs(t, y, p, dy) -> None:
    """The caller's rhs in the compiled copies of the templates; never called here."""
    raise NotImplementedError("the ode templates run only as compiled copies (_kernels)")


def _per_rhs(f):
    """Mark ``f`` as a template compiled per rhs (``numba.njit(nogil=True)``, cached)."""
    _PER_RHS.append(f)
    return f


_per_rhs_inline = _per_rhs  # the same, compiled with ``inline="always"``


@_per_rhs_inline
def _stage_range(w, p, t, h, s0, s1):
    # K[s] = rhs(t + C[s] h, y + h sum_m A[s, m] K[m]) for s0 <= s < s1
    n = w.shape[1]
    y = w[ROW_Y]
    yt = w[ROW_YT]
    for s in range(s0, s1):
        r0 = A_PTR[s]
        r1 = A_PTR[s + 1]
        for k in range(n):
            acc = 0.0
            for q in range(r0, r1):
                acc += A_VAL[q] * w[A_IDX[q], k]
            yt[k] = y[k] + h * acc
        _rhs(t + C[s] * h, yt, p, w[s])


@_per_rhs
def _leaf_step(wa, n, pa, n_par, t, t_new, h):
    # Stages 1..11 from (t, y, h), y_new, and the FSAL stage K[12] = f(t_new, y_new).
    w = at2(wa, NW, n)
    p = at1(pa, n_par)
    _stage_range(w, p, t, h, 1, NS)
    y = w[ROW_Y]
    y_new = w[ROW_YNEW]
    for k in range(n):
        acc = 0.0
        for q in range(B_IDX.size):
            acc += B_VAL[q] * w[B_IDX[q], k]
        y_new[k] = y[k] + h * acc
    _rhs(t_new, y_new, p, w[NS])


@_per_rhs
def _leaf_dense(wa, n, pa, n_par, t, h, tea, j0, j1, oya, ofa):
    # The step (t, t + h) just taken: its 7th-order interpolant at t_eval[j0:j1] and the
    # vector field there (scipy DOP853._dense_output_impl and Dop853DenseOutput).
    w = at2(wa, NW, n)
    p = at1(pa, n_par)
    _stage_range(w, p, t, h, NS + 1, NX)  # the three extra stages
    F = w[ROW_F : ROW_F + 7]
    for k in range(n):
        dy = w[ROW_YNEW, k] - w[ROW_Y, k]
        F[0, k] = dy
        F[1, k] = h * w[0, k] - dy
        F[2, k] = 2.0 * dy - h * (w[NS, k] + w[0, k])
        for r in range(D_VAL.shape[0]):
            acc = 0.0
            for q in range(D_IDX.size):
                acc += D_VAL[r, q] * w[D_IDX[q], k]
            F[3 + r, k] = h * acc
    # Evaluate the interpolant per component in a vectorised pass over the points
    # (coefficients in registers) into the scratch, interleave into the (n_t, n_state)
    # output, then call rhs at each point (independent calls the CPU overlaps).
    m = j1 - j0
    te = at1(tea + 8 * j0, m)
    oy = at2(oya + 8 * n * j0, m, n)
    of = at2(ofa + 8 * n * j0, m, n)
    xa = wa + 8 * NW * n
    xs = at1(xa, m)
    vals = at2(xa + 8 * m, n, m)
    inv_h = 1.0 / h
    for q in range(m):
        xs[q] = (te[q] - t) * inv_h
    for k in range(n):
        f0 = F[0, k]
        f1 = F[1, k]
        f2 = F[2, k]
        f3 = F[3, k]
        f4 = F[4, k]
        f5 = F[5, k]
        f6 = F[6, k]
        yk = w[ROW_Y, k]
        vk = vals[k]
        for q in range(m):
            x = xs[q]
            x1 = 1.0 - x
            v = f6 * x + f5
            v = v * x1 + f4
            v = v * x + f3
            v = v * x1 + f2
            v = v * x + f1
            v = v * x1 + f0
            vk[q] = v * x + yk
    for k in range(n):
        vk = vals[k]
        for q in range(m):
            oy[q, k] = vk[q]
    for q in range(m):
        _rhs(te[q], oy[q], p, of[q])


@_per_rhs_inline
def _initial_step(p, t, span, y, f0, yt, f1, rtol, atol, max_step):
    # scipy's select_initial_step (Hairer, Norsett, Wanner I, II.4), error order 7.
    n = y.size
    d0 = rms_scaled(y, y, rtol, atol)
    d1 = rms_scaled(f0, y, rtol, atol)
    if d0 < 1e-5 or d1 < 1e-5:
        h0 = 1e-6
    else:
        h0 = 0.01 * d0 / d1
    h0 = min(h0, span)
    for k in range(n):
        yt[k] = y[k] + h0 * f0[k]
    _rhs(t + h0, yt, p, f1)
    for k in range(n):
        f1[k] = f1[k] - f0[k]
    d2 = rms_scaled(f1, y, rtol, atol) / h0
    if d1 <= 1e-15 and d2 <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1.0 / (ORDER_ERR + 1))
    h = min(100.0 * h0, h1, span, max_step)
    if not h > 0.0:  # NaN from a non-finite f1: let the step loop report it
        h = min(1e-6 * span, max_step)
    return h


@_per_rhs
def _integrate_one(
    tea, nt, ya, pa, n_par, rta, ata, first_step, max_step, max_steps, fixed_h, oya, ofa, wa, n
):
    # One trajectory; returns (status, accepted steps, rejected steps). Arguments are raw
    # addresses (int64): t_eval (nt), y0 (n), p (n_par), rtol and atol (n), this
    # trajectory's output rows oya/ofa (nt, n), and its scratch wa.
    t_eval = at1(tea, nt)
    p = at1(pa, n_par)
    rtol = at1(rta, n)
    atol = at1(ata, n)
    out_y = at2(oya, nt, n)
    out_f = at2(ofa, nt, n)
    w = at2(wa, NW, n)
    y = w[ROW_Y]
    y_new = w[ROW_YNEW]
    f_new = w[NS]
    y0 = at1(ya, n)
    t = t_eval[0]
    tend = t_eval[nt - 1]
    for k in range(n):
        y[k] = y0[k]
    _rhs(t, y, p, w[0])
    if not (all_finite(y) and all_finite(w[0])):
        return STATUS_NON_FINITE, 0, 0
    for k in range(n):
        out_y[0, k] = y[k]
        out_f[0, k] = w[0, k]
    if nt == 1:
        return STATUS_OK, 0, 0

    adaptive = fixed_h <= 0.0
    if not adaptive:
        h_abs = fixed_h
    elif first_step > 0.0:
        h_abs = min(first_step, tend - t)
    else:
        h_abs = _initial_step(p, t, tend - t, y, w[0], w[ROW_YT], y_new, rtol, atol, max_step)

    j = np.int64(1)  # next output index (typed: a literal 1 would specialise the leaves)
    nacc = 0
    nrej = 0
    t0 = t
    min_step = 0.0
    while t < tend:
        if adaptive:
            min_step = 10.0 * abs(np.nextafter(t, np.inf) - t)
            if h_abs > max_step:
                h_abs = max_step
            elif h_abs < min_step:
                h_abs = min_step
        rejected = False
        nonfinite = False
        while True:
            if nacc + nrej >= max_steps:
                return STATUS_MAX_STEPS, nacc, nrej
            if adaptive:
                if h_abs < min_step:
                    return (STATUS_NON_FINITE if nonfinite else STATUS_STEP_UNDERFLOW), nacc, nrej
                t_new = t + h_abs
                if t_new > tend:
                    t_new = tend
            else:
                t_new = t0 + (nacc + 1) * fixed_h
                if t_new > tend - 1e-9 * fixed_h:
                    t_new = tend
            h = t_new - t
            _leaf_step(wa, n, pa, n_par, t, t_new, h)  # K[1..12], y_new
            if not adaptive:
                break
            err = error_norm(w, h, rtol, atol)
            if err < 1.0:
                if err == 0.0:
                    factor = MAX_FACTOR
                else:
                    factor = min(MAX_FACTOR, SAFETY * inv_root8(err))
                if rejected:
                    factor = min(1.0, factor)
                h_abs *= factor
                break
            if err >= 1.0:  # finite and too large
                h_abs *= max(MIN_FACTOR, SAFETY * inv_root8(err))
                nonfinite = False
            else:  # NaN: shrink as hard as allowed and try again
                h_abs *= MIN_FACTOR
                nonfinite = True
            rejected = True
            nrej += 1
        nacc += 1
        if not (all_finite(y_new) and all_finite(f_new)):
            return STATUS_NON_FINITE, nacc, nrej
        j1 = first_at_or_after(tea, nt, j, t_new)
        if j1 > j:  # saved times inside the step: dense output
            _leaf_dense(wa, n, pa, n_par, t, h, tea, j, j1, oya, ofa)
            j = j1
        if j < nt and t_eval[j] == t_new:  # a saved time on the step's end: the step itself
            for k in range(n):
                out_y[j, k] = y_new[k]
                out_f[j, k] = f_new[k]
            j += 1
        for k in range(n):
            y[k] = y_new[k]
            w[0, k] = f_new[k]
        t = t_new
    # the extra stages and rhs at interpolated states were not checked yet
    if not (all_finite(at1(oya, nt * n)) and all_finite(at1(ofa, nt * n))):
        return STATUS_NON_FINITE, nacc, nrej
    return STATUS_OK, nacc, nrej


@_per_rhs
def _drive_range(
    lo,
    hi,
    t_eval,
    y0,
    params,
    rtol,
    atol,
    first_step,
    max_step,
    max_steps,
    fixed_h,
    states,
    derivs,
    n_steps,
    n_rej,
    status,
):
    # Trajectories lo..hi-1 one after the other, reusing one scratch; a failed trajectory's
    # rows become NaN.
    n = y0.shape[1]
    nt = t_eval.size
    n_par = params.shape[1]
    pstride = 0 if params.shape[0] == 1 else 8 * n_par
    w = np.empty(NW * n + (n + 1) * nt, dtype=np.float64)
    wa = addr(w)
    tea = addr(t_eval)
    ya = addr(y0)
    pa = addr(params)
    rta = addr(rtol)
    ata = addr(atol)
    oya = addr(states)
    ofa = addr(derivs)
    row = 8 * nt * n
    for i in range(lo, hi):
        st, na, nr = _integrate_one(
            tea,
            nt,
            ya + 8 * n * i,
            pa + pstride * i,
            n_par,
            rta,
            ata,
            first_step,
            max_step,
            max_steps,
            fixed_h,
            oya + row * i,
            ofa + row * i,
            wa,
            n,
        )
        status[i] = st
        n_steps[i] = na
        n_rej[i] = nr
        if st != 0:
            states[i, :, :] = np.nan
            derivs[i, :, :] = np.nan
    w[0] = 0.0  # w stays alive (owned here) until its raw views are done with


# --- the Python entry point -------------------------------------------------------------------


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


def _kernel_source() -> tuple[str, str]:
    """``(header, body)`` of the per-rhs module: imports of the helpers the templates use,
    then the templates' source with their decorators defined."""
    names = set()
    for f in _PER_RHS:
        names.update(f.__code__.co_names)
    own = {f.__name__ for f in _PER_RHS} | {"_rhs", "_per_rhs", "_per_rhs_inline"}
    helpers = sorted(n for n in names - own if n in globals() and n not in ("math", "np", "numba"))
    # public names only: the method's pieces from ``dop853``, the status codes from here
    shared = [n for n in helpers if getattr(dop853, n, None) is globals()[n]]
    local = [n for n in helpers if n not in shared]
    assert not any(n.startswith("_") for n in helpers), helpers
    header = "import math\n\nimport numba\nimport numpy as np\n\n"
    header += f"from {dop853.__name__} import {', '.join(shared)}\n"
    if local:
        header += f"from {__name__} import {', '.join(local)}\n"
    body = [
        '_per_rhs = numba.njit(cache=_CACHE, nogil=True, fastmath=False, error_model="python")',
        "_per_rhs_inline = numba.njit("
        'nogil=True, inline="always", fastmath=False, error_model="python")',
    ]
    body += [inspect.getsource(f) for f in _PER_RHS]
    return header, "\n\n".join(body)


@functools.cache
def _kernels(rhs) -> dict:
    """The templates compiled for ``rhs`` (a namespace; ``_drive_range`` is the driver):
    on first use, from the on-disk cache when one was written before (``_jitcache``)."""
    from . import _jitcache

    return _jitcache.load("ode", *_kernel_source(), rhs)


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
            _run(_kernels(rhs)["_drive_range"], n_traj, args)
        else:
            # imported here: it needs ``_jitcache`` (and so Numba), which importing this
            # module does not; ode_lanes does not import this module
            from . import ode_lanes

            drive = ode_lanes.kernels(rhs_lanes, n_state, params.shape[1])["drive"]
            _run(drive, n_traj, args, lanes=ode_lanes.LANES, error=_LANES_ERROR)
    return EnsembleResult(t_eval, states, derivs, n_steps, n_rej, status)
