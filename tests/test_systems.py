"""Systems: validation, and their ground truth checked against independent computations."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from derlhybrid.systems import (
    SYSTEMS,
    AllenCahn,
    AllenCahnExp,
    AllenCahnMulti,
    Continuity,
    EulerBall,
    FieldSystem,
    Kovasznay,
    ODESystem,
    Pendulum,
    get_system,
    parse_params,
)

# b, g, l, m
PENDULUM_PARAM_RANGES = [(0.0, 2.0), (1.0, 20.0), (0.5, 20.0), (0.2, 5.0)]

CLI_NAMES = {
    "pendulum",
    "continuity",
    "kdv",
    "allen-cahn",
    "allen-cahn-exp",
    "allen-cahn-multi",
    "kovasznay",
    "euler-ball",
}


def test_registry_has_the_cli_names():
    assert CLI_NAMES <= set(SYSTEMS)


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("pendulum", {"b": "-1"}, "outside its range"),
        ("pendulum", {"l": "0"}, "outside its range"),
        ("pendulum", {"q": "1"}, "unknown parameter 'q'"),
        ("pendulum", {"b": "abc"}, "must be a number"),
        ("kdv", {"nu": "nan"}, "outside its range"),
        ("allen-cahn-exp", {"lam_low": "2", "lam_high": "1"}, "lam_low must be < lam_high"),
        ("heat", {}, "unknown system 'heat'"),
    ],
)
def test_bad_parameters_are_one_line_errors(name, params, message):
    with pytest.raises(ValueError, match=message) as info:
        get_system(name, params)
    assert "\n" not in str(info.value)


def test_parse_params():
    assert parse_params(["b=0", " g = 9.8 "]) == {"b": "0", "g": "9.8"}
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_params(["b"])


def test_conservative_pendulum_is_b0():
    sys = get_system("pendulum", parse_params(["b=0"]))
    assert sys.b == 0.0 and sys.params() == {"b": 0.0, "g": 9.81, "l": 10.0, "m": 1.0}


def _fd_jacobian(fn, X, h=1e-5):
    """Central differences of fn (N, n_out) w.r.t. each input column."""
    cols = []
    for k in range(X.shape[1]):
        e = np.zeros(X.shape[1])
        e[k] = h
        cols.append((fn(X + e) - fn(X - e)) / (2 * h))
    return np.stack(cols, axis=-1)


FIELD_SYSTEMS = [AllenCahn(), AllenCahnExp(), AllenCahnMulti(), Kovasznay(), Continuity()]


@pytest.mark.parametrize("sys", FIELD_SYSTEMS, ids=lambda s: s.name)
def test_jacobian_and_hessian_match_finite_differences(sys: FieldSystem):
    rng = np.random.default_rng(0)
    X = sys.sample_uniform(rng, 200)
    if sys.name == "continuity":
        X[:, 0] *= 0.3  # keep times moderate
    n_sp = 2 if sys.name.startswith("allen") else X.shape[1]  # Allen–Cahn: (x, y) only
    jac = sys.jacobian(X)
    fd = _fd_jacobian(sys.exact, X)
    np.testing.assert_allclose(jac, fd[..., : jac.shape[-1]], atol=2e-7 * (1 + np.abs(fd).max()))
    if sys.name != "continuity":
        hes = sys.hessian(X)
        fdh = _fd_jacobian(lambda Z: sys.jacobian(Z), X)[..., :n_sp]
        np.testing.assert_allclose(hes, fdh, atol=2e-6 * (1 + np.abs(fdh).max()))
        np.testing.assert_allclose(hes, np.swapaxes(hes, -1, -2), atol=1e-12)


def test_allen_cahn_manufactured_forcing():
    sys = AllenCahn()
    X = sys.sample_uniform(np.random.default_rng(1), 100)
    u = sys.exact(X)[:, 0]
    # paper.md §4.1: f = −2λπ² u + u³ − u
    np.testing.assert_allclose(sys.forcing(X), -2 * sys.lam * np.pi**2 * u + u**3 - u, atol=1e-13)
    h = sys.hessian(X)
    res = sys.residual(u, h[:, 0, 0, 0], h[:, 0, 1, 1], sys.forcing(X), sys.lam)
    assert np.abs(res).max() < 1e-13


def test_allen_cahn_boundary_values_vanish():
    for sys in (AllenCahn(), AllenCahnExp(), AllenCahnMulti()):
        rng = np.random.default_rng(2)
        X = sys.sample_uniform(rng, 50)
        for col, val in [(0, -1.0), (0, 1.0), (1, -1.0), (1, 1.0)]:
            Y = X.copy()
            Y[:, col] = val
            assert np.abs(sys.exact(Y)).max() < 1e-15


def test_kovasznay_solves_navier_stokes():
    sys = Kovasznay()
    X = sys.sample_uniform(np.random.default_rng(3), 500)
    (u, v, _), J, H = sys.exact(X).T, sys.jacobian(X), sys.hessian(X)
    nu = 1 / sys.Re
    for comp in (0, 1):
        lap = H[:, comp, 0, 0] + H[:, comp, 1, 1]
        mom = u * J[:, comp, 0] + v * J[:, comp, 1] + J[:, 2, comp] - nu * lap
        assert np.abs(mom).max() < 1e-12
    assert np.abs(J[:, 0, 0] + J[:, 1, 1]).max() < 1e-13  # divergence-free
    assert sys.lam == pytest.approx(25 - np.sqrt(625 + 4 * np.pi**2))


def test_continuity_exact_solves_the_pde_and_conserves_mass():
    sys = Continuity()
    X = sys.sample_uniform(np.random.default_rng(4), 400)
    J = sys.jacobian(X)[:, 0]
    res = sys.residual(J[:, 0], J[:, 1], J[:, 2], X[:, 1], X[:, 2])
    assert np.abs(res).max() < 1e-12
    # mass on a fine grid at t = 0 and t = 2.5 equals 4πw up to the truncated tails
    g = np.linspace(-1.5, 1.5, 601)
    xx, yy = np.meshgrid(g, g, indexing="ij")
    for t in (0.0, 2.5):
        pts = np.stack([np.full(xx.size, t), xx.ravel(), yy.ravel()], 1)
        mass = sys.exact(pts).sum() * (g[1] - g[0]) ** 2
        assert mass == pytest.approx(sys.mass0(), rel=1e-6)


def test_pendulum_field_and_jacobian():
    sys = Pendulum()
    y = sys.sample_initial_states(np.random.default_rng(5), 64)
    f = sys.rhs(0.0, y)
    fk = super(Pendulum, sys).rhs(0.0, y)  # the compiled kernel, state by state
    np.testing.assert_array_equal(f, fk)
    fd = _fd_jacobian(lambda Y: sys.rhs(0.0, Y), y)
    np.testing.assert_allclose(sys.jacobian(y), fd, atol=1e-9)


# the package's own (test modules register systems of their own, some without a field)
_ODE_SYSTEMS = sorted(
    n
    for n, c in SYSTEMS.items()
    if issubclass(c, ODESystem) and c.__module__.startswith("derlhybrid.")
)


@pytest.mark.parametrize("name", _ODE_SYSTEMS)
@pytest.mark.parametrize("variant", ["defaults", "parameters drawn"])
def test_every_form_of_an_ode_field_is_its_vector_field(name, variant):
    """The vector field is written once as an array function (``vector_field``, any array
    namespace); every other form a system carries — the Numba kernel the integrator compiles,
    the lane kernel, ``rhs``, the second-order ``residual`` a PINN reads, the ``jacobian`` —
    must be that same field: checked here, for every registered ODE system, against it in
    NumPy and against torch's autograd of its torch form."""
    torch = pytest.importorskip("torch")
    cls = SYSTEMS[name]
    rng = np.random.default_rng(7)
    if variant == "defaults":
        sys = cls()
    else:
        sys = cls(
            **{p.name: float(p.default) * rng.uniform(0.5, 1.5) for p in cls.parameter_specs()}
        )
    y = 3.0 * rng.normal(size=(200, sys.n_state))
    t = 0.3
    f = sys.vector_field(t, y)
    assert f.shape == y.shape
    scale = 1.0 + np.abs(f)
    # the compiled kernel, state by state (the integrator's form)
    fk = ODESystem.rhs(sys, t, y)
    np.testing.assert_array_less(np.abs(fk - f) / scale, 1e-15)
    np.testing.assert_array_less(np.abs(sys.rhs(t, y) - f) / scale, 1e-15)
    if cls.rhs_lanes_kernel is not None:
        p = np.repeat(sys.param_vector()[:, None], len(y), 1)
        dy = np.empty((sys.n_state, len(y)))
        cls.rhs_lanes_kernel(np.full(len(y), t), np.ascontiguousarray(y.T), p, dy)
        np.testing.assert_array_less(np.abs(dy.T - f) / scale, 1e-15)
    yt = torch.tensor(y, dtype=torch.float64)
    ft = sys.vector_field(t, yt, xp=torch)
    np.testing.assert_array_less(np.abs(ft.numpy() - f) / scale, 1e-15)
    if hasattr(sys, "jacobian"):
        jac = torch.func.vmap(torch.func.jacrev(lambda v: sys.vector_field(t, v, xp=torch)))(yt)
        np.testing.assert_allclose(sys.jacobian(y), jac.numpy(), rtol=1e-14, atol=1e-14)
    if cls.second_order:  # state (q, v), q' = v: residual(q, q', q'') of the true motion is 0
        n = sys.n_state // 2
        q, v, acc = y[:, :n], y[:, n:], f[:, n:]
        np.testing.assert_array_equal(f[:, :n], v)
        for xp_q, xp_v, xp_a in ((q, v, acc), tuple(torch.tensor(a) for a in (q, v, acc))):
            res = np.asarray(sys.residual(xp_q.squeeze(-1), xp_v.squeeze(-1), xp_a.squeeze(-1)))
            np.testing.assert_array_less(np.abs(res), 1e-14 * scale[:, n:].squeeze(-1))
        # and it is this field's residual, not another: a wrong acceleration shows
        wrong = sys.residual(q.squeeze(-1), v.squeeze(-1), acc.squeeze(-1) + 1e-6)
        np.testing.assert_allclose(wrong, 1e-6, rtol=1e-6)


