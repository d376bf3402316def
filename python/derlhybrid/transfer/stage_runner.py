"""Running a :class:`~.stage_config.Pipeline` stage by stage (:func:`run_pipeline`).

A stage trains with the trainer of :mod:`derlhybrid.learn` (its checkpoints, exact resume
and progress bar); the distillation terms, the EWC penalty and the starting weights reach
the trainer as :class:`~derlhybrid.learn.trainer.RunExtras`. After training the stage's
model labels its own training points (:func:`~.labels.label`) for later stages.

Layout of an output folder::

    OUT/<stage>/stage.json     status ("running" | "done"), configuration, provenance
    OUT/<stage>/checkpoint.pt  the trainer's checkpoint (with EWC's Fisher and θ*)
    OUT/<stage>/train.json     the trainer's summary
    OUT/<stage>/labels.h5      the stage's labels (a distillation dataset)

Rerunning a pipeline skips the stages whose ``stage.json`` says done (the same
configuration; another one is refused), resumes an interrupted stage from its checkpoint,
and runs the rest.
"""

from __future__ import annotations

import datetime as _dt
import json
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from .._io import exclusive_lock
from .._io import write_json_atomic as _write_json
from ..learn.checkpoint import CheckpointError, load_checkpoint
from ..learn.losses import build_objective
from ..learn.models import MLPConfig
from ..learn.problems import PointSet, Problem
from ..learn.trainer import CHECKPOINT, RunExtras, load_model, resolve_device, train
from .distill import distillation
from .ewc import EWCTerm, parameter_vector, task_fisher
from .labels import TRUE_TARGETS, describe_labels, label, read_labels, sha256
from .selection import stage_problem
from .stage_config import EWCConfig, Pipeline, Stage

__all__ = ["LABELS", "STAGE_JSON", "StageResult", "run_pipeline"]

STAGE_JSON = "stage.json"
LABELS = "labels.h5"
#: trainer keys that may change between runs of a stage (as the trainer's own resume)
_RUN_ONLY = ("progress", "device", "checkpoint_every", "val_every", "compile", "threads")


@dataclass
class StageResult:
    """A stage after :func:`run_pipeline`: its folder, checkpoint, labels, whether it was
    skipped (finished before) and its ``stage.json`` record."""

    name: str
    dir: Path
    checkpoint: Path
    labels: Path
    skipped: bool
    record: dict[str, Any]


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _comparable(stage: Stage) -> dict[str, Any]:
    """The configuration a finished stage must match to be skipped (paths and the
    trainer's run-only keys left out)."""
    d = stage.to_dict()
    d["data"].pop("path", None)
    for k in _RUN_ONLY:
        d["train"].pop(k, None)
    for s in d["distill"]:
        s.pop("labels", None)
    return d


