"""Loss terms, composed into objectives; the paper's training modes are rows of one table.

A term is a small object that names the point set it reads (``interior``, ``initial``,
``boundary``, ``periodic``), the input derivatives it needs there, and how it turns those
derivatives and the batch's targets into a scalar. An :class:`Objective` is a list of
weighted terms; per step it gathers every point set's needs, computes all input derivatives
in **one** engine call (sets concatenated, derivatives shared by all terms), and returns the
weighted total and every term's unweighted value.

Modes (paper.md §1) resolve through :data:`MODES` — no chain of ``if``s over mode names::

    outl       output                                  (weight group "sys")
    derl       jacobian                                ("sys")
    sob        output + jacobian                       ("sys", one weight)
    pinn       residual                                ("pde")
    outl+pinn  output ("sys") + residual ("pde")
    hesl       hessian                                 ("sys")
    der+hesl   jacobian + hessian                      ("sys")
    sob+hesl   output + jacobian + hessian_projection  ("sys")

plus the conditions the problem has: ``initial`` (weight group "init"), ``boundary`` and
``periodic`` ("bc"). All MSEs are means over every tensor entry (PyTorch ``MSELoss``), as in
the paper (§12.11). Adding a term is one class and one line of :data:`TERMS`.

A term may also read any other point set of the problem by name (``problem.sets[name]``,
e.g. the distillation sets of :mod:`derlhybrid.transfer`), or no points at all: a term
whose point set is :data:`PARAMETERS` is a function of the network's weights (the EWC
penalty) and is called with ``d = batch = None``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

import torch
from torch import nn

from .derivatives import (
    ROWWISE_BATCH,
    Derivatives,
    closure,
    input_derivatives,
    ragged_derivatives,
    split_derivatives,
)
from .problems import PointSet, Problem

__all__ = [
    "MODES",
    "PARAMETERS",
    "TERMS",
    "Objective",
    "StepContext",
    "Term",
    "build_objective",
    "mse",
    "term_from_record",
    "term_record",
]

#: the point set of terms that read no points, only the network's weights (e.g. EWC)
PARAMETERS = "parameters"


def mse(a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    if b is None:
        return a.square().mean()
    return nn.functional.mse_loss(a, b)  # one fused kernel forward and backward


@dataclass
class StepContext:
    """What terms may need beyond their batch: the model (for extra evaluations), the
    derivative engine, and the training run's random generator."""

    model: torch.nn.Module
    problem: Problem
    engine: str = "auto"
    generator: torch.Generator | None = None


#: every subclass of :class:`Term` this process has defined, by ``module.QualName`` (a class
#: defined again, e.g. by a notebook cell run twice, replaces the earlier one)
_DEFINED: dict[str, type[Term]] = {}


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


@dataclass(frozen=True)
class Term:
    """A loss term (see the module's docstring). Subclass it for a term of your own: it
    may then go into a config's objective beside the built-in ones."""

    name: ClassVar[str] = "term"
    point_set: ClassVar[str] = "interior"
    #: targets the term reads from its batch (checked against the data before training)
    requires: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _DEFINED[_qualified(cls)] = cls

    def needs(self, problem: Problem) -> list[tuple[int, ...]]:
        return []

    def __call__(self, d: Derivatives, batch: PointSet, ctx: StepContext) -> torch.Tensor:
        raise NotImplementedError


@dataclass(frozen=True)
class OutputTerm(Term):
    """mean |û − u|²"""

    name: ClassVar[str] = "output"
    requires: ClassVar[tuple[str, ...]] = ("output",)

    def __call__(self, d, batch, ctx):
        return mse(d.value, batch.targets["output"])


@dataclass(frozen=True)
class JacobianTerm(Term):
    """mean ‖Dû − Du‖² over the derivative inputs (DERL)"""

    name: ClassVar[str] = "jacobian"
    requires: ClassVar[tuple[str, ...]] = ("jacobian",)

    def needs(self, problem):
        return [(i,) for i in problem.derivative_inputs]

    def __call__(self, d, batch, ctx):
        di = ctx.problem.derivative_inputs
        jac = d[(di[0],)].unsqueeze(-1) if len(di) == 1 else d.jacobian(di)
        return mse(jac, batch.targets["jacobian"])


