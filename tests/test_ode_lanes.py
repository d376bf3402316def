"""The SIMD lane path of ``solve_ensemble`` (``rhs_lanes=``) and the vectorisable ``sin``.

The lane kernels are checked three ways: built without FMA and given a right-hand side that
computes exactly what the scalar one computes, they reproduce the scalar path bit for bit
(same steps, rejections, statuses and numbers — see ``_same``), which
ties them to scipy's DOP853 through ``tests/test_ode.py``; as shipped (FMA, vectorised
``sin``) they agree with the scalar path to rounding and with ``solve_ivp(DOP853,
rtol=atol=1e-13)`` within the tolerance; and lanes refill correctly when trajectories need
very different numbers of steps or fail. What ``docs/scale-out.md`` promises is checked
with ``array_equal``: neither threads, chunks, a trajectory's lane, the install path nor
what else a process compiled before changes a bit of the lane path.

Each new ``rhs_lanes`` compiles the lane driver (seconds): four are compiled here, once
per machine (the drivers are cached on disk, ``tests/test_ode_cache.py``), and the pendulum's
once more in each of two fresh processes (``test_two_nodes_...``, ~30 s).
"""

from __future__ import annotations

import importlib
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import derlhybrid
from derlhybrid.kernels import _jitcache, ode, ode_lanes
from derlhybrid.kernels.ode import (
    STATUS_MAX_STEPS,
    STATUS_NON_FINITE,
    STATUS_OK,
    STATUS_STEP_UNDERFLOW,
    solve_ensemble,
)
from derlhybrid.kernels.vmath import SIN_MAX_ARG, sin_lanes
from derlhybrid.kernels.vmath import sin as vsin
from derlhybrid.systems.pendulum import _pendulum_rhs_lanes as pendulum_lanes  # the fast one

PENDULUM = np.array([0.5, 9.81, 10.0, 1.0])  # b, g, l, m


@numba.njit
def pendulum(t, y, p, dy):
    dy[0] = y[1]
    dy[1] = -(p[1] / p[2]) * math.sin(y[0]) - (p[0] / p[3]) * y[1]


# The lane right-hand sides set ``fastmath`` themselves: otherwise they would take the flags
# of whichever lane driver (with or without FMA) compiled them first.
@numba.njit(fastmath=False)
def pendulum_lanes_libm(t, y, p, dy):  # exactly what ``pendulum`` computes, column by column
    for c in range(y.shape[1]):
        dy[0, c] = y[1, c]
        dy[1, c] = -(p[1, c] / p[2, c]) * math.sin(y[0, c]) - (p[0, c] / p[3, c]) * y[1, c]


@numba.njit
def poly(t, y, p, dy):
    # y' = A y + c * y**2, p = (A row-major, c)
    n = y.size
    for i in range(n):
        acc = p[n * n + i] * y[i] * y[i]
        for j in range(n):
            acc += p[i * n + j] * y[j]
        dy[i] = acc


@numba.njit(fastmath=False)
def poly_lanes(t, y, p, dy):  # the same arithmetic per column
    n = y.shape[0]
    for c in range(y.shape[1]):
        for i in range(n):
            acc = p[n * n + i, c] * y[i, c] * y[i, c]
            for j in range(n):
                acc += p[i * n + j, c] * y[j, c]
            dy[i, c] = acc


def _pendulum_fun(t, y):
    b, g, length, m = PENDULUM
    return [y[1], -(g / length) * np.sin(y[0]) - (b / m) * y[1]]