def _diff(a: Mapping, b: Mapping, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        x, y = a.get(k), b.get(k)
        if isinstance(x, Mapping) and isinstance(y, Mapping):
            out += _diff(x, y, f"{prefix}{k}.")
        elif x != y:
            out.append(f"{prefix}{k}")
    return out


def _same_architecture(stage: Stage, problem: Problem, other_ckpt: dict, other: str) -> None:
    mine = MLPConfig(n_in=problem.n_in, n_out=problem.n_out, **stage.config.model).to_dict()
    theirs = other_ckpt.get("model_config")
    if mine != theirs:
        raise ValueError(
            f"stage {stage.name!r}: its network {mine} differs from stage {other!r}'s "
            f"{theirs}: extend and EWC need the same architecture"
        )


def _concat(sets: list[PointSet]) -> PointSet:
    keys = set(sets[0].targets)
    for s in sets[1:]:
        keys &= {k for k, v in s.targets.items() if v.shape[1:] == sets[0].targets[k].shape[1:]}
    X = torch.cat([s.X.detach().cpu().double() for s in sets])
    tg = {k: torch.cat([s.targets[k].detach().cpu().double() for s in sets]) for k in sorted(keys)}
    return PointSet(X, tg)


def _say(progress: bool, text: str) -> None:
    if progress:
        print(text, file=sys.stderr, flush=True)


def run_pipeline(
    pipeline: Pipeline,
    out_dir,
    *,
    progress: bool | None = None,
    problems: Mapping[str, Problem] | None = None,
    after_stage: Callable[[StageResult], None] | None = None,
) -> list[StageResult]:
    """Run (or resume) every stage of ``pipeline`` into ``out_dir``.

    ``problems`` maps stage names to ready :class:`~derlhybrid.learn.problems.Problem`\\ s
    used instead of loading the stage's data file (e.g. with boundary sets an experiment
    builds itself); the stage's selection still applies. ``after_stage`` is called with
    each finished (or skipped) stage. ``progress`` (default: each stage's
    ``train.progress``) prints a line per stage and shows the trainer's bar.
    """
    out = Path(out_dir)
    problems = dict(problems or {})
    unknown = sorted(set(problems) - {s.name for s in pipeline.stages})
    if unknown:
        raise ValueError(f"problems: {unknown[0]!r} is not a stage of the pipeline")
    out.parent.mkdir(parents=True, exist_ok=True)
    # one pipeline per folder at a time: two would train the same stages over each other
    with exclusive_lock(out, error=ValueError):
        out.mkdir(exist_ok=True)
        done: dict[str, StageResult] = {}
        n = len(pipeline.stages)
        for i, stage in enumerate(pipeline.stages):
            show = stage.config.train.progress if progress is None else progress
            result = _run_stage(pipeline, stage, out, done, problems, show, f"stage {i + 1}/{n}")
            done[stage.name] = result
            if after_stage is not None:
                after_stage(result)
        return list(done.values())


def _upstream(stage: Stage, pipeline: Pipeline, done: Mapping[str, StageResult]) -> dict:
    names = {ref for _, ref in stage.references()}
    ext = pipeline.extends(stage)
    if ext is not None:
        names.add(ext)
    up = {n: done[n].record["provenance"]["checkpoint_sha256"] for n in sorted(names)}
    for src in stage.distill:  # label files from outside the pipeline
        if src.labels is not None:
            path = Path(src.labels)
            up[src.point_set] = sha256(path) if path.exists() else None
    return up


def _run_stage(pipeline, stage, out, done, problems, show, tag) -> StageResult:
    sdir = out / stage.name
    sjson = sdir / STAGE_JSON
    ckpt_path, labels_path = sdir / CHECKPOINT, sdir / LABELS
    comparable = _comparable(stage)
    upstream = _upstream(stage, pipeline, done)
    if sjson.exists():
        try:
            prev = json.loads(sjson.read_text())
        except ValueError:
            raise CheckpointError(f"{sjson} is not readable JSON; delete it to rerun") from None
        was = {"config": prev.get("comparable"), "upstream": prev.get("upstream")}
        now = json.loads(json.dumps({"config": comparable, "upstream": upstream}))
        if was != now:
            keys = ", ".join(_diff(was, now)) or "the configuration"
            raise CheckpointError(
                f"{sjson}: stage {stage.name!r} was run with another configuration ({keys} "
                "differ): choose another --out or restore it"
            )
        if prev.get("status") == "done":
            prov = prev.get("provenance", {})
            if not ckpt_path.exists() or (stage.label.sets and not labels_path.exists()):
                raise CheckpointError(
                    f"{sjson} says done but its checkpoint or labels are missing; delete "
                    f"{sdir} to rerun the stage"
                )
            if sha256(ckpt_path) != prov.get("checkpoint_sha256"):
                raise CheckpointError(
                    f"{ckpt_path} changed after stage {stage.name!r} finished; delete {sdir} "
                    "to rerun the stage"
                )
            _say(show, f"{tag} {stage.name}: done before, skipped")
            return StageResult(stage.name, sdir, ckpt_path, labels_path, True, prev)
    sdir.mkdir(parents=True, exist_ok=True)
    started = _now()
    record: dict[str, Any] = {
        "status": "running",
        "name": stage.name,
        "config": stage.to_dict(),
        "comparable": comparable,
        "upstream": upstream,
        "started": started,
    }
    _write_json(sjson, record)
    t0 = time.perf_counter()

    problem = stage_problem(stage, problems.get(stage.name))
    label_missing = [
        s
        for s in stage.label.sets
        if s not in problem.sets and not any(d.point_set == s for d in stage.distill)
    ]
    if label_missing:
        raise ValueError(
            f"stage {stage.name!r}: label.sets names {label_missing[0]!r}, which the stage "
            f"does not have (it has: {', '.join(problem.sets)})"
        )
    bad = [n for n in stage.label.inputs or () if n not in problem.inputs]
    if bad:
        raise ValueError(
            f"stage {stage.name!r}: label.inputs: unknown input {bad[0]!r}; inputs are "
            f"{', '.join(problem.inputs)}"
        )
    # distillation sources: the old points join the problem, their terms the objective
    seq = np.random.SeedSequence(stage.config.train.seed).spawn(4)[3]  # the trainer uses 0–2
    seeds = seq.spawn(max(len(stage.distill), 1))
    terms, sizes, sources, old_points = [], {}, [], {}
    for src, sd in zip(stage.distill, seeds, strict=False):
        path = out / src.source / LABELS if src.source is not None else Path(src.labels)
        labels = read_labels(path)
        dist = distillation(problem, labels, src, seed=sd)
        dist.add_to(problem)
        terms += dist.terms
        sizes[dist.point_set] = src.batch_size or stage.config.train.batch_size
        sources.append({**describe_labels(labels), **dist.describe, "point_set": dist.point_set})
        # labelling this set later means all the source's points, with their true values
        # and residual data (not the teacher's labels)
        aux = {k: v for k, v in labels.points.targets.items() if k not in TRUE_TARGETS}
        old_points[dist.point_set] = PointSet(labels.points.X, {**labels.true, **aux})
    # the starting weights
    initial_state, init = None, {"init": stage.init}
    ext = pipeline.extends(stage)
    if ext is not None:
        src_ckpt = load_checkpoint(done[ext].checkpoint)
        _same_architecture(stage, problem, src_ckpt, ext)
        initial_state = src_ckpt["model_state"]
        init["from"] = ext
    # EWC against an earlier stage: Fisher and θ* kept in this stage's checkpoint
    payload, ewc_info = {}, None
    if stage.ewc is not None:
        e = stage.ewc
        _same_architecture(stage, problem, load_checkpoint(done[e.source].checkpoint), e.source)
        ckpt = load_checkpoint(ckpt_path) if ckpt_path.exists() else None  # a resumed stage
        if ckpt is not None and "ewc" in ckpt:
            fisher, star = ckpt["ewc"]["fisher"], ckpt["ewc"]["theta_star"]
        else:
            fisher, star = _fisher_of(pipeline.stage(e.source), done[e.source], problems, e)
        term = EWCTerm(fisher=fisher, theta_star=star)
        terms.append((term, float(e.weight)))
        payload["ewc"] = {
            "source": e.source,
            "weight": e.weight,
            "batch_size": e.batch_size,
            "fisher": fisher,
            "theta_star": star,
        }
        ewc_info = {"source": e.source, "weight": e.weight, **term.describe()}
    extras = RunExtras(
        terms=terms,
        batch_sizes=sizes,
        initial_state=initial_state,
        record={"stage": comparable, "upstream": upstream},
        payload=payload,
        desc=f"{tag} {stage.name}",
    )
    what = [f"init {stage.init}" + (f" from {ext}" if ext else "")]
    what += [f"{s.mode} from {s.source or s.labels}" for s in stage.distill]
    if stage.ewc is not None:
        what.append(f"EWC vs {stage.ewc.source}")
    _say(show, f"{tag} {stage.name}: {stage.config.objective.mode or 'terms'}; {', '.join(what)}")
    # the points labelled afterwards, taken before training (the trainer trims targets)
    to_label = [old_points[s] if s in old_points else problem.sets[s] for s in stage.label.sets]
    result = train(stage.config, sdir, problem=problem, extras=extras, progress=show)
    if to_label:
        label(
            ckpt_path,
            _concat(to_label),
            out=labels_path,
            orders=stage.label.orders,
            inputs=stage.label.inputs,
            batch_size=stage.label.batch_size,
            engine=stage.config.train.engine,
            overwrite=True,
            progress=show,
        )
    final = result.history[-1]["train"] if result.history else None
    record.update(
        status="done",
        finished=_now(),
        provenance={
            "package_version": __version__,
            "checkpoint": str(ckpt_path),
            "checkpoint_sha256": sha256(ckpt_path),
            "labels": str(labels_path) if to_label else None,
            "labels_sha256": sha256(labels_path) if to_label else None,
            "epochs": len(result.history),
            "resumed_from_epoch": result.start_epoch,
            "final_train": final,
            "seconds": time.perf_counter() - t0,
            "problem": problem.describe(),
            "init": init,
            "distill": sources,
            "ewc": ewc_info,
        },
    )
    _write_json(sjson, record)
    return StageResult(stage.name, sdir, ckpt_path, labels_path, False, record)


def _fisher_of(source: Stage, result: StageResult, problems, e: EWCConfig):
    """Fisher and θ* of a finished stage: its model, its system loss, its training points."""
    model, _ = load_model(result.checkpoint)
    device = resolve_device(source.config.train.device)
    model = model.to(device)
    problem = stage_problem(source, problems.get(source.name)).to(device, model.dtype)
    o = source.config.objective
    objective = build_objective(problem, o.mode, o.weights, o.terms, o.hessian_projection)
    fisher = task_fisher(
        model,
        objective,
        problem,
        batch_size=e.batch_size,
        engine=source.config.train.engine,
        seed=source.config.train.seed,
    )
    return fisher.cpu(), parameter_vector(model).detach().to("cpu", torch.float64)