@dataclass(frozen=True)
class HessianTerm(Term):
    """mean ‖Hû − Hu‖² entrywise over the full (symmetric) Hessian (HESL)"""

    name: ClassVar[str] = "hessian"
    requires: ClassVar[tuple[str, ...]] = ("hessian",)

    def needs(self, problem):
        di = problem.derivative_inputs
        return [(i, j) for i in di for j in di if i <= j]

    def __call__(self, d, batch, ctx):
        return mse(d.hessian(ctx.problem.derivative_inputs), batch.targets["hessian"])


@dataclass(frozen=True)
class HessianProjectionTerm(Term):
    """The paper's randomised Hessian-projection error E_H (SOB+HESL): for K unit
    directions v per point, mean over points and directions of ‖Ĥv − H v‖ (the Euclidean
    norm, not squared). ``method="finite-difference"`` approximates Ĥv as the paper does,
    (∇û(x + σv) − ∇û(x))/σ; ``"exact"`` uses the network's exact Hessian (no O(σ) bias)."""

    name: ClassVar[str] = "hessian_projection"
    requires: ClassVar[tuple[str, ...]] = ("hessian",)
    n_directions: int = 100
    sigma: float = 0.01
    method: str = "finite-difference"

    def __post_init__(self):
        if self.method not in ("finite-difference", "exact"):
            raise ValueError(
                f"hessian_projection: method must be 'finite-difference' or 'exact', "
                f"got {self.method!r}"
            )
        if self.n_directions < 1 or not self.sigma > 0:
            raise ValueError("hessian_projection: n_directions ≥ 1 and sigma > 0 required")

    def needs(self, problem):
        di = problem.derivative_inputs
        if self.method == "exact":
            return [(i, j) for i in di for j in di if i <= j]
        return [(i,) for i in di]

    def __call__(self, d, batch, ctx):
        di = ctx.problem.derivative_inputs
        B, k, K = batch.X.shape[0], len(di), self.n_directions
        v = torch.randn(B, K, k, generator=ctx.generator, dtype=batch.X.dtype)
        v = (v / v.norm(dim=-1, keepdim=True)).to(batch.X.device)
        target = torch.einsum("boij,bkj->bkoi", batch.targets["hessian"], v)
        if self.method == "exact":
            hv = torch.einsum("boij,bkj->bkoi", d.hessian(di), v)
        else:
            shift = torch.zeros(B, K, batch.X.shape[1], dtype=v.dtype, device=v.device)
            shift[:, :, list(di)] = self.sigma * v
            Xs = (batch.X[:, None, :] + shift).reshape(B * K, -1)
            ds = input_derivatives(ctx.model, Xs, [(i,) for i in di], engine=ctx.engine)
            g_shift = ds.jacobian(di).reshape(B, K, -1, k)
            hv = (g_shift - d.jacobian(di)[:, None]) / self.sigma
        return (hv - target).flatten(2).norm(dim=-1).mean()


@dataclass(frozen=True)
class ResidualTerm(Term):
    """mean |N[û]|² (PINN), the system's residual at the interior points"""

    name: ClassVar[str] = "residual"

    def needs(self, problem):
        return list(problem.residual_needs)

    def __call__(self, d, batch, ctx):
        aux = {k: batch.targets[k] for k in ctx.problem.system_aux if k in batch.targets}
        return mse(ctx.problem.residual(d, batch.X, aux))


@dataclass(frozen=True)
class InitialTerm(Term):
    """mean |û(t=0) − u0|² (with the initial rate ∂û/∂t − v0 for second-order flow maps,
    averaged over all columns as the paper does). Flow-map rows with a ``"state"`` target
    (anchors at t ≠ 0, :meth:`Problem.initial_points`) are compared with it instead."""

    name: ClassVar[str] = "initial"
    point_set: ClassVar[str] = "initial"

    def needs(self, problem):
        if problem.initial_from_batch and problem.form == "positions":
            return [(problem.time_input,)]
        return []

    def __call__(self, d, batch, ctx):
        p = ctx.problem
        if not p.initial_from_batch:
            return mse(d.value, batch.targets["output"])
        # a flow map's initial points (0, y0) are their own targets: y0 = (q0, v0)
        # (time_input is an int here: a flow map's inputs start with "t")
        pred = (
            torch.cat([d.value, d[(cast(int, p.time_input),)]], 1)
            if p.form == "positions"
            else d.value
        )
        target = batch.targets["state"] if "state" in batch.targets else batch.X[:, 1:]
        return mse(pred, target)


