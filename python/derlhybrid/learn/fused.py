"""A tanh MLP's value and first input derivatives with a hand-written backward pass.

First-order plans (the pendulum's ∂θ̂/∂t, the Allen–Cahn ∇u, every derivative-distillation
Jacobian) are the common case, and at the paper's batch sizes (64 + 64 rows, width 50)
their training step is dispatch-bound: the eager engine records ~45 autograd nodes a
layer and the autograd engine runs them one by one; this torch build's ``torch.tanh``
also takes ~20 µs for a 128 × 50 tile where numpy's takes ~3 µs (docs/learning.md#speed).
Inside the trainer (:func:`hand_written_backward`) the network part of a step leaves
autograd altogether:

* forward, per hidden layer: ``a = tanh z`` (numpy), ``s = 1 − a²``, the tangents
  ``ṫ_j = s·ż_j``, stacked with the values into one ``((k+1)·B, width)`` tile and one
  matrix product (numpy's BLAS, as many threads as torch's). The outputs are
  handed to the loss terms as leaf tensors;
* backward: once autograd has the loss's gradient with respect to those outputs (one
  :func:`torch.autograd.graph.register_multi_grad_hook`), ``gW = Gᵀ S``, ``gb = Σ G``
  (value rows), ``gS = G W``, then ``gż_j = gṫ_j·s``, ``gs = Σ_j gṫ_j·ż_j``,
  ``gz = (g_a − 2a·gs)·s``; the first layer's constant tangent ``ż_j = W₀[:, i_j]`` adds
  ``Σ_rows gż_j`` to column ``i_j`` of ``gW₀``. The parameter gradients are added into
  ``.grad`` (the trainer's flat gradient buffer), as autograd would accumulate them.

The same arithmetic as the autograd-recorded engine up to float rounding (numpy's tanh is
≤ 1 ulp from torch's; sums in another order); float64 gradients agree with nested autograd
to 1e-12 (tests/test_fused.py). Outside :func:`hand_written_backward` (and for other
activations, devices, traced graphs, inputs that require gradients) the engine records
an ordinary autograd graph, so ``torch.autograd.grad`` with respect to the parameters and
double backward keep working there.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch

__all__ = ["applies", "first_order_tanh", "hand_written_backward"]

_DTYPES = (torch.float32, torch.float64)
_active = [False]


@contextmanager
def hand_written_backward() -> Iterator[None]:
    """Within this block, first-order derivatives of tanh MLPs on the CPU are computed with
    the hand-written backward pass (see the module doc): ``loss.backward()`` fills the
    parameters' ``.grad``; ``torch.autograd.grad`` with respect to them does not see them."""
    from threadpoolctl import threadpool_limits

    prev = _active[0]
    _active[0] = True
    try:
        # OpenBLAS splits a product over all cores from M·N·K > 262 144 on (a 256 × 50 × 50
        # tile): on cores shared with other runs that is ~30× slower; torch's count rules
        with threadpool_limits(limits=max(1, torch.get_num_threads()), user_api="blas"):
            yield
    finally:
        _active[0] = prev


def applies(model, x: torch.Tensor) -> bool:
    """Whether :func:`first_order_tanh` takes this model and batch."""
    if not _active[0]:
        return False
    cache = _cache(model)
    return (
        cache.ok
        and x.dtype == cache.dtype
        and x.device.type == "cpu"
        and not x.requires_grad
        and not torch.compiler.is_compiling()
    )


