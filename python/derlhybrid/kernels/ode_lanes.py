"""DOP853 in lockstep over lanes: the SIMD path of :func:`derlhybrid.kernels.ode.solve_ensemble`.

Used when the caller passes ``rhs_lanes``, a Numba function ``rhs_lanes(t, y, p, dy)`` that
evaluates the vector field at many points at once: ``t`` of shape ``(L,)``, ``y`` and ``dy``
of shape ``(n_state, L)``, ``p`` of shape ``(n_par, L)`` (column ``c`` is one point, with
its own time and parameters), all float64 and C-contiguous, ``L = y.shape[1]`` any size.

Each thread integrates its trajectories ``LANES`` (16) at a time, like GPU ensemble
solvers: lane ``l`` holds one trajectory with its own ``t``, step size, accept/reject
decision, counters and output index; the stages of a step are computed for all lanes in
loops over the lanes (structure of arrays ``W[row, lane]``), which LLVM vectorises, and the
right-hand side is called once per stage for all 16 lanes. A lane whose trajectory ends
(reached ``t_eval[-1]`` or failed) takes the next trajectory of the chunk at once, or idles
(a zero step) when there is none. The saved points inside a lane's step are evaluated per
lane, vectorised over the points: the dense polynomial into a ``(n_state, m)`` block, then
``rhs_lanes`` with the points as its columns (padded to a multiple of 4), then the transpose
into the trajectory's ``(n_t, n_state)`` rows.

The algorithm is the scalar path's (``ode_scalar.py``) operation for operation. Built without FMA
(``kernels(..., fma=False)``) and given an ``rhs_lanes`` that computes exactly what ``rhs``
computes, the lane path gives the scalar path's steps, rejections and statuses, and its
bits where ``dop853.py``'s helpers were compiled without FMA (a fresh install; see
``_HELPERS``); as shipped it contracts multiply-adds to FMA (about 10% faster), so the two
agree to rounding. No operation mixes lanes, so results do not depend on the lane, the
block, the chunking or the thread count; every function here sets its own ``fastmath`` and
error model, so they do not depend on what a process compiled before either (all tested
with ``array_equal``).

The kernels are generated as Python source per ``(n_state, n_par)`` (the tableau written
out with its non-zero coefficients as literals, the row offsets as constants, so that LLVM
sees that the rows do not overlap and vectorises every loop over the lanes; with runtime
offsets it did not) and compiled per ``rhs_lanes``, which they call as the global ``_rhs``:
written to a module in the on-disk cache (``_jitcache.py``), compiled by the first process
on a machine (~10 s for the pendulum), loaded by later ones (~0.2 s); in memory, per
process, for an ``rhs_lanes`` that is not importable by module and name.

Numba compiles a called function that does not set ``fastmath`` itself with its caller's
flags when the caller compiles it first (the lane kernels contract to FMA), so give
``rhs_lanes`` an explicit ``fastmath`` (the pendulum's: ``{"contract"}``) for results that do
not depend on the order of compiles.
"""

from __future__ import annotations

import functools
import inspect

import numpy as np

from . import _jitcache, dop853

# Trajectories per block: 16 measured best (8: the right-hand side's per-call cost weighs
# more; 32: 64 output streams per thread, and writing them became 2.5x slower).
LANES = 16
_BLOCK = 128  # saved points per rhs_lanes call in the dense-output pass


def _terms(coefs, rows):
    """``0.0 + c0 * W[r0, l] + c1 * W[r1, l] + ...`` (left to right: the scalar loop's order)."""
    return "0.0" + "".join(f" + {float(c)!r} * W[{r}, l]" for c, r in zip(coefs, rows, strict=True))