@dataclass(frozen=True)
class BoundaryTerm(Term):
    """mean |û − g|² on the boundary points (Dirichlet data)"""

    name: ClassVar[str] = "boundary"
    point_set: ClassVar[str] = "boundary"

    def __call__(self, d, batch, ctx):
        return mse(d.value, batch.targets["output"])


@dataclass(frozen=True)
class PeriodicTerm(Term):
    """mean |û(left) − û(right)|² together with the first derivatives along the periodic
    inputs (u and u_x periodic, paper.md §8.2). Its batch stacks left rows over right rows."""

    name: ClassVar[str] = "periodic"
    point_set: ClassVar[str] = "periodic"

    def needs(self, problem):
        return [(i,) for i in problem.periodic_derivatives]

    def __call__(self, d, batch, ctx):
        cols = [d.value] + [d[(i,)] for i in ctx.problem.periodic_derivatives]
        both = torch.cat(cols, dim=1)
        half = both.shape[0] // 2
        return mse(both[:half], both[half:])


#: every term by name (what configs may name in ``[objective] terms``)
TERMS: dict[str, type[Term]] = {
    t.name: t
    for t in (
        OutputTerm,
        JacobianTerm,
        HessianTerm,
        HessianProjectionTerm,
        ResidualTerm,
        InitialTerm,
        BoundaryTerm,
        PeriodicTerm,
    )
}

#: the paper's modes: (term, weight group) pairs
MODES: dict[str, tuple[tuple[str, str], ...]] = {
    "outl": (("output", "sys"),),
    "derl": (("jacobian", "sys"),),
    "sob": (("output", "sys"), ("jacobian", "sys")),
    "pinn": (("residual", "pde"),),
    "outl+pinn": (("output", "sys"), ("residual", "pde")),
    "hesl": (("hessian", "sys"),),
    "der+hesl": (("jacobian", "sys"), ("hessian", "sys")),
    "sob+hesl": (("output", "sys"), ("jacobian", "sys"), ("hessian_projection", "sys")),
}
#: the conditions added to every mode when the problem has them
CONDITIONS: tuple[tuple[str, str], ...] = (
    ("initial", "init"),
    ("boundary", "bc"),
    ("periodic", "bc"),
)
WEIGHT_GROUPS = ("sys", "pde", "init", "bc")


