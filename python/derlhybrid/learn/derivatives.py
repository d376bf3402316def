"""Input derivatives of a network, computed once per batch and shared by all loss terms.

A derivative is named by a *multi-index*: a sorted tuple of input positions, ``()`` for the
value, ``(0,)`` for ∂/∂x₀, ``(1, 1, 1)`` for ∂³/∂x₁³. :func:`input_derivatives` computes a
set of them for a batch and returns a :class:`Derivatives` (each entry ``(B, n_out)``).

Two engines:

* ``"forward"`` (default for :class:`~derlhybrid.learn.models.MLP`): Taylor-mode forward
  propagation. Every requested derivative of every pre-activation is carried layer by layer:
  linear layers act on all of them in one matrix product, and an activation combines them by
  Faà di Bruno's formula, ∂^α σ(z) = Σ_π σ^{(|π|)}(z) Π_{β∈π} ∂^β z over the set partitions π
  of α (collapsed once per plan into distinct products with integer coefficients). The cost
  is a handful of batched matrix products per layer, whatever the batch size, against one
  reverse pass per sample and per output in the paper's ``vmap(jacrev)``; and the result is
  an ordinary differentiable graph, so training backpropagates through it.
* ``"autograd"``: nested ``torch.autograd.grad`` (any ``nn.Module``); the reference that the
  tests cross-check the forward engine against (to 1e-10 in float64).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import cast

import torch
from torch import nn

from . import fused
from .models import scalar_constants

__all__ = [
    "ENGINES",
    "DerivativePlan",
    "Derivatives",
    "input_derivatives",
    "ragged_derivatives",
    "split_derivatives",
]

MultiIndex = tuple[int, ...]

#: from this batch size on, higher-order plans of at most ROWWISE_MAX_INDICES derivatives
#: (value included) carry their derivative rows unstacked: at batch 1000 a KdV plan (5)
#: gains, the NCL teacher's (35, width 128) loses 6 % without its one stacked product
ROWWISE_BATCH = 256
ROWWISE_MAX_INDICES = 8


def _set_partitions(items: list[int]):
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in _set_partitions(rest):
        for i in range(len(part)):  # put `first` into an existing block
            yield [*part[:i], [first, *part[i]], *part[i + 1 :]]
        yield [[first], *part]


def closure(multi_indices: Iterable[Sequence[int]]) -> tuple[MultiIndex, ...]:
    """Every multi-index needed to compute the given ones (all sub-multisets), value first,
    then by order."""
    need: set[MultiIndex] = {()}
    for alpha in multi_indices:
        alpha = tuple(sorted(int(i) for i in alpha))
        for r in range(1, len(alpha) + 1):
            need.update(tuple(sorted(c)) for c in itertools.combinations(alpha, r))
    return tuple(sorted(need, key=lambda a: (len(a), a)))


class DerivativePlan:
    """The multi-indices to carry and, for each, its Faà di Bruno products.

    ``rules[m]`` lists ``(k, coefficient, positions)``: σ^{(k)}(z) · coefficient · Π of the
    carried derivatives at ``positions``. Plans are cached by their index set.
    """

    def __init__(self, multi_indices: Iterable[Sequence[int]]):
        self.indices = closure(multi_indices)
        self.position = {a: m for m, a in enumerate(self.indices)}
        self.order = max(len(a) for a in self.indices)
        #: number of first-order multi-indices (they follow the value in ``indices``)
        self.n_first = sum(len(a) == 1 for a in self.indices)
        self.rules: list[list[tuple[int, int, tuple[int, ...]]]] = [[]]
        for alpha in self.indices[1:]:
            counts: dict[tuple[int, tuple[int, ...]], int] = {}
            for part in _set_partitions(list(range(len(alpha)))):
                subs = tuple(
                    sorted(self.position[tuple(sorted(alpha[p] for p in b))] for b in part)
                )
                key = (len(part), subs)
                counts[key] = counts.get(key, 0) + 1
            self.rules.append([(k, c, subs) for (k, subs), c in sorted(counts.items())])

    def __repr__(self) -> str:
        return f"DerivativePlan({list(self.indices)})"


_PLANS: dict[tuple[MultiIndex, ...], DerivativePlan] = {}


def _plan(indices: tuple[MultiIndex, ...]) -> DerivativePlan:
    # a plain dict, not lru_cache: torch.compile traces through it without a warning
    plan = _PLANS.get(indices)
    if plan is None:
        plan = _PLANS[indices] = DerivativePlan(indices)
    return plan


class Derivatives:
    """Derivatives of the outputs at a batch of points: ``d[alpha]`` is ``(B, n_out)``."""

    def __init__(self, values: dict[MultiIndex, torch.Tensor]):
        self._values = values

    @property
    def value(self) -> torch.Tensor:
        return self._values[()]

    def __getitem__(self, alpha: Sequence[int]) -> torch.Tensor:
        key = tuple(sorted(alpha))
        try:
            return self._values[key]
        except KeyError:
            raise KeyError(
                f"derivative {key} was not computed (computed: {sorted(self._values)})"
            ) from None

    def __contains__(self, alpha) -> bool:
        return tuple(sorted(alpha)) in self._values

    def keys(self):
        return self._values.keys()

    def jacobian(self, inputs: Sequence[int]) -> torch.Tensor:
        """``(B, n_out, k)`` first derivatives with respect to ``inputs``."""
        return torch.stack([self[(i,)] for i in inputs], dim=-1)

    def hessian(self, inputs: Sequence[int]) -> torch.Tensor:
        """``(B, n_out, k, k)`` symmetric second derivatives with respect to ``inputs``."""
        rows = [torch.stack([self[(i, j)] for j in inputs], dim=-1) for i in inputs]
        return torch.stack(rows, dim=-2)


def _forward_mlp(model, x: torch.Tensor, plan: DerivativePlan) -> dict[MultiIndex, torch.Tensor]:
    if fused.applies(model, x):  # tanh, CPU, eager, in the trainer: hand-written backward
        if plan.order > 1:
            return fused.taylor_tanh(model, x, plan)
        outs = fused.first_order_tanh(model, x, [alpha[0] for alpha in plan.indices[1:]])
        return dict(zip(plan.indices, outs, strict=True))
    # a list, not the ModuleList: slicing a ModuleList builds a new module (~25 µs)
    layers, act = list(model.layers), model.activation
    first = layers[0]
    n_idx = len(plan.indices)
    # after the first (affine) layer: ∂z/∂x_i = W[:, i] for every row (kept 1-D, broadcast),
    # second and higher derivatives vanish (None = identically zero)
    cur: list[torch.Tensor | None] = [nn.functional.linear(x, first.weight, first.bias)]
    for alpha in plan.indices[1:]:
        cur.append(first.weight[:, alpha[0]] if len(alpha) == 1 else None)
    batch = x.shape[0]
    first_order = plan.order == 1
    # large batches: each derivative row its own matrix product (the kernels are large, and
    # stacking the rows costs a copy forward and one backward per layer); small batches:
    # the rows stacked into one product (fewer, dispatch-bound kernels)
    rowwise = batch >= ROWWISE_BATCH and len(plan.indices) <= ROWWISE_MAX_INDICES
    stack = None  # (n_idx − 1, B, width) once every derivative is nonzero
    for layer in layers[1:]:
        if first_order:  # σ(z) and σ'(z)·∂z in as few kernels as the activation allows
            a, tangents = act.first_order(cur[0], cur[1:])
            cur = cast(
                "list[torch.Tensor | None]",
                [nn.functional.linear(a, layer.weight, layer.bias)]
                + [nn.functional.linear(t, layer.weight) for t in tangents],
            )
            continue
        sig = act.derivatives(cur[0], plan.order)
        zero_c = torch.zeros((), dtype=sig[0].dtype, device=sig[0].device)
        if stack is not None:  # every derivative live and stacked: batched first-order part
            cur, stack = _stacked_layer(plan, sig, cur, stack, layer, batch)
            continue
        # the same list, typed for the reads below: only at positions checked non-None
        live_cur = cast("list[torch.Tensor]", cur)
        nxt: list[torch.Tensor | None] = [sig[0]]
        products: dict[tuple[int, ...], torch.Tensor | None] = {}  # shared within a layer
        for m in range(1, n_idx):
            acc = None
            for k, coef, subs in plan.rules[m]:
                if any(cur[p] is None for p in subs):
                    continue
                # acc += coef · σ^(k) · Π cur[subs]: the last multiplication fused (addcmul)
                if len(subs) == 1:
                    left = live_cur[subs[0]]
                else:
                    left = products.get(subs)
                    if left is None:
                        left = live_cur[subs[0]]
                        for p in subs[1:]:
                            left = left * live_cur[p]
                        products[subs] = left
                if acc is None:
                    acc = (
                        sig[k] * left
                        if coef == 1
                        else torch.addcmul(zero_c, sig[k], left, value=coef)
                    )
                else:
                    acc = torch.addcmul(acc, sig[k], left, value=coef)
            nxt.append(acc)
        live = [m for m in range(1, n_idx) if nxt[m] is not None]
        # the same list, typed for the reads below: the value (σ(z)) and the live positions
        live_nxt = cast("list[torch.Tensor]", nxt)
        cur = [nn.functional.linear(live_nxt[0], layer.weight, layer.bias)] + [None] * (n_idx - 1)
        if len(live) == 1 or rowwise:  # one product per derivative, no stacking copies
            for m in live:
                cur[m] = nn.functional.linear(live_nxt[m], layer.weight)
        elif live:
            width = live_nxt[0].shape[-1]
            stacked = torch.stack([live_nxt[m].expand(batch, width) for m in live])
            out = torch.matmul(stacked, layer.weight.T)
            for m, row in zip(live, out.unbind(0), strict=True):
                cur[m] = row
            if len(live) == n_idx - 1:
                stack = out
    value = cur[0]
    assert value is not None  # the value is always carried (None marks zero derivatives)
    n_out = value.shape[-1]
    zero = None
    values = {}
    for m, alpha in enumerate(plan.indices):
        t = cur[m]
        if t is None:
            if zero is None:
                zero = torch.zeros_like(value)
            t = zero
        elif t.dim() == 1:  # a derivative of a one-layer (linear) network
            t = t.expand(batch, n_out)
        values[alpha] = t
    return values


def _forward_mlp_ragged(
    model, x: torch.Tensor, plan: DerivativePlan, counts: Sequence[int]
) -> dict[MultiIndex, torch.Tensor]:
    """:func:`_forward_mlp` with the derivative ``plan.indices[m]`` carried for the first
    ``counts[m]`` rows of ``x`` only (``counts[0]`` = all rows: the value). Point sets
    that need fewer derivatives, placed after those that need more, then share one pass
    without paying for derivatives they do not read. A sub-derivative of ``m`` must be
    carried for at least ``counts[m]`` rows. Each derivative row has its own matrix
    product (large batches: the kernels are large, and no stacking copies)."""
    if fused.applies(model, x):  # tanh, CPU, eager, in the trainer: hand-written backward
        return fused.taylor_tanh(model, x, plan, counts)
    layers, act = list(model.layers), model.activation
    first = layers[0]
    n_idx = len(plan.indices)
    cur: list[torch.Tensor | None] = [nn.functional.linear(x, first.weight, first.bias)]
    for alpha in plan.indices[1:]:
        cur.append(first.weight[:, alpha[0]] if len(alpha) == 1 else None)
    zero_c = torch.zeros((), dtype=x.dtype, device=x.device)
    # σ'' and higher only where a second or higher derivative is carried
    high = max((n for n, a in zip(counts, plan.indices, strict=True) if len(a) > 1), default=0)
    high = high if high < x.shape[0] and plan.order > 1 else None
    for layer in layers[1:]:
        sig = act.derivatives(cur[0], plan.order, high)
        cut: dict[tuple[bool, int, int], torch.Tensor] = {}
        # the same list, typed for the reads below: only at positions checked non-None
        live_cur = cast("list[torch.Tensor]", cur)

        # the first n rows of src[i], one view a layer
        def rows(i: int, n: int, src: list[torch.Tensor], sig=sig, cut=cut) -> torch.Tensor:
            t = src[i]
            if t.dim() == 1 or t.shape[0] == n:
                return t
            key = (src is sig, i, n)
            got = cut.get(key)
            if got is None:
                got = cut[key] = t[:n]
            return got

        nxt: list[torch.Tensor | None] = [sig[0]]
        products: dict[tuple[tuple[int, ...], int], torch.Tensor] = {}
        for m in range(1, n_idx):
            n = counts[m]
            acc = None
            for k, coef, subs in plan.rules[m]:
                if any(cur[p] is None for p in subs):
                    continue
                if len(subs) == 1:
                    left = rows(subs[0], n, live_cur)
                else:
                    left = products.get((subs, n))
                    if left is None:
                        left = rows(subs[0], n, live_cur)
                        for p in subs[1:]:
                            left = left * rows(p, n, live_cur)
                        products[(subs, n)] = left
                sk = rows(k, n, sig)
                if acc is None:
                    acc = sk * left if coef == 1 else torch.addcmul(zero_c, sk, left, value=coef)
                else:
                    acc = torch.addcmul(acc, sk, left, value=coef)
            nxt.append(acc)
        value = nxt[0]
        assert value is not None  # σ(z): the value is always carried
        cur = [nn.functional.linear(value, layer.weight, layer.bias)] + [
            None if t is None else nn.functional.linear(t, layer.weight) for t in nxt[1:]
        ]
    value = cur[0]
    assert value is not None  # the value is always carried (None marks zero derivatives)
    n_out = value.shape[-1]
    values = {}
    for m, alpha in enumerate(plan.indices):
        t, n = cur[m], counts[m]
        if t is None:
            t = value.new_zeros(n, n_out)
        elif t.dim() == 1:  # a derivative of a one-layer (linear) network
            t = t.expand(n, n_out)
        values[alpha] = t
    return values


def ragged_derivatives(
    model: nn.Module,
    blocks: Sequence[tuple[torch.Tensor, Iterable[Sequence[int]]]],
    *,
    engine: str = "auto",
) -> list[Derivatives] | None:
    """Input derivatives of several point sets in one forward pass, each set only with
    the derivatives it asks for: ``blocks`` lists ``(x, multi_indices)``; the sets are
    placed in the order given, so list those that need more derivatives first. Returns
    one :class:`Derivatives` per block (its asked-for derivatives and their
    sub-derivatives), or ``None`` where this does not apply (a model that is not a plain
    MLP, the autograd engine, or more than ``ROWWISE_MAX_INDICES`` derivatives in all):
    then call :func:`input_derivatives` per set."""
    is_mlp = hasattr(model, "layers") and hasattr(model, "activation")
    if engine == "autograd" or not is_mlp or callable(getattr(model, "input_derivatives", None)):
        return None
    needs = [closure(mi) for _, mi in blocks]
    plan = _plan(closure([a for need in needs for a in need]))
    if len(plan.indices) > ROWWISE_MAX_INDICES:
        return None
    _check_indices(plan.indices, blocks[0][0].shape[1])
    stops, stop = [], 0
    for xb, _ in blocks:
        stop += xb.shape[0]
        stops.append(stop)
    counts = [0] * len(plan.indices)
    for need, stop in zip(needs, stops, strict=True):
        for a in need:
            m = plan.position[a]
            counts[m] = max(counts[m], stop)
    x = torch.cat([xb for xb, _ in blocks])
    values = _forward_mlp_ragged(model, x, plan, counts)
    out, start = [], 0
    for need, stop in zip(needs, stops, strict=True):
        out.append(Derivatives({a: values[a][start:stop] for a in need}))
        start = stop
    return out


def _check_indices(indices: Sequence[MultiIndex], n_in: int) -> None:
    bad = [a for a in indices if any(i < 0 or i >= n_in for i in a)]
    if bad:
        raise ValueError(f"multi-index {bad[0]} refers to an input beyond the {n_in} inputs")


def split_derivatives(
    model: nn.Module,
    xs: Sequence[torch.Tensor],
    multi_indices: Iterable[Sequence[int]],
    *,
    engine: str = "auto",
) -> list[Derivatives]:
    """:func:`input_derivatives` of several point sets in one pass (their rows
    concatenated), returned per set. The results are split with one autograd node per
    derivative (slices would cost a zero-filled full-size gradient each in the backward
    pass), or one in all where the first-order tanh path (:mod:`~derlhybrid.learn.fused`)
    computes them."""
    x = torch.cat(list(xs))
    sizes = [len(xb) for xb in xs]
    indices = closure(multi_indices)
    own = callable(getattr(model, "input_derivatives", None))
    if (
        engine in ("auto", "forward")
        and not own
        and hasattr(model, "layers")
        and hasattr(model, "activation")
        and max(len(a) for a in indices) <= 1
        and fused.applies(model, x)
    ):
        _check_indices(indices, x.shape[1])
        pieces = fused.first_order_tanh(model, x, [a[0] for a in indices[1:]], sizes)
        n = len(sizes)
        return [
            Derivatives({a: pieces[m * n + i] for m, a in enumerate(indices)}) for i in range(n)
        ]
    d_all = input_derivatives(model, x, indices, engine=engine)
    split = {k: v.split(sizes) for k, v in d_all._values.items()}
    return [Derivatives({k: v[i] for k, v in split.items()}) for i in range(len(sizes))]


def _stacked_layer(
    plan: DerivativePlan, sig, cur, stack, layer, batch
) -> tuple[list[torch.Tensor | None], torch.Tensor]:
    """One activation + linear layer with all derivatives carried in one (M − 1, B, W)
    tensor: the σ'·∂^α z part of every α in one product, the higher Faà di Bruno terms
    added to the rows of |α| ≥ 2, one batched matrix product. Rows are split with
    ``unbind`` and joined with ``stack`` (one autograd node each; indexing rows one by one
    would cost a zero-filled full-size gradient per row in the backward pass)."""
    rows = list((sig[1] * stack).unbind(0))
    n1 = plan.n_first
    products: dict[tuple[int, ...], torch.Tensor] = {}

    def product(subs):
        # ∂^{s1}z·∂^{s2}z·…, folded from the left and cached per prefix; a loop, not a
        # recursive closure: a closure that names itself is a reference cycle, which kept
        # every layer's tensors alive until Python's cycle collector ran (memory grew by
        # ~2.5 MB a batch when a 4×128 NCL field was evaluated at 256 points a batch)
        acc = cur[subs[0]]
        for i in range(1, len(subs)):
            got = products.get(subs[: i + 1])
            if got is None:
                got = products[subs[: i + 1]] = acc * cur[subs[i]]
            acc = got
        return acc

    scaled: dict[tuple[int, int], torch.Tensor] = {}  # coef·σ^(k), once per layer

    def weight(k, coef):
        if coef == 1:
            return sig[k]
        got = scaled.get((k, coef))
        if got is None:
            got = scaled[(k, coef)] = sig[k] * scalar_constants(sig[k], (coef,))[0]
        return got

    for m in range(n1 + 1, len(plan.indices)):
        acc = rows[m - 1]
        for k, coef, subs in plan.rules[m]:
            if k > 1:  # the k = 1 term σ'·∂^α z is already in the row
                acc = torch.addcmul(acc, weight(k, coef), product(subs))
        rows[m - 1] = acc
    out = torch.matmul(torch.stack(rows), layer.weight.T)
    nxt: list[torch.Tensor | None] = [
        nn.functional.linear(sig[0], layer.weight, layer.bias),
        *out.unbind(0),
    ]
    return nxt, out


def _autograd(
    fn: Callable, x: torch.Tensor, plan: DerivativePlan
) -> dict[MultiIndex, torch.Tensor]:
    x = x.detach().requires_grad_(True)
    values: dict[MultiIndex, torch.Tensor] = {(): fn(x)}
    n_out = values[()].shape[-1]
    grads: dict[tuple[MultiIndex, int], torch.Tensor] = {}
    for alpha in plan.indices[1:]:
        parent, last = alpha[:-1], alpha[-1]
        cols = []
        for o in range(n_out):
            key = (parent, o)
            if key not in grads:
                (g,) = torch.autograd.grad(
                    values[parent][:, o].sum(), x, create_graph=True, allow_unused=True
                )
                grads[key] = torch.zeros_like(x) if g is None else g
            cols.append(grads[key][:, last])
        values[alpha] = torch.stack(cols, dim=-1)
    return values


ENGINES = ("auto", "forward", "autograd")


def input_derivatives(
    model: nn.Module,
    x: torch.Tensor,
    multi_indices: Iterable[Sequence[int]],
    *,
    engine: str = "auto",
) -> Derivatives:
    """Derivatives of ``model(x)`` with respect to its inputs at the rows of ``x``.

    ``multi_indices``: the derivatives wanted (sorted tuples of input positions); their
    sub-derivatives and the value come along. ``engine="auto"`` uses forward (Taylor-mode)
    propagation for :class:`~derlhybrid.learn.models.MLP` and autograd otherwise.

    A model that knows how to compute its own input derivatives — a method
    ``model.input_derivatives(x, multi_indices, engine=...)`` returning
    :class:`Derivatives`, e.g. the Neural-Conservation-Law field
    :class:`~derlhybrid.learn.ncl.BallNCL`, assembled from the derivatives of its inner
    MLP — is asked for them, unless ``engine="autograd"`` (then nested autograd over its
    ``forward``, the reference).
    """
    if x.dim() != 2:
        raise ValueError(f"inputs must be (batch, n_in), got shape {tuple(x.shape)}")
    indices = closure(multi_indices)
    _check_indices(indices, x.shape[1])
    plan = _plan(indices)
    if engine not in ENGINES:
        raise ValueError(f"unknown derivative engine {engine!r}; choose one of {ENGINES}")
    own = getattr(model, "input_derivatives", None)
    if callable(own) and engine != "autograd":
        return cast(Derivatives, own(x, indices, engine=engine))
    is_mlp = hasattr(model, "layers") and hasattr(model, "activation")
    if engine == "forward" and not is_mlp:
        raise ValueError("the forward engine needs a derlhybrid MLP; use engine='autograd'")
    if engine == "autograd" or (engine == "auto" and not is_mlp):
        return Derivatives(_autograd(model, x, plan))
    return Derivatives(_forward_mlp(model, x, plan))