def _source(n: int, n_par: int) -> str:
    """The lane kernels for ``n`` state components and ``n_par`` parameters, as Python text."""
    NX, NS = dop853.NX, dop853.NS
    A, C, D = dop853.A, dop853.C, dop853.D
    RY = NX * n  # rows: K[s, k] at s * n + k, then y, y_new, y_tmp, F (7 n), p, scalars
    RYN, RYT, RF = RY + n, RY + 2 * n, RY + 3 * n
    RP = RF + 7 * n
    RT, RH, RTN, RTL, RERR, RFAC = (RP + n_par + q for q in range(6))
    NR = RFAC + 1
    L = LANES
    row = 8 * L  # bytes per row
    g = [
        f"N = {n}",
        f"NPAR = {n_par}",
        f"L = {L}",
        f"NR = {NR}",
        f"RY, RYN, RYT, RF, RP = {RY}, {RYN}, {RYT}, {RF}, {RP}",
        f"RT, RH, RTN, RTL, RERR, RFAC = {RT}, {RH}, {RTN}, {RTL}, {RERR}, {RFAC}",
        f"NCOL = {1 + 4 * n + n_par}",
        f"BLK = {_BLOCK}",
    ]
    src = ["\n".join(g)]
    P = f"at2(wa + {row * RP}, NPAR, L)"
    for s in list(range(1, NS)) + list(range(NS + 1, NX)):
        nz = np.flatnonzero(A[s, :s])
        body = [
            f"@_leaf\ndef _stage{s}(wa):",
            "    W = at2(wa, NR, L)",
            "    for l in range(L):",
        ]
        body.append("        h = W[RH, l]")
        for k in range(n):
            body.append(f"        acc = {_terms(A[s, nz], nz * n + k)}")
            body.append(f"        W[{RYT + k}, l] = W[{RY + k}, l] + h * acc")
        body.append(f"        W[RTL, l] = W[RT, l] + {float(C[s])!r} * h")
        body.append(
            f"    _rhs(at1(wa + {row * RTL}, L), at2(wa + {row * RYT}, N, L), {P}, "
            f"at2(wa + {row * s * n}, N, L))"
        )
        src.append("\n".join(body))
    # a step: stages 1..11, y_new, the FSAL stage 12 at (t_new, y_new), the error norm
    b_idx, e_idx = dop853.B_IDX.astype(np.int64), dop853.E_IDX.astype(np.int64)
    body = ["@_leaf\ndef _step(wa, rta, ata):"]
    body += [f"    _stage{s}(wa)" for s in range(1, NS)]
    body += ["    W = at2(wa, NR, L)", "    rtol = at1(rta, N)", "    atol = at1(ata, N)"]
    body += ["    for l in range(L):", "        h = W[RH, l]"]
    for k in range(n):
        body.append(f"        acc = {_terms(dop853.B_VAL, b_idx * n + k)}")
        body.append(f"        W[{RYN + k}, l] = W[{RY + k}, l] + h * acc")
    body.append(
        f"    _rhs(at1(wa + {row * RTN}, L), at2(wa + {row * RYN}, N, L), {P}, "
        f"at2(wa + {row * NS * n}, N, L))"
    )
    for k in range(n):  # (locals: no reload after each store)
        body += [f"    atol{k} = atol[{k}]", f"    rtol{k} = rtol[{k}]"]
    body += ["    for l in range(L):", "        e5 = 0.0", "        e3 = 0.0"]
    for k in range(n):
        body.append(f"        a5 = {_terms(dop853.E5_VAL, e_idx * n + k)}")
        body.append(f"        a3 = {_terms(dop853.E3_VAL, e_idx * n + k)}")
        body.append(
            f"        sc = atol{k} + max(abs(W[{RY + k}, l]), abs(W[{RYN + k}, l])) * rtol{k}"
        )
        body += [
            "        a5 /= sc",
            "        a3 /= sc",
            "        e5 += a5 * a5",
            "        e3 += a3 * a3",
        ]
    body.append("        err = abs(W[RH, l]) * e5 / math.sqrt((e5 + 0.01 * e3) * N)")
    body.append("        W[RERR, l] = 0.0 if (e5 == 0.0) & (e3 == 0.0) else err")
    # the controller's SAFETY * err ** (-1/8) (dop853.inv_root8), vectorised here
    body.append("        W[RFAC, l] = SAFETY * (1.0 / math.sqrt(math.sqrt(math.sqrt(err))))")
    src.append("\n".join(body))
    # the dense output's three extra stages and its coefficients F[0..6]
    d_idx = dop853.D_IDX.astype(np.int64)
    body = ["@_leaf\ndef _dense(wa):"]
    body += [f"    _stage{s}(wa)" for s in range(NS + 1, NX)]
    body += ["    W = at2(wa, NR, L)", "    for l in range(L):", "        h = W[RH, l]"]
    for k in range(n):
        body.append(f"        dy = W[{RYN + k}, l] - W[{RY + k}, l]")
        body.append(f"        W[{RF + k}, l] = dy")
        body.append(f"        W[{RF + n + k}, l] = h * W[{k}, l] - dy")
        body.append(
            f"        W[{RF + 2 * n + k}, l] = 2.0 * dy - h * (W[{NS * n + k}, l] + W[{k}, l])"
        )
        for r in range(D.shape[0]):
            terms = _terms(dop853.D_VAL[r], d_idx * n + k)
            body.append(f"        W[{RF + (3 + r) * n + k}, l] = h * ({terms})")
    src.append("\n".join(body))
    src.append(_interleave_source(n))
    return "\n\n\n".join(src) + "\n\n\n" + _FIXED_SOURCE


