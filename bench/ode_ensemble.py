"""Damped-pendulum ensemble with DOP853: derlhybrid's solve_ensemble vs scipy, in one run.

10 000 trajectories, theta0 ~ U(-pi/4, pi/4), omega0 ~ U(-1.5, 1.5) (SeedSequence-seeded),
t in [0, 10] with 1001 saved times, rtol = atol = 1e-10; ours also returns the vector field at
every saved state. Ours is the SIMD lane path (``rhs_lanes=``, ``Pendulum.rhs_lanes_kernel``:
the pendulum on lanes with the vectorised ``sin`` of ``derlhybrid.kernels.vmath``); ``scalar``
is the same call with the scalar ``Pendulum.rhs_kernel`` only (libm ``sin``). These are the
kernels dataset generation uses. Peers, measured here:

* ``scipy_loop``: ``solve_ivp(method="DOP853", t_eval=...)`` per trajectory (timed on a
  subset, scaled to all trajectories);
* ``scipy_stacked``: one ``solve_ivp(DOP853)`` on all trajectories stacked into one system
  (one step size for all, a vectorised right-hand side).

``max_error``: max |ours - solve_ivp(DOP853, rtol=atol=1e-13)| over a few hundred
trajectories. Ours is timed into caller buffers that are reused between calls (how the HDF5
generator streams chunks) and, separately, allocating fresh output; best of ``--repeats``;
the first call (JIT compile, or loading the driver that an earlier process compiled from the
on-disk cache, see ``docs/ode.md``) is reported on its own. ``--profile`` adds single-thread
timings of the lane path that split the cost (steps, dense output, saved points) and the time of
the same number of ``sin`` calls alone (libm's, and the vectorised one in a vector loop).
The last line printed is one JSON object.

    python bench/ode_ensemble.py [--trajectories 10000] [--repeats 5] [--profile]

Target (issue): >= 100 000 trajectories/s on 2 cores (ours_s <= 0.1 s), max_error <= 1e-8.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time

import numba
import numpy as np
from scipy.integrate import solve_ivp

from derlhybrid import __version__
from derlhybrid.kernels.ode import solve_ensemble
from derlhybrid.kernels.vmath import sin as vsin
from derlhybrid.systems import Pendulum

B, G, L, M = 0.5, 9.81, 10.0, 1.0
PARAMS = np.array([B, G, L, M])
assert np.array_equal(PARAMS, Pendulum().param_vector())
# the system's own kernels (what dataset generation uses): libm sin, and on lanes the
# vectorised sin (small-angle variant when all angles of a call are within +-0.78)
pendulum = Pendulum.rhs_kernel
pendulum_lanes = Pendulum.rhs_lanes_kernel
RTOL = ATOL = 1e-10


def pendulum_np(t, y):
    return [y[1], -(G / L) * np.sin(y[0]) - (B / M) * y[1]]


def pendulum_stacked(t, y):
    th, om = y[0::2], y[1::2]
    out = np.empty_like(y)
    out[0::2] = om
    out[1::2] = -(G / L) * np.sin(th) - (B / M) * om
    return out


@numba.njit(nogil=True)
def _sin_calls(x, reps):
    # the libm sin calls of the integration alone (same count, same argument range)
    acc = 0.0
    for _ in range(reps):
        for i in range(x.size):
            acc += math.sin(x[i])
    return acc


@numba.njit(nogil=True, error_model="numpy")
def _vsin_calls(x, out, reps):
    # as many vectorised sin values, in a vector loop
    for _ in range(reps):
        for i in range(x.size):
            out[i] = vsin(x[i])


def best_of(fn, repeats: int) -> float:
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def initial_states(n: int) -> np.ndarray:
    rng = np.random.default_rng(np.random.SeedSequence(2505_01391))
    return np.column_stack([rng.uniform(-np.pi / 4, np.pi / 4, n), rng.uniform(-1.5, 1.5, n)])


def profile(y0: np.ndarray, repeats: int) -> dict:
    """Single-thread cost per trajectory (microseconds) and what it is made of."""
    n = min(2000, y0.shape[0])
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        per = {}
        for nt in (2, 101, 1001):
            t = np.linspace(0.0, 10.0, nt)
            s = np.empty((n, nt, 2))
            d = np.empty_like(s)

            def run(t=t, s=s, d=d):
                return solve_ensemble(
                    pendulum, y0[:n], t, PARAMS, rtol=RTOL, atol=ATOL, out_states=s,
                    out_derivatives=d, rhs_lanes=pendulum_lanes,
                )  # fmt: skip

            res = run()
            per[nt] = best_of(run, repeats) / n * 1e6
        steps = res.n_steps.mean() + res.n_rejected.mean()
        # sin calls per trajectory: 12 per step attempt, 3 per dense step, 1 per saved
        # point, 2 to start
        n_sin = round(12 * steps + 3 * res.n_steps.mean() + 1001 + 2)
        x = np.random.default_rng(0).uniform(-np.pi / 4, np.pi / 4, n_sin)
        _sin_calls(x, 1)
        sin_us = best_of(lambda: _sin_calls(x, 200), repeats) / 200 * 1e6
        out = np.empty_like(x)
        _vsin_calls(x, out, 1)
        vsin_us = best_of(lambda: _vsin_calls(x, out, 200), repeats) / 200 * 1e6
    finally:
        numba.set_num_threads(threads)
    return {
        "us_per_traj_1thread_nt2": per[2],
        "us_per_traj_1thread_nt101": per[101],
        "us_per_traj_1thread_nt1001": per[1001],
        "us_steps": per[2],
        "us_dense_per_step": (per[101] - per[2]) / res.n_steps.mean(),
        "ns_per_saved_point": (per[1001] - per[101]) / 900 * 1e3,
        "sin_calls_per_traj": n_sin,
        "us_sin_alone_per_traj": sin_us,
        "us_vsin_alone_per_traj": vsin_us,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trajectories", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--loop-subset", type=int, default=200)
    ap.add_argument("--reference", type=int, default=300, help="trajectories for max_error")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, seconds (what CI runs)")
    args = ap.parse_args()
    if args.smoke:  # the same code path on 64 trajectories
        args.trajectories, args.repeats, args.loop_subset, args.reference = 64, 1, 8, 8
    n = args.trajectories
    y0 = initial_states(n)
    t_eval = np.linspace(0.0, 10.0, 1001)
    kw = {"rtol": RTOL, "atol": ATOL}

    lanes = {"rhs_lanes": pendulum_lanes}
    t0 = time.perf_counter()
    solve_ensemble(pendulum, y0[:1], t_eval, PARAMS, **kw, **lanes)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    solve_ensemble(pendulum, y0[:1], t_eval, PARAMS, **kw)
    scalar_compile_s = time.perf_counter() - t0

    states = np.empty((n, t_eval.size, 2))
    derivs = np.empty_like(states)

    def into(**extra):
        return solve_ensemble(
            pendulum, y0, t_eval, PARAMS, out_states=states, out_derivatives=derivs, **kw, **extra
        )

    # ours and the scalar path alternate (a shared machine's load hits both alike)
    ours = scalar = np.inf
    for _ in range(args.repeats):
        ours = min(ours, best_of(lambda: into(**lanes), 1))
        scalar = min(scalar, best_of(into, 1))
    scalar_res = into()
    scalar_states = states.copy()
    res = into(**lanes)
    assert np.all(res.ok) and np.all(scalar_res.ok), "a pendulum trajectory failed"
    ours_alloc = best_of(
        lambda: solve_ensemble(pendulum, y0, t_eval, PARAMS, **kw, **lanes), args.repeats
    )
    lanes_vs_scalar = float(np.abs(res.states - scalar_states).max())

    # accuracy: against scipy's DOP853 at rtol = atol = 1e-13
    nref = min(args.reference, n)
    ref_idx = np.linspace(0, n - 1, nref).astype(int)
    err = derr = scalar_err = 0.0
    for i in ref_idx:
        ref = solve_ivp(
            pendulum_np, (0.0, 10.0), y0[i], method="DOP853", t_eval=t_eval, rtol=1e-13, atol=1e-13
        )
        err = max(err, np.abs(ref.y.T - res.states[i]).max())
        scalar_err = max(scalar_err, np.abs(ref.y.T - scalar_states[i]).max())
        fref = np.array(pendulum_np(0.0, ref.y)).T
        derr = max(derr, np.abs(fref - res.derivatives[i]).max())

    # peers
    nloop = min(args.loop_subset, n)

    def loop():
        for i in range(nloop):
            solve_ivp(pendulum_np, (0.0, 10.0), y0[i], method="DOP853", t_eval=t_eval, **kw)

    loop_s = best_of(loop, max(1, min(3, args.repeats))) * n / nloop
    flat = y0.ravel()

    def stacked():
        return solve_ivp(pendulum_stacked, (0.0, 10.0), flat, method="DOP853", t_eval=t_eval, **kw)

    stacked_res = stacked()
    stacked_s = best_of(stacked, max(1, min(3, args.repeats)))
    stacked_err = 0.0
    for i in ref_idx[:20]:
        ref = solve_ivp(
            pendulum_np, (0.0, 10.0), y0[i], method="DOP853", t_eval=t_eval, rtol=1e-13, atol=1e-13
        )
        stacked_err = max(stacked_err, np.abs(ref.y - stacked_res.y[2 * i : 2 * i + 2]).max())

    prof = profile(y0, args.repeats) if args.profile else {}

    rows = [
        ("derlhybrid solve_ensemble lanes, caller buffers", ours, err),
        ("derlhybrid solve_ensemble lanes, fresh output", ours_alloc, err),
        ("derlhybrid solve_ensemble scalar, caller buffers", scalar, scalar_err),
        (f"scipy solve_ivp DOP853 loop (x{n / nloop:g} of {nloop})", loop_s, float("nan")),
        ("scipy solve_ivp DOP853 stacked system", stacked_s, stacked_err),
    ]
    print(f"damped pendulum, {n} trajectories, 1001 saved times, rtol=atol={RTOL:g}")
    print(f"{numba.get_num_threads()} threads, {os.cpu_count()} CPUs, {platform.processor()}")
    print(
        f"first call (JIT compile, or a load from the on-disk cache): lanes {compile_s:.2f} s, "
        f"scalar {scalar_compile_s:.2f} s"
    )
    print(f"{'':50s} {'time [s]':>10s} {'traj/s':>10s} {'vs ours':>8s} {'max error':>10s}")
    for name, s, e in rows:
        print(f"{name:50s} {s:10.4f} {n / s:10.0f} {s / ours:7.1f}x {e:10.1e}")
    print(
        f"steps per trajectory: {res.n_steps.mean():.1f} accepted, "
        f"{res.n_rejected.mean():.1f} rejected; derivative max error {derr:.1e}; "
        f"lanes vs scalar: max |difference| {lanes_vs_scalar:.1e}"
    )
    if prof:
        print(
            "lanes, single thread per trajectory: {:.1f} us (steps {:.1f} us, dense output "
            "{:.2f} us per step, {:.1f} ns per saved point); {} sin calls alone: libm {:.1f} us, "
            "vectorised {:.1f} us".format(
                prof["us_per_traj_1thread_nt1001"],
                prof["us_steps"],
                prof["us_dense_per_step"],
                prof["ns_per_saved_point"],
                prof["sin_calls_per_traj"],
                prof["us_sin_alone_per_traj"],
                prof["us_vsin_alone_per_traj"],
            )
        )
    target_ok = n / ours >= 100_000 and err <= 1e-8
    print(f"target (>= 100000 traj/s, max error <= 1e-8): {'met' if target_ok else 'NOT met'}")
    summary = {
        "bench": "ode_ensemble",
        "version": __version__,
        "trajectories": n,
        "saved_times": int(t_eval.size),
        "threads": numba.get_num_threads(),
        "compile_s": round(compile_s, 3),
        "scalar_compile_s": round(scalar_compile_s, 3),
        "ours_s": round(ours, 5),
        "ours_alloc_s": round(ours_alloc, 5),
        "ours_traj_per_s": round(n / ours),
        "ours_alloc_traj_per_s": round(n / ours_alloc),
        "scalar_s": round(scalar, 5),
        "scalar_traj_per_s": round(n / scalar),
        "speedup_vs_scalar": round(scalar / ours, 2),
        "scipy_loop_s": round(loop_s, 3),
        "scipy_loop_traj_per_s": round(n / loop_s),
        "scipy_stacked_s": round(stacked_s, 4),
        "scipy_stacked_traj_per_s": round(n / stacked_s),
        "speedup_vs_loop": round(loop_s / ours, 1),
        "speedup_vs_stacked": round(stacked_s / ours, 2),
        "max_error": float(f"{err:.3e}"),
        "max_error_derivatives": float(f"{derr:.3e}"),
        "scalar_max_error": float(f"{scalar_err:.3e}"),
        "lanes_vs_scalar_max_diff": float(f"{lanes_vs_scalar:.3e}"),
        "stacked_max_error": float(f"{stacked_err:.3e}"),
        "mean_steps": round(float(res.n_steps.mean()), 2),
        "mean_rejected": round(float(res.n_rejected.mean()), 2),
        "target_met": bool(target_ok),
        **{k: round(float(v), 3) for k, v in prof.items()},
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
