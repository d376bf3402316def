"""The HNN baseline (paper.md §3.6): a symplectic field of a learned Hamiltonian plus the
explicit damping, trained on (q, p) → (q̇, ṗ), scored like the flow-map models."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from derlhybrid.data.generate import GenerateRequest, generate
from derlhybrid.learn import metrics as M
from derlhybrid.learn.checkpoint import CheckpointError
from derlhybrid.learn.hnn import HNN, hnn_field, load_hnn, train_hnn
from derlhybrid.systems import get_system


def _model(damping=0.0, seed=0):
    torch.manual_seed(seed)
    return HNN(width=20, depth=4, damping=damping).double()


def _jacobian(model, x):
    """∂f_i/∂x_j of the model's field at every row (N, 2, 2), by autograd through it."""
    x = x.clone().requires_grad_(True)
    field = model.time_derivative(x, create_graph=True)
    rows = [torch.autograd.grad(field[:, i].sum(), x, retain_graph=True)[0] for i in range(2)]
    return torch.stack(rows, dim=1)


def test_architecture_is_the_reference_mlp():
    model = _model()
    linears = [*model.hidden, model.out]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [
        (2, 20),
        (20, 20),
        (20, 20),
        (20, 20),
        (20, 2),
    ]
    assert model.out.bias is None and all(lin.bias is not None for lin in model.hidden)
    for lin in model.hidden[:3]:  # orthogonal initialisation, as the reference's MLP
        w = lin.weight.detach()
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        torch.testing.assert_close(gram, torch.eye(gram.shape[0], dtype=w.dtype), atol=1e-6, rtol=0)


def test_the_field_is_the_symplectic_gradient_and_divergence_free():
    model = _model()
    x = torch.randn(64, 2, dtype=torch.float64)
    field = model.time_derivative(x)
    grad_h = torch.func.vmap(torch.func.grad(lambda z: model.hamiltonian(z[None])[0]))(x)
    torch.testing.assert_close(field[:, 0], grad_h[:, 1], rtol=0, atol=1e-14)  # ∂H/∂p
    torch.testing.assert_close(field[:, 1], -grad_h[:, 0], rtol=0, atol=1e-14)  # −∂H/∂q
    # div (J∇H) = H_pq − H_qp = 0: the trace of the field's Jacobian vanishes
    jac = _jacobian(model, x)
    div = jac[:, 0, 0] + jac[:, 1, 1]
    assert div.abs().max().item() < 1e-12
    assert jac.abs().max().item() > 1e-3  # a non-trivial field
    # H is conserved along the learned (undamped) flow: ∇H · f = 0
    assert (grad_h * field).sum(1).abs().max().item() < 1e-14


def test_damping_is_added_to_p_dot_only():
    undamped, damped = _model(0.0), _model(0.5)
    damped.load_state_dict(undamped.state_dict())
    x = torch.randn(32, 2, dtype=torch.float64)
    diff = damped.time_derivative(x) - undamped.time_derivative(x)
    torch.testing.assert_close(diff[:, 0], torch.zeros(32, dtype=torch.float64))
    torch.testing.assert_close(diff[:, 1], -0.5 * x[:, 1])
    # with damping the divergence is −b/m everywhere
    jac = _jacobian(damped, x)
    torch.testing.assert_close(jac[:, 0, 0] + jac[:, 1, 1], torch.full((32,), -0.5).double())