@dataclass
class Objective:
    """Weighted loss terms. ``terms`` holds ``(term, weight)`` pairs."""

    terms: list[tuple[Term, float]] = field(default_factory=list)

    def _needs(self, problem: Problem) -> dict[str, tuple]:
        """Per point set, the closed set of derivatives its terms need (cached)."""
        cache = getattr(self, "_needs_cache", None)
        if cache is None or cache[0] is not problem:
            needs: dict[str, list] = {}
            for term, _ in self.terms:
                needs.setdefault(term.point_set, []).extend(term.needs(problem))
            cache = (problem, {k: closure(v) for k, v in needs.items()})
            self._needs_cache = cache
        return cache[1]

    def point_sets(self) -> list[str]:
        return sorted({t.point_set for t, _ in self.terms})

    def targets_needed(self, problem: Problem) -> set[str]:
        """The interior targets the terms read (batches carry only these)."""
        keep = {r for t, _ in self.terms if t.point_set == "interior" for r in t.requires}
        if any(t.name == "residual" for t, _ in self.terms):
            keep.update(problem.system_aux)
        return keep

    def check(self, problem: Problem) -> None:
        """Refuse terms whose data the problem lacks (one-line ``ValueError``)."""
        for term, _ in self.terms:
            pts = problem.sets.get("train" if term.point_set == "interior" else term.point_set)
            if term.point_set not in (PARAMETERS, "interior") and not _has_set(
                problem, term.point_set
            ):
                # an explicitly asked-for term would otherwise be skipped without a word
                raise ValueError(
                    f"term {term.name!r} reads the {term.point_set!r} points, which this "
                    f"problem does not have (it has: {', '.join(problem.sets)})"
                )
            if pts is not None:
                missing = [r for r in term.requires if r not in pts.targets]
                if missing:
                    raise ValueError(
                        f"term {term.name!r} needs {missing[0]!r} targets, which this dataset "
                        f"does not provide (it has: {', '.join(pts.targets)})"
                    )
            if term.name == "residual" and problem.residual_fn is None:
                raise ValueError(f"{problem.system.name} defines no PDE residual for PINN terms")

    def __call__(
        self, batches: Mapping[str, PointSet], ctx: StepContext
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        # one engine call per distinct set of derivatives: point sets that need the same
        # derivatives are concatenated (e.g. a flow map's batch and its initial points);
        # a set that needs fewer (boundary values) is not charged for the others'
        groups: dict[tuple, list[str]] = {}
        for name, need in self._needs(ctx.problem).items():
            if name in batches:
                groups.setdefault(need, []).append(name)
        per_set = {}
        rows = sum(len(batches[n]) for n in self._needs(ctx.problem) if n in batches)
        if len(groups) > 1 and rows >= ROWWISE_BATCH:
            # large batches: all sets in one pass, each carrying only its own derivatives
            # (those needing more first: a derivative is carried for a prefix of the rows)
            order = sorted(groups, key=lambda need: (-max(map(len, need)), -len(need)))
            blocks = [(n, need) for need in order for n in groups[need]]
            got = ragged_derivatives(
                ctx.model, [(batches[n].X, need) for n, need in blocks], engine=ctx.engine
            )
            if got is not None:
                per_set = {n: d for (n, _), d in zip(blocks, got, strict=True)}
                groups = {}
        _merge_first_order(groups, batches)
        for need, names in groups.items():
            if len(names) == 1:
                per_set[names[0]] = input_derivatives(
                    ctx.model, batches[names[0]].X, need, engine=ctx.engine
                )
                continue
            got = split_derivatives(
                ctx.model, [batches[n].X for n in names], need, engine=ctx.engine
            )
            per_set.update(zip(names, got, strict=True))
        total: torch.Tensor | None = None
        parts: dict[str, torch.Tensor] = {}
        for term, weight in self.terms:
            if term.point_set == PARAMETERS:
                # a term of the network's weights (EWC) reads no derivatives and no points
                value = term(cast(Derivatives, None), cast(PointSet, None), ctx)
            elif term.point_set not in per_set:
                continue
            else:
                value = term(per_set[term.point_set], batches[term.point_set], ctx)
            parts[term.name] = value.detach()
            if total is None:
                total = value if weight == 1.0 else value * weight
            else:
                total = torch.add(total, value, alpha=weight)
        # None where no term reads these batches (a validation chunk: its total is unused)
        return cast(torch.Tensor, total), parts

    def describe(self) -> list[dict]:
        out = []
        for term, weight in self.terms:
            # a term may describe itself (one holding tensors, or wrapping another term)
            params = cast(Any, term).describe() if hasattr(term, "describe") else dict(vars(term))
            out.append({"term": term.name, "weight": weight, **params})
        return out


def term_record(term: Term, weight: float) -> dict[str, Any]:
    """A term of a class not in :data:`TERMS` (a class of your own) as a configuration
    records it: ``{"term": name, "weight": w, ...its description, "class": "module.Qual"}``
    (JSON values: what a checkpoint stores and a resume compares)."""
    params = cast(Any, term).describe() if hasattr(term, "describe") else dict(vars(term))
    record = {"term": term.name, "weight": weight, **params, "class": _qualified(type(term))}
    return json.loads(json.dumps(record, default=str))


def term_from_record(record: Mapping[str, Any]) -> tuple[Term, float]:
    """The ``(term, weight)`` of a :func:`term_record`, where this process defines the
    term's class (a record never imports a module: define or import the class first);
    ``ValueError`` (one line) otherwise."""
    name, qualified = record.get("term"), record.get("class")
    cls = _DEFINED.get(str(qualified))
    if cls is None or cls.name != name:
        raise ValueError(
            f"loss term {name!r} is of the class {qualified}, which this process does not "
            "define: import (or define) that class first, or give the term object in Python"
        )
    params = {k: v for k, v in record.items() if k not in ("term", "weight", "class")}
    try:
        return cls(**params), record.get("weight", 1.0)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"loss term {name!r} ({qualified}) cannot be rebuilt from its record {params} ({exc})"
        ) from None