def _mm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` by numpy's BLAS (OpenBLAS: 256 × 50 × 50 float32 in ~14 µs on this
    project's AMD cores, where this torch build's MKL takes ~20 µs), its threads limited
    to torch's by :func:`hand_written_backward`."""
    return a @ b


def first_order_tanh(
    model, x: torch.Tensor, directions: Sequence[int], sizes: Sequence[int] | None = None
) -> list[torch.Tensor]:
    """``[value, ∂/∂x_{i_1}, …, ∂/∂x_{i_k}]`` of a tanh :class:`~derlhybrid.learn.models.MLP`
    at the rows of ``x`` (each ``(B, n_out)``); with gradients enabled, their gradients
    reach the parameters' ``.grad`` by the hand-written backward (see the module doc).
    With ``sizes`` (row counts summing to B), each of them comes split into those row
    blocks instead: ``[value block 1, value block 2, …, ∂₁ block 1, …]`` (one split)."""
    cache = _cache(model)
    params = cache.params
    state = _forward(cache.arrays, x.detach().numpy(), directions)
    # the last layer's output tile, value rows then each derivative's: one leaf tensor
    # whose gradient (one hook) is the backward pass's starting tile
    y = torch.from_numpy(state.output)
    if torch.is_grad_enabled() and any(p.requires_grad for p in params):
        y.requires_grad_(True)

        def backward(grad, state=state, params=params):
            _backward(state, grad, params)

        y.register_hook(backward)
    return list(y.split(x.shape[0] if sizes is None else list(sizes) * (1 + len(directions))))


class _Cache:
    """A model's layers and their parameters, numpy views of these, and whether the
    model is one this path takes (tanh, ≥ one hidden layer, CPU, one float dtype)."""

    __slots__ = ("activation", "arrays", "dtype", "modules", "ok", "params", "ptrs")

    def __init__(self, model, modules):
        from .models import Tanh

        self.modules, self.activation = modules, model.activation
        self.params = [p for layer in modules for p in (layer.weight, layer.bias)]
        self.dtype = self.params[0].dtype
        self.ok = (
            type(self.activation) is Tanh
            and len(modules) >= 2
            and self.dtype in _DTYPES
            and all(p.device.type == "cpu" and p.dtype == self.dtype for p in self.params)
        )
        self.arrays = [p.detach().numpy() for p in self.params] if self.ok else []
        self.ptrs = [p.data_ptr() for p in self.params]


def _cache(model) -> _Cache:
    """The model's :class:`_Cache`, rebuilt when its layers, activation or the storage of
    a parameter changed (the trainer's optimizers update the parameters in place)."""
    modules = tuple(model.layers._modules.values())
    cache = model.__dict__.get("_fused_cache")
    if (
        cache is None
        or cache.modules != modules
        or cache.activation is not model.activation
        or any(p.data_ptr() != q for p, q in zip(cache.params, cache.ptrs, strict=True))
    ):
        cache = _Cache(model, modules)
        model.__dict__["_fused_cache"] = cache
    return cache


class _State:
    __slots__ = ("directions", "layers", "output", "weights", "x")

    def __init__(self, weights, x, directions, layers, output):
        self.weights, self.x, self.directions = weights, x, directions
        self.layers, self.output = layers, output


def _forward(params: list[np.ndarray], X: np.ndarray, directions: Sequence[int]) -> _State:
    weights, biases = params[0::2], params[1::2]
    B, k = X.shape[0], len(directions)
    # the first layer: z = x W₀ᵀ + b₀, constant tangents ż_j = W₀[:, i_j]
    z = _mm(X, weights[0].T)
    z += biases[0]
    zdot: list[np.ndarray] = [weights[0][:, i] for i in directions]
    layers = []  # per activation: (S, s, ż list), S the stacked input of the next product
    for W, b in zip(weights[1:], biases[1:], strict=True):
        S = np.empty(((k + 1) * B, z.shape[1]), dtype=z.dtype)
        a = np.tanh(z, out=S[:B])
        s = 1 - a * a
        for j, zd in enumerate(zdot):
            np.multiply(s, zd, out=S[(j + 1) * B : (j + 2) * B])
        layers.append((S, s, zdot))
        Z = _mm(S, W.T)
        Z[:B] += b
        z = Z[:B]
        zdot = [Z[(j + 1) * B : (j + 2) * B] for j in range(k)]
    return _State(weights, X, tuple(directions), layers, Z)


_ONES: dict = {}


def _ones(n: int, dtype) -> np.ndarray:
    got = _ONES.get((n, dtype))
    if got is None:
        got = _ONES[(n, dtype)] = np.ones(n, dtype=dtype)
        got.flags.writeable = False
    return got


def _backward(state: _State, grad: torch.Tensor, params: list[torch.Tensor]) -> None:
    weights, X, directions = state.weights, state.x, state.directions
    B = X.shape[0]
    G = np.ascontiguousarray(grad.numpy())  # ((k+1)·B, n_out): value rows, then each ∂
    ones = _ones(B, G.dtype)  # column sums as one product (~5× faster than .sum)
    out: list[np.ndarray | None] = [None] * len(params)
    for li in range(len(weights) - 1, 0, -1):
        S, s, zdot = state.layers[li - 1]
        out[2 * li] = _mm(G.T, S)
        out[2 * li + 1] = ones @ G[:B]
        gS = _mm(G, weights[li])
        # through S = [a; s·ż_1; …; s·ż_k], s = 1 − a², a = tanh z
        Gn = np.empty_like(gS)
        gs = None
        for j, zd in enumerate(zdot):
            gt = gS[(j + 1) * B : (j + 2) * B]
            gs = gt * zd if gs is None else gs + gt * zd
            np.multiply(gt, s, out=Gn[(j + 1) * B : (j + 2) * B])
        ga = gS[:B] if gs is None else gS[:B] - 2 * S[:B] * gs
        np.multiply(ga, s, out=Gn[:B])
        G = Gn
    # the first layer: z = x W₀ᵀ + b₀, ż_j = W₀[:, i_j] on every row
    gz = G[:B]
    gW0 = _mm(gz.T, X)
    for j, i in enumerate(directions):
        gW0[:, i] += ones @ G[(j + 1) * B : (j + 2) * B]
    out[0], out[1] = gW0, ones @ gz
    for p, g in zip(params, out, strict=True):
        if not p.requires_grad or g is None:
            continue
        if p.grad is None:
            p.grad = torch.from_numpy(g)
        else:  # accumulated as autograd would (other terms may have added to it)
            np.add(p.grad.numpy(), g, out=p.grad.numpy())