def _exact(rhs_lanes, y0, t_eval, params, **kw):
    """The lane path built without FMA (the scalar path's arithmetic), on all threads."""
    y0 = np.ascontiguousarray(y0, dtype=np.float64)
    n, ns = y0.shape
    params = np.ascontiguousarray(np.atleast_2d(params), dtype=np.float64)
    t_eval = np.asarray(t_eval, dtype=np.float64)
    shape = (n, t_eval.size, ns)
    out = [np.empty(shape), np.empty(shape)] + [np.zeros(n, np.int64) for _ in range(3)]
    tol = np.full(ns, kw.get("rtol", 1e-10)), np.full(ns, kw.get("atol", 1e-10))
    args = (t_eval, y0, params, *tol, 0.0, np.inf, kw.get("max_steps", 100_000))
    args = (*args, kw.get("fixed_step", 0.0), *out)
    drive = ode_lanes.kernels(rhs_lanes, ns, params.shape[1], fma=False)["drive"]
    ode._run(drive, n, args, lanes=ode_lanes.LANES)
    return ode.EnsembleResult(t_eval, *out)


def _same(a, b):
    """The same algorithm, bit for bit: every status, step, rejection and number equal.

    The no-FMA lane kernels and the scalar path compute the same operations in the same
    order. They used to differ by an ulp in a few values because ``ode.py``'s helpers set no
    ``fastmath``: Numba compiled them with the flags of whichever caller compiled them first
    and cached that on disk. Every Numba function of the solver now sets its flags."""
    np.testing.assert_array_equal(a.status, b.status)
    np.testing.assert_array_equal(a.n_steps, b.n_steps)
    np.testing.assert_array_equal(a.n_rejected, b.n_rejected)
    np.testing.assert_array_equal(a.states, b.states)
    np.testing.assert_array_equal(a.derivatives, b.derivatives)


def _bits(a, b):
    """Bit for bit: every status, step, rejection, state and derivative."""
    for name in ("status", "n_steps", "n_rejected", "states", "derivatives"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def _ulps(x, ref):
    return np.abs(x - ref) / np.spacing(np.abs(ref))


# --- vmath.sin ------------------------------------------------------------------------------


@numba.njit(error_model="numpy")
def _vsin_loop(x, out):
    for i in range(x.size):
        out[i] = vsin(x[i])


@pytest.mark.parametrize("scale", [1e-6, 0.78, 1.6, 10.0, 1e3, 1e5, SIN_MAX_ARG])
def test_vectorised_sin_is_within_two_ulp_of_libm(scale):
    rng = np.random.default_rng(int(scale * 1e6) % 2**32)
    x = rng.uniform(-scale, scale, 400_000)
    out = np.empty_like(x)
    _vsin_loop(x, out)
    ref = np.array([math.sin(v) for v in x])
    assert _ulps(out, ref).max() <= 2.0  # measured: <= 1 ulp
    both = np.empty_like(x)
    sin_lanes(x, both)  # the array form: the same bits
    np.testing.assert_array_equal(both, out)


def test_vectorised_sin_near_multiples_of_half_pi_and_special_values():
    k = np.arange(-70_000, 70_000, 7, dtype=np.float64)
    near = k * (math.pi / 2)
    x = np.concatenate([near, np.nextafter(near, np.inf), np.nextafter(near, -np.inf)])
    out = np.empty_like(x)
    _vsin_loop(x, out)
    ref = np.array([math.sin(v) for v in x])
    assert _ulps(out, ref).max() <= 2.0
    special = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 5e-324, -1e-300, 1e-8])
    got = np.array([vsin(v) for v in special])
    assert np.all(np.isnan(got[:3]))
    np.testing.assert_array_equal(got[3:], np.sin(special[3:]))
    assert math.copysign(1.0, got[4]) == -1.0  # sin(-0) = -0
    # beyond SIN_MAX_ARG: sin says NaN (not a wrong number), sin_lanes asks libm
    far = np.array([1e6, -3.3e7, 1e300, SIN_MAX_ARG * 1.01, 0.5, np.inf])
    assert np.all(np.isnan([vsin(v) for v in far[[0, 1, 2, 3, 5]]]))
    out = np.empty_like(far)
    sin_lanes(far, out)
    np.testing.assert_array_equal(out[:5], [math.sin(v) for v in far[:5]])
    assert np.isnan(out[5])


