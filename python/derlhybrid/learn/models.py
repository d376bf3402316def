"""Coordinate networks: multilayer perceptrons with smooth activations.

``MLP(MLPConfig(n_in=3, n_out=1, width=50, depth=4))`` is the paper's pendulum network
(3 → 4×50 tanh → 1): ``depth`` hidden layers of ``width`` units, the activation after each
hidden layer, a plain linear output layer. The configuration is a frozen dataclass that a
checkpoint stores verbatim (style rule 12), so ``MLP(MLPConfig(**saved))`` rebuilds the
network. PyTorch's default initialisation is kept (as the paper), seeded by the caller.

The input-derivative engine (:mod:`derlhybrid.learn.derivatives`) propagates Taylor
coefficients through exactly these layers; an activation therefore declares how to compute
its derivatives of every order (:class:`Activation`).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import cast

import numpy as np
import torch
from torch import nn

__all__ = ["ACTIVATIONS", "MLP", "Activation", "MLPConfig"]

DTYPES = {"float32": torch.float32, "float64": torch.float64}


_CONSTANTS: dict = {}


def scalar_constants(like: torch.Tensor, values) -> list[torch.Tensor]:
    """0-d tensors of ``like``'s dtype and device (cached)."""
    out = []
    for v in values:
        key = (float(v), like.dtype, like.device)
        c = _CONSTANTS.get(key)
        if c is None:
            c = _CONSTANTS[key] = torch.tensor(float(v), dtype=like.dtype, device=like.device)
        out.append(c)
    return out


#: from this many elements on, the derivative engine's tanh is numpy's (see :func:`_tanh`)
NUMPY_TANH_MIN = 32768


class _NumpyTanh(torch.autograd.Function):
    """tanh by numpy's vectorised kernel, with aten's backward (differentiable again)."""

    @staticmethod
    def forward(ctx, z):
        a = torch.from_numpy(np.tanh(z.detach().numpy()))
        ctx.save_for_backward(a)
        return a

    @staticmethod
    def backward(ctx, grad):
        (a,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, a)


def _tanh(z: torch.Tensor) -> torch.Tensor:
    """tanh for the derivative engine. On large CPU tensors numpy's kernel (a faithful
    tanh, ≤ 1 ulp from torch's) is 4–6× faster than this torch build's one-thread
    ``torch.tanh`` (float32 1000 × 50: ~20 µs against ~130 µs; a tenth of a KdV step at
    batch 1000 went to tanh); small tensors, other devices and traced graphs keep
    ``torch.tanh``, whose dispatch is cheaper than an autograd Function's."""
    return _NumpyTanh.apply(z) if _large(z) else torch.tanh(z)


def _large(z: torch.Tensor) -> bool:
    """A CPU float tensor large enough for numpy's tanh and one-node tanh jets to pay
    (eager only: traced graphs keep aten's operations)."""
    return (
        z.numel() >= NUMPY_TANH_MIN
        and z.device.type == "cpu"
        and z.dtype in (torch.float32, torch.float64)
        and not torch.compiler.is_compiling()
    )


class Activation:
    """A smooth scalar activation σ with all its derivatives.

    ``derivatives(z, n)`` returns ``[σ(z), σ'(z), …, σ⁽ⁿ⁾(z)]``. tanh and softplus are
    computed from one transcendental call each: their derivatives are polynomials in
    ``a = tanh z`` (a' = 1 − a²) and in ``s = sigmoid z`` (s' = s − s²), whose coefficients
    are derived once by the recurrence P_{k+1}(a) = P_k'(a)·g(a).
    """

    name = "abstract"

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def derivatives(self, z: torch.Tensor, n: int, rows: int | None = None) -> list[torch.Tensor]:
        """``[σ(z), σ'(z), …, σ⁽ⁿ⁾(z)]``; with ``rows``, σ'' and higher for the first
        ``rows`` rows of ``z`` only (the derivative engine's point sets that need no higher
        derivatives follow those that do)."""
        raise NotImplementedError

    def first_order(self, z: torch.Tensor, tangents) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """σ(z) and σ'(z)·t for each tangent t (the first-derivative hot path)."""
        value, d1 = self.derivatives(z, 1)
        return value, [d1 * t for t in tangents]