def test_pendulum_lane_kernel_is_the_scalar_kernel_to_an_ulp():
    """``rhs_lanes_kernel`` (vectorised sin, small-angle variant when every angle of a call
    is within ±0.78, FMA) against ``rhs_kernel`` (libm sin), point by point, on calls of
    several widths; wide angles make the general branch run. Each value must be the scalar
    kernel's arithmetic with a sin within 1 ulp of libm's, up to the contraction of one
    multiply-add (either one) into an FMA."""
    rng = np.random.default_rng(11)
    scalar, lanes = Pendulum.rhs_kernel, Pendulum.rhs_lanes_kernel
    n_same_sin = n_all = 0
    for width, angle in [(1, 0.5), (16, 0.78), (16, 4.0), (128, 0.7), (37, 30.0), (200, 1e3)]:
        for _ in range(10):
            y = np.stack([rng.uniform(-angle, angle, width), rng.uniform(-3, 3, width)])
            p = np.stack([rng.uniform(lo, hi, width) for lo, hi in PENDULUM_PARAM_RANGES])
            t = rng.uniform(0, 10, width)
            dy = np.empty_like(y)
            lanes(t, y, p, dy)
            ref = np.empty(2)
            for c in range(width):
                scalar(t[c], y[:, c].copy(), p[:, c].copy(), ref)
                assert dy[0, c] == ref[0]
                s = math.sin(y[0, c])
                a, b = -(p[1, c] / p[2, c]), (p[0, c] / p[3, c]) * y[1, c]
                assert a * s - b == ref[1]
                bm, om = p[0, c] / p[3, c], y[1, c]
                ok = []
                for v in (np.nextafter(s, -np.inf), s, np.nextafter(s, np.inf)):
                    plain = a * v - b
                    fma_1 = float(Fraction(a) * Fraction(v) - Fraction(b))  # a * v exact
                    fma_2 = float(Fraction(a * v) - Fraction(bm) * Fraction(om))  # (b/m) ω exact
                    ok.append(dy[1, c] in (plain, fma_1, fma_2))
                assert any(ok), (y[:, c], p[:, c], dy[1, c], ref[1])
                n_same_sin += ok[1]
                n_all += 1
    assert n_same_sin > 0.8 * n_all  # mostly libm's sin, bit for bit


