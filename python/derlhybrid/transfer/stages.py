"""Multi-stage (incremental) training as data: a pipeline is a list of stages, each a
region or parameter selection of a dataset, an objective, training settings, an
initialisation and distillation sources (paper.md §10).

A stage trains with the trainer of :mod:`derlhybrid.learn` (its checkpoints, exact resume
and progress bar); the distillation terms, the EWC penalty and the starting weights reach
the trainer as :class:`~derlhybrid.learn.trainer.RunExtras`. After training the stage's
model labels its own training points (:func:`~.label.label`) for later stages.

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

import dataclasses
import datetime as _dt
import json
import math
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._io import exclusive_lock
from .._io import write_json_atomic as _write_json
from .._tables import deep_merge as _merge
from .._tables import read_toml, refuse_unknown
from ..data.store import DatasetError, h5_dataset, open_dataset
from ..learn.checkpoint import CheckpointError, load_checkpoint
from ..learn.config import ConfigError, DataConfig, TrainConfig
from ..learn.losses import build_objective
from ..learn.models import MLPConfig
from ..learn.problems import PointSet, Problem, StreamPolicy, load_problem
from ..learn.trainer import CHECKPOINT, RunExtras, resolve_device, train
from .distill import DistillSource, distillation
from .ewc import EWCTerm, parameter_vector, task_fisher
from .labels import TRUE_TARGETS, describe_labels, label, read_labels, sha256

__all__ = [
    "INITS",
    "EWCConfig",
    "LabelConfig",
    "Pipeline",
    "Stage",
    "StageResult",
    "run_pipeline",
    "select_points",
    "stage_problem",
]

INITS = ("new", "extend")
STAGE_JSON = "stage.json"
LABELS = "labels.h5"
#: point sets a region selects by ``region`` (the others by ``boundary_region``)
INTERIOR_SETS = ("train", "val", "test")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
#: trainer keys that may change between runs of a stage (as the trainer's own resume)
_RUN_ONLY = ("progress", "device", "checkpoint_every", "val_every", "compile", "threads")

Box = Mapping[str, tuple[float, float]]


# -- configuration --------------------------------------------------------------------


@dataclass(frozen=True)
class LabelConfig:
    """What a finished stage labels: the point sets ``sets`` of its problem (``train``,
    ``val``, ``test``, ``boundary``, ``initial``, or a distillation set ``distill:<stage>``
    — all of that source's points), concatenated; derivative ``orders``, with respect to
    ``inputs`` (default all). The true values and residual data the sets carry are kept
    where every set has them."""

    sets: tuple[str, ...] = ("train",)
    orders: tuple[int, ...] = (0, 1, 2)
    inputs: tuple[str, ...] | None = None
    batch_size: int = 4096

    def __post_init__(self):
        for name in ("sets", "orders"):
            v = getattr(self, name)
            if isinstance(v, str) or not isinstance(v, Sequence):
                raise ConfigError(f"label.{name} must be a list, got {v!r}")
            object.__setattr__(self, name, tuple(v))
        if not self.orders or any(o not in (0, 1, 2) for o in self.orders):
            raise ConfigError(f"label.orders must be a non-empty subset of 0, 1, 2: {self.orders}")
        if self.inputs is not None:
            object.__setattr__(self, "inputs", tuple(self.inputs))
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError("label.batch_size must be a positive integer")


@dataclass(frozen=True)
class EWCConfig:
    """EWC against the stage ``source``: penalty weight ``weight``, Fisher estimated from
    batches of ``batch_size`` of the source's training points."""

    source: str
    weight: float = 1.0
    batch_size: int = 1000

    def __post_init__(self):
        w = self.weight
        if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or w < 0:
            raise ConfigError(f"ewc.weight must be a number ≥ 0, got {w!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError("ewc.batch_size must be a positive integer")


@dataclass(frozen=True)
class Stage:
    """One stage: ``config`` (data file, model, objective, training — a
    :class:`~derlhybrid.learn.config.TrainConfig`), the points it learns on (``region``: a
    box {input: (lo, hi)} for the interior sets; ``boundary_region`` for the initial,
    boundary and periodic sets, default the region, ``{}`` for all of them;
    ``parameter_sets``: indices into the file's ``/parameters/values``), ``init`` (``new``:
    the seeded initialisation, ``extend``: the weights of ``init_from``, default the
    previous stage), distillation sources, optional EWC, and what it labels."""

    name: str
    config: TrainConfig
    region: Box | None = None
    boundary_region: Box | None = None
    parameter_sets: tuple[int, ...] | None = None
    init: str = "new"
    init_from: str | None = None
    distill: tuple[DistillSource, ...] = ()
    ewc: EWCConfig | None = None
    label: LabelConfig = field(default_factory=LabelConfig)

    def __post_init__(self):
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ConfigError(
                f"stage name {self.name!r} must be letters, digits, '_', '-' or '.' "
                "(it names the stage's folder)"
            )
        if self.init not in INITS:
            raise ConfigError(
                f"stage {self.name!r}: init must be one of {', '.join(INITS)}, got {self.init!r}"
            )
        if self.init_from is not None and self.init != "extend":
            raise ConfigError(f"stage {self.name!r}: init_from needs init = 'extend'")
        for key in ("region", "boundary_region"):
            box = getattr(self, key)
            if box is not None:
                object.__setattr__(self, key, _box(box, f"stage {self.name!r}: {key}"))
        if self.parameter_sets is not None:
            ps = self.parameter_sets
            if isinstance(ps, str | int) or not all(
                isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ps
            ):
                raise ConfigError(
                    f"stage {self.name!r}: parameter_sets must be a list of indices ≥ 0"
                )
            object.__setattr__(self, "parameter_sets", tuple(ps))
        object.__setattr__(self, "distill", tuple(self.distill))
        seen = set()
        for src in self.distill:
            if src.point_set in seen:
                raise ConfigError(
                    f"stage {self.name!r}: two distillation sources use {src.point_set!r}"
                )
            seen.add(src.point_set)

    def references(self) -> list[tuple[str, str]]:
        """(what, stage) for every earlier stage this one reads."""
        refs = [("distill source", s.source) for s in self.distill if s.source is not None]
        if self.init == "extend" and self.init_from is not None:
            refs.append(("init_from", self.init_from))
        if self.ewc is not None:
            refs.append(("ewc source", self.ewc.source))
        return refs

    def to_dict(self) -> dict[str, Any]:
        return json.loads(
            json.dumps(
                {
                    "name": self.name,
                    **self.config.to_dict(),
                    "region": _jsonable_box(self.region),
                    "boundary_region": _jsonable_box(self.boundary_region),
                    "parameter_sets": self.parameter_sets,
                    "init": self.init,
                    "init_from": self.init_from,
                    "distill": [dataclasses.asdict(s) for s in self.distill],
                    "ewc": None if self.ewc is None else dataclasses.asdict(self.ewc),
                    "label": dataclasses.asdict(self.label),
                },
                default=list,
            )
        )


def _box(box, where: str) -> dict[str, tuple[float, float]]:
    if not isinstance(box, Mapping):
        raise ConfigError(f"{where} must be a table {{ input = [lo, hi] }}, got {box!r}")
    out = {}
    for name, bounds in box.items():
        ok = (
            isinstance(bounds, Sequence)
            and not isinstance(bounds, str)
            and len(bounds) == 2
            and all(isinstance(b, int | float) and not isinstance(b, bool) for b in bounds)
        )
        if not ok or not bounds[0] <= bounds[1]:
            raise ConfigError(f"{where}.{name} must be [lo, hi] with lo ≤ hi, got {bounds!r}")
        out[str(name)] = (float(bounds[0]), float(bounds[1]))
    return out


def _jsonable_box(box):
    return None if box is None else {k: list(v) for k, v in box.items()}


STAGE_KEYS = (
    "name",
    "data",
    "model",
    "objective",
    "train",
    "init",
    "init_from",
    "distill",
    "ewc",
    "label",
)
SELECTION_KEYS = ("region", "boundary_region", "parameter_sets")
DISTILL_KEYS = tuple(f.name for f in dataclasses.fields(DistillSource))


def _unknown(values: Mapping, known, where: str) -> None:
    refuse_unknown(values, known, where, ConfigError)


def _table(v, where: str) -> dict:
    if not isinstance(v, Mapping):
        raise ConfigError(f"{where} must be a table, got {type(v).__name__}")
    return dict(v)


def _stage_from_dict(values: Mapping, index: int, base: Path | None) -> Stage:
    name = values.get("name")
    where = f"stage {name!r}" if name is not None else f"stages[{index}]"
    if name is None:
        raise ConfigError(f'{where}: name = "…" is required')
    _unknown(values, STAGE_KEYS, where)
    data = _table(values.get("data", {}), f"{where}: data")
    if "path" not in data:
        raise ConfigError(f'{where}: [data] path = "FILE" is required')
    data_keys = {f.name for f in dataclasses.fields(DataConfig)} | set(SELECTION_KEYS)
    _unknown(data, data_keys, f"{where}: data")
    selection = {k: data.pop(k) for k in SELECTION_KEYS if k in data}
    if data.get("stream", "never") != "never":
        raise ConfigError(f"{where}: data.stream: a stage holds its data in memory ('never')")
    if base is not None and not Path(data["path"]).is_absolute():
        data["path"] = str(base / data["path"])
    try:
        cfg = TrainConfig.from_dict(
            {
                "data": {**data, "stream": "never"},
                **{k: values[k] for k in ("model", "objective", "train") if k in values},
            },
            where=where,
        )
    except ConfigError as exc:
        msg = str(exc)
        raise ConfigError(msg if msg.startswith(where) else f"{where}: {msg}") from None
    sources = values.get("distill", [])
    if isinstance(sources, Mapping):
        sources = [sources]
    if not isinstance(sources, list):
        raise ConfigError(f"{where}: distill must be a list of tables ([[stages.distill]])")
    distill = []
    for k, s in enumerate(sources):
        s = _table(s, f"{where}: distill[{k}]")
        _unknown(s, DISTILL_KEYS, f"{where}: distill[{k}]")
        if "labels" in s and base is not None and not Path(s["labels"]).is_absolute():
            s["labels"] = str(base / s["labels"])
        if "mode" not in s:
            raise ConfigError(f'{where}: distill[{k}]: mode = "…" is required')
        if s["mode"] == "pinn" and "fraction" not in s:
            # paper.md §10: a continual (extend) student replays a random 20 % of the old
            # points; a fresh (new) one all of them — the reference's "PINN full"
            s["fraction"] = 1.0 if values.get("init", "new") == "new" else 0.2
        try:
            distill.append(DistillSource(**s))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc}") from None
    ewc = None
    if "ewc" in values:
        e = _table(values["ewc"], f"{where}: ewc")
        _unknown(e, ("source", "weight", "batch_size"), f"{where}: ewc")
        if "source" not in e:
            raise ConfigError(f'{where}: ewc: source = "STAGE" is required')
        try:
            ewc = EWCConfig(**e)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    lab = _table(values.get("label", {}), f"{where}: label")
    _unknown(lab, ("sets", "orders", "inputs", "batch_size"), f"{where}: label")
    try:
        return Stage(
            name=name,
            config=cfg,
            init=values.get("init", "new"),
            init_from=values.get("init_from"),
            distill=tuple(distill),
            ewc=ewc,
            label=LabelConfig(**lab),
            **selection,
        )
    except ConfigError as exc:
        msg = str(exc)
        raise ConfigError(msg if msg.startswith("stage ") else f"{where}: {msg}") from None


@dataclass(frozen=True)
class Pipeline:
    """Stages in order. Validated at construction: unique names, every reference
    (distillation source, ``init_from``, EWC source) to an *earlier* stage."""

    stages: tuple[Stage, ...]
    description: str = ""

    def __post_init__(self):
        object.__setattr__(self, "stages", tuple(self.stages))
        if not self.stages:
            raise ConfigError("the pipeline has no stages: add [[stages]] tables")
        seen: list[str] = []
        for i, st in enumerate(self.stages):
            if st.name in seen:
                raise ConfigError(f"two stages are named {st.name!r}")
            for what, ref in st.references():
                if ref not in seen:
                    later = any(s.name == ref for s in self.stages[i + 1 :])
                    why = "a later stage" if later else "not a stage"
                    raise ConfigError(
                        f"stage {st.name!r}: {what} {ref!r} is {why}; earlier stages: "
                        f"{', '.join(seen) or 'none'}"
                    )
            if st.init == "extend" and st.init_from is None and not seen:
                raise ConfigError(
                    f"stage {st.name!r}: init = 'extend' needs an earlier stage to extend"
                )
            seen.append(st.name)

    def stage(self, name: str) -> Stage:
        for st in self.stages:
            if st.name == name:
                return st
        raise KeyError(name)

    def extends(self, st: Stage) -> str | None:
        """The stage whose weights ``st`` starts from (None for ``init = 'new'``)."""
        if st.init != "extend":
            return None
        if st.init_from is not None:
            return st.init_from
        return self.stages[[s.name for s in self.stages].index(st.name) - 1].name

    @classmethod
    def from_dict(cls, values: Mapping, where: str = "pipeline", base=None) -> Pipeline:
        """From a mapping as in the TOML file: ``[defaults]`` (merged under every stage,
        table by table), ``[[stages]]``, optional ``description``. Relative paths are
        taken from ``base``."""
        values = dict(values)
        _unknown(values, ("defaults", "stages", "description"), where)
        defaults = _table(values.get("defaults", {}), f"{where}: defaults")
        _unknown(defaults, [k for k in STAGE_KEYS if k != "name"], f"{where}: defaults")
        stages = values.get("stages")
        if not isinstance(stages, list) or not stages:
            raise ConfigError(f"{where}: no stages; add [[stages]] tables")
        base = None if base is None else Path(base)
        built = [
            _stage_from_dict(_merge(defaults, _table(s, f"{where}: stages[{i}]")), i, base)
            for i, s in enumerate(stages)
        ]
        return cls(tuple(built), str(values.get("description", "")))

    @classmethod
    def from_toml(cls, path) -> Pipeline:
        p = Path(path)
        values = read_toml(p, "pipeline config", ConfigError)
        return cls.from_dict(values, where=str(p), base=p.parent)


# -- points of a stage -----------------------------------------------------------------


def _in_box(X: torch.Tensor, inputs: Sequence[str], box: Box | None, tol=1e-12) -> torch.Tensor:
    keep = torch.ones(X.shape[0], dtype=torch.bool, device=X.device)
    for name, (lo, hi) in (box or {}).items():
        if name not in inputs:
            raise ValueError(f"region: unknown input {name!r}; inputs are {', '.join(inputs)}")
        j = list(inputs).index(name)
        keep &= (X[:, j] >= lo - tol) & (X[:, j] <= hi + tol)
    return keep


def _in_params(X, cols: Sequence[int], values: np.ndarray | None) -> torch.Tensor:
    keep = torch.ones(X.shape[0], dtype=torch.bool, device=X.device)
    if values is None:
        return keep
    P = X[:, list(cols)]
    V = torch.as_tensor(values, dtype=X.dtype, device=X.device)
    close = torch.isclose(P[:, None, :], V[None, :, :], rtol=1e-6, atol=1e-12)
    return keep & close.all(-1).any(-1)


def select_points(
    problem: Problem,
    *,
    region: Box | None = None,
    boundary_region: Box | None = None,
    parameters: np.ndarray | None = None,
) -> Problem:
    """The part of ``problem`` a stage learns: interior points (``train``/``val``/``test``)
    inside the closed box ``region``, the other point sets (initial, boundary, periodic
    pairs: both ends) inside ``boundary_region`` (default: ``region``), and, for a
    parametric family, only rows whose parameter inputs equal one of the rows of
    ``parameters`` (n_sets, n_par). Emptied condition, validation and test sets are
    dropped; an empty training set is refused."""
    if boundary_region is None:
        boundary_region = region
    if region is None and boundary_region is None and parameters is None:
        return problem
    inputs = problem.inputs
    par_names = tuple(getattr(problem.system, "parameter_inputs", ()))
    cols = [inputs.index(n) for n in par_names]
    if parameters is not None:
        parameters = np.atleast_2d(np.asarray(parameters, dtype=np.float64))
        if parameters.shape[1] != len(cols):
            raise ValueError(
                f"parameter selection: {parameters.shape[1]} values per set, the system has "
                f"{len(cols)} parameter inputs ({', '.join(par_names) or 'none'})"
            )
    sets = {}
    for name, pts in problem.sets.items():
        if not isinstance(pts, PointSet):
            raise ValueError(f"select: the {name} set is streamed; load it (stream = 'never')")
        box = region if name in INTERIOR_SETS else boundary_region
        keep = _in_box(pts.X, inputs, box) & _in_params(pts.X, cols, parameters)
        if bool(keep.all()):
            sets[name] = pts
        elif bool(keep.any()):
            sets[name] = pts.take(torch.nonzero(keep).squeeze(1))
        elif name == "train":
            raise ValueError(
                f"the selection leaves no training points (region {_jsonable_box(region)}, "
                f"{0 if parameters is None else len(parameters)} parameter sets)"
            )
    periodic = problem.periodic
    if periodic is not None:
        left, right = periodic
        keep = _in_box(left.X, inputs, boundary_region) & _in_box(right.X, inputs, boundary_region)
        keep &= _in_params(left.X, cols, parameters)
        idx = torch.nonzero(keep).squeeze(1)
        periodic = (left.take(idx), right.take(idx)) if len(idx) else None
    source = {
        **problem.source,
        "selection": {
            "region": _jsonable_box(region),
            "boundary_region": _jsonable_box(boundary_region),
            "parameters": None if parameters is None else parameters.tolist(),
        },
    }
    return dataclasses.replace(problem, sets=sets, periodic=periodic, source=source)


def _parameter_values(path, indices: Sequence[int]) -> np.ndarray:
    with open_dataset(path) as f:
        if "parameters/values" not in f:
            raise DatasetError(
                f"{path} holds no parameter sets (/parameters/values): parameter_sets needs "
                "a parametric family's file"
            )
        values = h5_dataset(f, "parameters/values")[...]
    bad = [i for i in indices if i >= len(values)]
    if bad:
        raise ValueError(f"parameter set {bad[0]} does not exist: {path} holds {len(values)}")
    return values[list(indices)]


def stage_problem(stage: Stage, problem: Problem | None = None) -> Problem:
    """The stage's problem: its data file (or ``problem``), restricted to its selection."""
    d = stage.config.data
    if problem is None:
        problem = load_problem(d.path, form=d.form, variant=d.variant, stream=StreamPolicy("never"))
    else:  # a copy: training moves and trims the sets of the problem it is given
        problem = dataclasses.replace(problem, sets=dict(problem.sets))
    if d.system is not None and problem.system.name != d.system:
        raise DatasetError(
            f"{d.path} holds {problem.system.name!r} data, but stage {stage.name!r} says "
            f"data.system = {d.system!r}"
        )
    params = (
        None if stage.parameter_sets is None else _parameter_values(d.path, stage.parameter_sets)
    )
    return select_points(
        problem,
        region=stage.region,
        boundary_region=stage.boundary_region,
        parameters=params,
    )


# -- running -----------------------------------------------------------------------------


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
            "package_version": _package_version(),
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
    from ..learn.trainer import load_model

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


def _package_version() -> str:
    from .. import __version__

    return __version__
