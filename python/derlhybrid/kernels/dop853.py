"""Dormand–Prince 8(5,3) (DOP853): the pieces both ODE paths share.

The scalar path (:mod:`derlhybrid.kernels.ode_scalar`, one trajectory per thread) and the lane
path (:mod:`derlhybrid.kernels.ode_lanes`, 16 trajectories per thread in SIMD lanes) run
the same algorithm on the same tableau; this module holds what they share and what the
Numba modules generated for them (``_jitcache.py``) import by name:

* the Butcher tables, read from scipy's ``dop853_coefficients`` at import time, and their
  non-zero entries (``*_IDX``, ``*_VAL``, ``A_PTR``);
* the step-size controller's constants (``SAFETY``, ``MIN_FACTOR``, ``MAX_FACTOR``,
  ``ORDER_ERR``);
* raw-address views (``addr``, ``at1``, ``at2``, ``voidptr``) and the Numba helpers that do
  not call the right-hand side (``inv_root8``, ``error_norm``, ``rms_scaled``,
  ``all_finite``, ``first_at_or_after``); the lane path compiles its own copies of the last
  three from their source (``ode_lanes._HELPERS``);
* the scalar path's scratch layout (``ROW_*``, ``NW``), which ``error_norm`` reads.

It imports no other module of the package: ``ode_scalar`` and ``ode_lanes`` both import it,
and neither imports the other. Importing it compiles nothing (Numba compiles each
function on first use, from its on-disk cache when one exists). See ``docs/ode.md``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.integrate._ivp import dop853_coefficients as _dop

try:  # Numba is a dependency; without it the ODE kernels are unavailable (ode.py says so).
    import numba
    from numba.core import cgutils, types
    from numba.extending import intrinsic
except ImportError:  # pragma: no cover - exercised only on platforms without numba
    numba = None

# --- the tables, taken from scipy (a well-kept source) at import time -----------------------
NS = _dop.N_STAGES  # 12 stages; stage 12 (13th row) is the FSAL evaluation f(t+h, y_new)
NX = _dop.N_STAGES_EXTENDED  # 16: three extra stages for the dense output
A = np.ascontiguousarray(_dop.A, dtype=np.float64)  # (16, 16)
C = np.ascontiguousarray(_dop.C, dtype=np.float64)  # (16,)
B = np.ascontiguousarray(_dop.B, dtype=np.float64)  # (12,)
E3 = np.ascontiguousarray(_dop.E3, dtype=np.float64)  # (13,)
E5 = np.ascontiguousarray(_dop.E5, dtype=np.float64)  # (13,)
D = np.ascontiguousarray(_dop.D, dtype=np.float64)  # (4, 16)
ORDER_ERR = 7  # error estimator order: the controller uses err ~ h^(7+1)
if A.shape != (NX, NX) or D.shape != (_dop.INTERPOLATOR_POWER - 3, NX):  # pragma: no cover
    raise ImportError("scipy's DOP853 tables have an unexpected layout")

SAFETY = 0.9
MIN_FACTOR = 0.2
MAX_FACTOR = 10.0


if numba is not None:
    # explicit flags: a function that sets none is compiled with the flags of whichever
    # caller compiles it first in a process (and cached so), so its bits would depend on
    # what the process ran before (docs/scale-out.md)
    _cached = numba.njit(cache=True, nogil=True, fastmath=False, error_model="python")
    _inline = numba.njit(nogil=True, inline="always", fastmath=False, error_model="python")

    @intrinsic
    def voidptr(typingctx, addr):
        """The integer address ``addr`` as a ``void*`` (for ``numba.carray``)."""

        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], cgutils.voidptr_t)

        return types.voidptr(types.int64), codegen

else:  # pragma: no cover

    def _no_jit(f):
        return f

    _cached = _no_jit
    _inline = _no_jit

# Raw views. Numba updates an array's reference count (an out-of-line call, atomic when the
# count is live) for every array, or view of one, passed to a function: six per rhs call. On
# arrays that the threads share (the outputs) the atomics also bounce a cache line between
# cores. Measured on the pendulum: 60-95 ns per rhs call that way, 19 ns through
# ``numba.carray`` views, which have no reference count. So the hot functions take raw
# addresses (int64) and build such views themselves, where LLVM sees that no count exists.
# The memory belongs to ``_drive_range``'s arguments and its scratch, which outlive every
# view. The hot loops live in small "leaf" functions because in one large function LLVM
# declined to inline the rhs at some call sites (a call costs as much as the pendulum's rhs).


@_cached
def at1(addr, n):
    """Unowned 1-D float64 view of ``n`` values at address ``addr``."""
    # jit-only (Numba compiles it, so numba is set); numba's stubs: carray is not re-exported,
    # and an @intrinsic keeps its typing signature (typingctx, addr)
    return numba.carray(voidptr(addr), n, np.float64)  # pyright: ignore[reportPrivateImportUsage, reportOptionalMemberAccess, reportCallIssue]


@_cached
def at2(addr, n0, n1):
    """Unowned C-contiguous (n0, n1) float64 view at address ``addr``."""
    return numba.carray(voidptr(addr), (n0, n1), np.float64)  # pyright: ignore[reportPrivateImportUsage, reportOptionalMemberAccess, reportCallIssue]  # as at1


# Scratch of one trajectory, rows of n_state values: K[0..15] stages, y, y_new, ytmp, the
# dense coefficients F[0..6]; then (n_state + 1) n_t values for the dense output's abscissae
# and values.
ROW_Y = NX
ROW_YNEW = NX + 1
ROW_YT = NX + 2
ROW_F = NX + 3
NW = NX + 10


@_cached
def inv_root8(x):
    """``x ** (-1 / (ORDER_ERR + 1))`` = ``x ** (-1/8)``: three square roots, not ``pow``."""
    return 1.0 / math.sqrt(math.sqrt(math.sqrt(x)))


def _sparse_rows(rows):
    """CSR form (row pointers, column indices, values) of the non-zero table entries."""
    ptr, idx, val = [0], [], []
    for r in rows:
        nz = np.flatnonzero(r)
        idx += nz.tolist()
        val += np.asarray(r)[nz].tolist()
        ptr.append(len(idx))
    return np.array(ptr, np.uint64), np.array(idx, np.uint64), np.array(val, np.float64)


# The tableau rows hold only the non-zero coefficients (stage s combines K[0..s-1]).
A_PTR, A_IDX, A_VAL = _sparse_rows([A[s, :s] for s in range(NX)])
B_IDX = np.flatnonzero(B).astype(np.uint64)
B_VAL = B[B_IDX]
E_IDX = np.flatnonzero((E5 != 0) | (E3 != 0)).astype(np.uint64)
E5_VAL = E5[E_IDX]
E3_VAL = E3[E_IDX]
D_IDX = np.flatnonzero(np.any(D != 0, axis=0)).astype(np.uint64)
D_VAL = np.ascontiguousarray(D[:, D_IDX])


@_inline
def error_norm(w, h, rtol, atol):
    # Hairer's DOP853 norm (scipy DOP853._estimate_error_norm)
    n = w.shape[1]
    e5 = 0.0
    e3 = 0.0
    for k in range(n):
        a5 = 0.0
        a3 = 0.0
        for q in range(E_IDX.size):
            v = w[E_IDX[q], k]
            a5 += E5_VAL[q] * v
            a3 += E3_VAL[q] * v
        sc = atol[k] + max(abs(w[ROW_Y, k]), abs(w[ROW_YNEW, k])) * rtol[k]
        a5 /= sc
        a3 /= sc
        e5 += a5 * a5
        e3 += a3 * a3
    if e5 == 0.0 and e3 == 0.0:
        return 0.0
    return abs(h) * e5 / math.sqrt((e5 + 0.01 * e3) * n)


@_cached
def first_at_or_after(tea, nt, j, t_new):
    """The first index ``j1 >= j`` with ``t_eval[j1] >= t_new`` (``nt`` if none; ``t_eval``
    at address ``tea``): guessed from the spacing at ``j``, then adjusted. A scan from ``j``
    (~35 points per step here) cost ~0.15 us per step, a third of the lane path's time."""
    t_eval = at1(tea, nt)
    if j >= nt or t_eval[j] >= t_new:
        return j
    j1 = nt
    if j + 1 < nt:
        g = min((t_new - t_eval[j]) / (t_eval[j + 1] - t_eval[j]), nt)
        j1 = min(max(j + np.int64(g), j + 1), nt)
    while j1 < nt and t_eval[j1] < t_new:
        j1 += 1
    while t_eval[j1 - 1] >= t_new:  # stops at j + 1, since t_eval[j] < t_new
        j1 -= 1
    return j1


@_cached
def rms_scaled(v, y0, rtol, atol):
    n = v.size
    acc = 0.0
    for k in range(n):
        q = v[k] / (atol[k] + abs(y0[k]) * rtol[k])
        acc += q * q
    return math.sqrt(acc / n)


@_cached
def all_finite(a):
    # (v - v) is NaN exactly for inf and NaN
    bad = False
    for q in range(a.size):
        bad |= (a[q] - a[q]) != 0.0
    return not bad


@_cached
def addr(a):
    """The address of ``a``'s data as int64 (one integer type: no extra specialisations)."""
    return np.int64(a.ctypes.data)