def test_pendulum_sampling_is_the_papers():
    rng = np.random.default_rng(30)
    y0 = Pendulum().sample_initial_states(rng, 50)
    ref = np.random.default_rng(30)
    theta = ref.uniform(-np.pi / 4, np.pi / 4, 50)  # θ0 vector first, then ω0
    omega = ref.uniform(-1.5, 1.5, 50)
    np.testing.assert_array_equal(y0, np.stack([theta, omega], 1))


def test_conservative_pendulum_exact_solution_matches_dop853():
    sys = Pendulum(b=0.0)
    y0 = sys.sample_initial_states(np.random.default_rng(6), 5)
    t = np.linspace(0, 10, 101)
    exact = sys.exact(t, y0)
    for i in range(len(y0)):
        ref = solve_ivp(
            lambda s, y: sys.rhs(s, y),
            (0, 10),
            y0[i],
            method="DOP853",
            t_eval=t,
            rtol=1e-13,
            atol=1e-13,
        )
        np.testing.assert_allclose(exact[i], ref.y.T, atol=1e-10)
    e = sys.energy(exact)
    assert np.ptp(e, axis=1).max() < 1e-12


def test_euler_ball_samplers_and_initial_data():
    sys = EulerBall()
    rng = np.random.default_rng(7)
    pts = sys.sample_interior(rng, 20000)
    r = np.linalg.norm(pts[:, 1:], axis=1)
    assert r.max() <= 1 and (0 <= pts[:, 0]).all() and (pts[:, 0] <= 0.5).all()
    assert np.mean(r <= 0.5) == pytest.approx(1 / 8, abs=0.01)  # uniform in volume
    sph = sys.sample_boundary(rng, 100)
    np.testing.assert_allclose(np.linalg.norm(sph[:, 1:], axis=1), 1.0)
    q = sys.initial_state(np.array([[0.0, 0.0, 0.0], [0.5, 0.0, 0.0]]))
    np.testing.assert_allclose(q[0], [1.5, -3.0, -1.5, 0.75])
    np.testing.assert_allclose(q[1], [1.25, -2.5, -0.625, 0.625])