class _PolynomialActivation(Activation):
    #: coefficients (lowest power first) of g, with var' = g(var), and of σ' as a polynomial
    generator: tuple[float, ...] = ()
    first: tuple[float, ...] = ()

    @cached_property
    def polynomials(self) -> list[np.ndarray]:
        """Coefficients (lowest power first) of σ', σ'', … as polynomials in ``var``."""
        polys: list[np.ndarray] = [np.array(self.first, dtype=np.float64)]
        g = np.polynomial.Polynomial(self.generator)
        for _ in range(7):  # derivatives up to order 8 (the engine needs ≤ 4)
            p = np.polynomial.Polynomial(polys[-1])
            polys.append((p.deriv() * g).coef)
        return polys

    def _value_and_var(self, z):
        raise NotImplementedError

    def derivatives(self, z, n, rows=None):
        value, var = self._value_and_var(z)
        out = [value]
        for k in range(1, n + 1):
            if k == 2 and rows is not None:
                var = var[:rows]
            c = self.polynomials[k - 1]
            acc = torch.full_like(var, float(c[-1]))
            for coef in c[-2::-1]:  # Horner
                acc = acc * var + float(coef)
            out.append(acc)
        return out


class Tanh(_PolynomialActivation):
    name = "tanh"
    generator = (1.0, 0.0, -1.0)  # a' = 1 − a²
    first = (1.0, 0.0, -1.0)  # σ' = 1 − a²

    def __call__(self, z):
        return torch.tanh(z)

    def _value_and_var(self, z):
        a = _tanh(z)
        return a, a

    def first_order(self, z, tangents):
        # aten's tanh_backward(t, a) = t·(1 − a²) in one (differentiable) kernel
        a = _tanh(z)
        return a, [torch.ops.aten.tanh_backward(t.expand_as(a), a) for t in tangents]

    def derivatives(self, z, n, rows=None):  # hand-unrolled to order 3: the common case
        if n > 3:
            return super().derivatives(z, n, rows)
        if n >= 2 and _large(z):  # one autograd node: pays on large tensors only
            return list(_TanhJet.apply(z, n, rows))
        one, m2, six = scalar_constants(z, (1.0, -2.0, 6.0))
        return _tanh_jet(_tanh(z), n, rows, one, m2, six)


def _tanh_jet(a, n, rows, one, m2, six):
    """[σ, σ', σ'', σ‴] of tanh from a = tanh z (σ'' and σ‴ on the first ``rows`` only)."""
    out = [a]
    if n >= 1:
        a2 = a * a
        d1 = one - a2  # 1 − a²
        out.append(d1)
    if n >= 2 and rows is not None:
        a, a2, d1 = a[:rows], a2[:rows], d1[:rows]
    if n >= 2:
        out.append(a * d1 * m2)  # −2a(1 − a²)
    if n >= 3:
        out.append(d1 * (a2 * six + m2))  # (6a² − 2)(1 − a²)
    return out


class _TanhJet(torch.autograd.Function):
    """tanh and its derivatives to order 2 or 3 as one autograd node: the forward
    arithmetic of :func:`_tanh_jet`, and a hand-written backward, (1 − a²)·Σ_k g_k·dσ⁽ᵏ⁾/da
    (a polynomial in a: a few fused kernels) instead of the backward of every product of
    the chain and of the row slices."""

    @staticmethod
    def forward(ctx, z, n, rows):
        one, m2, six = scalar_constants(z, (1.0, -2.0, 6.0))
        a = torch.from_numpy(np.tanh(z.detach().numpy()))
        ctx.save_for_backward(a)
        ctx.rows = rows
        return tuple(_tanh_jet(a, n, rows, one, m2, six))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g0, g1, g2, g3=None):
        (a,) = ctx.saved_tensors
        # dσ/da = 1, dσ'/da = −2a, dσ''/da = 6a² − 2, dσ‴/da = 16a − 24a³
        acc = torch.zeros_like(a) if g0 is None else g0.clone()
        if g1 is not None:
            acc.addcmul_(a, g1, value=-2.0)
        if g2 is not None or g3 is not None:
            ah = a if ctx.rows is None else a[: ctx.rows]
            head = acc if ctx.rows is None else acc[: ctx.rows]
            u = ah * ah
            if g2 is not None:
                head.addcmul_(g2, u.mul(6.0).sub_(2.0))
            if g3 is not None:
                head.addcmul_(g3, u.mul(-24.0).add_(16.0).mul_(ah))
        return torch.ops.aten.tanh_backward(acc, a), None, None