def test_hnn_field_converts_between_omega_and_momentum():
    system = get_system("pendulum", {"m": 2.0, "b": 0.6})
    model = _model(damping=0.6 / 2.0)
    theta, omega = np.linspace(-1, 1, 12).reshape(3, 4), np.linspace(0.5, -0.5, 12).reshape(3, 4)
    dth, dom = hnn_field(model, theta, omega, system)
    assert dth.shape == dom.shape == (3, 4)
    x = torch.as_tensor(np.stack([theta.ravel(), 2.0 * omega.ravel()], 1))
    qp = model.time_derivative(x).numpy()
    np.testing.assert_allclose(dth.ravel(), qp[:, 0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(dom.ravel(), qp[:, 1] / 2.0, rtol=0, atol=1e-15)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("hnn-data")
    return generate(
        GenerateRequest(
            system="pendulum", out=str(d / "p.h5"), n_trajectories=8, n_times=51, t_end=2.0, seed=1
        ),
        progress=False,
    )


def test_training_learns_writes_its_files_and_is_not_repeated(tiny, tmp_path):
    out = tmp_path / "hnn"
    kw = {"epochs": 6, "batch_size": 16, "lr": 3e-3, "phase_grid": 40}
    res = train_hnn(tiny, out, **kw)
    losses = [h["train"] for h in res["history"]]
    assert len(losses) == 6 and all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0] / 10, losses
    assert all(math.isfinite(h["val"]) for h in res["history"])
    assert res["trained"] is True
    ps = res["phase_space"]
    assert ps["grid"] == 40 and ps["cell"] == pytest.approx(3 * math.pi / 40**2)
    assert all(math.isfinite(ps[k]) for k in ("mean", "std", "max", "rmse", "l2", "rel_l2"))
    fat = res["field_along_test_trajectories"]
    assert math.isfinite(fat["mean"]) and len(fat["per_trajectory"]) == 1
    written = json.loads((out / "metrics.json").read_text())
    assert written["phase_space"] == ps
    model, ckpt = load_hnn(out / "hnn.pt")
    assert ckpt["epoch"] == 6 and ckpt["history"] == res["history"]
    assert ckpt["config"]["damping"] == 0.5 and ckpt["config"]["dtype"] == "float32"
    assert next(model.parameters()).dtype == torch.float32
    # a second call with the same configuration does not train again
    stamp = (out / "hnn.pt").stat().st_mtime_ns
    again = train_hnn(tiny, out, **kw)
    assert again["trained"] is False and again["history"] == res["history"]
    assert again["phase_space"] == ps
    assert (out / "hnn.pt").stat().st_mtime_ns == stamp
    # another configuration is refused, not silently replaced
    with pytest.raises(CheckpointError, match=r"another configuration \(lr differ"):
        train_hnn(tiny, out, **{**kw, "lr": 1e-3})


def test_metrics_are_those_of_the_flow_map_models(tiny, tmp_path):
    train_hnn(tiny, tmp_path / "h", epochs=1, batch_size=64, phase_grid=30, dtype="float64")
    model, _ = load_hnn(tmp_path / "h" / "hnn.pt")
    res = train_hnn(tiny, tmp_path / "h", epochs=1, batch_size=64, phase_grid=30, dtype="float64")
    system = get_system("pendulum", {})
    # phase space, by hand: t = 0 grid over [−π/2, π/2] × [−1.5, 1.5], ‖f̂ − f‖
    th, om = np.meshgrid(np.linspace(-np.pi / 2, np.pi / 2, 30), np.linspace(-1.5, 1.5, 30))
    pred = np.stack(hnn_field(model, th, om, system), -1).reshape(-1, 2)
    true = system.vector_field(0.0, np.stack([th.ravel(), om.ravel()], 1))
    err = np.linalg.norm(pred - true, axis=1)
    want = M.error_stats(err, cell=3 * np.pi / 30**2, reference=np.linalg.norm(true, axis=1))
    for k, v in want.items():
        assert res["phase_space"][k] == pytest.approx(v, rel=1e-12), k
    # along the test trajectories: sqrt(Σ_t ‖f̂(y(t)) − f(y(t))‖² Δt)
    import h5py

    with h5py.File(tiny, "r") as f:
        idx = np.sort(f["splits/test"][...])
        y, t = f["trajectories/states"][idx], f["trajectories/t"][...]
    fhat = np.stack(hnn_field(model, y[..., 0], y[..., 1], system), -1)
    ftrue = system.vector_field(0.0, y.reshape(-1, 2)).reshape(fhat.shape)
    per = np.sqrt(((fhat - ftrue) ** 2).sum(-1).sum(-1) * (t[1] - t[0]))
    np.testing.assert_allclose(
        res["field_along_test_trajectories"]["per_trajectory"], per, rtol=1e-12
    )
