"""The input-derivative engine: Taylor-mode forward propagation against autograd and
closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from derlhybrid.learn.derivatives import DerivativePlan, closure, input_derivatives
from derlhybrid.learn.models import ACTIVATIONS, MLP, MLPConfig

INDICES = [(0,), (1,), (2,), (0, 0), (0, 1), (1, 2), (1, 1, 1), (0, 1, 2), (0, 0, 1, 2), (2,) * 4]


def _model(act, n_in=3, n_out=2, depth=3, width=16, seed=0):
    torch.manual_seed(seed)
    return MLP(MLPConfig(n_in, n_out, width=width, depth=depth, activation=act, dtype="float64"))


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
@pytest.mark.parametrize("depth", [1, 3])
def test_forward_engine_equals_autograd_to_1e10(act, depth):
    model = _model(act, depth=depth)
    x = torch.randn(23, 3, dtype=torch.float64)
    fwd = input_derivatives(model, x, INDICES, engine="forward")
    ref = input_derivatives(model, x, INDICES, engine="autograd")
    assert set(fwd.keys()) == set(ref.keys()) == set(closure(INDICES))
    for k in ref.keys():
        scale = max(1.0, ref[k].abs().max().item())
        assert (fwd[k] - ref[k]).abs().max().item() <= 1e-10 * scale, k


def test_parameter_gradients_through_the_engine_equal_autograd():
    # training backpropagates through the derivatives: both engines give the same ∂loss/∂θ
    model = _model("tanh", n_in=2, n_out=1, depth=4, width=20)
    x = torch.rand(31, 2, dtype=torch.float64)
    grads = []
    for engine in ("forward", "autograd"):
        model.zero_grad()
        d = input_derivatives(model, x, [(0,), (1, 1, 1)], engine=engine)
        loss = (d[(0,)] + d.value * d[(1,)] + 0.0025 * d[(1, 1, 1)]).square().mean()
        loss.backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    assert (grads[0] - grads[1]).abs().max().item() < 1e-10 * grads[1].abs().max().item()


def test_one_neuron_closed_form():
    # u = c·tanh(a x + b) + e: u' = c a s, u'' = −2 c a² t s, u''' = c a³ s (6t² − 2),
    # with t = tanh(a x + b), s = 1 − t²
    model = MLP(MLPConfig(1, 1, width=1, depth=1, dtype="float64"))
    a, b, c, e = 0.7, -0.3, 1.9, 0.4
    with torch.no_grad():
        model.layers[0].weight.fill_(a)
        model.layers[0].bias.fill_(b)
        model.layers[1].weight.fill_(c)
        model.layers[1].bias.fill_(e)
    x = torch.linspace(-2, 2, 9, dtype=torch.float64)[:, None]
    d = input_derivatives(model, x, [(0, 0, 0)])
    t = torch.tanh(a * x + b)
    s = 1 - t * t
    torch.testing.assert_close(d.value, c * t + e, rtol=0, atol=1e-15)
    torch.testing.assert_close(d[(0,)], c * a * s, rtol=0, atol=1e-15)
    torch.testing.assert_close(d[(0, 0)], -2 * c * a**2 * t * s, rtol=0, atol=1e-15)
    torch.testing.assert_close(d[(0, 0, 0)], c * a**3 * s * (6 * t * t - 2), rtol=0, atol=1e-14)


def test_faa_di_bruno_coefficients():
    plan = DerivativePlan([(0, 0, 0, 0)])
    # d⁴σ(z)/dx⁴: σ' z4 + σ''(4 z1 z3 + 3 z2²) + 6 σ''' z1² z2 + σ'''' z1⁴ (Bell number 15)
    rule = plan.rules[plan.position[(0, 0, 0, 0)]]
    by_order = {}
    for k, coef, _ in rule:
        by_order.setdefault(k, []).append(coef)
    assert {k: sorted(v) for k, v in by_order.items()} == {1: [1], 2: [3, 4], 3: [6], 4: [1]}
    assert sum(c for _, c, _ in rule) == 15
    # mixed third derivative: 5 set partitions of three distinct positions
    mixed = DerivativePlan([(0, 1, 2)])
    assert sum(c for _, c, _ in mixed.rules[mixed.position[(0, 1, 2)]]) == 5


def test_activation_derivatives_match_closed_forms():
    z = torch.linspace(-3, 3, 41, dtype=torch.float64)
    t = torch.tanh(z)
    tanh = ACTIVATIONS["tanh"]().derivatives(z, 4)
    expect = [t, 1 - t**2, -2 * t * (1 - t**2), (1 - t**2) * (6 * t**2 - 2)]
    expect.append(t * (1 - t**2) * (16 - 24 * t**2))
    for got, want in zip(tanh, expect, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-13)
    s = torch.sigmoid(z)
    soft = ACTIVATIONS["softplus"]().derivatives(z, 3)
    for got, want in zip(
        soft,
        [torch.nn.functional.softplus(z), s, s * (1 - s), s * (1 - s) * (1 - 2 * s)],
        strict=True,
    ):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-14)
    sine = ACTIVATIONS["sin"](2.0).derivatives(z, 3)
    w = 2.0 * z
    for got, want in zip(sine, [w.sin(), 2 * w.cos(), -4 * w.sin(), -8 * w.cos()], strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-13)


def test_jacobian_and_hessian_layout():
    model = _model("tanh", n_in=3, n_out=2)
    x = torch.randn(5, 3, dtype=torch.float64)
    d = input_derivatives(model, x, [(i, j) for i in range(3) for j in range(i, 3)])
    J, H = d.jacobian([0, 2]), d.hessian([0, 1, 2])
    assert J.shape == (5, 2, 2) and H.shape == (5, 2, 3, 3)
    torch.testing.assert_close(H, H.transpose(-1, -2))
    full = torch.func.vmap(torch.func.hessian(lambda v: model(v[None])[0]))(x)
    torch.testing.assert_close(H, full, rtol=0, atol=1e-12)
    torch.testing.assert_close(J[..., 1], d[(2,)])


def test_engine_refuses_bad_requests():
    model = _model("tanh")
    with pytest.raises(ValueError, match="beyond the 3 inputs"):
        input_derivatives(model, torch.zeros(2, 3, dtype=torch.float64), [(3,)])
    with pytest.raises(ValueError, match="forward engine needs"):
        input_derivatives(torch.nn.Linear(3, 1), torch.zeros(2, 3), [(0,)], engine="forward")
    with pytest.raises(ValueError, match="unknown derivative engine"):
        input_derivatives(model, torch.zeros(2, 3, dtype=torch.float64), [(0,)], engine="x")


def test_float32_engine_is_close_to_float64():
    m64 = _model("tanh", n_in=2, n_out=1, depth=4, width=50)
    m32 = MLP(MLPConfig(2, 1, width=50, depth=4, dtype="float32"))
    m32.load_state_dict({k: v.float() for k, v in m64.state_dict().items()})
    x = torch.rand(64, 2, dtype=torch.float64)
    d64 = input_derivatives(m64, x, [(1, 1, 1)])
    d32 = input_derivatives(m32, x.float(), [(1, 1, 1)])
    rel = (d32[(1, 1, 1)].double() - d64[(1, 1, 1)]).norm() / d64[(1, 1, 1)].norm()
    assert rel.item() < 1e-4
    assert math.isfinite(rel.item())


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_first_order_path_gradients_equal_autograd(act):
    # first-derivative plans take a shortcut (σ and σ'·t in fused kernels, e.g. aten's
    # tanh_backward): parameter and input gradients must equal autograd's
    model = _model(act, n_in=3, n_out=2, depth=3, width=12)
    x = torch.randn(19, 3, dtype=torch.float64)
    grads = []
    for engine in ("forward", "autograd"):
        model.zero_grad()
        xx = x.clone().requires_grad_(True)
        d = input_derivatives(model, xx, [(0,), (2,)], engine=engine)
        loss = (d.value**2).sum() + (d[(0,)] ** 3).sum() + torch.sin(d[(2,)]).sum()
        (gx,) = torch.autograd.grad(loss, xx, retain_graph=True) if engine == "forward" else (None,)
        loss.backward()
        grads.append((torch.cat([p.grad.reshape(-1) for p in model.parameters()]), gx))
    assert (grads[0][0] - grads[1][0]).abs().max().item() < 1e-11
    # input gradient against finite differences of the same loss
    gx = grads[0][1]
    eps = 1e-6
    for j in range(3):
        e = torch.zeros_like(x)
        e[:, j] = eps
        vals = []
        for sgn in (1, -1):
            d = input_derivatives(model, x + sgn * e, [(0,), (2,)])
            vals.append(
                ((d.value**2).sum() + (d[(0,)] ** 3).sum() + torch.sin(d[(2,)]).sum()).item()
            )
        # the loss sums over rows: the FD of the sum is the sum of the per-row gradients
        assert abs((vals[0] - vals[1]) / (2 * eps) - gx[:, j].sum().item()) < 1e-6


@pytest.mark.parametrize("act", ["tanh", "softplus"])
def test_the_engine_leaves_no_reference_cycles(act):
    """Every tensor of a derivative evaluation is freed when its result is dropped, without
    waiting for Python's cycle collector (a recursive closure in the layer step once kept
    each batch's tensors alive until it ran: memory grew with the number of batches)."""
    import gc

    model = _model(act)
    x = torch.randn(23, 3, dtype=torch.float64, requires_grad=True)
    gc.collect()
    gc.disable()
    try:
        d = input_derivatives(model, x, INDICES, engine="forward")
        sum(d[a].sum() for a in d.keys()).backward()
        del d
        found = gc.collect()
    finally:
        gc.enable()
    assert found == 0
