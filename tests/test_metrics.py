"""The paper's metrics (derlhybrid.learn.metrics): closed-form values on hand-made arrays, zero
error for predictors built from the systems' exact solutions, and the closed-form error of
predictors off by known constants."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from derlhybrid.learn import metrics as M
from derlhybrid.learn.metrics_stats import RunningStats
from derlhybrid.systems import (
    AllenCahn,
    AllenCahnExp,
    AllenCahnMulti,
    Continuity,
    KdV,
    Kovasznay,
    Pendulum,
)

# ---------------------------------------------------------------------------------------------
# predictors


def closed_form_predictor(system, offset=0.0, max_rows=None):
    """value = system.exact + offset; first/second derivatives with respect to the coordinates
    from system.jacobian / system.hessian."""
    col = {system.inputs.index(c): i for i, c in enumerate(system.coordinates)}

    def predict(X, indices):
        assert X.dtype == np.float64 and X.ndim == 2
        assert max_rows is None or len(X) <= max_rows
        out = {(): system.exact(X) + offset}
        J = system.jacobian(X) if any(len(a) == 1 for a in indices) else None
        H = system.hessian(X) if any(len(a) == 2 for a in indices) else None
        for a in indices:
            if len(a) == 1:
                out[a] = J[:, :, col[a[0]]]
            elif len(a) == 2:
                out[a] = H[:, :, col[a[0]], col[a[1]]]
            else:
                raise AssertionError(f"unexpected multi-index {a}")
        return out

    return predict


def plain(obj):
    """True if obj is made of dict/list/str/float/int/bool/None only."""
    if isinstance(obj, dict):
        return all(isinstance(k, str) and plain(v) for k, v in obj.items())
    if isinstance(obj, list):
        return all(plain(v) for v in obj)
    return obj is None or type(obj) in (str, float, int, bool)


def grid_points(system, n):
    (x0, x1), (y0, y1) = (system.domain()[c] for c in ("x", "y"))
    x, y = np.linspace(x0, x1, n), np.linspace(y0, y1, n)
    A, B = np.meshgrid(x, y, indexing="ij")
    return np.stack([A.ravel(), B.ravel()], 1), (x1 - x0) * (y1 - y0) / (n - 1) ** 2


# ---------------------------------------------------------------------------------------------
# statistics


def test_error_stats_by_hand():
    s = M.error_stats([3.0, -4.0], cell=0.25, reference=[0.0, 5.0])
    assert s["max"] == 4.0 and s["mean"] == 3.5 and s["std"] == 0.5
    assert s["rmse"] == pytest.approx(math.sqrt(12.5))
    assert s["l2"] == pytest.approx(math.sqrt(0.25 * 25.0))
    assert s["rel_l2"] == pytest.approx(1.0)
    assert set(M.error_stats([1.0])) == {"max", "mean", "std", "rmse"}


def test_error_stats_constant_over_a_grid_gives_c_sqrt_area():
    n, area, c = 37, 6.0, 0.3
    s = M.error_stats(np.full((n, n), c), cell=area / n**2)
    assert s["l2"] == pytest.approx(c * math.sqrt(area), rel=1e-14)
    assert s["std"] == pytest.approx(0.0, abs=1e-15) and s["rmse"] == pytest.approx(c)


def test_streaming_statistics_match_one_pass():
    e = np.random.default_rng(0).normal(3.0, 0.01, 10_001)
    acc = RunningStats()
    for chunk in np.array_split(e, 7):
        acc.update(chunk, chunk)
    got, ref = acc.result(0.5), M.error_stats(e, 0.5, reference=e)
    assert got == pytest.approx(ref, rel=1e-12)
    assert ref["std"] == pytest.approx(np.std(e), rel=1e-12)
    assert math.isnan(M.error_stats([1.0, np.nan])["max"])
    with pytest.raises(ValueError):
        M.error_stats([])


def test_relative_l2():
    assert M.relative_l2([1.0, 1.0], [0.0, 2.0]) == pytest.approx(math.sqrt(2) / 2)
    assert M.relative_l2(np.ones((2, 2)), np.ones((2, 2))) == 0.0


def test_trajectory_errors_constant_offset():
    dt, t_end, c = 0.1, 1.0, 0.2
    n_t = round(t_end / dt) + 1
    true = np.random.default_rng(1).random((3, n_t))
    r = M.trajectory_errors(true + c, true, dt)
    expected = c * math.sqrt(t_end + dt)  # Σ over n_t = T/Δt + 1 points times Δt
    assert r["per_trajectory"] == pytest.approx([expected] * 3, rel=1e-12)
    assert r["mean"] == pytest.approx(expected) and r["std"] == pytest.approx(0, abs=1e-15)
    # vector errors: pointwise Euclidean norm (3, 4) -> 5; distinct trajectories
    err = np.zeros((2, n_t, 2))
    err[0] = (3.0, 4.0)
    r = M.trajectory_errors(err, 0.0, dt)
    assert r["per_trajectory"] == pytest.approx([5 * math.sqrt(t_end + dt), 0.0])
    assert r["max"] == pytest.approx(5 * math.sqrt(t_end + dt))
    assert r["std"] == pytest.approx(r["mean"])


def test_cumulative_error_curve():
    t = np.linspace(0.0, 1.0, 11)
    pred = np.stack([t, 2 * t])  # |error| = t and 2t
    r = M.cumulative_error_curve(pred, np.zeros_like(pred), t, [0.0, 0.5, 1.0, -1.0])
    assert r["T"] == [0.0, 0.5, 1.0, -1.0]
    assert r["mae"][:3] == pytest.approx([0.0, 1.5 * 0.25, 1.5 * 0.5])
    assert math.isnan(r["mae"][3])


def test_mass_rmse_and_matrix_norms():
    frames = np.stack([np.full((2, 2), 1.0), np.full((2, 2), 2.0)])  # masses 4·cell, 8·cell
    assert M.mass_rmse(frames, 0.5, 3.0) == pytest.approx(1.0)  # masses 2 and 4 vs 3
    E = np.array([[3.0, 0.0], [0.0, 4.0], [0.0, 0.0]])
    assert M.spectral_error_norm(E, 0.1) == pytest.approx(0.4)
    assert M.frobenius_error_norm(E, 0.1) == pytest.approx(0.5)
    C = np.full((100, 3), 0.2)  # rank one: σ_max = ‖C‖_F = c·sqrt(N k)
    assert M.spectral_error_norm(C, 1.0) == pytest.approx(0.2 * math.sqrt(300))


def test_multi_index_from_names():
    assert M.multi_index(("t", "x", "y"), "y", "t") == (0, 2)
    assert M.multi_index(("t", "x")) == ()
    assert M.multi_index(("t", "x"), "x", "x", "x") == (1, 1, 1)
    with pytest.raises(ValueError, match="no input named"):
        M.multi_index(("t", "x"), "y")


def test_predict_contract_is_checked():
    sys = AllenCahn()
    with pytest.raises(KeyError):
        M.evaluate_allen_cahn(lambda X, idx: {(): sys.exact(X)}, sys, n=5)
    with pytest.raises(ValueError, match="parameter_sets"):
        M.evaluate_allen_cahn(closed_form_predictor(AllenCahnExp()), AllenCahnExp(), n=5)


# ---------------------------------------------------------------------------------------------
# Allen–Cahn


@pytest.mark.parametrize(
    ("system", "sets"),
    [
        (AllenCahn(), None),
        (AllenCahnExp(), [[0.6], [2.3]]),
        (AllenCahnMulti(), [[0.3, 0.7], [0.9, 0.1]]),
    ],
    ids=["plain", "exp", "multi"],
)
def test_allen_cahn_exact_predictor_has_zero_error(system, sets):
    r = M.evaluate_allen_cahn(closed_form_predictor(system), system, n=61, parameter_sets=sets)
    assert plain(r)
    for m in r["sets"] if sets else [r]:
        for key in ("u", "forcing", "gradient"):
            assert m[key]["max"] <= 1e-12 and m[key]["l2"] <= 1e-12
            assert m[key]["rel_l2"] <= 1e-12
    if sets:
        assert len(r["sets"]) == len(sets) and r["mean"]["forcing_rel_l2"] <= 1e-12
        assert r["sets"][1]["parameters"] == dict(
            zip(system.parameter_inputs, sets[1], strict=True)
        )


def test_allen_cahn_constant_offset_closed_form():
    sys, n, c = AllenCahn(), 201, 0.01
    r = M.evaluate_allen_cahn(closed_form_predictor(sys, offset=c), sys, n=n, batch=10_000)
    assert r["grid"]["cell"] == pytest.approx(1e-4)
    assert r["u"]["l2"] == pytest.approx(c * 2 * n / (n - 1), rel=1e-12)  # c·sqrt(cell·n²)
    assert r["u"]["max"] == pytest.approx(c) and r["u"]["std"] == pytest.approx(0, abs=1e-14)
    X, cell = grid_points(sys, n)
    u = sys.exact(X)[:, 0]
    assert r["u"]["rel_l2"] == pytest.approx(c * n / np.sqrt(np.sum(u**2)), rel=1e-12)
    # f̂ − f = −(u+c) + (u+c)³ + u − u³
    df = -c + 3 * u**2 * c + 3 * u * c**2 + c**3
    f = sys.forcing(X)
    assert r["forcing"]["l2"] == pytest.approx(np.sqrt(cell * np.sum(df**2)), rel=1e-9)
    assert r["forcing"]["rel_l2"] == pytest.approx(np.sqrt(np.sum(df**2) / np.sum(f**2)), 1e-9)
    assert r["residual"]["max"] == r["forcing"]["max"]
    assert r["gradient"]["max"] == 0.0


def test_batches_bound_rows_and_do_not_change_results():
    sys = AllenCahnMulti()
    sets = [[0.5, 0.5]]
    small = M.evaluate_allen_cahn(
        closed_form_predictor(sys, 0.1, max_rows=100), sys, n=31, parameter_sets=sets, batch=100
    )
    full = M.evaluate_allen_cahn(closed_form_predictor(sys, 0.1), sys, n=31, parameter_sets=sets)
    assert small == full


# ---------------------------------------------------------------------------------------------
# Kovasznay


def test_kovasznay_exact_predictor_has_zero_error():
    sys = Kovasznay()
    r = M.evaluate_kovasznay(closed_form_predictor(sys), sys, n=200)
    assert plain(r) and r["grid"]["cell"] == pytest.approx((2 / 199) ** 2)
    assert r["output"]["spectral_norm_dv"] == 0.0 and r["output"]["frobenius_norm_dv"] == 0.0
    assert all(s["max"] == 0.0 for s in r["output"]["per_output"].values())
    assert r["vorticity"]["max"] == 0.0
    assert r["momentum"]["max"] <= 1e-10 and r["momentum"]["frobenius_norm_dv"] <= 1e-10
    assert r["divergence"]["max"] <= 1e-10 and r["divergence"]["norm_dv"] <= 1e-10


def test_kovasznay_constant_offset_closed_form():
    sys, n = Kovasznay(), 50
    c = np.array([0.01, -0.02, 0.03])
    r = M.evaluate_kovasznay(closed_form_predictor(sys, offset=c), sys, n=n)
    X, dv = grid_points(sys, n)
    N = n * n
    # E = 1 cᵀ is rank one: σ_max = ‖E‖_F = sqrt(N)·‖c‖
    for key in ("spectral_norm_dv", "frobenius_norm_dv"):
        assert r["output"][key] == pytest.approx(math.sqrt(N) * np.linalg.norm(c) * dv)
    for i, name in enumerate(sys.outputs):
        assert r["output"]["per_output"][name]["l2"] == pytest.approx(abs(c[i]) * math.sqrt(N * dv))
    # momentum residual of (u + c1, v + c2, p + c3): (c1 ∂x + c2 ∂y)(u, v)
    J = sys.jacobian(X)
    mom = c[0] * J[:, :2, 0] + c[1] * J[:, :2, 1]
    assert r["momentum"]["frobenius_norm_dv"] == pytest.approx(np.linalg.norm(mom) * dv, 1e-9)
    assert r["momentum"]["spectral_norm_dv"] == pytest.approx(np.linalg.norm(mom, 2) * dv, 1e-9)
    assert r["divergence"]["max"] <= 1e-10 and r["vorticity"]["max"] == 0.0


def test_kovasznay_vorticity_of_a_perturbed_derivative():
    """∂v̂/∂x off by c: ω̂ − ω = c at every point, ‖·‖₂·dv = c·sqrt(N)·dv."""
    sys, n, c = Kovasznay(), 40, 0.02
    exact = closed_form_predictor(sys)

    def predict(X, indices):
        out = dict(exact(X, indices))
        out[(0,)] = out[(0,)] + np.array([0.0, c, 0.0])  # input 0 is x, output 1 is v
        return out

    r = M.evaluate_kovasznay(predict, sys, n=n)
    dv = r["grid"]["cell"]
    assert r["vorticity"]["mean"] == pytest.approx(c) and r["vorticity"]["std"] < 1e-12
    assert r["vorticity"]["norm_dv"] == pytest.approx(c * n * dv)
    assert r["divergence"]["max"] <= 1e-10  # ∂v̂/∂x is not in ∂û/∂x + ∂v̂/∂y
    assert r["output"]["frobenius_norm_dv"] == 0.0


# ---------------------------------------------------------------------------------------------
# continuity


def _continuity_frames(sys, t, x, y):
    T, A, B = np.meshgrid(t, x, y, indexing="ij")
    X = np.stack([T.ravel(), A.ravel(), B.ravel()], 1)
    return sys.exact(X)[:, 0].reshape(T.shape)


def test_continuity_exact_predictor():
    sys = Continuity()
    t, x = np.array([0.0, 0.5, 1.0]), np.linspace(-1.5, 1.5, 31)
    rho = _continuity_frames(sys, t, x, x)
    dx = x[1] - x[0]
    r = M.evaluate_continuity(
        closed_form_predictor(sys, max_rows=200), sys, rho, t, x, x, batch=200
    )
    assert plain(r)
    assert r["density"]["max"] <= 1e-12 and r["density"]["rel_l2"] <= 1e-12
    assert r["residual"]["max"] <= 1e-10
    masses = rho.sum(axis=(1, 2)) * dx**2
    assert r["mass"]["predicted"] == pytest.approx(masses, rel=1e-12)
    assert r["mass"]["reference"] == pytest.approx(masses[0], rel=1e-12)
    expected = math.sqrt(np.mean((masses - masses[0]) ** 2))
    assert r["mass"]["rmse"] == pytest.approx(expected, rel=1e-6, abs=1e-15)
    assert r["mass"]["analytic"] == pytest.approx(4 * math.pi * 0.05)
    # a mass time between frames is evaluated on its own grid
    r2 = M.evaluate_continuity(closed_form_predictor(sys), sys, rho, t, x, x, mass_times=[0.25])
    m25 = _continuity_frames(sys, np.array([0.25]), x, x).sum() * dx**2
    assert r2["mass"]["predicted"] == pytest.approx([m25], rel=1e-12)


def test_continuity_constant_offset():
    sys, c = Continuity(), 0.05
    t, x, y = np.array([0.0, 0.1]), np.linspace(-1.5, 1.5, 21), np.linspace(-1.5, 1.5, 16)
    rho = _continuity_frames(sys, t, x, y)
    r = M.evaluate_continuity(closed_form_predictor(sys, offset=c), sys, rho, t, x, y)
    dx, dy, dt = x[1] - x[0], y[1] - y[0], 0.1
    assert r["grid"]["cell"] == pytest.approx(dx * dy * dt)
    assert r["density"]["l2"] == pytest.approx(c * math.sqrt(dx * dy * dt * rho.size), 1e-12)
    assert r["density"]["mean"] == pytest.approx(c) and r["density"]["std"] < 1e-12
    assert r["residual"]["max"] <= 1e-10
    shift = c * x.size * y.size * dx * dy
    masses = rho.sum(axis=(1, 2)) * dx * dy + shift
    assert r["mass"]["predicted"] == pytest.approx(masses, rel=1e-12)


# ---------------------------------------------------------------------------------------------
# generic fields


def test_evaluate_field_exact_and_offsets():
    sys = Kovasznay()
    X = sys.sample_uniform(np.random.default_rng(3), 500)
    U, J, H = sys.exact(X), sys.jacobian(X), sys.hessian(X)
    pred = closed_form_predictor(sys)
    r = M.evaluate_field(pred, sys, X, U, jacobian=J, hessian=H, cell=1e-3)
    assert plain(r)
    assert r["output"]["max"] == 0.0 and r["jacobian"]["max"] == 0.0 and r["hessian"]["max"] == 0
    assert r["residual"]["max"] <= 1e-10
    assert set(r["residual"]["components"]) == set(sys.residual_names)
    c = 0.1  # targets off by c in every entry: Frobenius error c·sqrt(entries) per point
    r = M.evaluate_field(pred, sys, X, U + c, jacobian=J + c, hessian=H + c, cell=1e-3)
    assert r["output"]["mean"] == pytest.approx(c * math.sqrt(3))
    assert r["jacobian"]["mean"] == pytest.approx(c * math.sqrt(6))
    assert r["hessian"]["max"] == pytest.approx(c * math.sqrt(12))
    assert r["output"]["l2"] == pytest.approx(c * math.sqrt(3 * 500 * 1e-3))


def test_evaluate_field_residual_aux_and_skips():
    ac = AllenCahn()
    X = ac.sample_uniform(np.random.default_rng(4), 300)
    r = M.evaluate_field(closed_form_predictor(ac), ac, X, ac.exact(X))
    assert r["residual"]["max"] <= 1e-12 and "l2" not in r["output"]

    class NoExact(AllenCahn):
        has_exact = False

    r = M.evaluate_field(closed_form_predictor(ac), NoExact(), X, ac.exact(X))
    assert "forcing" in r["residual"]["skipped"]


def test_evaluate_field_third_order_residual_kdv():
    """u = cos π(x − t): N[u] = u_t + u u_x + ν u_xxx = π s (1 − cos) + ν π³ s, s = sin π(x−t)."""
    sys = KdV()
    X = sys.sample_uniform(np.random.default_rng(5), 400)
    ph = np.pi * (X[:, 1] - X[:, 0])

    def predict(X_, indices):
        p = np.pi * (X_[:, 1] - X_[:, 0])
        table = {
            (): np.cos(p),
            (0,): np.pi * np.sin(p),
            (1,): -np.pi * np.sin(p),
            (1, 1, 1): np.pi**3 * np.sin(p),
        }
        return {a: table[a][:, None] for a in [(), *indices]}

    r = M.evaluate_field(predict, sys, X, np.cos(ph), cell=0.5)
    res = np.pi * np.sin(ph) * (1 - np.cos(ph)) + sys.nu * np.pi**3 * np.sin(ph)
    assert r["residual"]["rmse"] == pytest.approx(np.sqrt(np.mean(res**2)), rel=1e-12)
    assert r["residual"]["l2"] == pytest.approx(np.sqrt(0.5 * np.sum(res**2)), rel=1e-12)
    assert r["output"]["max"] == 0.0


# ---------------------------------------------------------------------------------------------
# pendulum


def pendulum_exact_predictor(sys, form, offset=0.0):
    """The conservative pendulum's exact flow map: θ from Jacobi functions, θ_t = ω,
    θ_tt = −(g/l) sin θ."""

    def predict(X, indices):
        y0s, inv = np.unique(X[:, 1:], axis=0, return_inverse=True)
        y = np.empty((len(X), 2))
        for k, y0 in enumerate(y0s):
            rows = np.flatnonzero(inv.ravel() == k)
            y[rows] = sys.exact(X[rows, 0], y0[None])[0]
        acc = -(sys.g / sys.l) * np.sin(y[:, 0])
        if form == "positions":
            table = {(): y[:, :1] + offset, (0,): y[:, 1:], (0, 0): acc[:, None]}
        else:
            table = {(): y + offset, (0,): np.stack([y[:, 1], acc], 1)}
        return {a: table[a] for a in [(), *indices]}

    return predict


def pendulum_taylor_predictor(sys, form, field_offset=0.0):
    """ŷ = y0 + t f(y0) (+ ½ a t² for positions): ∂/∂t at t = 0 is exactly f(y0)."""

    def predict(X, indices):
        t, th0, om0 = X[:, 0], X[:, 1], X[:, 2]
        a = -(sys.g / sys.l) * np.sin(th0) - (sys.b / sys.m) * om0
        if form == "positions":
            table = {
                (): (th0 + om0 * t + 0.5 * a * t**2)[:, None],
                (0,): (om0 + a * t + field_offset)[:, None],
                (0, 0): a[:, None],
            }
        else:
            table = {
                (): np.stack([th0 + t * om0, om0 + t * a], 1),
                (0,): np.stack([om0, a], 1) + field_offset,
            }
        return {k: table[k] for k in [(), *indices]}

    return predict


@pytest.mark.parametrize("form", ["positions", "state"])
def test_pendulum_exact_predictor(form):
    sys = Pendulum(b=0.0)
    t = np.linspace(0.0, 2.0, 201)
    y0 = np.array([[0.1, 0.2], [-0.3, 0.1], [0.2, -0.4]])
    states = sys.exact(t, y0)
    r = M.evaluate_pendulum(
        pendulum_exact_predictor(sys, form), sys, t, y0, states, phase_grid=None, form=form
    )
    assert plain(r) and "phase_space" not in r
    for key in ("trajectory", "field", "consistency"):
        assert r[key]["max"] <= 1e-12, key
    assert r["cumulative"]["T"] == pytest.approx(np.arange(21) * 0.1)
    assert max(r["cumulative"]["mae"]) <= 1e-12
    c = 0.05
    r = M.evaluate_pendulum(
        pendulum_exact_predictor(sys, form, offset=c),
        sys,
        t,
        y0,
        states,
        phase_grid=None,
        form=form,
    )
    dt = t[1] - t[0]
    assert r["trajectory"]["per_trajectory"] == pytest.approx([c * math.sqrt(2.0 + dt)] * 3)
    assert r["cumulative"]["mae"] == pytest.approx([c] * 21)
    assert r["field"]["max"] <= 1e-12


@pytest.mark.parametrize("form", ["positions", "state"])
def test_pendulum_phase_space_field_error(form):
    sys, g = Pendulum(), 20
    t = np.linspace(0.0, 1.0, 11)
    y0 = np.array([[0.1, 0.2]])
    states = np.zeros((1, 11, 2))
    r = M.evaluate_pendulum(
        pendulum_taylor_predictor(sys, form), sys, t, y0, states, phase_grid=g, form=form
    )
    assert r["phase_space"]["max"] <= 1e-15 and r["phase_space"]["grid"] == g
    c = 0.01
    r = M.evaluate_pendulum(
        pendulum_taylor_predictor(sys, form, field_offset=c),
        sys,
        t,
        y0,
        states,
        phase_grid=g,
        form=form,
        return_fields=True,
    )
    e = c if form == "positions" else c * math.sqrt(2)  # offset on one or both components
    ps = r["phase_space"]
    assert ps["cell"] == pytest.approx(3 * math.pi / g**2)
    assert ps["mean"] == pytest.approx(e) and ps["std"] == pytest.approx(0, abs=1e-12)
    assert ps["l2"] == pytest.approx(e * math.sqrt(3 * math.pi))  # sqrt(cell · G² e²)
    A, B = np.meshgrid(
        np.linspace(-np.pi / 2, np.pi / 2, g), np.linspace(-1.5, 1.5, g), indexing="ij"
    )
    f = sys.rhs(0.0, np.stack([A, B], -1))
    assert ps["rel_l2"] == pytest.approx(e * g / np.linalg.norm(f))
    assert np.asarray(r["fields"]["predicted"]).shape == (g, g, 2)
    assert np.asarray(r["fields"]["error"]) == pytest.approx(np.full((g, g), e))


@pytest.mark.parametrize("form", ["positions", "state"])
def test_pendulum_consistency_of_free_motion(form):
    """θ̂ = θ0 + ω0 t: r = (g/l) sin θ̂ + (b/m) ω0, ∂r/∂θ0 = (g/l) cos θ̂,
    ∂r/∂ω0 = (g/l) t cos θ̂ + b/m (the same in both forms)."""
    sys = Pendulum()  # damped: both terms matter
    t = np.linspace(0.0, 3.0, 31)
    y0 = np.array([[0.3, -0.5], [-0.2, 1.0]])

    def predict(X, indices):
        tt, th0, om0 = X[:, 0], X[:, 1], X[:, 2]
        one, zero = np.ones_like(tt), np.zeros_like(tt)
        if form == "positions":
            table = {
                (): th0 + om0 * tt,
                (0,): om0,
                (0, 0): zero,
                (1,): one,
                (2,): tt,
                (0, 1): zero,
                (0, 2): one,
                (0, 0, 1): zero,
                (0, 0, 2): zero,
            }
            return {a: table[a][:, None] for a in [(), *indices]}
        table = {
            (): (th0 + om0 * tt, om0),
            (0,): (om0, zero),
            (1,): (one, zero),
            (2,): (tt, one),
            (0, 1): (zero, zero),
            (0, 2): (one, zero),
        }
        return {a: np.stack(table[a], 1) for a in [(), *indices]}

    r = M.evaluate_pendulum(
        predict, sys, t, y0, np.zeros((2, 31, 2)), phase_grid=None, form=form, init_consistency=True
    )
    gl, bm, dt = sys.g / sys.l, sys.b / sys.m, t[1] - t[0]
    th = y0[:, :1] + y0[:, 1:] * t
    res = gl * np.sin(th) + bm * y0[:, 1:]
    d1, d2 = gl * np.cos(th), gl * t * np.cos(th) + bm
    assert r["consistency"]["per_trajectory"] == pytest.approx(
        np.sqrt(np.sum(res**2, 1) * dt), rel=1e-12
    )
    assert r["init_consistency"]["per_trajectory"] == pytest.approx(
        np.sqrt(np.sum(d1**2 + d2**2, 1) * dt), rel=1e-12
    )


# ---------------------------------------------------------------------------------------------
# writing


def test_write_metrics_round_trip_and_atomic(tmp_path):
    path = tmp_path / "out" / "metrics.json"
    data = {
        "b": {"x": np.float64(1.5), "n": np.int64(3), "arr": np.arange(3.0)},
        "a": [np.nan, 2.0],
        "c": {"inf": np.inf},
    }
    assert M.write_metrics(path, data) == path
    back = json.loads(path.read_text())
    assert back["b"] == {"x": 1.5, "n": 3, "arr": [0.0, 1.0, 2.0]}
    assert back["a"] == [None, 2.0] and back["c"]["inf"] is None
    assert back["non_finite"] == ["a/0", "c/inf"]
    assert list(back) == sorted(back)
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]
    # a failed write leaves the previous file and no temporary behind
    with pytest.raises(TypeError):
        M.write_metrics(path, {"bad": object()})
    assert json.loads(path.read_text()) == back
    M.write_metrics(path, {"ok": 1.0})
    assert json.loads(path.read_text()) == {"ok": 1.0}
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]
