"""Problems and loss terms: targets wired as the systems define them, checked with exact
solutions written in torch (every term vanishes on the true solution), the Hessian
projection's O(σ) finite-difference error, and one-line errors for impossible objectives."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from derlhybrid.data.generate import GenerateRequest, generate
from derlhybrid.learn.derivatives import Derivatives
from derlhybrid.learn.losses import MODES, TERMS, StepContext, build_objective
from derlhybrid.learn.problems import load_problem
from derlhybrid.systems import Kovasznay


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("learn-data")
    out = {}
    for system, kw in {
        "pendulum": dict(n_trajectories=10, n_times=51, t_end=2.0, seed=1),
        "allen-cahn": dict(n_points=300, n_boundary=11, seed=1),
        "allen-cahn-exp": dict(n_points=100, n_parameter_sets=5, n_boundary=11, seed=1),
        "kovasznay": dict(n_points=300, n_boundary=11, seed=1),
    }.items():
        out[system] = generate(
            GenerateRequest(system=system, out=str(d / f"{system}.h5"), **kw), progress=False
        )
    return out


class AllenExact(torch.nn.Module):  # u = sin πx sin πy (× e^{−λ(x+0.7)} for the family)
    def forward(self, X):
        u = torch.sin(math.pi * X[:, 0]) * torch.sin(math.pi * X[:, 1])
        if X.shape[1] == 3:
            u = u * torch.exp(-X[:, 2] * (X[:, 0] + 0.7))
        return u[:, None]


class KovasznayExact(torch.nn.Module):
    def forward(self, X):
        lam, tp = Kovasznay().lam, 2 * math.pi
        e = torch.exp(lam * X[:, 0])
        return torch.stack(
            [
                1 - e * torch.cos(tp * X[:, 1]),
                lam / tp * e * torch.sin(tp * X[:, 1]),
                0.5 * (1 - torch.exp(2 * lam * X[:, 0])),
            ],
            -1,
        )


def _parts(problem, model, mode, **kw):
    obj = build_objective(problem, mode, **kw)
    ctx = StepContext(model, problem, "autograd", torch.Generator().manual_seed(0))
    batches = {"interior": problem.sets["train"]}
    for name in ("boundary", "initial"):
        if name in problem.sets:
            batches[name] = problem.sets[name]
    return obj(batches, ctx)[1]


@pytest.mark.parametrize("system", ["allen-cahn", "allen-cahn-exp"])
def test_every_allen_cahn_term_vanishes_on_the_exact_solution(files, system):
    problem = load_problem(files[system])
    model = AllenExact()
    for mode in ("outl+pinn", "der+hesl"):
        parts = _parts(problem, model, mode)
        assert all(v.item() < 1e-24 for v in parts.values()), (mode, parts)
    parts = _parts(problem, model, "sob+hesl", hessian_projection={"method": "exact"})
    assert parts["hessian_projection"].item() < 1e-12


def test_kovasznay_terms_vanish_on_the_exact_flow(files):
    problem = load_problem(files["kovasznay"])
    parts = _parts(problem, KovasznayExact(), "outl+pinn")
    assert parts["residual"].item() < 1e-24 and parts["output"].item() < 1e-24
    parts = _parts(problem, KovasznayExact(), "der+hesl")
    assert parts["jacobian"].item() < 1e-24 and parts["hessian"].item() < 1e-24


# Off the solution: the exact fields plus EPS * g, g(x, y) = x^2 y + x / 2, whose
# derivatives are written out by hand (g_x = 2xy + 1/2, g_y = x^2, g_xx = 2y, g_xy = 2x,
# g_yy = 0), so every term has a closed-form value that no code of the package computes.
EPS = 0.1


def _g(X):
    return X[:, 0] ** 2 * X[:, 1] + 0.5 * X[:, 0]


def _g_parts(X: np.ndarray):
    x, y = X[:, 0], X[:, 1]
    return _g(X), (2 * x * y + 0.5, x**2), (2 * y, 2 * x, 0 * x)  # g, (g_x, g_y), (xx, xy, yy)


def _u_allen(X):
    return np.sin(math.pi * X[:, 0]) * np.sin(math.pi * X[:, 1])


class AllenOff(AllenExact):
    def forward(self, X):
        return super().forward(X) + EPS * _g(X)[:, None]


class KovasznayOff(KovasznayExact):  # (u, v, p) + EPS * (g, 2 g, 0)
    def forward(self, X):
        g = _g(X)
        return super().forward(X) + EPS * torch.stack([g, 2 * g, 0 * g], -1)


def test_allen_cahn_terms_off_the_solution_have_their_closed_form_values(files):
    """Every term of the DERL, HESL and PINN modes at a field that is not the solution:
    the means over every entry (PyTorch's MSELoss) of the hand-computed errors."""
    problem = load_problem(files["allen-cahn"])
    X = problem.sets["train"].X.numpy()
    g, (gx, gy), (gxx, gxy, gyy) = _g_parts(X)
    expected = {
        "output": EPS**2 * np.mean(g**2),
        "jacobian": EPS**2 * np.mean(gx**2 + gy**2) / 2,  # (N, 1, 2) entries
        "hessian": EPS**2 * np.mean(gxx**2 + 2 * gxy**2 + gyy**2) / 4,  # (N, 1, 2, 2)
        # λΔû − û + û³ − f with λΔu − u + u³ = f and û = u + εg:
        "residual": np.mean(
            (0.01 * EPS * (gxx + gyy) - EPS * g + (_u_allen(X) + EPS * g) ** 3 - _u_allen(X) ** 3)
            ** 2
        ),
        "boundary": EPS**2 * np.mean(_g(problem.sets["boundary"].X.numpy()) ** 2),  # u = 0 there
    }
    got = {**_parts(problem, AllenOff(), "der+hesl"), **_parts(problem, AllenOff(), "outl+pinn")}
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert value > 1e-4, name  # far from zero: the check cannot pass by vanishing
        assert got[name].item() == pytest.approx(value, rel=1e-9), name


def test_kovasznay_jacobian_and_hessian_off_the_flow_average_every_entry(files):
    """Three outputs, two inputs: the Jacobian term is the mean over (N, 3, 2) entries and
    the Hessian term over (N, 3, 2, 2), here with the errors (g, 2g, 0) of the outputs."""
    problem = load_problem(files["kovasznay"])
    X = problem.sets["train"].X.numpy()
    _, (gx, gy), (gxx, gxy, gyy) = _g_parts(X)
    got = _parts(problem, KovasznayOff(), "der+hesl")
    jac = EPS**2 * (1 + 4 + 0) * np.mean(gx**2 + gy**2) / 6
    hess = EPS**2 * (1 + 4 + 0) * np.mean(gxx**2 + 2 * gxy**2 + gyy**2) / 12
    assert got["jacobian"].item() == pytest.approx(jac, rel=1e-9)
    assert got["hessian"].item() == pytest.approx(hess, rel=1e-9)


def test_hessian_projection_finite_difference_error_is_first_order(files):
    # the paper's (∇û(x + σv) − ∇û(x))/σ differs from Hv by O(σ): measured slope 1
    problem = load_problem(files["allen-cahn"])
    errs = []
    for sigma in (1e-2, 5e-3, 2.5e-3):
        p = _parts(problem, AllenExact(), "sob+hesl", hessian_projection={"sigma": sigma})
        errs.append(p["hessian_projection"].item())
    slope = np.polyfit(np.log([1e-2, 5e-3, 2.5e-3]), np.log(errs), 1)[0]
    assert abs(slope - 1) < 0.1, (errs, slope)


def test_pendulum_flow_map_targets_and_residual(files):
    problem = load_problem(files["pendulum"])
    assert problem.inputs == ("t", "theta0", "omega0") and problem.outputs == ("theta",)
    train = problem.sets["train"]
    tg = train.targets
    # rows at t = 0 carry their own initial state
    t0 = train.X[:, 0] == 0
    torch.testing.assert_close(tg["output"][t0], train.X[t0, 1:2])
    torch.testing.assert_close(tg["jacobian"][t0, :, 0], train.X[t0, 2:3])
    # the true trajectory solves q̈ + (g/l) sin q + (b/m) q̇ = 0: residual of the targets
    d = Derivatives(
        {
            (): tg["output"],
            (0,): tg["jacobian"][:, :, 0],
            (0, 0): tg["hessian"][:, :, 0, 0],
        }
    )
    assert problem.residual(d, train.X, {}).abs().max().item() < 1e-13
    # and the initial points of a batch are (0, θ0, ω0) → (θ0, ω0)
    ini = problem.initial_points(train.take(slice(0, 7)))
    assert (ini.X[:, 0] == 0).all()
    torch.testing.assert_close(ini.X[:, 1:], train.X[:7, 1:])
    # the initial term: θ̂(0) − θ0 and ∂θ̂/∂t(0) − ω0, averaged over both columns
    from derlhybrid.learn.losses import InitialTerm

    d0 = Derivatives({(): ini.X[:, 1:2] + 0.1, (0,): ini.X[:, 2:3] - 0.3})
    got = InitialTerm()(d0, ini, StepContext(None, problem)).item()
    assert got == pytest.approx((0.1**2 + 0.3**2) / 2, rel=1e-12)


def test_modes_are_rows_of_one_table(files):
    problem = load_problem(files["allen-cahn"])
    expect = {
        "outl": {"output"},
        "derl": {"jacobian"},
        "sob": {"output", "jacobian"},
        "pinn": {"residual"},
        "outl+pinn": {"output", "residual"},
        "hesl": {"hessian"},
        "der+hesl": {"jacobian", "hessian"},
        "sob+hesl": {"output", "jacobian", "hessian_projection"},
    }
    assert set(MODES) == set(expect)
    weights = {"sys": 2.0, "pde": 3.0, "bc": 5.0}
    for mode, names in expect.items():
        obj = build_objective(problem, mode, weights)
        got = {t.name: w for t, w in obj.terms}
        assert set(got) == names | {"boundary"}
        assert got["boundary"] == 5.0
        assert all(got[n] == (3.0 if n == "residual" else 2.0) for n in names)
    assert set(TERMS) >= {"initial", "boundary", "periodic"}
    # explicit composition
    obj = build_objective(problem, terms=[{"term": "hessian", "weight": 0.5}])
    assert [(t.name, w) for t, w in obj.terms] == [("hessian", 0.5)]


def test_objective_errors_are_one_line(files):
    pend = load_problem(files["pendulum"], form="state")
    with pytest.raises(ValueError, match="needs 'hessian' targets"):
        build_objective(pend, "hesl")
    ac = load_problem(files["allen-cahn"])
    with pytest.raises(ValueError, match="unknown mode 'dERL2'"):
        build_objective(ac, "dERL2")
    with pytest.raises(ValueError, match="unknown weight 'pd'"):
        build_objective(ac, "pinn", {"pd": 1.0})
    with pytest.raises(ValueError, match="unknown loss term 'nope'"):
        build_objective(ac, terms=[{"term": "nope"}])
    with pytest.raises(ValueError, match="unknown option"):
        build_objective(ac, terms=[{"term": "hessian_projection", "sigmaa": 1}])
    # a term on points the problem lacks is refused, not skipped at every step
    assert "periodic" not in ac.sets and ac.periodic is None
    with pytest.raises(ValueError, match="reads the 'periodic' points, which this problem"):
        build_objective(ac, terms=[{"term": "output"}, {"term": "periodic"}])


def test_periodic_term_measures_the_mismatch():
    from derlhybrid.learn.losses import PeriodicTerm
    from derlhybrid.learn.problems import PointSet, Problem
    from derlhybrid.systems import KdV

    problem = Problem(KdV(), ("t", "x"), ("u",), (1,), {}, periodic_derivatives=(1,))

    class F(torch.nn.Module):  # u = cos(πx) + x t: u(−1) − u(1) = −2t, u_x mismatch 0
        def forward(self, X):
            return (torch.cos(math.pi * X[:, 1]) + X[:, 0] * X[:, 1])[:, None]

    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    X = torch.cat(
        [torch.stack([t, -torch.ones_like(t)], 1), torch.stack([t, torch.ones_like(t)], 1)]
    )
    from derlhybrid.learn.derivatives import input_derivatives

    d = input_derivatives(F(), X, [(1,)], engine="autograd")
    ctx = StepContext(F(), problem, "autograd")
    got = PeriodicTerm()(d, PointSet(X), ctx).item()
    # columns (u, u_x): mean over both of [(−2t)², 0]
    assert got == pytest.approx((4 * t**2).mean().item() / 2, rel=1e-12)


def test_euler_residual_equals_the_divergence_of_its_fluxes():
    # independent check: build the conservative fluxes of a smooth (ρ, m, p) in torch and
    # take their divergence with autograd; compare with the system's residual
    from derlhybrid.learn.derivatives import input_derivatives
    from derlhybrid.systems import get_system

    system = get_system("euler-ball")

    class Field(torch.nn.Module):
        def forward(self, X):
            t, x, y, z = X.T
            rho = 1.5 - x**2 - y**2 - z**2 + 0.1 * torch.sin(t + x)
            m = torch.stack([rho * (y - 2 * t), rho * torch.cos(x * z), rho * (0.5 + t * y)], 1)
            p = torch.exp(-t) * x * y + z**2
            return torch.cat([rho[:, None], m, p[:, None]], 1)

    X = torch.rand(40, 4, dtype=torch.float64) * 0.5
    d = input_derivatives(Field(), X, [(0,), (1,), (2,), (3,)], engine="autograd")
    names = {"t": 0, "x": 1, "y": 2, "z": 3}
    res = system.pde_residual(lambda *n: d[tuple(names[k] for k in n)], X, {}, torch)

    Xg = X.clone().requires_grad_(True)
    out = Field()(Xg)
    rho, m, p = out[:, 0], out[:, 1:4], out[:, 4]

    def div(cols):  # Σ_i ∂_i cols[i] (spatial inputs 1..3)
        return sum(
            torch.autograd.grad(c.sum(), Xg, create_graph=True)[0][:, 1 + i]
            for i, c in enumerate(cols)
        )

    def dt(c):
        return torch.autograd.grad(c.sum(), Xg, create_graph=True)[0][:, 0]

    ref = [dt(rho) + div([m[:, i] for i in range(3)])]
    for j in range(3):
        flux = [m[:, i] * m[:, j] / rho + (p if i == j else 0 * p) for i in range(3)]
        ref.append(dt(m[:, j]) + div(flux))
    ref.append(div([m[:, i] / rho for i in range(3)]))
    torch.testing.assert_close(res, torch.stack(ref, -1).detach(), rtol=1e-12, atol=1e-12)