class Softplus(_PolynomialActivation):
    """σ(z) = log(1 + e^{βz})/β (β = 1 by default; the NCL model of paper.md §9 uses
    β = 25). σ⁽ᵏ⁾(z) = β^{k−1} P_{k−1}(s) with s = sigmoid(βz). The value switches to the
    identity only above βz > 40 (torch's default threshold 20 would put a kink of
    e^{−20} ≈ 2·10⁻⁹ into the function, visible in its higher derivatives)."""

    name = "softplus"
    generator = (0.0, 1.0, -1.0)  # s' = s − s²
    first = (0.0, 1.0)  # σ' = s
    threshold = 40.0

    def __init__(self, beta: float = 1.0):
        self.beta = float(beta)

    def __call__(self, z):
        return nn.functional.softplus(z, beta=self.beta, threshold=self.threshold)

    def _value_and_var(self, z):
        value = nn.functional.softplus(z, beta=self.beta, threshold=self.threshold)
        return value, torch.sigmoid(z * self.beta if self.beta != 1.0 else z)

    def derivatives(self, z, n, rows=None):
        out = super().derivatives(z, n, rows)
        if self.beta != 1.0:
            for k in range(2, n + 1):
                out[k] = out[k] * self.beta ** (k - 1)
        return out


class Sine(Activation):
    """σ(z) = sin(ω₀ z) (SIREN's activation; ω₀ = 1 by default)."""

    name = "sin"

    def __init__(self, omega0: float = 1.0):
        self.omega0 = float(omega0)

    def __call__(self, z):
        return torch.sin(self.omega0 * z)

    def derivatives(self, z, n, rows=None):
        w = self.omega0 * z
        s, c = torch.sin(w), torch.cos(w)
        cycle = (s, c, -s, -c)
        out = [cycle[k % 4] if k == 0 else cycle[k % 4] * self.omega0**k for k in range(n + 1)]
        if rows is not None:
            out[2:] = [t[:rows] for t in out[2:]]
        return out


ACTIVATIONS = {"tanh": Tanh, "sin": Sine, "softplus": Softplus}


@dataclass(frozen=True)
class MLPConfig:
    """Architecture of an :class:`MLP`; validated at construction."""

    n_in: int
    n_out: int
    width: int = 50
    depth: int = 4
    activation: str = "tanh"
    dtype: str = "float32"
    #: frequency ω₀ of the ``sin`` activation
    omega0: float = 1.0
    #: sharpness β of the ``softplus`` activation, log(1 + e^{βz})/β
    beta: float = 1.0

    def __post_init__(self):
        for name in ("n_in", "n_out", "width", "depth"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"model: {name} must be a positive integer, got {v!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"model: unknown activation {self.activation!r}; "
                f"choose one of {', '.join(ACTIVATIONS)}"
            )
        if self.dtype not in DTYPES:
            raise ValueError(f"model: dtype must be float32 or float64, got {self.dtype!r}")
        if not (math.isfinite(self.omega0) and self.omega0 > 0):
            raise ValueError(f"model: omega0 must be positive, got {self.omega0!r}")
        if not (isinstance(self.beta, int | float) and math.isfinite(self.beta) and self.beta > 0):
            raise ValueError(f"model: beta must be positive, got {self.beta!r}")
        if self.beta != 1.0 and self.activation != "softplus":
            raise ValueError("model: beta is the sharpness of the softplus activation only")

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["beta"] == 1.0:  # omitted at its default: configs written before it compare equal
            del d["beta"]
        return d


class MLP(nn.Module):
    """n_in → depth × width (activation) → n_out, linear output layer."""

    def __init__(self, config: MLPConfig):
        super().__init__()
        self.config = config
        dims = [config.n_in] + [config.width] * config.depth + [config.n_out]
        dtype = DTYPES[config.dtype]
        self.layers = nn.ModuleList(
            nn.Linear(a, b, dtype=dtype) for a, b in itertools.pairwise(dims)
        )
        act = ACTIVATIONS[config.activation]
        if act is Sine:
            self.activation = act(config.omega0)
        elif act is Softplus:
            self.activation = act(config.beta)
        else:
            self.activation = act()

    @property
    def dtype(self) -> torch.dtype:
        return cast(nn.Linear, self.layers[0]).weight.dtype

    @property
    def device(self) -> torch.device:
        return cast(nn.Linear, self.layers[0]).weight.device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = self.activation(layer(x))
        return self.layers[-1](x)