def test_vectorised_sin_gives_the_same_bits_in_every_code_path():
    # vector loop, its scalar remainder, a scalar call, sin_lanes' small-argument loop and an
    # in-place call: the same bits (results must not depend on how many values go together)
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.uniform(-0.78, 0.78, 2001), rng.uniform(-50, 50, 2001)])
    ref = np.empty_like(x)
    _vsin_loop(x, ref)
    for m in (1, 3, 7, 13):
        part = np.empty(m)
        _vsin_loop(x[:m], part)
        np.testing.assert_array_equal(part, ref[:m])
    np.testing.assert_array_equal([vsin(v) for v in x[::97]], ref[::97])
    small = np.empty(2001)
    sin_lanes(x[:2001], small)  # all |x| <= 0.78: the kernel-only loop
    np.testing.assert_array_equal(small, ref[:2001])
    inplace = x.copy()
    sin_lanes(inplace, inplace)
    np.testing.assert_array_equal(inplace, ref)


# --- the lane integrator ----------------------------------------------------------------------


def _pendulum_states(n, seed):
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    return np.column_stack([rng.uniform(-np.pi / 4, np.pi / 4, n), rng.uniform(-1.5, 1.5, n)])


def test_lane_path_is_the_scalar_algorithm_bit_for_bit():
    # no FMA and the same rhs arithmetic: every step and rejection as the scalar path
    y0 = _pendulum_states(37, 11)  # not a multiple of the lane count
    params = np.tile(PENDULUM, (37, 1))
    params[:, 0] = np.linspace(0.0, 1.0, 37)  # per-trajectory damping
    t = np.linspace(0.0, 10.0, 301)
    scalar = solve_ensemble(pendulum, y0, t, params)
    _same(_exact(pendulum_lanes_libm, y0, t, params), scalar)
    # fixed steps, tight tolerances, a single saved time
    _same(
        _exact(pendulum_lanes_libm, y0[:5], t, PENDULUM, fixed_step=0.07),
        solve_ensemble(pendulum, y0[:5], t, PENDULUM, fixed_step=0.07),
    )
    _same(
        _exact(pendulum_lanes_libm, y0, [0.0, 0.3, 5.0], params, rtol=1e-13, atol=1e-13),
        solve_ensemble(pendulum, y0, [0.0, 0.3, 5.0], params, rtol=1e-13, atol=1e-13),
    )
    _same(
        _exact(pendulum_lanes_libm, y0, [2.0], params),
        solve_ensemble(pendulum, y0, [2.0], params),
    )


def test_lane_refill_with_uneven_trajectories_and_failures_bit_for_bit():
    # y' = A y + c y**2 with very different trajectories side by side: slow and fast
    # oscillators (4 to ~170 steps), blow-ups (y' = y**2 from y0 = 1, at t = 1 < 2), a NaN
    # initial state, and a max_steps that only the fast oscillators exceed
    rng = np.random.default_rng(5)
    n = 53
    w = rng.choice([0.5, 2.0, 8.0, 30.0], n)
    params = np.zeros((n, 6))
    params[:, 1], params[:, 2] = w, -w  # y0' = w y1, y1' = -w y0
    y0 = rng.uniform(-1, 1, (n, 2))
    blow = rng.choice(n, 6, replace=False)
    params[blow] = [0.0, 0.0, 0.0, 0.0, 1.0, 0.0]  # y0' = y0**2, y1' = 0
    y0[blow, 0] = 1.0
    y0[blow[0], 1] = np.nan
    t = np.linspace(0.0, 2.0, 57)
    res = _exact(poly_lanes, y0, t, params, max_steps=100)
    _same(res, solve_ensemble(poly, y0, t, params, max_steps=100))
    fast = (w == 30.0) & ~np.isin(np.arange(n), blow)
    assert np.all(res.status[fast] == STATUS_MAX_STEPS)
    assert res.status[blow[0]] == STATUS_NON_FINITE
    # the blow-ups shrink their steps until max_steps (or the step underflows)
    assert np.all(np.isin(res.status[blow[1:]], (STATUS_STEP_UNDERFLOW, STATUS_MAX_STEPS)))
    ok = ~fast & ~np.isin(np.arange(n), blow)
    assert ok.sum() > 20 and np.all(res.status[ok] == STATUS_OK)
    assert np.all(np.isnan(res.states[~ok])) and np.all(np.isfinite(res.states[ok]))
    assert res.n_steps[ok].max() >= 5 * res.n_steps[ok].min()  # uneven lengths indeed
    # the shipped kernels (FMA) on the same mix: same statuses, same numbers to rounding
    fma = solve_ensemble(poly, y0, t, params, max_steps=100, rhs_lanes=poly_lanes)
    np.testing.assert_array_equal(fma.status, res.status)
    np.testing.assert_allclose(fma.states[ok], res.states[ok], rtol=0, atol=1e-11)


