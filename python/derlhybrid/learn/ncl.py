"""The Neural Conservation Law (NCL) model of variable-density Euler in a ball (paper.md §9.2)
and its loss terms (§9.3–9.4).

A raw MLP b : z = (t, x, y, z) ↦ R⁵ (4 → 4×128 softplus(β = 25) → 5) defines the field
v = (ρ, m₁, m₂, m₃) through the antisymmetric matrix A = J_b − J_bᵀ of its first four
outputs (J_b the 4×4 Jacobian with respect to z):

    v_i = Σ_j ∂A_ij/∂z_j = Σ_j (∂_j∂_j b_i − ∂_i∂_j b_j) = Δb_i − ∂_i(∇·b),

so ∂_t ρ + ∇·m = Σ_i ∂_i v_i = Δ(∇·b) − Δ(∇·b) = 0 holds exactly, whatever the weights.
The fifth raw output is the pressure p. A derivative ∂^α of the field needs the raw
derivatives ∂^{α+(i,j)} b of order |α| + 2: the field's value needs second raw
derivatives, training on the momentum residual third, the field's Hessian fourth. They
all come from one call of the Taylor-mode engine
(:func:`~derlhybrid.learn.derivatives.input_derivatives`), which carries derivatives of
any order through softplus networks.

* :func:`ncl_derivatives` / :func:`field_derivatives` — the field's derivatives
  (a :class:`~derlhybrid.learn.derivatives.Derivatives` with columns ρ, m₁, m₂, m₃, p);
  :func:`ncl_field` assembles them from raw derivatives already computed, :func:`raw_needs`
  names the raw derivatives a set of field derivatives needs.
* :class:`BallNCL` — the field as an ``nn.Module`` around its raw MLP; it answers
  ``input_derivatives`` itself, so labelling, the Hessian projection and metrics treat it as
  any network.
* Loss terms (registered in :data:`~derlhybrid.learn.losses.TERMS`, so configs can name
  them): ``ncl_momentum`` (F = ρ² m_t − ρ ρ_t m + ρ (∇ₓm) m − m (∇ₓρ·m) + ρ² ∇p, i.e. ρ³
  times the Euler momentum residual in u = m/ρ), ``ncl_divergence`` (ρ ρ_t + ∇ρ·m = ρ Dρ/Dt),
  ``ncl_boundary`` ((m·n)² on the sphere), ``ncl_initial`` (MSE of (ρ, m) against the
  initial set's ``output`` targets), and the distillation terms of the field
  ``ncl_output``, ``ncl_jacobian``, ``ncl_hessian``, ``ncl_hessian_projection`` (the
  terms of :mod:`~derlhybrid.learn.losses` evaluated on the field instead of the raw
  network). A trainer's network is the raw MLP (``model = {activation = "softplus",
  beta = 25, …}``); the terms turn its derivatives into the field's.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from .derivatives import Derivatives, closure, input_derivatives
from .losses import (
    TERMS,
    HessianProjectionTerm,
    HessianTerm,
    JacobianTerm,
    OutputTerm,
    Term,
    mse,
)
from .models import MLP, MLPConfig

__all__ = [
    "NCL_MODEL",
    "BallNCL",
    "NCLConfig",
    "density_residual",
    "field_derivatives",
    "momentum_residual",
    "ncl_derivatives",
    "ncl_field",
    "raw_needs",
]

#: space–time inputs (t, x, y, z) and raw outputs (b₀…b₃, p)
N_IN, N_RAW = 4, 5
#: the paper's raw network (§9.2), as the ``[model]`` table of a training config
NCL_MODEL: dict[str, Any] = {"width": 128, "depth": 4, "activation": "softplus", "beta": 25.0}

MultiIndex = tuple[int, ...]
_PAIRS = tuple(itertools.product(range(N_IN), repeat=2))


def raw_needs(field_indices: Iterable[Sequence[int]]) -> tuple[MultiIndex, ...]:
    """The raw multi-indices the field derivatives ``field_indices`` (and their
    sub-derivatives) need: every α + (i, j), and α itself for the pressure."""
    need: set[MultiIndex] = set()
    for a in closure(field_indices):
        need.add(a)
        need.update(tuple(sorted(a + ij)) for ij in _PAIRS)
    return closure(need)


def ncl_field(raw: Derivatives, field_indices: Iterable[Sequence[int]]) -> Derivatives:
    """The field's derivatives (columns ρ, m₁, m₂, m₃, p) from the raw network's
    derivatives ``raw``, for ``field_indices`` and their sub-derivatives."""
    out = {}
    for a in closure(field_indices):
        # T[b, o, i, j] = ∂^{α+(i,j)} b_o for the four potential outputs
        T = torch.stack(
            [
                torch.stack([raw[(*a, i, j)][:, :N_IN] for j in range(N_IN)], -1)
                for i in range(N_IN)
            ],
            -2,
        )
        lap = T.diagonal(dim1=-2, dim2=-1).sum(-1)  # Δ b_o            (B, 4)
        grad_div = torch.einsum("bjij->bi", T)  # ∂_i Σ_j ∂_j b_j    (B, 4)
        out[a] = torch.cat([lap - grad_div, raw[a][:, N_IN:]], dim=1)
    return Derivatives(out)


def _net(model: nn.Module) -> nn.Module:
    return model.net if isinstance(model, BallNCL) else model


def field_derivatives(
    model: nn.Module, x: torch.Tensor, multi_indices: Iterable[Sequence[int]], *, engine="auto"
) -> Derivatives:
    """The NCL field's derivatives ``multi_indices`` at the rows of ``x`` (``model``: the
    raw network or a :class:`BallNCL`), from one engine call on the raw network."""
    wanted = closure(multi_indices)
    raw = input_derivatives(_net(model), x, raw_needs(wanted), engine=engine)
    return ncl_field(raw, wanted)


def ncl_derivatives(
    model: nn.Module, x: torch.Tensor, orders: Sequence[int] = (0, 1, 2), *, engine="auto"
) -> Derivatives:
    """The field v = (ρ, m), p and all their derivatives up to ``max(orders)`` with respect
    to (t, x, y, z): ``d.value`` (B, 5), ``d.jacobian(range(4))`` (B, 5, 4),
    ``d.hessian(range(4))`` (B, 5, 4, 4). Order k needs raw derivatives of order k + 2."""
    top = max(orders)
    if top < 0 or top > 3:
        raise ValueError(f"ncl_derivatives: orders must lie in 0…3, got {tuple(orders)}")
    wanted = [
        a
        for k in range(1, top + 1)
        for a in itertools.combinations_with_replacement(range(N_IN), k)
    ]
    return field_derivatives(model, x, wanted or [()], engine=engine)


@dataclass(frozen=True)
class NCLConfig:
    """What rebuilds a :class:`BallNCL`: the configuration of its raw MLP."""

    mlp: MLPConfig

    def to_dict(self) -> dict:
        return {"field": "ball-ncl", **self.mlp.to_dict()}


class BallNCL(nn.Module):
    """The NCL field (ρ, m, p) of a raw MLP 4 → 5 (paper.md §9.2). ``BallNCL()`` builds the
    paper's raw network (4 → 4×128 softplus(β = 25) → 5); ``BallNCL(net)`` wraps a trained
    one (e.g. a trainer's ``result.model``) without copying it."""

    def __init__(
        self,
        net: MLP | None = None,
        *,
        width: int = 128,
        depth: int = 4,
        beta: float = 25.0,
        dtype: str = "float32",
    ):
        super().__init__()
        if net is None:
            net = MLP(MLPConfig(N_IN, N_RAW, width, depth, "softplus", dtype, beta=beta))
        cfg = getattr(net, "config", None)
        if cfg is not None and (cfg.n_in, cfg.n_out) != (N_IN, N_RAW):
            raise ValueError(
                f"BallNCL: the raw network must map 4 inputs (t, x, y, z) to 5 outputs, "
                f"got {cfg.n_in} → {cfg.n_out}"
            )
        self.net = net

    @property
    def config(self) -> NCLConfig:
        return NCLConfig(self.net.config)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.net.parameters()).dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(ρ, m₁, m₂, m₃, p) at the rows of x (B, 4)."""
        return field_derivatives(self.net, x, [()]).value

    def input_derivatives(self, x, multi_indices, *, engine="auto") -> Derivatives:
        """The field's input derivatives (what
        :func:`~derlhybrid.learn.derivatives.input_derivatives` asks this model for)."""
        return field_derivatives(self.net, x, multi_indices, engine=engine)


# -- residuals of the field ----------------------------------------------------------------


def _parts(f: Derivatives):
    val, dt = f.value, f[(0,)]
    gx = torch.stack([f[(c,)] for c in (1, 2, 3)], dim=-1)  # (B, 5, 3): ∂_j of each output
    return val[:, 0], val[:, 1:4], dt[:, 0], dt[:, 1:4], gx


def momentum_residual(f: Derivatives) -> torch.Tensor:
    """F = ρ² m_t − ρ ρ_t m + ρ (∇ₓm) m − m (∇ₓρ·m) + ρ² ∇p (B, 3) from the field's first
    derivatives: ρ³ (u_t + (u·∇)u + ∇p/ρ) with u = m/ρ (paper.md §9.3)."""
    rho, m, rho_t, m_t, gx = _parts(f)
    grad_rho, dm, grad_p = gx[:, 0], gx[:, 1:4], gx[:, 4]  # dm[b, i, j] = ∂_j m_i
    r = rho[:, None]
    adv = torch.einsum("bij,bj->bi", dm, m)
    return (
        r * r * m_t
        - (rho * rho_t)[:, None] * m
        + r * adv
        - m * (grad_rho * m).sum(-1, keepdim=True)
        + r * r * grad_p
    )


def density_residual(f: Derivatives) -> torch.Tensor:
    """ρ ρ_t + ∇ρ·m = ρ Dρ/Dt (B,): incompressibility ∇·u = 0 given mass conservation."""
    rho, m, rho_t, _, gx = _parts(f)
    return rho * rho_t + (gx[:, 0] * m).sum(-1)


def mass_residual(f: Derivatives) -> torch.Tensor:
    """ρ_t + ∇·m (B,): zero by construction for an NCL field (to rounding)."""
    return f[(0,)][:, 0] + f[(1,)][:, 1] + f[(2,)][:, 2] + f[(3,)][:, 3]


# -- loss terms ----------------------------------------------------------------------------

_FIRST: tuple[MultiIndex, ...] = ((0,), (1,), (2,), (3,))


class _OnField:
    """Mixin: the term's ``field_needs`` are derivatives of the NCL field; it asks the
    engine for the raw derivatives they need and reads the field assembled from them."""

    def field_needs(self, problem) -> list[MultiIndex]:
        return [()]

    def needs(self, problem):
        return list(raw_needs(self.field_needs(problem)))

    def field(self, d: Derivatives, ctx) -> Derivatives:
        return ncl_field(d, self.field_needs(ctx.problem))


@dataclass(frozen=True)
class NCLMomentumTerm(_OnField, Term):
    """mean |F|² over points and the three components (weight 0.1 in the paper)"""

    name: ClassVar[str] = "ncl_momentum"

    def field_needs(self, problem):
        return list(_FIRST)

    def __call__(self, d, batch, ctx):
        return mse(momentum_residual(self.field(d, ctx)))


@dataclass(frozen=True)
class NCLDivergenceTerm(_OnField, Term):
    """mean (ρ ρ_t + ∇ρ·m)² (the reference's "div" term, weight 0.1)"""

    name: ClassVar[str] = "ncl_divergence"

    def field_needs(self, problem):
        return list(_FIRST)

    def __call__(self, d, batch, ctx):
        return mse(density_residual(self.field(d, ctx)))


@dataclass(frozen=True)
class NCLBoundaryTerm(_OnField, Term):
    """mean (m·n)² on the sphere, n = x/‖x‖ (no flux; weight 0.1)"""

    name: ClassVar[str] = "ncl_boundary"
    point_set: ClassVar[str] = "boundary"

    def __call__(self, d, batch, ctx):
        x = batch.X[:, 1:4]
        n = x / x.norm(dim=-1, keepdim=True)
        m = self.field(d, ctx).value[:, 1:4]
        return mse((m * n).sum(-1))


@dataclass(frozen=True)
class NCLInitialTerm(_OnField, Term):
    """mean |(ρ, m) − target|² at the initial points (target ``output``, 4 columns: the
    initial data for a teacher, the teacher's field for a student; weight 30)"""

    name: ClassVar[str] = "ncl_initial"
    point_set: ClassVar[str] = "initial"
    requires: ClassVar[tuple[str, ...]] = ("output",)

    def __call__(self, d, batch, ctx):
        target = batch.targets["output"]
        return mse(self.field(d, ctx).value[:, : target.shape[1]], target)


@dataclass(frozen=True)
class NCLOutputTerm(_OnField, OutputTerm):
    """mean |v̂ − v_T|² of the field (ρ, m, p) (distillation: Output)"""

    name: ClassVar[str] = "ncl_output"

    def __call__(self, d, batch, ctx):
        return OutputTerm.__call__(self, self.field(d, ctx), batch, ctx)


@dataclass(frozen=True)
class NCLJacobianTerm(_OnField, JacobianTerm):
    """mean ‖Dv̂ − Dv_T‖² of the field, 5 × 4 per point (distillation: Derivative)"""

    name: ClassVar[str] = "ncl_jacobian"

    def field_needs(self, problem):
        return JacobianTerm.needs(self, problem)

    def __call__(self, d, batch, ctx):
        return JacobianTerm.__call__(self, self.field(d, ctx), batch, ctx)


@dataclass(frozen=True)
class NCLHessianTerm(_OnField, HessianTerm):
    """mean ‖Hv̂ − Hv_T‖² of the field, 5 × 4 × 4 per point (fourth raw derivatives)"""

    name: ClassVar[str] = "ncl_hessian"

    def field_needs(self, problem):
        return HessianTerm.needs(self, problem)

    def __call__(self, d, batch, ctx):
        return HessianTerm.__call__(self, self.field(d, ctx), batch, ctx)


@dataclass(frozen=True)
class NCLHessianProjectionTerm(_OnField, HessianProjectionTerm):
    """The randomised Hessian projection E_H of the field (Sobolev+Hessian); the
    finite-difference method evaluates the field's Jacobian at the shifted points."""

    name: ClassVar[str] = "ncl_hessian_projection"

    def field_needs(self, problem):
        return HessianProjectionTerm.needs(self, problem)

    def __call__(self, d, batch, ctx):
        model = ctx.model if isinstance(ctx.model, BallNCL) else BallNCL(ctx.model)
        inner = dataclasses.replace(ctx, model=model)
        return HessianProjectionTerm.__call__(self, self.field(d, ctx), batch, inner)


#: the NCL terms by name (registered in :data:`derlhybrid.learn.losses.TERMS`)
NCL_TERMS: dict[str, type[Term]] = {
    t.name: t
    for t in (
        NCLMomentumTerm,
        NCLDivergenceTerm,
        NCLBoundaryTerm,
        NCLInitialTerm,
        NCLOutputTerm,
        NCLJacobianTerm,
        NCLHessianTerm,
        NCLHessianProjectionTerm,
    )
}
TERMS.update(NCL_TERMS)
