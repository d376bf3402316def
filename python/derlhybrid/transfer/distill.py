"""Distillation terms: the loss terms of :mod:`derlhybrid.learn.losses`, with the teacher's
labels as targets, on the teacher's points (paper.md §1 "Distillation", §8.4, §10).

A :class:`DistillSource` names a distillation dataset (a file :func:`~.label.label` wrote,
or the labels of an earlier stage of a pipeline), a mode and a weight w. On the old points
x_n (n = 1…N) with teacher labels (û_T, ∇û_T, Hû_T) the modes add, each term weighted by
w (one weight for the whole mode, as the paper's λ_sys):

==============  ===========================================================================
``output``      mean |û − û_T|²                                    (OutputTerm)
``derivative``  mean ‖∇û − ∇û_T‖²                                   (JacobianTerm)
``sobolev``     output + derivative
``hessian``     mean ‖Hû − Hû_T‖² entrywise                        (HessianTerm)
``der+hesl``    derivative + hessian
``sob+hesl``    output + derivative + randomised Hessian projection (HessianProjectionTerm)
``pinn``        mean |N[û]|², the PDE residual on a seeded random fraction of the old
                points ("PINN with replay"; in a pipeline the default is 0.2 for an
                ``extend`` stage and 1 for a ``new`` one, the paper's "PINN full")
                                                                     (ResidualTerm)
``forgetting``  nothing (naive fine-tuning)
==============  ===========================================================================

Derivatives are taken with respect to ``inputs`` (default: every input the labels hold),
e.g. (x, y) but not the PDE parameters of a family (paper.md §10.3). The old points form a
point set of their own, ``distill:<source>`` (``replay:<source>`` for ``pinn``), drawn in
batches beside the interior batch; all sets of a step still share one engine call.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..learn.losses import TERMS, Term
from ..learn.problems import PointSet, Problem
from .labels import Labels

__all__ = ["DISTILL_MODES", "DistillSource", "Distillation", "DistillationTerm", "distillation"]

#: distillation mode → the loss terms it adds on the old points (all with the source weight)
DISTILL_MODES: dict[str, tuple[str, ...]] = {
    "output": ("output",),
    "derivative": ("jacobian",),
    "sobolev": ("output", "jacobian"),
    "hessian": ("hessian",),
    "der+hesl": ("jacobian", "hessian"),
    "sob+hesl": ("output", "jacobian", "hessian_projection"),
    "pinn": ("residual",),
    "forgetting": (),
}
#: the label order each target needs
_ORDER = {"output": 0, "jacobian": 1, "hessian": 2}


@dataclass(frozen=True)
class DistillationTerm:
    """A loss term evaluated on a distillation point set: ``term`` reads the batch of
    ``point_set`` and differentiates with respect to the input positions ``inputs``
    (``None``: the problem's derivative inputs). Its name, ``<point_set>:<term>``, keeps it
    apart from the stage's own terms of the same kind."""

    term: Term
    point_set: str
    inputs: tuple[int, ...] | None = None

    def __post_init__(self):
        # the last (context, context seen by the term) pair: a run's context is one object
        object.__setattr__(self, "_ctx", (None, None))

    @property
    def name(self) -> str:
        return f"{self.point_set}:{self.term.name}"

    @property
    def requires(self) -> tuple[str, ...]:
        return self.term.requires

    def _view(self, problem: Problem) -> Problem:
        if self.inputs is None or tuple(problem.derivative_inputs) == self.inputs:
            return problem
        return dataclasses.replace(problem, derivative_inputs=self.inputs)

    def needs(self, problem: Problem) -> list[tuple[int, ...]]:
        return self.term.needs(self._view(problem))

    def __call__(self, d, batch, ctx):
        seen, inner = self.__dict__["_ctx"]  # the cache of __post_init__, not a field
        if seen is not ctx:
            view = self._view(ctx.problem)
            inner = ctx if view is ctx.problem else dataclasses.replace(ctx, problem=view)
            object.__setattr__(self, "_ctx", (ctx, inner))
        return self.term(d, batch, inner)

    def describe(self) -> dict[str, Any]:
        return {
            "point_set": self.point_set,
            "loss_term": self.term.name,
            "inputs": None if self.inputs is None else list(self.inputs),
            **dict(vars(self.term)),
        }


@dataclass(frozen=True)
class DistillSource:
    """A distillation source of a stage: labels (``source``: an earlier stage of the
    pipeline, or ``labels``: a distillation dataset file), ``mode`` (a key of
    :data:`DISTILL_MODES`), ``weight``; ``inputs`` restricts the Jacobian/Hessian to these
    inputs; ``batch_size`` of the old points per step (default: the stage's batch size);
    ``fraction`` of the old points replayed by ``pinn``; ``hessian_projection`` options of
    ``sob+hesl`` (n_directions, sigma, method)."""

    mode: str
    source: str | None = None
    labels: str | None = None
    weight: float = 1.0
    inputs: tuple[str, ...] | None = None
    batch_size: int | None = None
    fraction: float = 0.2
    hessian_projection: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.mode not in DISTILL_MODES:
            raise ValueError(
                f"distill: unknown mode {self.mode!r}; choose one of {', '.join(DISTILL_MODES)}"
            )
        if (self.source is None) == (self.labels is None):
            raise ValueError(
                "distill: give exactly one of source = STAGE (an earlier stage's labels) or "
                "labels = FILE (a distillation dataset)"
            )
        w = self.weight
        if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or w < 0:
            raise ValueError(f"distill: weight must be a number ≥ 0, got {w!r}")
        f = self.fraction
        if isinstance(f, bool) or not isinstance(f, int | float) or not 0 < f <= 1:
            raise ValueError(f"distill: fraction must be in (0, 1], got {f!r}")
        if self.batch_size is not None and (
            not isinstance(self.batch_size, int) or self.batch_size < 1
        ):
            raise ValueError(
                f"distill: batch_size must be a positive integer, got {self.batch_size!r}"
            )
        if self.inputs is not None:
            if isinstance(self.inputs, str) or not self.inputs:
                raise ValueError("distill: inputs must be a non-empty list of input names")
            object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "hessian_projection", dict(self.hessian_projection))

    @property
    def point_set(self) -> str:
        """The name of the old points in the student's problem."""
        if self.source is not None:
            origin = self.source
        else:
            assert self.labels is not None  # __post_init__: exactly one of source, labels
            origin = Path(self.labels).stem
        return f"{'replay' if self.mode == 'pinn' else 'distill'}:{origin}"