def test_fast_lane_path_matches_scipy_and_the_scalar_path():
    y0 = _pendulum_states(40, 20250702)
    t = np.linspace(0.0, 10.0, 201)
    res = solve_ensemble(pendulum, y0, t, PENDULUM, rhs_lanes=pendulum_lanes)
    assert np.all(res.status == STATUS_OK)
    err = 0.0
    for i in range(y0.shape[0]):
        ref = solve_ivp(
            _pendulum_fun, (0.0, 10.0), y0[i], method="DOP853", t_eval=t, rtol=1e-13, atol=1e-13
        )
        err = max(err, np.abs(ref.y.T - res.states[i]).max())
    assert err <= 1e-8, err
    scalar = solve_ensemble(pendulum, y0, t, PENDULUM)
    # the same steps; a different sin (<= 1 ulp) and FMA move the numbers by rounding only
    # (an error estimate on the edge of acceptance could flip one step: allow that)
    np.testing.assert_array_equal(res.n_steps, scalar.n_steps)
    diff = np.abs(res.states - scalar.states).max(axis=(1, 2))
    assert np.mean(diff <= 1e-11) >= 0.9 and diff.max() <= 1e-8, np.sort(diff)[-5:]
    assert np.abs(res.derivatives - scalar.derivatives).max() <= 1e-8


@numba.njit(error_model="numpy")
def _rhs_lanes_at_states(rhs_lanes, t, states, params, out):
    # all saved states of trajectory i as the columns of one call
    n_t, ns = states.shape[1], states.shape[2]
    y = np.empty((ns, n_t))
    p = np.empty((params.shape[1], n_t))
    dy = np.empty((ns, n_t))
    for i in range(states.shape[0]):
        for j in range(n_t):
            for k in range(ns):
                y[k, j] = states[i, j, k]
            for k in range(params.shape[1]):
                p[k, j] = params[i, k]
        rhs_lanes(t, y, p, dy)
        for j in range(n_t):
            for k in range(ns):
                out[i, j, k] = dy[k, j]


def test_lane_derivatives_are_rhs_lanes_at_the_saved_states_exactly():
    y0 = _pendulum_states(21, 7)
    params = np.tile(PENDULUM, (21, 1))
    params[:, 0] = np.random.default_rng(7).uniform(0.1, 1.0, 21)
    t = np.linspace(0.0, 10.0, 333)
    res = solve_ensemble(pendulum, y0, t, params, rhs_lanes=pendulum_lanes)
    expected = np.empty_like(res.derivatives)
    _rhs_lanes_at_states(pendulum_lanes, t, res.states, params, expected)
    np.testing.assert_array_equal(res.derivatives, expected)
    np.testing.assert_array_equal(res.states[:, 0], y0)


