"""The Neural-Conservation-Law model of Euler in a ball (paper.md §9): softplus(β)
derivatives, the field and its derivatives against torch autograd, exact mass
conservation, the residuals on an exact solution, field labels, and a teacher → student
distillation through derivatives."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import jacrev, vmap

from derlhybrid.learn import TERMS, BallNCL, input_derivatives, ncl_derivatives, train
from derlhybrid.learn.config import LBFGSConfig
from derlhybrid.learn.losses import StepContext
from derlhybrid.learn.models import ACTIVATIONS, MLP, MLPConfig
from derlhybrid.learn.ncl import (
    NCLMomentumTerm,
    density_residual,
    field_derivatives,
    mass_residual,
    momentum_residual,
)
from derlhybrid.learn.problems import PointSet
from derlhybrid.transfer.euler_ball import (
    STUDENT_MODES,
    label_teacher,
    metric_points,
    ncl_metrics,
    student_config,
    student_problem,
    student_terms,
    teacher_config,
    teacher_problem,
    teacher_problem_from_file,
    teacher_terms,
)
from derlhybrid.transfer.labels import read_labels

F64 = torch.float64


def _ncl(width=16, depth=2, beta=25.0, seed=0):
    torch.manual_seed(seed)
    return BallNCL(width=width, depth=depth, beta=beta, dtype="float64")


def _points(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 4, generator=g, dtype=F64) * 2 - 1
    X[:, 0] = X[:, 0].abs() * 0.5
    return X


def _reference_field(net):
    """v(z) = (Σ_j ∂_j A_ij, p) with A = J_b − J_bᵀ, by torch.func alone."""

    def b(z):
        return net(z[None])[0]

    def A(z):
        J = jacrev(b)(z)[:4]
        return J - J.T

    def v(z):
        dA = jacrev(A)(z)  # dA[i, j, k] = ∂A_ij/∂z_k
        return torch.cat([torch.einsum("ijj->i", dA), b(z)[4:]])

    return v


# -- softplus(β) ---------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [1.0, 25.0])
def test_softplus_beta_derivatives_to_order_6_match_autograd(beta):
    act = ACTIVATIONS["softplus"](beta)
    z = torch.linspace(-1.2, 1.2, 41, dtype=F64).requires_grad_(True)
    got = act.derivatives(z, 6)
    cur = act(z)
    assert torch.allclose(got[0], cur, atol=1e-15, rtol=0)
    for k in range(1, 7):
        (cur,) = torch.autograd.grad(cur.sum(), z, create_graph=True)
        scale = max(1.0, cur.abs().max().item())
        assert (got[k] - cur).abs().max().item() <= 1e-11 * scale, k
    # closed forms: σ' = s, σ'' = β s(1 − s), σ''' = β² s(1 − s)(1 − 2s), s = sigmoid(βz)
    s = torch.sigmoid(beta * z)
    assert torch.allclose(got[1], s, atol=1e-15)
    assert torch.allclose(got[2], beta * s * (1 - s), atol=1e-13)
    assert torch.allclose(got[3], beta**2 * s * (1 - s) * (1 - 2 * s), atol=1e-11)


def test_softplus_beta_mlp_forward_engine_equals_autograd_order_4():
    torch.manual_seed(3)
    mlp = MLP(MLPConfig(4, 5, width=8, depth=2, activation="softplus", dtype="float64", beta=25))
    X = _points(9, seed=1)
    idx = [(0, 1, 2, 3), (2, 2, 2, 2), (0, 0, 3, 3)]
    fwd = input_derivatives(mlp, X, idx, engine="forward")
    ref = input_derivatives(mlp, X, idx, engine="autograd")
    for k in ref.keys():
        scale = max(1.0, ref[k].abs().max().item())
        assert (fwd[k] - ref[k]).abs().max().item() <= 1e-10 * scale, k


def test_beta_config_validated_and_omitted_at_default():
    assert "beta" not in MLPConfig(2, 1, activation="softplus").to_dict()
    assert MLPConfig(2, 1, activation="softplus", beta=25).to_dict()["beta"] == 25
    with pytest.raises(ValueError, match="beta"):
        MLPConfig(2, 1, activation="tanh", beta=2.0)
    with pytest.raises(ValueError, match="beta"):
        MLPConfig(2, 1, activation="softplus", beta=-1.0)


# -- the field -----------------------------------------------------------------------------


def test_field_is_divergence_free_in_space_time():
    model = _ncl(width=16, depth=2)
    X = _points(12, seed=2)
    J = vmap(jacrev(_reference_field(model.net)))(X)  # (12, 5, 4), by autograd only
    div = J[:, 0, 0] + J[:, 1, 1] + J[:, 2, 2] + J[:, 3, 3]
    scale = J[:, :4].abs().max().item()
    assert scale > 0.1  # a genuine, non-trivial field
    assert div.abs().max().item() < 1e-12 * max(1.0, scale)
    # and by the engine's own path
    d = ncl_derivatives(model, X, (1,))
    assert mass_residual(d).abs().max().item() < 1e-12 * max(1.0, scale)


def test_ncl_derivatives_match_autograd_to_1e10():
    model = _ncl(width=16, depth=2)
    X = _points(6, seed=4)
    v = _reference_field(model.net)
    ref = {"value": vmap(v)(X), "jac": vmap(jacrev(v))(X), "hess": vmap(jacrev(jacrev(v)))(X)}
    d = ncl_derivatives(model, X, (0, 1, 2))
    got = {"value": d.value, "jac": d.jacobian(range(4)), "hess": d.hessian(range(4))}
    for k in ref:
        scale = max(1.0, ref[k].abs().max().item())
        assert (got[k] - ref[k]).abs().max().item() <= 1e-10 * scale, k
    assert d.value.shape == (6, 5) and d.hessian(range(4)).shape == (6, 5, 4, 4)
    # BallNCL answers input_derivatives (the labelling/metrics path) with the same numbers,
    # and its forward is the field's value
    e = input_derivatives(model, X, [(1,), (0, 3)])
    assert torch.allclose(e[(0, 3)], d[(0, 3)], atol=1e-13, rtol=0)
    assert torch.allclose(model(X), d.value, atol=1e-14, rtol=0)


# -- residuals -----------------------------------------------------------------------------


class RotatingColumn(nn.Module):
    """An exact steady solution: ρ = 1 + r², u = (−y, x, 0), p = s·(r²/2 + r⁴/4),
    r² = x² + y² (s = 1: (u·∇)u = −(x, y, 0) = −∇p/ρ; ρ is constant along streamlines)."""

    def __init__(self, s=1.0):
        super().__init__()
        self.s = s

    def forward(self, X):
        x, y = X[:, 1], X[:, 2]
        r2 = x * x + y * y
        rho = 1 + r2 + 0 * X[:, 0]
        m = torch.stack([-y * rho, x * rho, 0 * x], -1)
        p = self.s * (r2 / 2 + r2 * r2 / 4)
        return torch.cat([rho[:, None], m, p[:, None]], -1)


def test_momentum_and_density_residuals_vanish_on_an_exact_solution():
    X = _points(50, seed=5)
    first = [(0,), (1,), (2,), (3,)]
    d = input_derivatives(RotatingColumn(), X, first, engine="autograd")
    assert momentum_residual(d).abs().max().item() < 1e-13
    assert density_residual(d).abs().max().item() < 1e-13
    assert mass_residual(d).abs().max().item() < 1e-13
    # twice the pressure: F = ρ² ∇p_extra = ρ² (1 + r²)(x, y, 0)
    d2 = input_derivatives(RotatingColumn(s=2.0), X, first, engine="autograd")
    x, y = X[:, 1], X[:, 2]
    rho = 1 + x * x + y * y
    want = torch.stack([rho**3 * x, rho**3 * y, 0 * x], -1)
    assert torch.allclose(momentum_residual(d2), want, atol=1e-13, rtol=0)


def test_momentum_term_matches_an_independent_evaluation():
    model = _ncl(width=16, depth=2, seed=6)
    X = _points(10, seed=6)
    v = _reference_field(model.net)
    val = vmap(v)(X).detach().numpy()
    J = vmap(jacrev(v))(X).detach().numpy()  # J[b, o, k] = ∂_k v_o
    rho, m, p_grad = val[:, 0], val[:, 1:4], J[:, 4, 1:4]
    rho_t, m_t, grad_rho, Dm = J[:, 0, 0], J[:, 1:4, 0], J[:, 0, 1:4], J[:, 1:4, 1:4]
    F = np.empty((10, 3))
    for b in range(10):  # ρ³ (u_t + (u·∇)u + ∇p/ρ) in u = m/ρ, written out per point
        u = m[b] / rho[b]
        u_t = m_t[b] / rho[b] - m[b] * rho_t[b] / rho[b] ** 2
        Du = Dm[b] / rho[b] - np.outer(m[b], grad_rho[b]) / rho[b] ** 2
        F[b] = rho[b] ** 3 * (u_t + Du @ u + p_grad[b] / rho[b])
    div = rho * rho_t + (grad_rho * m).sum(-1)
    problem = teacher_problem(4, 4, 4)
    ctx = StepContext(model.net, problem)
    term = NCLMomentumTerm()
    d = input_derivatives(model.net, X, term.needs(problem))
    got = term(d, PointSet(X), ctx).item()
    assert math.isclose(got, float((F**2).mean()), rel_tol=1e-10)
    got_div = TERMS["ncl_divergence"]()(d, PointSet(X), ctx).item()
    assert math.isclose(got_div, float((div**2).mean()), rel_tol=1e-10)


# -- teacher, labels, students -------------------------------------------------------------

TINY = {"width": 16, "depth": 1, "dtype": "float64", "beta": 5.0}


def test_teacher_trains_with_the_trainer_and_labels_its_field(tmp_path):
    problem = teacher_problem(128, 64, 64, n_val=32, seed=1)
    X0 = problem.sets["initial"].X
    assert (X0[:, 0] <= 0.01).all() and (X0[:, 0] >= 0).all()
    assert torch.allclose(
        problem.sets["initial"].targets["output"][:, 0], 1.5 - X0[:, 1:].square().sum(1)
    )
    assert torch.allclose(problem.sets["boundary"].X[:, 1:].norm(dim=1), torch.ones(64, dtype=F64))
    assert [t["weight"] for t in teacher_terms()] == [0.1, 0.1, 0.1, 30.0]
    cfg = teacher_config(epochs=4, batch_size=32, lr=1e-2, model=TINY, progress=False, val_every=1)
    result = train(cfg, tmp_path / "teacher", problem=problem)
    first, last = result.history[0]["train"], result.history[-1]["train"]
    assert last["ncl_initial"] < 0.5 * first["ncl_initial"]
    assert {"ncl_momentum", "ncl_divergence"} <= set(result.history[-1]["val"])
    files = label_teacher(result.checkpoint, problem, tmp_path / "labels", batch_size=50)
    lab = read_labels(files["train"])
    assert lab.points.targets["hessian"].shape == (128, 5, 4, 4)
    d = ncl_derivatives(result.model, lab.points.X, (0, 1, 2))
    assert torch.allclose(lab.points.targets["output"], d.value, atol=1e-12)
    assert torch.allclose(lab.points.targets["jacobian"], d.jacobian(range(4)), atol=1e-12)
    assert torch.allclose(lab.points.targets["hessian"], d.hessian(range(4)), atol=1e-10)
    assert lab.provenance["teacher"]["model_config"]["field"] == "ball-ncl"
    assert read_labels(files["initial"]).orders == (0,)


def test_student_modes_and_the_reference_sobolev_deviation():
    assert [t["term"] for t in student_terms("sobolev")][:2] == ["ncl_output", "ncl_jacobian"]
    ref = student_terms("sobolev-reference")
    assert ref[0] == {"term": "ncl_jacobian", "weight": 2.0}
    assert all(t["weight"] == 1.0 for t in student_terms("der+hesl"))
    assert [t["term"] for t in student_terms("forgetting")] == ["ncl_initial", "ncl_boundary"]
    assert set(STUDENT_MODES) >= {"output", "derivative", "hessian", "der+hesl", "sob+hesl"}
    with pytest.raises(ValueError, match="unknown mode"):
        student_terms("pinn")


def test_distillation_through_derivatives_recovers_the_teacher(tmp_path):
    # a random NCL teacher (it does not satisfy no flux: λ_bc = 0), a student from other
    # weights, 200 labelled points, the teacher's values at t ≤ 0.01 only
    torch.manual_seed(0)
    teacher = BallNCL(width=16, depth=1, beta=5.0, dtype="float64")
    problem = teacher_problem(200, 100, 100, seed=1)
    files = label_teacher(
        teacher, problem, tmp_path / "labels", sets={"train": (0, 1), "initial": (0,)}
    )
    X = metric_points(500, seed=5)
    lb = LBFGSConfig(
        lr=1.0,
        max_iter=20,
        line_search="strong_wolfe",
        tolerance_grad=1e-14,
        tolerance_change=1e-16,
    )
    err = {}
    for mode in ("forgetting", "output", "derivative"):
        sp = student_problem(
            read_labels(files["train"]), read_labels(files["initial"]), problem.sets["boundary"]
        )
        cfg = student_config(
            mode,
            epochs=10,
            batch_size=200,
            model=TINY,
            weights={"bc": 0.0},
            optimizer="lbfgs",
            lbfgs=lb,
            seed=7,
            progress=False,
        )
        student = train(cfg, tmp_path / mode, problem=sp).model
        m = ncl_metrics(student, teacher, X)
        err[mode] = (m["output_error"]["rms"], m["jacobian_error"]["rms"])
        assert m["mass"]["max"] < 1e-12  # students conserve mass exactly too
    (fo, fj), (_, oj), (do, dj) = err["forgetting"], err["output"], err["derivative"]
    # measured: forgetting 6.4e-2 / 0.24, output 4.5e-3 / 3.2e-2, derivative 2.0e-3 / 1.2e-2
    assert do < fo / 10 and dj < fj / 10, err
    assert dj < oj / 1.5, err


def test_field_derivatives_of_the_raw_net_equal_those_of_ball_ncl():
    model = _ncl(width=8, depth=1)
    X = _points(5)
    a = field_derivatives(model.net, X, [(0, 1)])
    b = field_derivatives(model, X, [(0, 1)])
    assert torch.equal(a[(0, 1)], b[(0, 1)])
    with pytest.raises(ValueError, match="4 inputs"):
        BallNCL(MLP(MLPConfig(3, 5, width=4, depth=1, activation="softplus")))


def test_field_distillation_terms_vanish_when_the_student_is_the_teacher(tmp_path):
    teacher = _ncl(width=8, depth=1, beta=5.0, seed=2)
    problem = teacher_problem(12, 6, 6, seed=3)
    files = label_teacher(teacher.net, problem, tmp_path / "labels")
    sp = student_problem(
        read_labels(files["train"]), read_labels(files["initial"]), problem.sets["boundary"]
    )
    ctx = StepContext(teacher.net, sp, generator=torch.Generator().manual_seed(0))
    batch = sp.sets["train"]
    for name in ("ncl_output", "ncl_jacobian", "ncl_hessian"):
        term = TERMS[name]()
        d = input_derivatives(teacher.net, batch.X, term.needs(sp))
        assert term(d, batch, ctx).item() < 1e-24, name
    init = TERMS["ncl_initial"]()
    X0 = sp.sets["initial"]
    assert init(input_derivatives(teacher.net, X0.X, init.needs(sp)), X0, ctx).item() < 1e-24
    # the Hessian projection: exact is zero, finite differences are O(σ)
    errs = []
    for method, sigma in (
        ("exact", 0.01),
        ("finite-difference", 1e-2),
        ("finite-difference", 1e-3),
    ):
        term = TERMS["ncl_hessian_projection"](n_directions=4, sigma=sigma, method=method)
        d = input_derivatives(teacher.net, batch.X, term.needs(sp))
        errs.append(term(d, batch, ctx).item())
    assert errs[0] < 1e-12
    assert 0 < errs[2] < errs[1] / 5, errs


def test_teacher_points_from_a_generated_file(tmp_path):
    from derlhybrid.data.generate import GenerateRequest, generate

    path = generate(
        GenerateRequest("euler-ball", str(tmp_path / "ball.h5"), n_points=50, seed=1),
        progress=False,
    )
    problem = teacher_problem_from_file(path, n_val=10)
    assert {k: len(v) for k, v in problem.sets.items()} == {
        "train": 50,
        "initial": 50,
        "boundary": 50,
        "val": 10,
    }
    X0 = problem.sets["initial"].X
    assert torch.allclose(
        problem.sets["initial"].targets["output"][:, 0], 1.5 - X0[:, 1:].square().sum(1)
    )
