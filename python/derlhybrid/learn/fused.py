"""A tanh MLP's value and input derivatives with a hand-written backward pass.

Two paths, both entered only inside a training run's epochs (:func:`hand_written_backward`,
from :meth:`~derlhybrid.learn.training_run.TrainingRun.run_epoch`):
:func:`first_order_tanh` for first-order plans (described below) and
:func:`taylor_tanh` for any plan of the derivative engine, ragged point sets included
(its arithmetic is described above the function).

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
  ``.grad`` (the training run's flat gradient buffer), as autograd would accumulate them.

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

__all__ = ["applies", "first_order_tanh", "hand_written_backward", "taylor_tanh"]

_DTYPES = (torch.float32, torch.float64)
_active = [False]
_workers = [1]

#: from this many carried rows on (all derivatives' rows of a step summed), a Taylor pass
#: is split into two halves of equal work — always, so that the sums are the same whatever
#: the threads — computed at once by two threads (numpy and OpenBLAS release the GIL) when
#: the block allows two workers and torch runs one thread, else one after the other
PARALLEL_ROWS = 4096


@contextmanager
def hand_written_backward(workers: int = 1) -> Iterator[None]:
    """Within this block, derivatives of tanh MLPs on the CPU are computed with the
    hand-written backward pass (see the module doc): ``loss.backward()`` fills the
    parameters' ``.grad``; ``torch.autograd.grad`` with respect to them does not see them.
    ``workers`` ≥ 2 lets large Taylor passes run as two halves on two threads (a training run
    passes the cores it may use: ``train.threads``, or all of them when that is 0)."""
    from threadpoolctl import threadpool_limits

    prev, prev_w = _active[0], _workers[0]
    _active[0], _workers[0] = True, max(1, int(workers))
    try:
        # OpenBLAS splits a product over all cores from M·N·K > 262 144 on (a 256 × 50 × 50
        # tile): on cores shared with other runs that is ~30× slower; torch's count rules
        with threadpool_limits(limits=max(1, torch.get_num_threads()), user_api="blas"):
            yield
    finally:
        _active[0], _workers[0] = prev, prev_w


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
    _accumulate(params, out)


def _accumulate(params: list[torch.Tensor], out: list[np.ndarray | None]) -> None:
    """Add the parameter gradients into ``.grad``, as autograd would accumulate them
    (other terms of the loss may have added to it already)."""
    for p, g in zip(params, out, strict=True):
        if not p.requires_grad or g is None:
            continue
        if p.grad is None:
            p.grad = torch.from_numpy(g)
        else:
            acc = p.grad.numpy()
            np.add(acc, g, out=acc)


# -- any order: Taylor-mode forward, hand-written backward -----------------------------------
#
# The derivative engine's plan (learn/derivatives.py) carries each multi-index α of a
# pre-activation; an activation combines them by Faà di Bruno's rules, ∂^α σ(z) =
# Σ coef · σ⁽ᵏ⁾(z) · Π_{p ∈ subs} ∂^{β_p} z. Forward, per hidden layer: a = tanh z, the
# σ⁽ᵏ⁾ the rules read (polynomials in a), each live derivative's rule sum written into its
# rows of one stacked tile S, one product S Wᵀ. Backward, with G the gradient of the next
# tile: gW = Gᵀ S, gb = Σ G (value rows), gS = G W; then, rule by rule, gσ⁽ᵏ⁾ += coef·g·Π
# and g(∂^{β_p} z) += coef·g·σ⁽ᵏ⁾·Π_{q ≠ p}; and gz = g_a·σ' + Σ_k gσ⁽ᵏ⁾·σ⁽ᵏ⁺¹⁾. A
# derivative m may be carried for its first ``counts[m]`` rows only (the ragged pass:
# point sets that need fewer derivatives after those that need more).


def taylor_tanh(model, x: torch.Tensor, plan, counts: Sequence[int] | None = None) -> dict:
    """``{α: ∂^α model(x)}`` for the multi-indices of a derivative plan
    (:class:`~derlhybrid.learn.derivatives.DerivativePlan`) of a tanh MLP, derivative
    ``m`` on the first ``counts[m]`` rows of ``x`` (default: all). With gradients enabled,
    their gradients reach the parameters' ``.grad`` by the hand-written backward pass.
    Large passes run as two halves of equal work (at once on two threads inside a block
    with two workers; the results are the same with one)."""
    cache = _cache(model)
    params = cache.params
    B = x.shape[0]
    counts = [B] * len(plan.indices) if counts is None else list(counts)
    X = x.detach().numpy()
    if sum(counts) >= PARALLEL_ROWS:  # halves whatever the workers: the same sums either way
        r = _split_row(counts)
        parts = [(X[:r], [min(c, r) for c in counts]), (X[r:], [max(0, c - r) for c in counts])]
        states = _both(lambda p: _taylor_forward(cache.arrays, p[0], plan, p[1]), parts)
    else:
        states = [_taylor_forward(cache.arrays, X, plan, counts)]
    live = states[0].layers[-1].live  # the same in every half (it depends on the plan only)
    slots = [0, *live]
    if len(states) == 1:
        y = torch.from_numpy(states[0].output)
    else:  # per carried derivative, the halves' rows one after the other
        halves = [_slots(st, live) for st in states]
        y = torch.from_numpy(np.concatenate([h[i] for i in range(len(slots)) for h in halves]))
    if torch.is_grad_enabled() and any(p.requires_grad for p in params):
        y.requires_grad_(True)

        def backward(grad, states=states, params=params):
            G = np.ascontiguousarray(grad.numpy())
            if len(states) == 1:
                _accumulate(params, _taylor_backward(states[0], G))
                return
            # each half's tile from its rows of every carried derivative
            sizes = [[st.counts[m] for m in slots] for st in states]
            tiles, stop = [[] for _ in states], 0
            for i in range(len(slots)):
                for h, st_sizes in enumerate(sizes):
                    tiles[h].append(G[stop : stop + st_sizes[i]])
                    stop += st_sizes[i]
            jobs = [(st, np.concatenate(t)) for st, t in zip(states, tiles, strict=True)]
            outs = _both(lambda job: _taylor_backward(*job), jobs)
            total = [a if b is None else a + b for a, b in zip(*outs, strict=True)]
            _accumulate(params, total)

        y.register_hook(backward)
    sizes = [sum(st.counts[m] for st in states) for m in slots]
    pieces = y.split(sizes)
    slot = {m: i for i, m in enumerate(slots)}
    values = {}
    for m, alpha in enumerate(plan.indices):
        i = slot.get(m)
        values[alpha] = y.new_zeros(counts[m], y.shape[1]) if i is None else pieces[i]
    return values


def _slots(state, live) -> list[np.ndarray]:
    """A pass's output tile cut into its value rows and each live derivative's rows."""
    out, stop = [], 0
    for m in [0, *live]:
        n = state.counts[m]
        out.append(state.output[stop : stop + n])
        stop += n
    return out


def _split_row(counts: Sequence[int]) -> int:
    """The row r that halves the work Σ_m min(counts[m], r) of a ragged pass (derivative m
    carried on its first counts[m] rows)."""
    half, done, cs = sum(counts) / 2, 0, sorted(counts)
    for i, c in enumerate(cs):  # on [previous count, c]: work(r) = done + r·(len − i)
        if done + c * (len(cs) - i) >= half:
            return max(1, min(cs[-1] - 1, round((half - done) / (len(cs) - i))))
        done += c
    return cs[-1] // 2  # pragma: no cover - the loop always returns


_POOL: list = []


def _both(fn, halves: list) -> list:
    """``[fn(h) for h in halves]`` (two halves): with two workers allowed (and torch on one
    thread), the second on a worker thread while the calling thread computes the first
    (numpy and OpenBLAS release the GIL); otherwise one after the other. The arithmetic is
    the same either way, so the results do not depend on the number of workers."""
    if _workers[0] < 2 or torch.get_num_threads() != 1:
        return [fn(h) for h in halves]
    if not _POOL:
        from concurrent.futures import ThreadPoolExecutor

        _POOL.append(ThreadPoolExecutor(1, thread_name_prefix="derl-taylor"))
    other = _POOL[0].submit(fn, halves[1])
    first = fn(halves[0])
    return [first, other.result()]


def _tanh_poly(k: int) -> list[float]:
    """Coefficients (lowest power first, Python floats: numpy scalars would promote float32
    arrays) of dσ⁽ᵏ⁾/da for tanh, σ⁽ᵏ⁾ the polynomial in a = tanh z of
    :attr:`~derlhybrid.learn.models.Tanh.polynomials`."""
    got = _TANH_POLYS.get(k)
    if got is None:
        from .models import Tanh

        poly = np.polynomial.Polynomial(Tanh().polynomials[k - 1])
        got = _TANH_POLYS[k] = [float(c) for c in poly.deriv().coef]
    return got


_TANH_POLYS: dict[int, list[float]] = {}


def _sigma(a: np.ndarray, s1: np.ndarray, k: int) -> np.ndarray:
    """σ⁽ᵏ⁾ of tanh (k ≥ 2) at ``a`` = tanh z, ``s1`` = 1 − a² (rows alike):
    s1 · (dσ⁽ᵏ⁻¹⁾/da)(a), by Horner."""
    q = _tanh_poly(k - 1)
    d = len(q) - 1
    if d == 0:
        return s1 * q[0]
    acc = a * q[d]
    for i in range(d - 1, -1, -1):
        if q[i]:
            acc += q[i]
        if i:
            acc *= a
    acc *= s1
    return acc


def _rows(t: np.ndarray, n: int) -> np.ndarray:
    return t if t.ndim == 1 else t[:n]  # 1-D: the first layer's tangent, every row alike


def _product(cur: list, subs: tuple[int, ...], n: int, cache: dict) -> np.ndarray:
    """Π of the carried derivatives at ``subs`` over the first ``n`` rows, once per layer."""
    key = (subs, n)
    got = cache.get(key)
    if got is None:
        got = _rows(cur[subs[0]], n)
        for p in subs[1:]:
            got = got * _rows(cur[p], n)
        cache[key] = got
    return got


class _TaylorLayer:
    __slots__ = ("a", "cur", "live", "offsets", "products", "s", "sig")

    def __init__(self, S, a, sig, cur, live, offsets, products):
        self.s, self.a, self.sig, self.cur = S, a, sig, cur
        self.live, self.offsets, self.products = live, offsets, products


class _TaylorState:
    __slots__ = ("counts", "layers", "output", "plan", "rows_k", "weights", "x")

    def __init__(self, weights, x, plan, counts, rows_k, layers, output):
        self.weights, self.x, self.plan, self.counts = weights, x, plan, counts
        self.rows_k, self.layers, self.output = rows_k, layers, output


def _taylor_forward(params: list[np.ndarray], X: np.ndarray, plan, counts) -> _TaylorState:
    weights, biases = params[0::2], params[1::2]
    B, n_idx = X.shape[0], len(plan.indices)
    z = _mm(X, weights[0].T)
    z += biases[0]
    # after the first (affine) layer: ∂z/∂x_i = W₀[:, i] on every row (1-D), higher ones 0
    cur: list = [z] + [weights[0][:, a[0]] if len(a) == 1 else None for a in plan.indices[1:]]
    rows_k = {1: B}  # σ⁽ᵏ⁾ on the rows of the derivatives whose rules read it (σ': all)
    for m in range(1, n_idx):
        for k, _, _ in plan.rules[m]:
            rows_k[k] = max(rows_k.get(k, 0), counts[m])
    layers = []
    Z = z
    for W, b in zip(weights[1:], biases[1:], strict=True):
        live = [
            m
            for m in range(1, n_idx)
            if any(all(cur[p] is not None for p in subs) for _, _, subs in plan.rules[m])
        ]
        offsets, stop = {}, B
        for m in live:
            offsets[m] = stop
            stop += counts[m]
        S = np.empty((stop, z.shape[1]), dtype=z.dtype)
        a = np.tanh(z, out=S[:B])
        s1 = a * a
        np.subtract(1, s1, out=s1)
        sig = {1: s1}
        for k, r in rows_k.items():
            if k >= 2:
                sig[k] = _sigma(a[:r], s1[:r], k)
        products: dict = {}
        for m in live:
            n = counts[m]
            dst = S[offsets[m] : offsets[m] + n]
            first = True
            for k, coef, subs in plan.rules[m]:
                if any(cur[p] is None for p in subs):
                    continue
                P = _product(cur, subs, n, products)
                if first:
                    np.multiply(sig[k][:n], P, out=dst)
                    if coef != 1:
                        dst *= coef
                    first = False
                else:
                    t = sig[k][:n] * P
                    if coef != 1:
                        t *= coef
                    dst += t
        layers.append(_TaylorLayer(S, a, sig, cur, live, offsets, products))
        Z = _mm(S, W.T)
        Z[:B] += b
        z = Z[:B]
        cur = [z] + [None] * (n_idx - 1)
        for m in live:
            cur[m] = Z[offsets[m] : offsets[m] + counts[m]]
    return _TaylorState(weights, X, plan, counts, rows_k, layers, Z)


def _taylor_backward(state: _TaylorState, G: np.ndarray) -> list[np.ndarray | None]:
    """The parameter gradients (weights and biases, layer by layer) from ``G``, the
    gradient of the pass's output tile (value rows, then each live derivative's)."""
    weights, X, plan, counts = state.weights, state.x, state.plan, state.counts
    B, n_idx = X.shape[0], len(plan.indices)
    ones = _ones(max(G.shape[0], B), G.dtype)  # row sums as one product
    out: list[np.ndarray | None] = [None] * (2 * len(weights))
    tangent_grads: dict[int, np.ndarray] = {}  # the first layer's constant tangents
    for li in range(len(weights) - 1, 0, -1):
        L = state.layers[li - 1]
        out[2 * li] = _mm(G.T, L.s)
        out[2 * li + 1] = ones[:B] @ G[:B]
        gS = _mm(G, weights[li])
        cur, sig = L.cur, L.sig
        # the gradient tile of the layer below (its z rows, then its live derivatives'), or
        # for the first layer's 1-D tangents their row sums
        below = [m for m in range(1, n_idx) if cur[m] is not None and cur[m].ndim == 2]
        width = gS.shape[1]
        Gn = np.empty((B + sum(counts[m] for m in below), width), G.dtype)
        gcur: list = [Gn[:B]] + [None] * (n_idx - 1)
        # written, not added: gz's σ' part, and each carried derivative's own σ'·∂^α z term
        # (the rule (1, 1, (m,)) of every m: the first contribution to its rows)
        np.multiply(gS[:B], sig[1], out=gcur[0])
        stop = B
        for m in below:
            n = counts[m]
            gcur[m] = Gn[stop : stop + n]
            stop += n
            np.multiply(gS[L.offsets[m] : L.offsets[m] + n], sig[1][:n], out=gcur[m])
        for m in range(1, n_idx):
            if cur[m] is not None and cur[m].ndim == 1:
                gcur[m] = tangent_grads[m] = np.zeros_like(cur[m])
        gsig: dict[int, np.ndarray] = {}
        for m in L.live:
            n = counts[m]
            g = gS[L.offsets[m] : L.offsets[m] + n]
            own = (m,)
            for k, coef, subs in plan.rules[m]:
                if any(cur[p] is None for p in subs):
                    continue
                t = g * _product(cur, subs, n, L.products)
                if coef != 1:
                    t *= coef
                gk = gsig.get(k)
                if gk is None:
                    gk = gsig[k] = np.zeros((state.rows_k[k], width), G.dtype)
                gk[:n] += t
                if k == 1 and subs == own and gcur[m].ndim == 2:
                    continue  # written above
                gs = g * sig[k][:n]
                if coef != 1:
                    gs *= coef
                for j, p in enumerate(subs):
                    others = subs[:j] + subs[j + 1 :]
                    v = gs * _product(cur, others, n, L.products) if others else gs
                    if gcur[p].ndim == 1:
                        gcur[p] += ones[:n] @ v
                    else:
                        gcur[p][:n] += v
        # through a = tanh z and σ⁽ᵏ⁾(z): gz = g_a·σ' + Σ_k gσ⁽ᵏ⁾·σ⁽ᵏ⁺¹⁾
        gz = gcur[0]
        for k, gk in gsig.items():
            r = gk.shape[0]
            nxt = sig.get(k + 1)
            if nxt is None or nxt.shape[0] < r:
                nxt = _sigma(L.a[:r], sig[1][:r], k + 1)
            gk *= nxt[:r]
            gz[:r] += gk
        G = Gn
    # the first layer: z = x W₀ᵀ + b₀, ∂z/∂x_i = W₀[:, i]
    gz = G[:B]
    gW0 = _mm(gz.T, X)
    for m, g in tangent_grads.items():
        gW0[:, plan.indices[m][0]] += g
    out[0], out[1] = gW0, ones[:B] @ gz
    return out