def test_lane_results_do_not_depend_on_threads_chunks_or_lanes():
    """docs/scale-out.md: chunks, SIMD lanes and threads never change a trajectory's bits."""
    y0 = _pendulum_states(70, 9)
    t = np.linspace(0.0, 10.0, 101)
    whole = solve_ensemble(pendulum, y0, t, PENDULUM, rhs_lanes=pendulum_lanes)
    states = np.empty((7, 101, 2))
    derivs = np.empty((7, 101, 2))
    for lo in range(0, 70, 7):
        res = solve_ensemble(
            pendulum, y0[lo : lo + 7], t, PENDULUM, rhs_lanes=pendulum_lanes,
            out_states=states, out_derivatives=derivs,
        )  # fmt: skip
        assert res.states is states
        np.testing.assert_array_equal(states, whole.states[lo : lo + 7])
        np.testing.assert_array_equal(derivs, whole.derivatives[lo : lo + 7])
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        single = solve_ensemble(pendulum, y0, t, PENDULUM, rhs_lanes=pendulum_lanes)
    finally:
        numba.set_num_threads(threads)
    _bits(single, whole)
    # each trajectory in another lane, block and chunk: the same bits, row for row
    perm = np.random.default_rng(4).permutation(70)
    moved = solve_ensemble(pendulum, y0[perm], t, PENDULUM, rhs_lanes=pendulum_lanes)
    np.testing.assert_array_equal(moved.states, whole.states[perm])
    np.testing.assert_array_equal(moved.derivatives, whole.derivatives[perm])
    np.testing.assert_array_equal(moved.n_steps, whole.n_steps[perm])


def test_generated_module_id_does_not_depend_on_the_install_path(tmp_path, monkeypatch):
    """Two nodes (or clones) with the same code at different paths name the same generated
    module, so shards made there run the same compiled source: the id hashes the contents
    (and file names) of the rhs's module, ``ode_scalar.py``, ``dop853.py`` and
    ``_jitcache.py``, never their paths. It used to hash the paths."""
    rhs_src = "import numba\n\n\n@numba.njit\ndef rhs(x):\n    return x\n"
    kernels = Path(_jitcache.__file__).parent

    def key_installed_at(where: str, src: str = rhs_src, edited: str = "") -> str:
        root = tmp_path / where
        (root / "kernels").mkdir(parents=True)
        for name in ("ode_scalar.py", "dop853.py", "_jitcache.py"):
            shutil.copyfile(kernels / name, root / "kernels" / name)
            if name == edited:  # another version of that file
                with open(root / "kernels" / name, "a") as f:
                    f.write("\n# edited\n")
        (root / "derl_probe_rhs.py").write_text(src)
        monkeypatch.syspath_prepend(str(root))
        monkeypatch.delitem(sys.modules, "derl_probe_rhs", raising=False)
        rhs = importlib.import_module("derl_probe_rhs").rhs
        assert _jitcache._reached_files(rhs) == {str(root / "derl_probe_rhs.py")}
        monkeypatch.setattr(_jitcache, "__file__", str(root / "kernels" / "_jitcache.py"))
        return _jitcache._key("the generated source", rhs)

    a = key_installed_at("node-a/site-packages")
    assert key_installed_at("node-b/opt/env/lib") == a
    # what the id must still see: a change of the rhs's code
    assert key_installed_at("node-c", rhs_src.replace("return x", "return -x")) != a
    # and of the files holding what the generated modules import or compile
    for i, name in enumerate(("ode_scalar.py", "dop853.py", "_jitcache.py")):
        assert key_installed_at(f"node-e{i}", edited=name) != a, name


# One "node": its own copy of the package (another install path), fresh caches, and the
# scalar solve first or the lane solve first (what a process compiled before must not count).
_NODE = """
import json, sys
import numpy as np
import derlhybrid
from derlhybrid.kernels import ode
from derlhybrid.systems.pendulum import _pendulum_rhs, _pendulum_rhs_lanes

y0 = np.load(sys.argv[1])
t = np.linspace(0.0, 10.0, 101)
p = np.array([0.5, 9.81, 10.0, 1.0])
if sys.argv[3] == "scalar-first":
    ode.solve_ensemble(_pendulum_rhs, y0[:3], t, p)
r = ode.solve_ensemble(_pendulum_rhs, y0, t, p, rhs_lanes=_pendulum_rhs_lanes)
np.savez(sys.argv[2], states=r.states, derivatives=r.derivatives, n_steps=r.n_steps)
mods = sorted(m for m in sys.modules if m.startswith("_derl_ode_lanes"))
print(json.dumps({"package": derlhybrid.__file__, "modules": mods}))
"""


