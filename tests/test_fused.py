"""The first-order tanh path with a hand-written backward (learn/fused.py, issue 15):
values, first derivatives and parameter gradients against nested autograd (float64,
1e-12 relative), accumulation into existing gradients, fallbacks, and a trainer run
against the autograd engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from derlhybrid.learn import fused
from derlhybrid.learn.derivatives import input_derivatives, split_derivatives
from derlhybrid.learn.models import MLP, MLPConfig

F64 = torch.float64


def _model(n_in=3, n_out=1, depth=3, width=17, dtype="float64", act="tanh", seed=0):
    torch.manual_seed(seed)
    return MLP(MLPConfig(n_in, n_out, width=width, depth=depth, activation=act, dtype=dtype))


def _loss(d, weights):
    # a nonlinear function of every output, so each gradient tile is non-trivial
    return sum(((w * d[k]) ** 2).sum() + (w * d[k]).sin().sum() for k, w in weights.items())


def _reference_grads(model, x, dirs, weights):
    d = input_derivatives(model, x, dirs, engine="autograd")
    return [g.clone() for g in torch.autograd.grad(_loss(d, weights), list(model.parameters()))]


def _rel(a, b):
    return (a - b).abs().max().item() / max(1e-300, b.abs().max().item())


@pytest.mark.parametrize(
    "n_in,n_out,depth,dirs",
    [
        (3, 1, 4, [(0,)]),  # the pendulum's flow map: ∂θ̂/∂t
        (2, 2, 3, [(0,), (1,)]),  # a gradient field, two outputs
        (3, 2, 2, [(2,)]),  # a direction that is not the first input
        (4, 3, 1, []),  # the value only, one hidden layer
    ],
)
def test_values_and_parameter_gradients_equal_autograd(n_in, n_out, depth, dirs):
    model = _model(n_in, n_out, depth)
    x = torch.randn(23, n_in, dtype=F64)
    ref_d = input_derivatives(model, x, dirs, engine="autograd")
    weights = {k: torch.randn_like(ref_d[k]) for k in ref_d.keys()}
    ref = _reference_grads(model, x, dirs, weights)
    with fused.hand_written_backward():
        assert fused.applies(model, x)
        d = input_derivatives(model, x, dirs)
        for k in ref_d.keys():
            assert d[k].grad_fn is not None or d[k].is_leaf  # part of the loss's graph
            assert _rel(d[k].detach(), ref_d[k].detach()) < 1e-12, k
        _loss(d, weights).backward()
    for p, g in zip(model.parameters(), ref, strict=True):
        assert p.grad is not None
        assert _rel(p.grad, g) < 1e-12


def test_gradients_add_to_existing_ones_and_to_other_paths():
    """A loss that reads the network through the engine and through a plain forward:
    both contributions land in .grad, on top of what was there (as autograd does)."""
    model = _model(2, 1, 3)
    x = torch.randn(9, 2, dtype=F64)
    x2 = torch.randn(5, 2, dtype=F64)

    def loss(d):
        return (d[(0,)] ** 2).sum() + d.value.sum() + model(x2).pow(3).sum()

    ref = torch.autograd.grad(
        loss(input_derivatives(model, x, [(0,)], engine="autograd")), list(model.parameters())
    )
    before = [torch.randn_like(p) for p in model.parameters()]
    for p, b in zip(model.parameters(), before, strict=True):
        p.grad = b.clone()
    with fused.hand_written_backward():
        loss(input_derivatives(model, x, [(0,)])).backward()
    for p, b, g in zip(model.parameters(), before, ref, strict=True):
        assert _rel(p.grad - b, g) < 1e-12


def test_split_derivatives_equals_one_call_per_set():
    model = _model(3, 2, 3)
    xs = [torch.randn(n, 3, dtype=F64) for n in (7, 4, 11)]
    for active in (False, True):
        with fused.hand_written_backward() if active else torch.enable_grad():
            got = split_derivatives(model, xs, [(0,), (2,)])
        for xb, d in zip(xs, got, strict=True):
            ref = input_derivatives(model, xb, [(0,), (2,)], engine="autograd")
            assert set(d.keys()) == set(ref.keys())
            for k in ref.keys():
                assert _rel(d[k].detach(), ref[k].detach()) < 1e-12


def test_outside_the_block_and_where_it_does_not_apply_autograd_sees_the_graph():
    model = _model(3, 1, 3)
    x = torch.randn(6, 3, dtype=F64)
    assert not fused.applies(model, x)  # outside hand_written_backward
    d = input_derivatives(model, x, [(0,)])
    # torch.autograd.grad with respect to the parameters needs the recorded graph
    grads = torch.autograd.grad((d[(0,)] + d.value).sum(), list(model.parameters()))
    assert all(g is not None for g in grads)
    with fused.hand_written_backward():
        assert not fused.applies(_model(3, 1, 3, act="sin"), x)  # other activations
        assert not fused.applies(model, x.clone().requires_grad_(True))  # input gradients
        with torch.no_grad():
            d = input_derivatives(model, x, [(0,)])  # forward only, nothing recorded
        assert not d[(0,)].requires_grad


def test_parameter_views_follow_a_new_storage():
    """The cached numpy views of the weights are dropped when a parameter's storage
    changes (the trainer's flat buffer re-points them)."""
    model = _model(2, 1, 2)
    x = torch.randn(5, 2, dtype=F64)
    with fused.hand_written_backward(), torch.no_grad():
        before = input_derivatives(model, x, [(0,)])[(0,)].clone()
        for p in model.parameters():
            p.data = p.data.clone() * 2.0  # new storage, other values
        after = input_derivatives(model, x, [(0,)])[(0,)]
    ref = input_derivatives(model, x, [(0,)], engine="autograd")[(0,)].detach()
    assert _rel(after, ref) < 1e-12
    assert not torch.allclose(before, after)
    # a layer replaced by a new module, an activation swapped: noticed as well
    model.layers[2] = torch.nn.Linear(17, 1, dtype=F64)
    with fused.hand_written_backward(), torch.no_grad():
        got = input_derivatives(model, x, [(0,)])[(0,)]
    ref = input_derivatives(model, x, [(0,)], engine="autograd")[(0,)].detach()
    assert _rel(got, ref) < 1e-12
    model.activation = _model(act="sin").activation
    with fused.hand_written_backward():
        assert not fused.applies(model, x)


def test_a_second_backward_through_the_tile_accumulates_again():
    model = _model(2, 1, 2)
    x = torch.randn(5, 2, dtype=F64)
    with fused.hand_written_backward():
        loss = (input_derivatives(model, x, [(1,)])[(1,)] ** 2).sum()
        loss.backward(retain_graph=True)
        once = [p.grad.clone() for p in model.parameters()]
        loss.backward()
    for p, g in zip(model.parameters(), once, strict=True):
        assert _rel(p.grad, 2 * g) < 1e-12


def test_float32_matches_float64_to_single_precision():
    m64 = _model(3, 1, 4, width=50)
    m32 = _model(3, 1, 4, width=50, dtype="float32")
    m32.load_state_dict({k: v.float() for k, v in m64.state_dict().items()})
    x = torch.randn(128, 3, dtype=F64)
    with fused.hand_written_backward(), torch.no_grad():
        d32 = input_derivatives(m32, x.float(), [(0,)])
        d64 = input_derivatives(m64, x, [(0,)])
    for k in d64.keys():
        assert d32[k].dtype == torch.float32
        assert np.allclose(d32[k].double().numpy(), d64[k].numpy(), rtol=1e-4, atol=1e-5)


# -- the Taylor path: any order, hand-written backward --------------------------------------
def _loss_sets(ds, weights):
    return sum(_loss(d, w) for d, w in zip(ds, weights, strict=True))


@pytest.mark.parametrize(
    "n_in,n_out,depth,needs",
    [
        (2, 1, 4, [(0,), (1,), (1, 1, 1)]),  # KdV: u_t, u_x, u_xxx
        (2, 2, 3, [(0, 0), (1, 1), (0, 1)]),  # a Hessian, two outputs
        (3, 1, 1, [(0, 0, 1), (2,)]),  # a mixed third derivative, one hidden layer
        (2, 1, 2, [(1, 1, 1, 1)]),  # fourth order (σ⁽⁵⁾ in the backward pass)
    ],
)
def test_higher_orders_equal_nested_autograd(n_in, n_out, depth, needs):
    model = _model(n_in, n_out, depth)
    x = torch.randn(23, n_in, dtype=F64)
    ref_d = input_derivatives(model, x, needs, engine="autograd")
    weights = {k: torch.randn_like(ref_d[k]) for k in ref_d.keys()}
    ref = _reference_grads(model, x, needs, weights)
    with fused.hand_written_backward():
        d = input_derivatives(model, x, needs)
        for k in ref_d.keys():
            assert _rel(d[k].detach(), ref_d[k].detach()) < 1e-12, k
        _loss(d, weights).backward()
    for p, g in zip(model.parameters(), ref, strict=True):
        assert p.grad is not None
        assert _rel(p.grad, g) < 1e-12


def test_ragged_sets_equal_one_autograd_call_per_set():
    """The trainer's ragged pass (learn/derivatives.ragged_derivatives): sets needing
    fewer derivatives after those needing more, each carried on its own rows only."""
    from derlhybrid.learn.derivatives import ragged_derivatives

    model = _model(2, 1, 4)
    xs = [torch.randn(n, 2, dtype=F64) for n in (9, 7, 5)]
    needs = [[(0,), (1,), (1, 1, 1)], [(0,), (1,)], []]
    refs = [
        input_derivatives(model, x, n, engine="autograd") for x, n in zip(xs, needs, strict=True)
    ]
    weights = [{k: torch.randn_like(r[k]) for k in r.keys()} for r in refs]
    grads = torch.autograd.grad(_loss_sets(refs, weights), list(model.parameters()))
    with fused.hand_written_backward():
        got = ragged_derivatives(model, list(zip(xs, needs, strict=True)))
        assert got is not None
        for d, r in zip(got, refs, strict=True):
            assert set(d.keys()) == set(r.keys())
            for k in r.keys():
                assert _rel(d[k].detach(), r[k].detach()) < 1e-12, k
        _loss_sets(got, weights).backward()
    for p, g in zip(model.parameters(), grads, strict=True):
        assert _rel(p.grad, g) < 1e-12


def test_higher_order_float32_matches_float64_to_single_precision():
    m64 = _model(2, 1, 9, width=50)
    m32 = _model(2, 1, 9, width=50, dtype="float32")
    m32.load_state_dict({k: v.float() for k, v in m64.state_dict().items()})
    x = torch.rand(300, 2, dtype=F64)
    with fused.hand_written_backward(), torch.no_grad():
        d32 = input_derivatives(m32, x.float(), [(0,), (1, 1, 1)])
        d64 = input_derivatives(m64, x, [(0,), (1, 1, 1)])
    for k in d64.keys():
        assert d32[k].dtype == torch.float32
        scale = d64[k].abs().max().item()
        assert np.allclose(d32[k].double().numpy(), d64[k].numpy(), rtol=1e-3, atol=1e-4 * scale)


def test_two_halves_on_two_threads_equal_nested_autograd(monkeypatch):
    """A large pass inside a block with two workers runs as two halves of equal work on
    two threads (rows split inside the ragged sets); values and summed gradients as one."""
    from derlhybrid.learn.derivatives import ragged_derivatives

    monkeypatch.setattr(fused, "PARALLEL_ROWS", 16)
    model = _model(2, 1, 3)
    xs = [torch.randn(n, 2, dtype=F64) for n in (13, 8, 6)]
    needs = [[(0,), (1,), (1, 1, 1)], [(0,), (1,)], []]
    refs = [
        input_derivatives(model, x, n, engine="autograd") for x, n in zip(xs, needs, strict=True)
    ]
    weights = [{k: torch.randn_like(r[k]) for k in r.keys()} for r in refs]
    grads = torch.autograd.grad(_loss_sets(refs, weights), list(model.parameters()))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with fused.hand_written_backward(workers=2):
            got = ragged_derivatives(model, list(zip(xs, needs, strict=True)))
            assert got is not None
            for d, r in zip(got, refs, strict=True):
                for k in r.keys():
                    assert _rel(d[k].detach(), r[k].detach()) < 1e-12, k
            _loss_sets(got, weights).backward()
    finally:
        torch.set_num_threads(before)
    for p, g in zip(model.parameters(), grads, strict=True):
        assert _rel(p.grad, g) < 1e-12


@pytest.mark.parametrize("counts", [[27, 21, 21, 13, 13], [10, 10], [40, 1], [5, 5, 5, 5]])
def test_the_split_row_halves_the_work(counts):
    r = fused._split_row(counts)
    work = [sum(min(c, k) for c in counts) for k in range(1, max(counts))]
    best = min(range(1, max(counts)), key=lambda k: abs(work[k - 1] - sum(counts) / 2))
    assert abs(work[r - 1] - sum(counts) / 2) <= abs(work[best - 1] - sum(counts) / 2) + len(counts)


def test_one_worker_and_two_give_the_same_bits(monkeypatch):
    """The halves are cut whatever the workers, so a run's numbers do not depend on how
    many cores it may use (``derl reproduce --engine ray`` and ``--jobs N`` train with one,
    ``--jobs 1`` with all)."""
    from derlhybrid.learn.derivatives import ragged_derivatives

    monkeypatch.setattr(fused, "PARALLEL_ROWS", 16)
    model = _model(2, 1, 3, dtype="float32")
    xs = [torch.randn(n, 2) for n in (13, 8, 6)]
    needs = [[(0,), (1,), (1, 1, 1)], [(0,), (1,)], []]
    got = {}
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for workers in (1, 2):
            for p in model.parameters():
                p.grad = None
            with fused.hand_written_backward(workers=workers):
                ds = ragged_derivatives(model, list(zip(xs, needs, strict=True)))
                assert ds is not None
                loss = sum((d[k] ** 2).sum() for d in ds for k in d.keys())
                loss.backward()
            values = [d[k].detach().clone() for d in ds for k in sorted(d.keys())]
            got[workers] = (values, [p.grad.clone() for p in model.parameters()])
    finally:
        torch.set_num_threads(before)
    for a, b in zip(got[1][0] + got[1][1], got[2][0] + got[2][1], strict=True):
        assert torch.equal(a, b)
