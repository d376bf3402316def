"""Elastic weight consolidation (Kirkpatrick et al. 2017) as in the follow-up code of the
paper (paper.md §10.4).

After a task with loss L and final weights θ*, the diagonal Fisher information is
estimated as the batch-average of squared gradients of L on the task's data,

    F_i = (1/B) Σ_{b=1..B} (∂L_b/∂θ_i |_{θ*})²,

L_b the loss on the b-th batch (consecutive rows, batch 1000 by default). A later task
adds, with weight w_ewc, the penalty

    EWC(θ) = (1/P) Σ_{i=1..P} F_i (θ_i − θ*_i)²

(the mean over all P parameters). θ is the concatenation of ``model.parameters()`` in
their order (for an :class:`~derlhybrid.learn.models.MLP`: W₁, b₁, W₂, b₂, …, row-major).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..learn.losses import PARAMETERS, Objective, StepContext, Term
from ..learn.problems import PointSet, Problem

__all__ = [
    "EWCTerm",
    "fisher_diagonal",
    "parameter_vector",
    "system_loss",
    "task_fisher",
]


def parameter_vector(model: nn.Module) -> torch.Tensor:
    """θ: every parameter of ``model`` flattened and concatenated (a differentiable view)."""
    return torch.cat([p.reshape(-1) for p in model.parameters()])


def fisher_diagonal(
    model: nn.Module,
    loss: Callable[[PointSet], torch.Tensor],
    batches: Iterable[PointSet],
) -> torch.Tensor:
    """F_i = mean over ``batches`` of (∂ loss(batch) / ∂θ_i)², at the current weights; a
    detached float64 vector ordered as :func:`parameter_vector`."""
    params = list(model.parameters())
    total = None
    n = 0
    for batch in batches:
        value = loss(batch)
        grads = torch.autograd.grad(value, params, allow_unused=True)
        g = torch.cat(
            [
                torch.zeros_like(p).reshape(-1) if gi is None else gi.reshape(-1)
                for p, gi in zip(params, grads, strict=True)
            ]
        ).detach()
        sq = g.to(torch.float64).square()
        total = sq if total is None else total + sq
        n += 1
    if total is None:
        raise ValueError("EWC: the previous task has no data to estimate the Fisher from")
    return total / n


def system_loss(objective: Objective) -> Objective:
    """The *system* loss of a task: the terms of ``objective`` on its interior points (the
    mode's terms, without conditions, distillation or penalties), with their weights."""
    terms = [(t, w) for t, w in objective.terms if t.point_set == "interior"]
    if not terms:
        raise ValueError("EWC: the previous task's objective has no term on its interior points")
    return Objective(terms)


def task_fisher(
    model: nn.Module,
    objective: Objective,
    problem: Problem,
    *,
    points: PointSet | None = None,
    batch_size: int = 1000,
    engine: str = "auto",
    seed: int = 0,
) -> torch.Tensor:
    """The diagonal Fisher of a finished task: :func:`fisher_diagonal` of its system loss
    (:func:`system_loss`) over consecutive batches of ``batch_size`` rows of its training
    points (``points``, default ``problem.sets["train"]``). ``seed`` seeds the random
    directions of a Hessian-projection term."""
    if batch_size < 1:
        raise ValueError("EWC: batch_size must be a positive integer")
    points = problem.sets["train"] if points is None else points
    p = next(model.parameters())
    points = points.to(p.device, p.dtype)
    sysloss = system_loss(objective)
    gen = torch.Generator().manual_seed(int(seed))
    ctx = StepContext(model, problem, engine, gen)

    def loss(batch: PointSet) -> torch.Tensor:
        total, _ = sysloss({"interior": batch}, ctx)
        return total

    batches = (points.take(slice(s, s + batch_size)) for s in range(0, len(points), batch_size))
    return fisher_diagonal(model, loss, batches)


@dataclass(frozen=True, eq=False)
class EWCTerm(Term):
    """mean_i F_i (θ_i − θ*_i)², a function of the weights alone (point set
    :data:`~derlhybrid.learn.losses.PARAMETERS`)."""

    name: ClassVar[str] = "ewc"
    point_set: ClassVar[str] = PARAMETERS
    fisher: torch.Tensor | None = None
    theta_star: torch.Tensor | None = None

    def __post_init__(self):
        if self.fisher is None or self.theta_star is None:
            raise ValueError("EWCTerm needs fisher and theta_star")
        if self.fisher.shape != self.theta_star.shape or self.fisher.dim() != 1:
            raise ValueError(
                f"EWC: fisher {tuple(self.fisher.shape)} and theta_star "
                f"{tuple(self.theta_star.shape)} must be vectors of the same length"
            )

    def _tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(fisher, theta_star), which __post_init__ has checked are set."""
        assert self.fisher is not None and self.theta_star is not None
        return self.fisher, self.theta_star

    def __call__(self, d, batch, ctx):
        fisher, theta_star = self._tensors()
        theta = parameter_vector(ctx.model)
        if theta.shape != theta_star.shape:
            raise ValueError(
                f"EWC: the network has {theta.numel()} parameters, the previous task "
                f"{theta_star.numel()}: EWC needs the same architecture"
            )
        fisher = fisher.to(theta)
        star = theta_star.to(theta)
        return (fisher * (theta - star).square()).mean()

    def describe(self) -> dict:
        fisher, _ = self._tensors()
        return {
            "n_parameters": int(fisher.numel()),
            "fisher_mean": float(fisher.mean()),
            "fisher_max": float(fisher.max()),
        }