def test_two_nodes_with_other_install_paths_and_histories_give_the_same_bits(tmp_path):
    """A shard is the same file whichever node made it (docs/scale-out.md). Two fresh
    processes stand for two nodes: one imports the package from another path, and one runs
    a scalar solve before the lane solve. Before the fix their module names differed (the
    path) and so did 2205 of 80 800 values, by up to 2e-15 (the order of compiles)."""
    src = Path(derlhybrid.__file__).parent
    other = tmp_path / "elsewhere" / "lib"
    shutil.copytree(src, other / "derlhybrid", ignore=shutil.ignore_patterns("__pycache__"))
    np.save(tmp_path / "y0.npy", _pendulum_states(200, 11))
    procs = []
    for name, pythonpath, order in (
        ("a", None, "lanes-first"),
        ("b", str(other), "scalar-first"),
    ):
        env = {**os.environ, "DERLHYBRID_CACHE": str(tmp_path / f"cache-{name}")}
        env["NUMBA_CACHE_DIR"] = str(tmp_path / f"numba-{name}")  # nothing compiled before
        if pythonpath:
            env["PYTHONPATH"] = os.pathsep.join([pythonpath, env.get("PYTHONPATH", "")])
        args = [sys.executable, "-c", _NODE, str(tmp_path / "y0.npy"), str(tmp_path / name)]
        pipe = subprocess.PIPE
        procs.append(subprocess.Popen([*args, order], env=env, stdout=pipe, stderr=pipe, text=True))
    info = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        info.append(json.loads(out.strip().splitlines()[-1]))
    assert info[1]["package"].startswith(str(other))  # the copy, not this checkout
    assert not info[0]["package"].startswith(str(tmp_path))
    assert info[0]["modules"] == info[1]["modules"] and info[0]["modules"]
    with np.load(tmp_path / "a.npz") as a, np.load(tmp_path / "b.npz") as b:
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_lane_path_reuses_its_compiled_driver():
    t = np.linspace(0.0, 1.0, 5)
    solve_ensemble(pendulum, [[0.1, 0.0]], t, PENDULUM, rhs_lanes=pendulum_lanes)
    drive = ode_lanes.kernels(pendulum_lanes, 2, 4)["drive"]
    before = len(drive.signatures)
    for n in (1, 3, 40):
        solve_ensemble(pendulum, np.zeros((n, 2)), t, PENDULUM, rhs_lanes=pendulum_lanes)
    frozen = np.zeros((3, 2))
    frozen.flags.writeable = False
    solve_ensemble(pendulum, frozen, t, PENDULUM, rhs_lanes=pendulum_lanes, atol=[1e-9, 1e-8])
    assert len(drive.signatures) == before


def _python_lanes(t, y, p, dy):
    dy[:] = 0.0


@numba.njit
def _scalar_shaped(t, y, p, dy):  # 1-D indexing of 2-D arrays: does not compile
    dy[0, 0] = math.sin(y[0])


@pytest.mark.parametrize(
    ("rhs_lanes", "match"),
    [
        (_python_lanes, "rhs_lanes must be a numba.njit function"),
        (_scalar_shaped, "rhs_lanes must be a numba.njit function .*compiling it failed"),
    ],
)
def test_bad_rhs_lanes_is_a_one_line_value_error(rhs_lanes, match):
    with pytest.raises(ValueError, match=match) as info:
        solve_ensemble(pendulum, np.zeros((2, 2)), [0.0, 1.0], PENDULUM, rhs_lanes=rhs_lanes)
    assert "\n" not in str(info.value)
