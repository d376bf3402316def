"""The DOP853 ensemble integrator: mathematics first (closed forms, an independent reference
solver at tight tolerance, measured convergence orders), then the contract (failures, caller
buffers, one-line errors, no recompilation).

Two right-hand sides are compiled for the whole module (each compile of the integrator for a
new rhs takes seconds): the damped pendulum and ``poly``, ``y' = A y + c * y**2`` with ``A``
and ``c`` read from the parameters, which covers the linear oscillator, exponential decay and
the blow-up ``y' = y**2``.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from derlhybrid.kernels import ode_scalar
from derlhybrid.kernels.ode import (
    STATUS_MAX_STEPS,
    STATUS_NON_FINITE,
    STATUS_OK,
    STATUS_STEP_UNDERFLOW,
    solve_ensemble,
)

PENDULUM = np.array([0.5, 9.81, 10.0, 1.0])  # b, g, l, m


@numba.njit
def pendulum(t, y, p, dy):
    dy[0] = y[1]
    dy[1] = -(p[1] / p[2]) * math.sin(y[0]) - (p[0] / p[3]) * y[1]


@numba.njit
def poly(t, y, p, dy):
    # y' = A y + c * y**2, p = (A row-major, c)
    n = y.size
    for i in range(n):
        acc = p[n * n + i] * y[i] * y[i]
        for j in range(n):
            acc += p[i * n + j] * y[j]
        dy[i] = acc


OSCILLATOR = np.array([0.0, 1.0, -1.0, 0.0, 0.0, 0.0])  # y0' = y1, y1' = -y0
SQUARE = np.array([0.0, 1.0])  # y' = y**2


def _pendulum_fun(t, y):
    b, g, length, m = PENDULUM
    return [y[1], -(g / length) * np.sin(y[0]) - (b / m) * y[1]]


def _slope(h, err):
    return np.polyfit(np.log(h), np.log(err), 1)[0]


@numba.njit
def _rhs_at_states(rhs, t, states, params, out):
    for i in range(states.shape[0]):
        for j in range(states.shape[1]):
            rhs(t[j], states[i, j], params[i], out[i, j])


def test_matches_scipy_dop853_on_unseen_pendulum_states():
    rng = np.random.default_rng(np.random.SeedSequence(20250702))
    n = 40
    y0 = np.column_stack([rng.uniform(-np.pi / 4, np.pi / 4, n), rng.uniform(-1.5, 1.5, n)])
    t = np.linspace(0.0, 10.0, 201)
    res = solve_ensemble(pendulum, y0, t, PENDULUM, rtol=1e-10, atol=1e-10)
    assert np.all(res.status == STATUS_OK)
    err = 0.0
    for i in range(n):
        ref = solve_ivp(
            _pendulum_fun, (0.0, 10.0), y0[i], method="DOP853", t_eval=t, rtol=1e-13, atol=1e-13
        )
        err = max(err, np.abs(ref.y.T - res.states[i]).max())
    assert err <= 1e-8, err
    # the step-size controller is scipy's: at equal tolerances the step counts agree
    ref = solve_ivp(_pendulum_fun, (0.0, 10.0), y0[0], method="DOP853", rtol=1e-10, atol=1e-10)
    assert res.n_steps[0] == ref.t.size - 1


def test_linear_oscillator_closed_form():
    a, b = np.meshgrid(np.linspace(-2, 2, 5), np.linspace(-1, 1, 4))
    y0 = np.column_stack([a.ravel(), b.ravel()])
    t = np.linspace(0.0, 20.0, 401)
    res = solve_ensemble(poly, y0, t, OSCILLATOR)
    c, s = np.cos(t)[None, :], np.sin(t)[None, :]
    exact = np.stack([y0[:, :1] * c + y0[:, 1:] * s, -y0[:, :1] * s + y0[:, 1:] * c], axis=-1)
    assert np.all(res.ok)
    assert np.abs(res.states - exact).max() <= 1e-8
    # the vector field at the saved states: (y1, -y0), exactly
    np.testing.assert_array_equal(res.derivatives[..., 0], res.states[..., 1])
    np.testing.assert_array_equal(res.derivatives[..., 1], -res.states[..., 0])


def test_exponential_decay_with_per_trajectory_parameters():
    lam = np.array([0.1, 0.5, 1.0, 2.0, 3.0])
    y0 = np.array([[1.0], [2.0], [-1.0], [0.5], [3.0]])
    params = np.column_stack([-lam, np.zeros_like(lam)])  # A = -lam, c = 0
    t = np.linspace(0.0, 5.0, 51)
    # atol far below |y|: the relative tolerance rules, so the relative error is small too
    res = solve_ensemble(poly, y0, t, params, rtol=1e-10, atol=1e-14)
    exact = y0 * np.exp(-lam[:, None] * t[None, :])
    rel = np.abs(res.states[..., 0] - exact) / np.abs(exact)
    assert np.all(res.ok)
    assert rel.max() <= 1e-8, rel.max()
    np.testing.assert_array_equal(res.derivatives[..., 0], -lam[:, None] * res.states[..., 0])


def test_fixed_step_dop853_is_eighth_order():
    # linear oscillator over [0, 10] and the nonlinear y' = y**2 (y = 1 / (2 - t)) over
    # [0, 1.2]: error at the end against h, in a range where truncation dominates rounding
    t_end = 10.0
    n = np.array([10, 14, 20, 28, 40])
    err = []
    for k in n:
        res = solve_ensemble(poly, [[1.0, 0.5]], [0.0, t_end], OSCILLATOR, fixed_step=t_end / k)
        assert res.n_steps[0] == k
        exact = [np.cos(t_end) + 0.5 * np.sin(t_end), -np.sin(t_end) + 0.5 * np.cos(t_end)]
        err.append(np.abs(res.states[0, -1] - exact).max())
    assert abs(_slope(t_end / n, err) - 8) <= 0.5, (err, _slope(t_end / n, err))

    t_end = 1.2
    n = np.array([4, 6, 8, 11, 16])
    err = []
    for k in n:
        res = solve_ensemble(poly, [[0.5]], [0.0, t_end], SQUARE, fixed_step=t_end / k)
        err.append(abs(res.states[0, -1, 0] - 1 / (2 - t_end)))
    assert abs(_slope(t_end / n, err) - 8) <= 0.5, (err, _slope(t_end / n, err))


def test_dense_output_is_seventh_order():
    # fixed steps of y' = y**2; saved times in the middle of every step, i.e. everything
    # saved but the end point comes from the interpolant
    t_end = 1.2
    n = np.array([8, 11, 16, 22])
    err = []
    for k in n:
        h = t_end / k
        t = np.concatenate([[0.0], (np.arange(k) + 0.5) * h, [t_end]])
        res = solve_ensemble(poly, [[0.5]], t, SQUARE, fixed_step=h)
        err.append(np.abs(res.states[0, 1:-1, 0] - 1 / (2 - t[1:-1])).max())
    assert _slope(t_end / n, err) >= 7 - 0.5, (err, _slope(t_end / n, err))
    # one step from the exact state: the interpolant's local error is O(h^8)
    h = np.array([0.4, 0.3, 0.2, 0.15])
    err = []
    for step in h:
        res = solve_ensemble(poly, [[0.5]], [0.0, 0.37 * step, step], SQUARE, fixed_step=step)
        err.append(abs(res.states[0, 1, 0] - 1 / (2 - 0.37 * step)))
    assert _slope(h, err) >= 8 - 0.5, (err, _slope(h, err))


def test_derivatives_are_rhs_at_the_saved_states_exactly():
    rng = np.random.default_rng(7)
    y0 = np.column_stack([rng.uniform(-0.7, 0.7, 16), rng.uniform(-1.5, 1.5, 16)])
    params = np.tile(PENDULUM, (16, 1))
    params[:, 0] = rng.uniform(0.1, 1.0, 16)  # per-trajectory damping
    t = np.linspace(0.0, 10.0, 333)
    res = solve_ensemble(pendulum, y0, t, params)
    expected = np.empty_like(res.derivatives)
    _rhs_at_states(pendulum, t, res.states, params, expected)
    np.testing.assert_array_equal(res.derivatives, expected)
    np.testing.assert_array_equal(res.states[:, 0], y0)


def test_blow_up_fails_alone_with_nan_rows():
    # y' = y**2: y0 = 1 blows up at t = 1 inside [0, 2]; the others stay finite
    y0 = np.array([[1.0], [-1.0], [0.25], [0.4]])
    t = np.linspace(0.0, 2.0, 21)
    res = solve_ensemble(poly, y0, t, SQUARE)
    assert res.status[0] in (STATUS_STEP_UNDERFLOW, STATUS_NON_FINITE)
    assert np.all(np.isnan(res.states[0])) and np.all(np.isnan(res.derivatives[0]))
    assert list(res.failed) == [0]
    assert "trajectory 0:" in res.message(0) and "\n" not in res.message(0)
    assert np.all(res.status[1:] == STATUS_OK)
    exact = 1.0 / (1.0 / y0[1:] - t[None, :])
    assert np.abs(res.states[1:, :, 0] / exact - 1).max() <= 1e-8


def test_max_steps_and_non_finite_statuses():
    t = np.linspace(0.0, 10.0, 11)
    res = solve_ensemble(pendulum, [[0.1, 0.0], [0.2, 0.0]], t, PENDULUM, max_steps=5)
    assert np.all(res.status == STATUS_MAX_STEPS)
    assert np.all(np.isnan(res.states))
    res = solve_ensemble(pendulum, [[np.nan, 0.0], [0.2, 0.0]], t, PENDULUM)
    assert list(res.status) == [STATUS_NON_FINITE, STATUS_OK]
    assert np.all(np.isnan(res.states[0])) and np.all(np.isfinite(res.states[1]))
    # fixed steps through the blow-up of y' = y**2 overflow: non-finite, not plausible numbers
    res = solve_ensemble(poly, [[1.0], [0.1]], [0.0, 2.0], SQUARE, fixed_step=0.1)
    assert list(res.status) == [STATUS_NON_FINITE, STATUS_OK]


def test_caller_buffers_are_filled_in_place_and_chunks_agree():
    rng = np.random.default_rng(11)
    y0 = np.column_stack([rng.uniform(-0.7, 0.7, 30), rng.uniform(-1.5, 1.5, 30)])
    t = np.linspace(0.0, 10.0, 101)
    whole = solve_ensemble(pendulum, y0, t, PENDULUM)
    states = np.full((10, 101, 2), -7.0)
    derivs = np.full((10, 101, 2), -7.0)
    for lo in range(0, 30, 10):  # stream in chunks, reusing the buffers
        res = solve_ensemble(
            pendulum, y0[lo : lo + 10], t, PENDULUM, out_states=states, out_derivatives=derivs
        )
        assert res.states is states and res.derivatives is derivs
        np.testing.assert_array_equal(states, whole.states[lo : lo + 10])
        np.testing.assert_array_equal(derivs, whole.derivatives[lo : lo + 10])
    # one thread or several, one call or chunks: the same numbers
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        single = solve_ensemble(pendulum, y0, t, np.tile(PENDULUM, (30, 1)))
    finally:
        numba.set_num_threads(threads)
    np.testing.assert_array_equal(single.states, whole.states)
    np.testing.assert_array_equal(single.n_steps, whole.n_steps)


def test_repeated_calls_reuse_the_compiled_driver():
    t = np.linspace(0.0, 1.0, 5)
    solve_ensemble(pendulum, [[0.1, 0.0]], t, PENDULUM)
    before = len(ode_scalar.kernels(pendulum)["_drive_range"].signatures)
    for n in (1, 3, 7):
        solve_ensemble(pendulum, np.zeros((n, 2)), t, PENDULUM, rtol=1e-6, atol=1e-8)
    solve_ensemble(pendulum, np.zeros((2, 2)), t, PENDULUM, fixed_step=0.1)
    frozen = np.zeros((3, 2))
    frozen.flags.writeable = False  # e.g. read from a file: must not be a new Numba type
    solve_ensemble(pendulum, frozen, t, np.tile(PENDULUM, (3, 1)), atol=[1e-9, 1e-8])
    assert len(ode_scalar.kernels(pendulum)["_drive_range"].signatures) == before


def _python_rhs(t, y, p, dy):
    dy[:] = 0.0


@numba.njit
def _wrong_signature(t, y):
    return y


T = np.linspace(0.0, 1.0, 3)
Y0 = np.zeros((2, 2))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rhs": _python_rhs}, "rhs must be a numba.njit function"),
        ({"rhs": _wrong_signature}, "rhs must be a numba.njit function"),
        ({"rtol": 0.0}, "rtol must be positive"),
        ({"atol": -1e-9}, "atol must be positive"),
        ({"atol": [1e-9, 1e-9, 1e-9]}, "atol must be a number or an array of n_state=2"),
        ({"t_eval": [0.0, 1.0, 0.5]}, "t_eval must be finite and strictly increasing"),
        ({"t_eval": np.zeros((2, 2))}, "t_eval must be a non-empty 1-D array"),
        ({"y0": np.zeros(3)}, r"y0 must have shape \(n_traj, n_state\)"),
        ({"y0": "abc"}, "y0 must be an array of numbers"),
        ({"params": np.zeros((3, 4))}, r"params must have shape \(n_traj=2, n_par\)"),
        ({"method": "rk4"}, "method must be one of"),
        ({"fixed_step": -0.1}, "fixed_step must be a positive number"),
        ({"first_step": "x"}, "first_step must be a positive number"),
        ({"max_steps": 0}, "max_steps must be a positive integer"),
        ({"out_states": np.zeros((2, 3, 3))}, "out_states must be a writeable C-contiguous"),
        ({"out_derivatives": np.zeros((2, 3, 2), np.float32)}, "out_derivatives must be"),
    ],
)
def test_bad_input_is_a_one_line_value_error(kwargs, match):
    args = {"rhs": pendulum, "y0": Y0, "t_eval": T, "params": PENDULUM, **kwargs}
    rhs, y0, t, params = (args.pop(k) for k in ("rhs", "y0", "t_eval", "params"))
    with pytest.raises(ValueError, match=match) as info:
        solve_ensemble(rhs, y0, t, params, **args)
    assert "\n" not in str(info.value)