def build_objective(
    problem: Problem,
    mode: str | None = None,
    weights: Mapping[str, float] | None = None,
    terms: Sequence[Mapping | Term | str | tuple[Term | str, float]] | None = None,
    hessian_projection: Mapping | None = None,
) -> Objective:
    """The objective of a named mode (plus the problem's conditions), or of an explicit
    list of ``{"term": name, "weight": w, ...options}``. Unknown names are refused.

    An entry of ``terms`` may also be a term object (a :class:`Term`, e.g. a subclass of
    your own; weight 1) or a ``(term, weight)`` pair: no name in :data:`TERMS` needed; or
    the record of a term of your own (:func:`term_record`, what a checkpoint's config holds),
    rebuilt when this process defines its class."""
    weights = dict(weights or {})
    unknown = sorted(set(weights) - set(WEIGHT_GROUPS))
    if unknown:
        raise ValueError(f"unknown weight {unknown[0]!r}; weights are {', '.join(WEIGHT_GROUPS)}")
    chosen: list[tuple[Term, float]] = []
    if mode is not None:
        key = mode.lower()
        if key not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        rows = list(MODES[key]) + [c for c in CONDITIONS if _has_set(problem, c[0])]
        for name, group in rows:
            opts = dict(hessian_projection or {}) if name == "hessian_projection" else {}
            chosen.append((TERMS[name](**opts), float(weights.get(group, 1.0))))
    for spec in terms or []:
        if isinstance(spec, Term):
            chosen.append((spec, 1.0))
            continue
        if isinstance(spec, str):  # a name alone
            spec = {"term": spec}
        if not isinstance(spec, Mapping):  # a (term or name, weight) pair
            term, weight = spec
            if isinstance(term, str):
                spec = {"term": term, "weight": weight}
            elif isinstance(term, Term):
                chosen.append((term, float(weight)))
                continue
            else:
                raise ValueError(f"loss term {term!r} is neither a Term nor a term name")
        if "class" in spec:  # a term of the user's own class, as a config records it
            term, weight = term_from_record(spec)
            chosen.append((term, float(weight)))
            continue
        options: dict[str, Any] = dict(spec)
        name = options.pop("term", None)
        if name not in TERMS:
            raise ValueError(f"unknown loss term {name!r}; choose one of {', '.join(TERMS)}")
        weight = float(options.pop("weight", 1.0))
        try:
            chosen.append((TERMS[name](**options), weight))
        except TypeError:
            raise ValueError(f"loss term {name!r}: unknown option(s) {sorted(options)}") from None
    if not chosen:
        raise ValueError("the objective is empty: give a mode or a list of terms")
    objective = Objective([(t, w) for t, w in chosen if w != 0.0])
    objective.check(problem)
    return objective


def _merge_first_order(groups: dict[tuple, list[str]], batches: Mapping[str, PointSet]) -> None:
    """Join the groups that need at most first derivatives into one network pass where the
    derivatives that some rows then carry in excess cost less than the rows already
    carried (e.g. kdv-transfer: value-only initial points, periodic pairs with u_x and the
    distillation points with ∇u in one pass instead of two). Small first-order passes are
    dispatch-bound: a pass fewer saves more than the extra rows cost."""
    low = [need for need in groups if max(len(a) for a in need) <= 1]
    if len(low) < 2:
        return

    def rows(need):
        return sum(len(batches[n]) for n in groups[need])

    low.sort(key=lambda need: (-rows(need) * len(need), need))
    merged, names = low[0], list(groups.pop(low[0]))
    for need in low[1:]:
        union = closure([*merged, *need])
        carried = sum(len(batches[n]) for n in names) * len(merged)
        extra = sum(len(batches[n]) for n in names) * (len(union) - len(merged)) + rows(need) * (
            len(union) - len(need)
        )
        if extra <= carried:
            names += groups.pop(need)
            merged = union
    groups[merged] = names


def _has_set(problem: Problem, name: str) -> bool:
    if name == "initial":
        return problem.initial_from_batch or "initial" in problem.sets
    if name == "periodic":
        return problem.periodic is not None
    return name in problem.sets