def _interleave_source(n: int) -> str:
    """``_interleave(v, a, m)``: the (n, >= m) block ``v`` into the (m, n) rows at address
    ``a``; True when a value is not finite. Scalar stores of 8 bytes are the bottleneck of
    that transpose (LLVM vectorises it only for long blocks, because of the aliasing
    checks), so pairs of components are stored as one complex128 (16 bytes)."""
    body = ["@_leaf\ndef _interleave(v, a, m):", "    bad = False"]
    if n == 1:
        body += ["    o = at1(a, m)", "    for q in range(m):", "        x = v[0, q]"]
        body += ["        o[q] = x", "        bad |= (x - x) != 0.0"]
    elif n % 2 == 0:
        body += [
            f"    o = numba.carray(voidptr(a), (m, {n // 2}), np.complex128)",
            "    for q in range(m):",
        ]
        for k in range(n // 2):
            body += [f"        x = v[{2 * k}, q]", f"        y = v[{2 * k + 1}, q]"]
            body += [
                f"        o[q, {k}] = complex(x, y)",
                "        bad |= ((x - x) + (y - y)) != 0.0",
            ]
    else:
        body += [
            f"    o = at2(a, m, {n})",
            "    for q in range(m):",
            f"        for k in range({n}):",
            "            x = v[k, q]",
            "            o[q, k] = x",
            "            bad |= (x - x) != 0.0",
        ]
    body.append("    return bad")
    return "\n".join(body)


# The rest does not depend on the tableau: written once, compiled per (n, n_par) with the
# constants above.
_FIXED_SOURCE = """
@_leaf
def _points(wa, l, t, h, tea, nt, j0, j1, oya, ofa):
    # Lane l's step (t, t + h): the interpolant at t_eval[j0:j1] and rhs_lanes there, in
    # blocks of at most BLK points (the points are the columns), into the trajectory's
    # output rows (oya, ofa: its row 0). Returns True when a value is not finite. The block
    # is padded to a multiple of 4 columns (copies of its last point, computed, not saved)
    # so that the vector loops run without their scalar remainder.
    W = at2(wa, NR, L)
    base = wa + 8 * (NR * L + NCOL)
    inv_h = 1.0 / h
    bad = False
    b0 = j0
    while b0 < j1:
        m = min(BLK, j1 - b0)
        mp = (m + 3) & -4
        if b0 + mp <= nt:  # the padding columns take the next saved times
            te = at1(tea + 8 * b0, mp)
        else:  # (the last saved times: the padding repeats the last one)
            te = at1(base, mp)
            te0 = at1(tea + 8 * b0, m)
            for q in range(mp):
                te[q] = te0[min(q, m - 1)]
        vals = at2(base + 8 * BLK, N, mp)
        dv = at2(base + 8 * BLK * (1 + N), N, mp)
        pb = at2(base + 8 * BLK * (1 + 2 * N), NPAR, mp)
        for k in range(N):
            f0 = W[RF + k, l]
            f1 = W[RF + N + k, l]
            f2 = W[RF + 2 * N + k, l]
            f3 = W[RF + 3 * N + k, l]
            f4 = W[RF + 4 * N + k, l]
            f5 = W[RF + 5 * N + k, l]
            f6 = W[RF + 6 * N + k, l]
            yk = W[RY + k, l]
            for q in range(mp):
                x = (te[q] - t) * inv_h
                x1 = 1.0 - x
                v = f6 * x + f5
                v = v * x1 + f4
                v = v * x + f3
                v = v * x1 + f2
                v = v * x + f1
                v = v * x1 + f0
                vals[k, q] = v * x + yk
        for r in range(NPAR):
            pr = W[RP + r, l]
            for q in range(mp):
                pb[r, q] = pr
        _rhs(te, vals, pb, dv)
        bad |= _interleave(vals, oya + 8 * N * b0, m)
        bad |= _interleave(dv, ofa + 8 * N * b0, m)
        b0 += m
    return bad


@_leaf
def _start(wa, t, ya, pa, rta, ata, first_step, max_step, fixed_h, span):
    # The first evaluation of a trajectory (y0 at ya, p at pa) and its first step size, in
    # the column scratch (width-1 calls). Returns h_abs, or -1.0 when y0 or f(t0, y0) is
    # not finite. Same arithmetic as ode_scalar._initial_step.
    col = wa + 8 * NR * L
    tc = at1(col, 1)
    y = at1(col + 8, N)
    f0 = at1(col + 8 * (1 + N), N)
    yt = at1(col + 8 * (1 + 2 * N), N)
    f1 = at1(col + 8 * (1 + 3 * N), N)
    pc = at2(col + 8 * (1 + 4 * N), NPAR, 1)
    y0 = at1(ya, N)
    p = at1(pa, NPAR)
    rtol = at1(rta, N)
    atol = at1(ata, N)
    for k in range(N):
        y[k] = y0[k]
    for r in range(NPAR):
        pc[r, 0] = p[r]
    tc[0] = t
    _rhs(tc, at2(col + 8, N, 1), pc, at2(col + 8 * (1 + N), N, 1))
    if not (all_finite(y) and all_finite(f0)):
        return -1.0
    if fixed_h > 0.0:
        return fixed_h
    if first_step > 0.0:
        return min(first_step, span)
    d0 = rms_scaled(y, y, rtol, atol)
    d1 = rms_scaled(f0, y, rtol, atol)
    if d0 < 1e-5 or d1 < 1e-5:
        h0 = 1e-6
    else:
        h0 = 0.01 * d0 / d1
    h0 = min(h0, span)
    for k in range(N):
        yt[k] = y[k] + h0 * f0[k]
    tc[0] = t + h0
    _rhs(tc, at2(col + 8 * (1 + 2 * N), N, 1), pc, at2(col + 8 * (1 + 3 * N), N, 1))
    for k in range(N):
        f1[k] = f1[k] - f0[k]
    d2 = rms_scaled(f1, y, rtol, atol) / h0
    if d1 <= 1e-15 and d2 <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1.0 / (ORDER_ERR + 1))
    h = min(100.0 * h0, h1, span, max_step)
    if not h > 0.0:
        h = min(1e-6 * span, max_step)
    return h


@_cached_leaf
def _finish(states, derivs, n_steps, n_rej, status, i, st, na, nr):
    status[i] = st
    n_steps[i] = na
    n_rej[i] = nr
    if st != 0:
        states[i, :, :] = np.nan
        derivs[i, :, :] = np.nan


# lane state rows (int64): trajectory (-1: idle), next output index, accepted and rejected
# steps, "a new step begins", "rejected in this step", "last rejection was a NaN", "a saved
# value was not finite", "accepted just now", end of the saved points inside the step
TRAJ, J, NACC, NREJ, FRESH, REJ, NONF, BAD, ACC, J1 = range(10)
HABS, MINSTEP, T0 = range(3)  # float lane state rows


@_driver
def drive(
    lo, hi, t_eval, y0, params, rtol, atol, first_step, max_step, max_steps, fixed_h,
    states, derivs, n_steps, n_rej, status,
):
    # Trajectories lo..hi-1 through the L lanes (ode_scalar._drive_range's contract).
    nt = t_eval.size
    t_start = t_eval[0]
    tend = t_eval[nt - 1]
    pstride = 0 if params.shape[0] == 1 else 8 * NPAR
    w = np.zeros(NR * L + NCOL + BLK * (2 + 2 * N + NPAR))
    wa = addr(w)
    W = at2(wa, NR, L)
    tea = addr(t_eval)
    ya = addr(y0)
    pa = addr(params)
    rta = addr(rtol)
    ata = addr(atol)
    oya = addr(states)
    ofa = addr(derivs)
    row = 8 * nt * N
    iv = np.zeros((10, L), dtype=np.int64)
    fv = np.zeros((3, L))
    for l in range(L):
        iv[TRAJ, l] = -1
        W[RT, l] = t_start
    adaptive = fixed_h <= 0.0
    nxt = lo
    while True:
        # every lane: a trajectory to work on (refill) and its next step attempt
        active = 0
        for l in range(L):
            while True:
                if iv[TRAJ, l] < 0:
                    if nxt >= hi:  # idle: a zero step from a finite state
                        W[RH, l] = 0.0
                        W[RTN, l] = W[RT, l]
                        break
                    i = nxt
                    nxt += 1
                    h_abs = _start(
                        wa, t_start, ya + 8 * N * i, pa + pstride * i, rta, ata,
                        first_step, max_step, fixed_h, tend - t_start,
                    )
                    col = at1(wa + 8 * (NR * L + 1), 2 * N)
                    if h_abs < 0.0:
                        _finish(states, derivs, n_steps, n_rej, status, i, 3, 0, 0)
                        continue
                    for k in range(N):
                        states[i, 0, k] = col[k]
                        derivs[i, 0, k] = col[N + k]
                    if nt == 1:
                        _finish(states, derivs, n_steps, n_rej, status, i, 0, 0, 0)
                        continue
                    for k in range(N):
                        W[RY + k, l] = col[k]
                        W[k, l] = col[N + k]
                    pc = at1(wa + 8 * (NR * L + 1 + 4 * N), NPAR)
                    for r in range(NPAR):
                        W[RP + r, l] = pc[r]
                    W[RT, l] = t_start
                    iv[TRAJ, l] = i
                    iv[J, l] = 1
                    iv[NACC, l] = 0
                    iv[NREJ, l] = 0
                    iv[FRESH, l] = 1
                    iv[BAD, l] = 0
                    fv[HABS, l] = h_abs
                    fv[T0, l] = t_start
                # the next attempt of lane l (ode_scalar._integrate_one's loop head)
                t = W[RT, l]
                h_abs = fv[HABS, l]
                # min_step = 10 ulp(t) <= 2.3e-15 |t| + 5e-323: compute it (a libm call) only
                # when h_abs is below that bound; above it the comparisons are false anyway
                near = h_abs < 4.5e-15 * abs(t) + 1e-322
                if iv[FRESH, l] != 0:
                    if adaptive:
                        min_step = 0.0
                        if near:
                            min_step = 10.0 * abs(np.nextafter(t, np.inf) - t)
                        fv[MINSTEP, l] = min_step
                        if h_abs > max_step:
                            h_abs = max_step
                        elif h_abs < min_step:
                            h_abs = min_step
                    iv[REJ, l] = 0
                    iv[NONF, l] = 0
                    iv[FRESH, l] = 0
                nacc = iv[NACC, l]
                nrej = iv[NREJ, l]
                i = iv[TRAJ, l]
                if nacc + nrej >= max_steps:
                    _finish(states, derivs, n_steps, n_rej, status, i, 2, nacc, nrej)
                    iv[TRAJ, l] = -1
                    continue
                if adaptive:
                    if h_abs < 4.5e-15 * abs(t) + 1e-322 and fv[MINSTEP, l] == 0.0:
                        fv[MINSTEP, l] = 10.0 * abs(np.nextafter(t, np.inf) - t)
                    if h_abs < fv[MINSTEP, l]:
                        st = 3 if iv[NONF, l] != 0 else 1
                        _finish(states, derivs, n_steps, n_rej, status, i, st, nacc, nrej)
                        iv[TRAJ, l] = -1
                        continue
                    t_new = t + h_abs
                    if t_new > tend:
                        t_new = tend
                else:
                    t_new = fv[T0, l] + (nacc + 1) * fixed_h
                    if t_new > tend - 1e-9 * fixed_h:
                        t_new = tend
                fv[HABS, l] = h_abs
                W[RTN, l] = t_new
                W[RH, l] = t_new - t
                active += 1
                break
        if active == 0:
            break
        _step(wa, rta, ata)
        # accept or reject, lane by lane (the scipy controller)
        any_dense = False
        for l in range(L):
            iv[ACC, l] = 0
            i = iv[TRAJ, l]
            if i < 0:
                continue
            if adaptive:
                err = W[RERR, l]
                h_abs = fv[HABS, l]
                if err < 1.0:
                    if err == 0.0:
                        factor = MAX_FACTOR
                    else:
                        factor = min(MAX_FACTOR, W[RFAC, l])
                    if iv[REJ, l] != 0:
                        factor = min(1.0, factor)
                    fv[HABS, l] = h_abs * factor
                else:
                    if err >= 1.0:
                        h_abs *= max(MIN_FACTOR, W[RFAC, l])
                        iv[NONF, l] = 0
                    else:
                        h_abs *= MIN_FACTOR
                        iv[NONF, l] = 1
                    fv[HABS, l] = h_abs
                    iv[REJ, l] = 1
                    iv[NREJ, l] += 1
                    continue
            nacc = iv[NACC, l] + 1
            iv[NACC, l] = nacc
            bad = False
            for k in range(N):
                bad |= (W[RYN + k, l] - W[RYN + k, l]) != 0.0
                bad |= (W[NS_N + k, l] - W[NS_N + k, l]) != 0.0
            if bad:
                _finish(states, derivs, n_steps, n_rej, status, i, 3, nacc, iv[NREJ, l])
                iv[TRAJ, l] = -1
                continue
            t_new = W[RTN, l]
            j = iv[J, l]
            j1 = first_at_or_after(tea, nt, j, t_new)
            iv[J1, l] = j1
            iv[ACC, l] = 1
            any_dense |= j1 > j
        if any_dense:
            _dense(wa)
        for l in range(L):
            if iv[ACC, l] == 0:
                continue
            i = iv[TRAJ, l]
            j = iv[J, l]
            j1 = iv[J1, l]
            if j1 > j:  # saved times inside the step: dense output
                oa = row * i
                if _points(wa, l, W[RT, l], W[RH, l], tea, nt, j, j1, oya + oa, ofa + oa):
                    iv[BAD, l] = 1
                j = j1
            t_new = W[RTN, l]
            if j < nt and t_eval[j] == t_new:  # a saved time on the step's end
                for k in range(N):
                    states[i, j, k] = W[RYN + k, l]
                    derivs[i, j, k] = W[NS_N + k, l]
                j += 1
            iv[J, l] = j
            for k in range(N):
                W[RY + k, l] = W[RYN + k, l]
                W[k, l] = W[NS_N + k, l]
            W[RT, l] = t_new
            iv[FRESH, l] = 1
            if not t_new < tend:
                st = 3 if iv[BAD, l] != 0 else 0
                _finish(states, derivs, n_steps, n_rej, status, i, st, iv[NACC, l], iv[NREJ, l])
                iv[TRAJ, l] = -1
    w[0] = 0.0  # w stays alive (owned here) until its raw views are done with
"""


# What the generated source imports (the method's constants and raw-view helpers shared with
# the scalar path, ``dop853.py``, which do no floating-point arithmetic).
_HEADER = """import math

import numba
import numpy as np

from derlhybrid.kernels.dop853 import (
    MAX_FACTOR,
    MIN_FACTOR,
    ORDER_ERR,
    SAFETY,
    addr,
    at1,
    at2,
    voidptr,
)
"""

# The helpers shared with the scalar path (``dop853.py``) that do arithmetic, copied into the
# generated module under decorators that set every flag (``fastmath``, ``error_model``)
# themselves. Called from here as the scalar path's functions, they were compiled with the
# flags of whichever caller compiled them first in a process (Numba passes a caller's flags
# to a callee that does not set them) and cached on disk that way: the lane path's bits then
# depended on whether a scalar solve had run before it on that machine (measured: 2205 of
# 80 800 pendulum values up to 2e-15 apart, between two fresh processes that ran the solves
# in another order).
_HELPERS = (("_leaf", "all_finite"), ("_leaf", "rms_scaled"), ("_helper", "first_at_or_after"))


def _helpers_source() -> str:
    out = []
    for decorator, name in _HELPERS:
        lines = inspect.getsource(getattr(dop853, name).py_func).splitlines()
        while lines[0].startswith("@"):
            lines.pop(0)
        out.append("\n".join([f"@{decorator}", *lines]))
    return "\n\n\n".join(out) + "\n\n\n"


@functools.cache
def kernels(rhs_lanes, n: int, n_par: int, fma: bool = True) -> dict:
    """The lane kernels for ``rhs_lanes`` with ``n`` state components and ``n_par``
    parameters (a namespace; ``drive(lo, hi, ...)`` is the driver, with the contract of
    ``ode_scalar._drive_range`` less the rhs). ``fma=False``: no contraction to FMA, i.e.
    the scalar path's arithmetic operation for operation (the tests compare the two bit for
    bit).

    Compiled on first use; with a module-level ``rhs_lanes``, from a generated module that
    Numba caches on disk (``_jitcache``), so a later process loads it instead."""
    fastmath = "{'contract'}" if fma else "False"
    leaf = f"nogil=True, error_model='numpy', fastmath={fastmath}"
    decorators = [
        f"NS_N = {dop853.NS * n}",
        # error_model="numpy": no zero-division checks, so the loops over lanes vectorise
        f"_leaf = numba.njit(cache=_CACHE, {leaf})",
        # every function sets its flags: none depends on which caller compiled it first
        "_cached_leaf = numba.njit(cache=_CACHE, nogil=True, error_model='numpy', fastmath=False)",
        "_helper = numba.njit(cache=_CACHE, nogil=True, error_model='numpy', fastmath=False)",
        "_driver = numba.njit(cache=_CACHE, nogil=True, error_model='numpy', fastmath=False)",
    ]
    body = "\n".join(decorators) + "\n\n\n" + _helpers_source() + _source(n, n_par)
    return _jitcache.load(f"ode_lanes_{n}_{n_par}", _HEADER, body, rhs_lanes)
