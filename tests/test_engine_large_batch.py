"""The engine's large-batch paths (issue 15): derivative rows carried unstacked, numpy's
tanh, and one ragged pass over several point sets that need different derivatives —
each against autograd (float64, 1e-10) and against the per-set engine calls."""

from __future__ import annotations

import pytest
import torch

from derlhybrid.learn import derivatives as D
from derlhybrid.learn import models as M
from derlhybrid.learn.derivatives import input_derivatives, ragged_derivatives
from derlhybrid.learn.models import ACTIVATIONS, MLP, MLPConfig

F64 = torch.float64
KDV = [(0,), (1,), (1, 1, 1)]  # u_t, u_x, u_xxx (and u_xx by closure)


def _model(act, n_in=2, n_out=1, depth=3, width=40, dtype="float64", seed=0):
    torch.manual_seed(seed)
    return MLP(MLPConfig(n_in, n_out, width=width, depth=depth, activation=act, dtype=dtype))


def _close(a, b, tol):
    scale = max(1.0, b.abs().max().item())
    return (a - b).abs().max().item() <= tol * scale


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_rowwise_engine_with_numpy_tanh_equals_autograd(act):
    model = _model(act)
    x = torch.randn(max(D.ROWWISE_BATCH, M.NUMPY_TANH_MIN // 40 + 1), 2, dtype=F64)
    fwd = input_derivatives(model, x, KDV, engine="forward")
    ref = input_derivatives(model, x, KDV, engine="autograd")
    for k in ref.keys():
        assert _close(fwd[k], ref[k], 1e-10), k


def test_numpy_tanh_is_torch_tanh_to_an_ulp_and_differentiable_twice():
    z = torch.randn(300, 200, dtype=torch.float32) * 3
    a = M._tanh(z)
    assert a.dtype == z.dtype and a.shape == z.shape
    assert (a - torch.tanh(z)).abs().max().item() <= 2 * torch.finfo(torch.float32).eps
    z64 = (torch.randn(300, 200, dtype=F64) * 2).requires_grad_(True)
    (g,) = torch.autograd.grad(M._tanh(z64).sum(), z64, create_graph=True)
    (gg,) = torch.autograd.grad(g.sum(), z64)
    t = torch.tanh(z64.detach())
    assert torch.allclose(g, 1 - t**2, atol=1e-14, rtol=0)
    assert torch.allclose(gg, -2 * t * (1 - t**2), atol=1e-14, rtol=0)


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_ragged_pass_equals_one_call_per_set(act):
    assert 830 * 40 >= M.NUMPY_TANH_MIN  # the large-tensor paths (numpy tanh, tanh jet)
    # kdv-transfer's sets: interior (third derivatives), distillation points (∇u),
    # periodic pairs (u, u_x), initial points (u): one pass, each with its own derivatives
    model = _model(act)
    g = torch.Generator().manual_seed(1)
    sets = [
        (torch.rand(500, 2, generator=g, dtype=F64), KDV),
        (torch.rand(200, 2, generator=g, dtype=F64), [(0,), (1,)]),
        (torch.rand(40, 2, generator=g, dtype=F64), [(1,)]),
        (torch.rand(90, 2, generator=g, dtype=F64), []),
    ]
    got = ragged_derivatives(model, sets)
    assert got is not None and len(got) == len(sets)
    grads = []
    for ragged in (True, False):
        model.zero_grad()
        ds = got if ragged else [input_derivatives(model, x, need) for x, need in sets]
        if not ragged:
            for d, (x, need) in zip(ds, sets, strict=True):
                ref = input_derivatives(model, x, need, engine="autograd")
                assert set(d.keys()) == set(ref.keys())
                for k in ref.keys():
                    assert _close(d[k], ref[k], 1e-10), k
            for d, r in zip(ds, got, strict=True):
                assert set(d.keys()) == set(r.keys())
                for k in d.keys():
                    assert _close(r[k], d[k], 1e-12), k
        loss = sum((d[k] ** 2).mean() for d in ds for k in d.keys())
        loss.backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    assert _close(grads[0], grads[1], 1e-12)


def test_ragged_pass_declines_what_it_cannot_do():
    x = torch.rand(10, 2, dtype=F64)
    assert ragged_derivatives(torch.nn.Linear(2, 1).double(), [(x, [(0,)])]) is None
    assert ragged_derivatives(_model("tanh"), [(x, [(0,)])], engine="autograd") is None
    with pytest.raises(ValueError, match="beyond"):
        ragged_derivatives(_model("tanh"), [(x, [(2,)])])


def test_many_derivatives_keep_the_stacked_path():
    # plans beyond ROWWISE_MAX_INDICES (e.g. the NCL teacher's) keep one stacked product
    x = torch.rand(10, 3, dtype=F64)
    need = [(0, 1, 2), (0, 0)]  # 9 derivatives with the value
    assert len(D.closure(need)) > D.ROWWISE_MAX_INDICES
    assert ragged_derivatives(_model("tanh", n_in=3), [(x, need)]) is None
