"""Distilling a Neural-Conservation-Law teacher of variable-density Euler in a ball into
students (paper.md §9): the point sets, the teacher's and the students' objectives as
trainer configurations, teacher labels of the *field*, and the metrics of §9.5.

The network a trainer holds is the raw MLP 4 → 5 of :class:`~derlhybrid.learn.ncl.BallNCL`
(``model`` = :data:`~derlhybrid.learn.ncl.NCL_MODEL`); the NCL loss terms of
:mod:`derlhybrid.learn.ncl` turn its derivatives into those of the field (ρ, m, p), so
teacher and students train with the project's trainer (checkpoints, exact resume, seeds,
progress) on in-memory problems::

    problem = teacher_problem(100_000, 100_000, 100_000, seed=30)
    teacher = train(teacher_config(epochs=1), "runs/ncl/teacher", problem=problem).model
    files = label_teacher(teacher, problem, "runs/ncl/labels")
    sp = student_problem(read_labels(files["train"]), read_labels(files["initial"]),
                         problem.sets["boundary"])
    student = train(student_config("derivative"), "runs/ncl/derivative", problem=sp).model
    metrics = ncl_metrics(student, teacher, metric_points(100_000))

Teacher (§9.3): momentum F (weight 0.1), ρ Dρ/Dt (0.1), no flux (m·n)² (0.1), initial
(ρ, m) against ρ0 = 3/2 − ‖x‖², m0 = ρ0·(−2, x − 1, 1/2) at t ~ U(0, 0.01) (30); Adam
lr 1e-3, batch 1000. Students (§9.4): λ_init·MSE((ρ, m) vs the teacher's at the initial
points) + λ_bc·(m·n)² + λ_sys·mode term against the teacher's labels. Deviations from the
reference code, recorded here and in ``docs/transfer.md``: the student ``sobolev`` mode is
output + Jacobian (the reference adds the Jacobian twice and no output term — available as
``sobolev-reference``); the tuned student weights are not available (paper.md §9.4), every
weight defaults to 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..learn.config import DataConfig, ObjectiveConfig, TrainConfig, TrainingConfig
from ..learn.ncl import (
    NCL_MODEL,
    BallNCL,
    density_residual,
    mass_residual,
    momentum_residual,
    ncl_derivatives,
)
from ..learn.problems import PointSet, Problem
from ..systems import get_system
from ..systems.flows import EulerBall
from .labels import Labels, label

__all__ = [
    "STUDENT_MODES",
    "TEACHER_WEIGHTS",
    "label_teacher",
    "metric_points",
    "ncl_metrics",
    "orders_needed",
    "sample_ball",
    "student_config",
    "student_problem",
    "student_terms",
    "teacher_config",
    "teacher_problem",
    "teacher_problem_from_file",
    "teacher_terms",
]

#: the teacher's loss weights (paper.md §9.3)
TEACHER_WEIGHTS: dict[str, float] = {"momentum": 0.1, "divergence": 0.1, "bc": 0.1, "init": 30.0}

#: student mode → (field term, factor of λ_sys) pairs; the initial (λ_init) and no-flux
#: (λ_bc) terms are added to every mode. ``sobolev`` is the correct output + Jacobian;
#: ``sobolev-reference`` is the reference code's (the Jacobian twice, no output term);
#: ``forgetting`` distils nothing (the initial and boundary terms alone: a baseline).
STUDENT_MODES: dict[str, tuple[tuple[str, float], ...]] = {
    "output": (("ncl_output", 1.0),),
    "derivative": (("ncl_jacobian", 1.0),),
    "hessian": (("ncl_hessian", 1.0),),
    "der+hesl": (("ncl_jacobian", 1.0), ("ncl_hessian", 1.0)),
    "sobolev": (("ncl_output", 1.0), ("ncl_jacobian", 1.0)),
    "sobolev-reference": (("ncl_jacobian", 2.0),),
    "sob+hesl": (("ncl_output", 1.0), ("ncl_jacobian", 1.0), ("ncl_hessian_projection", 1.0)),
    "forgetting": (),
}
#: the label order each field term reads
_ORDER = {"ncl_output": 0, "ncl_jacobian": 1, "ncl_hessian": 2, "ncl_hessian_projection": 2}


def _system(system) -> EulerBall:
    if system is None:
        return EulerBall()
    sys_ = get_system(system) if isinstance(system, str) else system
    if not isinstance(sys_, EulerBall):
        raise ValueError(f"the NCL study needs an EulerBall system, got {sys_.name!r}")
    return sys_


def sample_ball(
    system: EulerBall,
    rng: np.random.Generator,
    n: int,
    kind: str,
    *,
    t_max: float | None = None,
    initial_t_max: float = 0.01,
) -> np.ndarray:
    """(n, 4) points (t, x, y, z) as the reference code draws them (paper.md §9.3):
    ``interior`` x uniform in the ball, t ~ U(0, t_max) (default 1.1·T = 0.55);
    ``initial`` x uniform in the ball, t ~ U(0, initial_t_max) (0.01; 0 gives t = 0);
    ``boundary`` x uniform on the sphere, t ~ U(0, t_max)."""
    t_max = 1.1 * system.t_end if t_max is None else float(t_max)
    if kind == "boundary":
        X = system.sample_boundary(rng, n)
    elif kind in ("interior", "initial"):
        X = system.sample_interior(rng, n)
    else:
        raise ValueError(f"sample_ball: kind must be interior, initial or boundary, got {kind!r}")
    top = initial_t_max if kind == "initial" else t_max
    X[:, 0] = rng.uniform(0.0, top, n) if top > 0 else 0.0
    return X


def teacher_problem(
    n_interior: int,
    n_initial: int,
    n_boundary: int,
    *,
    n_val: int = 0,
    seed: int = 30,
    system: EulerBall | str | None = None,
    t_max: float | None = None,
    initial_t_max: float = 0.01,
) -> Problem:
    """The teacher's point sets (paper.md §9.3 at any size; the paper: 10⁷ each):
    ``train`` (and ``val``) interior points, ``initial`` points with the initial data
    (ρ0, m0) as target ``output`` (4 columns), ``boundary`` sphere points. Seeded by one
    ``SeedSequence(seed)``, one child per set."""
    sys_ = _system(system)
    kids = np.random.SeedSequence(seed).spawn(4)
    rngs = [np.random.default_rng(k) for k in kids]
    opts = {"t_max": t_max, "initial_t_max": initial_t_max}
    X = sample_ball(sys_, rngs[0], n_interior, "interior", **opts)
    X0 = sample_ball(sys_, rngs[1], n_initial, "initial", **opts)
    Xb = sample_ball(sys_, rngs[2], n_boundary, "boundary", **opts)
    sets = {
        "train": PointSet(_t(X)),
        "initial": PointSet(_t(X0), {"output": _t(sys_.initial_state(X0[:, 1:]))}),
        "boundary": PointSet(_t(Xb)),
    }
    if n_val:
        sets["val"] = PointSet(_t(sample_ball(sys_, rngs[3], n_val, "interior", **opts)))
    return _problem(
        sys_,
        sets,
        {
            "kind": "ncl-teacher points (paper.md §9.3)",
            "seed": seed,
            "t_max": 1.1 * sys_.t_end if t_max is None else t_max,
            "initial_t_max": initial_t_max,
        },
    )


def teacher_problem_from_file(path, *, n_val: int = 0, seed: int = 30) -> Problem:
    """The teacher's point sets from a ``derl generate euler-ball`` file (``/points``,
    ``/initial`` with (ρ0, m0), ``/boundary``; loaded into memory). Its initial points lie
    at t = 0 exactly (the generator's recorded deviation from t ~ U(0, 0.01)); ``n_val``
    extra interior points for validation are drawn from ``seed``."""
    from ..data.store import DatasetError, h5_dataset, open_dataset, provenance

    with open_dataset(path, layout="points") as f:
        prov = provenance(f)
        sys_ = _system(get_system(prov["system"], prov.get("system_parameters") or {}))
        missing = [
            k
            for k in ("points/inputs", "initial/inputs", "initial/outputs", "boundary/inputs")
            if k not in f
        ]
        if missing:
            raise DatasetError(f"{path}: not an euler-ball collocation file (no /{missing[0]})")
        sets = {
            "train": PointSet(_t(h5_dataset(f, "points/inputs")[...])),
            "initial": PointSet(
                _t(h5_dataset(f, "initial/inputs")[...]),
                {"output": _t(h5_dataset(f, "initial/outputs")[...])},
            ),
            "boundary": PointSet(_t(h5_dataset(f, "boundary/inputs")[...])),
        }
    if n_val:
        rng = np.random.default_rng(np.random.SeedSequence(seed))
        sets["val"] = PointSet(_t(sample_ball(sys_, rng, n_val, "interior")))
    return _problem(
        sys_, sets, {"kind": "ncl-teacher points", "path": str(path), "seed": prov.get("seed")}
    )


def _problem(sys_, sets, source) -> Problem:
    return Problem(
        system=sys_,
        inputs=tuple(sys_.inputs),
        outputs=tuple(sys_.outputs),
        derivative_inputs=tuple(range(len(sys_.inputs))),
        sets=sets,
        source=source,
    )


def _t(a) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float64)


def teacher_terms(weights: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
    """The teacher's objective as ``[objective] terms`` (weights: :data:`TEACHER_WEIGHTS`,
    overridable by key)."""
    w = {**TEACHER_WEIGHTS, **dict(weights or {})}
    unknown = sorted(set(w) - set(TEACHER_WEIGHTS))
    if unknown:
        raise ValueError(
            f"teacher weights: unknown key {unknown[0]!r}; keys are {', '.join(TEACHER_WEIGHTS)}"
        )
    return [
        {"term": "ncl_momentum", "weight": float(w["momentum"])},
        {"term": "ncl_divergence", "weight": float(w["divergence"])},
        {"term": "ncl_boundary", "weight": float(w["bc"])},
        {"term": "ncl_initial", "weight": float(w["init"])},
    ]


def student_terms(
    mode: str,
    weights: Mapping[str, float] | None = None,
    hessian_projection: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """A student's objective as ``[objective] terms``: the mode's field terms (λ_sys), the
    initial term against the teacher (λ_init) and the no-flux term (λ_bc). Weights default
    to 1 (the tuned ones are not available, paper.md §9.4)."""
    if mode not in STUDENT_MODES:
        raise ValueError(
            f"NCL student: unknown mode {mode!r}; choose one of {', '.join(STUDENT_MODES)}"
        )
    w = {"sys": 1.0, "init": 1.0, "bc": 1.0, **dict(weights or {})}
    unknown = sorted(set(w) - {"sys", "init", "bc"})
    if unknown:
        raise ValueError(f"NCL student: unknown weight {unknown[0]!r}; weights are sys, init, bc")
    terms = []
    for name, factor in STUDENT_MODES[mode]:
        spec: dict[str, Any] = {"term": name, "weight": factor * float(w["sys"])}
        if name == "ncl_hessian_projection":
            spec.update(dict(hessian_projection or {}))
        terms.append(spec)
    terms.append({"term": "ncl_initial", "weight": float(w["init"])})
    terms.append({"term": "ncl_boundary", "weight": float(w["bc"])})
    return terms


def _config(terms, *, model, data_note, **train) -> TrainConfig:
    train = {"val_every": 0, **train}
    return TrainConfig(
        data=DataConfig(path=data_note, system="euler-ball"),
        model={**NCL_MODEL, **dict(model or {})},
        objective=ObjectiveConfig(terms=terms),
        train=TrainingConfig(**train),
    )


def teacher_config(
    *,
    epochs: int = 1,
    batch_size: int = 1000,
    lr: float = 1e-3,
    model: Mapping[str, Any] | None = None,
    weights: Mapping[str, float] | None = None,
    **train,
) -> TrainConfig:
    """The teacher's trainer configuration (paper.md §9.3: Adam lr 1e-3, batch 1000, one
    pass over the points; ``model`` overrides :data:`~derlhybrid.learn.ncl.NCL_MODEL`)."""
    return _config(
        teacher_terms(weights),
        model=model,
        data_note="(in memory: teacher_problem)",
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        **train,
    )


def student_config(
    mode: str,
    *,
    epochs: int = 1,
    batch_size: int = 100,
    lr: float = 1e-3,
    model: Mapping[str, Any] | None = None,
    weights: Mapping[str, float] | None = None,
    hessian_projection: Mapping[str, Any] | None = None,
    **train,
) -> TrainConfig:
    """A student's trainer configuration (paper.md §9.4: batch 100, Adam; every weight 1
    unless given)."""
    return _config(
        student_terms(mode, weights, hessian_projection),
        model=model,
        data_note="(in memory: student_problem)",
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        **train,
    )


def label_teacher(
    teacher,
    problem: Problem,
    out_dir,
    *,
    sets: Mapping[str, tuple[int, ...]] | None = None,
    batch_size: int = 1024,
    overwrite: bool = False,
) -> dict[str, Path]:
    """The teacher's field labels on its point sets, one distillation dataset per set
    (``<out_dir>/<set>.h5``, the contract of :func:`~derlhybrid.transfer.labels.label`):
    ``sets`` maps a set to the orders stored (default: ``train`` with value, 5 × 4
    Jacobian and 5 × 4 × 4 Hessian of (ρ, m, p) — fourth raw derivatives — and ``initial``
    with the value). ``teacher``: the raw network, a :class:`BallNCL`, or a trainer
    checkpoint of the raw network (its path)."""
    if isinstance(teacher, str | Path):
        from ..learn.trainer import load_model

        teacher = load_model(teacher)[0]
    field = teacher if isinstance(teacher, BallNCL) else BallNCL(teacher)
    sets = dict(sets or {"train": (0, 1, 2), "initial": (0,)})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, orders in sets.items():
        paths[name] = label(
            field,
            problem.sets[name],
            out=out / f"{name}.h5",
            orders=orders,
            system=problem.system,
            input_names=problem.inputs,
            output_names=problem.outputs,
            batch_size=batch_size,
            overwrite=overwrite,
        )
    return paths


def student_problem(interior: Labels, initial: Labels, boundary, *, min_order: int = 0) -> Problem:
    """A student's problem: ``train`` = the teacher's labelled interior points (targets
    ``output``, ``jacobian``, ``hessian`` of the field), ``initial`` = the teacher's
    (ρ, m) at its initial points, ``boundary`` = sphere points (a PointSet or an array)."""
    for lab in (interior, initial):
        if not isinstance(lab.system, EulerBall) or lab.outputs != tuple(EulerBall.outputs):
            raise ValueError(f"{lab.path}: not labels of the euler-ball NCL field")
    if 0 not in initial.orders:
        raise ValueError(f"{initial.path}: the initial labels need order 0 (the field's value)")
    if max(interior.orders) < min_order:
        raise ValueError(f"{interior.path}: relabel with orders up to {min_order}")
    if tuple(interior.derivative_inputs) != tuple(interior.inputs):
        raise ValueError(f"{interior.path}: the labels must differentiate all of (t, x, y, z)")
    Xb = boundary.X if isinstance(boundary, PointSet) else _t(boundary)
    sets = {
        "train": interior.points,
        "initial": PointSet(initial.points.X, {"output": initial.points.targets["output"][:, :4]}),
        "boundary": PointSet(Xb.detach().cpu().double()),
    }
    return _problem(
        interior.system,
        sets,
        {"kind": "ncl-student", "interior": str(interior.path), "initial": str(initial.path)},
    )


def orders_needed(mode: str) -> int:
    """The highest label order a student mode reads."""
    return max((_ORDER[n] for n, _ in STUDENT_MODES[mode]), default=0)


def metric_points(
    n: int = 100_000, *, seed: int = 0, system: EulerBall | str | None = None
) -> torch.Tensor:
    """(n, 4) evaluation points of paper.md §9.5: x uniform in the ball, t ~ U(0, T)."""
    sys_ = _system(system)
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    return _t(sample_ball(sys_, rng, n, "interior", t_max=sys_.t_end))


def _stats(v: torch.Tensor) -> dict[str, float]:
    v = v.double()
    return {
        "mean": float(v.mean()),
        "std": float(v.std(unbiased=False)),
        "rms": float(v.square().mean().sqrt()),
        "max": float(v.max()),
    }


def ncl_metrics(model, teacher, X, *, batch_size: int = 4096) -> dict[str, Any]:
    """paper.md §9.5 at the points ``X`` (:func:`metric_points`): per point the output error
    ‖(ρ̂, m̂) − (ρ, m)_T‖₂, the Jacobian error (spectral norm of the 5 × 4 difference of the
    fields' Jacobians, p included), the momentum residual ‖F‖₂ and |ρ Dρ/Dt| of ``model``
    (and of the teacher, for reference), and |ρ_t + ∇·m| (zero by construction) — each as
    mean, std, RMS and max. ``model``/``teacher``: raw networks or :class:`BallNCL`."""
    X = torch.as_tensor(X)
    parts: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(X), batch_size):
        xb = X[start : start + batch_size]
        with torch.no_grad():
            rows = {}
            for who, net in (("student", model), ("teacher", teacher)):
                dtype = next(net.parameters()).dtype
                f = ncl_derivatives(net, xb.to(dtype), (0, 1))
                rows[who] = f
            s, t = rows["student"], rows["teacher"]
            vals = {
                "output_error": (s.value[:, :4] - t.value[:, :4]).double().norm(dim=-1),
                "jacobian_error": torch.linalg.matrix_norm(
                    (s.jacobian(range(4)) - t.jacobian(range(4))).double(), ord=2
                ),
                "momentum": momentum_residual(s).double().norm(dim=-1),
                "divergence": density_residual(s).double().abs(),
                "mass": mass_residual(s).double().abs(),
                "teacher_momentum": momentum_residual(t).double().norm(dim=-1),
                "teacher_divergence": density_residual(t).double().abs(),
            }
        for k, v in vals.items():
            parts.setdefault(k, []).append(v)
    out: dict[str, Any] = {k: _stats(torch.cat(v)) for k, v in parts.items()}
    out["n_points"] = len(X)
    return out