def test_points_files_for_exact_systems(tmp_path):
    from derlhybrid.data import open_dataset
    from derlhybrid.data.generate import GenerateRequest, generate

    for name in ("allen-cahn", "allen-cahn-exp", "allen-cahn-multi", "kovasznay"):
        out = generate(
            GenerateRequest(
                system=name,
                out=str(tmp_path / f"{name}.h5"),
                n_points=64,
                n_parameter_sets=5,
                seed=2,
            ),
            progress=False,
        )
        sys = get_system(name)
        with open_dataset(out, layout="points") as f:
            X = f["points/inputs"][...]
            np.testing.assert_array_equal(f["points/outputs"][...], sys.exact(X))
            np.testing.assert_array_equal(f["points/jacobian"][...], sys.jacobian(X))
            n = X.shape[0]
            idx = np.concatenate([f[f"splits/{k}"][...] for k in ("train", "val", "test")])
            assert sorted(idx) == list(range(n))
            if sys.parameter_inputs:
                assert n == 64 * 5
                # splits are by parameter set: no parameter value in two splits
                cols = [sys.inputs.index(c) for c in sys.parameter_inputs]
                seen = [
                    {tuple(r) for r in X[f[f"splits/{k}"][...]][:, cols]}
                    for k in ("train", "val", "test")
                ]
                assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
            B, UB = f["boundary/inputs"][...], f["boundary/outputs"][...]
            np.testing.assert_array_equal(UB, sys.exact(B))
            if name.startswith("allen"):
                assert np.abs(UB).max() < 1e-15
