"""The scalar path of :func:`derlhybrid.kernels.ode.solve_ensemble`: one trajectory per thread.

The functions below that call the right-hand side (``@_per_rhs``) are templates: plain
Python here, calling the global ``_rhs``. :func:`kernels` compiles their source, per
``rhs``, in a generated module that imports ``rhs`` as that global (``_jitcache.py``), with
Numba's on-disk cache: the first process on a machine compiles it (~4 s for the pendulum),
later ones load it (~0.2 s). An ``rhs`` that cannot be imported by module and name (a
closure, a function of ``__main__``) is compiled in memory for the process instead. A
dispatcher passed as an argument would be lowered to the address of a live Python object,
which Numba cannot cache. The design choices (raw views, leaf functions, threads instead of
``prange``) are measured in ``docs/ode.md``.

``_drive_range(lo, hi, ...)`` of the compiled namespace integrates trajectories ``lo..hi-1``
one after the other; ``ode.py`` runs it over chunks of the ensemble on a pool of threads
(the function is ``nogil``). Each trajectory's outcome is one of the status codes below,
which the lane path (``ode_lanes.py``) and the Julia package report too.

Importing this module needs no Numba: the templates are compiled only by :func:`kernels`.
"""

from __future__ import annotations

import functools
import inspect

import numpy as np

from . import dop853

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

__all__ = [
    "STATUS_MAX_STEPS",
    "STATUS_NON_FINITE",
    "STATUS_OK",
    "STATUS_STEP_UNDERFLOW",
    "kernels",
]

#: Per-trajectory status codes (``EnsembleResult.status``).
STATUS_OK = 0
STATUS_STEP_UNDERFLOW = 1
STATUS_MAX_STEPS = 2
STATUS_NON_FINITE = 3


_PER_RHS: list = []  # the templates, in order


def _rhs(t, y, p, dy) -> None:
    """The caller's rhs in the compiled copies of the templates; never called here."""
    raise NotImplementedError("the ode templates run only as compiled copies (kernels)")


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


# --- compiling the templates per rhs ---------------------------------------------------------


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
def kernels(rhs) -> dict:
    """The templates compiled for ``rhs`` (a namespace; ``_drive_range`` is the driver):
    on first use, from the on-disk cache when one was written before (``_jitcache``)."""
    from . import _jitcache

    return _jitcache.load("ode", *_kernel_source(), rhs)