@dataclass
class Distillation:
    """What a source adds to a student's run: the old points (``points``, under the name
    ``point_set`` of the problem; None for ``forgetting``) and the weighted terms."""

    point_set: str
    points: PointSet | None
    terms: list[tuple[DistillationTerm, float]]
    describe: dict[str, Any] = field(default_factory=dict)

    def add_to(self, problem: Problem) -> None:
        """Put the old points into ``problem.sets`` (where the terms read them)."""
        if self.points is not None:
            problem.sets[self.point_set] = self.points


def distillation(
    problem: Problem,
    labels: Labels,
    source: DistillSource,
    *,
    seed: int | np.random.SeedSequence = 0,
) -> Distillation:
    """The point set and terms that distil ``labels`` into a student of ``problem``.

    Refuses (one-line ``ValueError``) labels of another system or other inputs/outputs,
    labels lacking the order a mode needs, derivative inputs the labels do not hold, and
    residual replay without the per-point data the residual reads. ``seed`` (an int or a
    ``numpy.random.SeedSequence``) draws the ``pinn`` subset.
    """
    where = f"distill {source.point_set} ({labels.path})"
    if labels.system.name != problem.system.name:
        raise ValueError(
            f"{where}: labels of system {labels.system.name!r}, the student learns "
            f"{problem.system.name!r}"
        )
    if tuple(labels.inputs) != tuple(problem.inputs) or tuple(labels.outputs) != tuple(
        problem.outputs
    ):
        raise ValueError(
            f"{where}: labels map {list(labels.inputs)} → {list(labels.outputs)}, the student "
            f"{list(problem.inputs)} → {list(problem.outputs)}"
        )
    names = DISTILL_MODES[source.mode]
    info = {"mode": source.mode, "weight": source.weight, "n_labels": len(labels)}
    if not names:
        return Distillation(source.point_set, None, [], info)
    pts = labels.points
    if source.mode == "pinn":
        aux = problem.system_aux
        missing = [a for a in aux if a not in pts.targets]
        if missing:
            raise ValueError(
                f"{where}: residual replay needs {missing[0]!r} at the old points, which the "
                f"labels do not hold (label points that carry it)"
            )
        n = len(pts)
        keep = max(1, round(source.fraction * n))
        seq = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        idx = np.sort(np.random.default_rng(seq).choice(n, size=keep, replace=False))
        sub = PointSet(pts.X[idx], {a: pts.targets[a][idx] for a in aux})
        term = DistillationTerm(TERMS["residual"](), source.point_set)
        info.update(n_points=keep, fraction=source.fraction)
        return Distillation(source.point_set, sub, [(term, float(source.weight))], info)
    chosen = source.inputs or labels.derivative_inputs
    unknown = [c for c in chosen if c not in labels.derivative_inputs]
    if unknown:
        raise ValueError(
            f"{where}: the labels hold derivatives with respect to "
            f"{', '.join(labels.derivative_inputs)}, not {unknown[0]!r}"
        )
    cols = [labels.derivative_inputs.index(c) for c in chosen]
    positions = tuple(problem.inputs.index(c) for c in chosen)
    targets: dict[str, torch.Tensor] = {}
    for name in names:
        for target in TERMS[name].requires:
            if target not in pts.targets:
                raise ValueError(
                    f"{where}: mode {source.mode!r} needs order-{_ORDER[target]} labels "
                    f"({target}), which {labels.path.name} does not hold (orders "
                    f"{list(labels.orders)}): relabel with orders including {_ORDER[target]}"
                )
            v = pts.targets[target]
            if target == "jacobian":
                v = v[:, :, cols]
            elif target == "hessian":
                v = v[:, :, cols][:, :, :, cols]
            targets[target] = v.contiguous()
    terms = []
    for name in names:
        opts = dict(source.hessian_projection) if name == "hessian_projection" else {}
        terms.append(
            (
                DistillationTerm(TERMS[name](**opts), source.point_set, positions),
                float(source.weight),
            )
        )
    info.update(n_points=len(pts), inputs=list(chosen))
    return Distillation(source.point_set, PointSet(pts.X, targets), terms, info)
