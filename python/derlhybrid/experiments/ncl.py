"""Spec groups of the Neural-Conservation-Law distillation study (``kind = "ncl"``, paper.md §9).

A group of this kind names a ``derl generate euler-ball`` dataset (interior, initial and
sphere points, read by :func:`~derlhybrid.transfer.euler_ball.teacher_problem_from_file`).
Per seed an NCL teacher is trained once on it (momentum, ρ Dρ/Dt, no flux, initial data)
into ``OUT/runs/_shared/<group>-teacher-s<seed>-<hash>/`` and labels its interior points
once with the field's value, Jacobian and — when a planned mode reads it — Hessian
(``labels/``); each student mode is then one run ``OUT/runs/<group>-<mode>-s<seed>/``
trained by the project's trainer on those labels
(:func:`~derlhybrid.transfer.euler_ball.student_problem`) and evaluated against the
teacher with :func:`~derlhybrid.transfer.euler_ball.ncl_metrics` at ``evaluate.points``
random points (:func:`~derlhybrid.transfer.euler_ball.metric_points`, seed = run seed + 1)
into its ``metrics.json``. The mode ``teacher`` is a row for the teacher itself (its own
residuals; its errors against itself are 0)::

    [[groups]]
    name = "ball"
    kind = "ncl"
    dataset = "ball"
    model = { width = 128, depth = 4, dtype = "float64" }    # over NCL_MODEL, both nets
    evaluate = { points = 100000 }
    [groups.teacher]
    weights = { momentum = 0.1, divergence = 0.1, bc = 0.1, init = 30.0 }
    train = { epochs = 1, batch_size = 1000, lr = 1e-3 }
    [groups.student]
    weights = { sys = 1.0, init = 1.0, bc = 1.0 }
    train = { epochs = 1, batch_size = 100, lr = 1e-3 }
    [groups.modes]
    teacher = { label = "NCL teacher" }
    derivative = { label = "DERL" }
    "sob+hesl" = { label = "SOB+HESL", hessian_projection = { n_directions = 100 } }
    # per mode: mode (a STUDENT_MODES name, default the key), label, weights, train, model,
    # hessian_projection

Everything resumes: the teacher continues its checkpoint, its labels are kept while they
hold the orders needed and were written from the current checkpoint, a student continues
its own checkpoint (and is trained afresh if it was distilled from another teacher), and
``metrics.json`` is recomputed only when a checkpoint is newer or the evaluation points
changed. A stopped teacher or student (NaN guard) writes ``diverged.json`` in its folder.

Metrics (``metrics.json``: ``{"kind": "ncl", "teacher_checkpoint", "points",
"points_seed", "metrics": ncl_metrics(...)}``): ``metrics.output_error``,
``jacobian_error``, ``momentum``, ``divergence`` (|ρ Dρ/Dt|), ``mass`` (|ρ_t + ∇·m|),
``teacher_momentum``, ``teacher_divergence``, each with ``mean``, ``std``, ``rms``, ``max``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .._io import write_text_atomic
from .._tables import deep_merge as _merge
from .pipelines import short_hash  # the 8-character key of the shared first stages

GROUP_KEYS = {"kind", "teacher", "student"}
#: every key an ncl group may have (the runner's common ones that apply, and GROUP_KEYS)
NCL_GROUP_KEYS = {"name", "dataset", "seeds", "model", "train", "evaluate", "modes", "label"}
NCL_GROUP_KEYS |= GROUP_KEYS | {"modes_from"}
TEACHER_KEYS = {"weights", "train", "model", "label_batch_size"}
STUDENT_KEYS = {"weights", "train", "model", "hessian_projection"}
MODE_KEYS = {"mode", "label", "weights", "train", "model", "hessian_projection"}


class NCLEvaluateOptions(BaseModel):
    """The ``evaluate`` table of an ncl group: ``points`` metric points (drawn with seed =
    run seed + 1), predicted ``batch_size`` at a time."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    points: int = Field(100_000, ge=1)
    batch_size: int = Field(4096, ge=1)


EVALUATE_KEYS = set(NCLEvaluateOptions.model_fields)
TEACHER = "teacher"
#: training keys that do not change a teacher's result (left out of its folder's hash)
_NOT_HASHED = ("progress", "device", "threads", "checkpoint_every", "val_every", "compile")
_LABELS = {"derivative": "DERL", "output": "OUTL", "hessian": "HESL", "sobolev": "SOB"}


@dataclass
class NCLRun:
    """One row of an ``ncl`` group: the teacher (``student is None``) or one student, with
    the trainer configurations (dicts for ``TrainConfig.from_dict``; data paths filled in
    when it runs)."""

    name: str
    group: str
    mode: str
    label: str
    seed: int
    dataset: str
    teacher: dict[str, Any]
    student: dict[str, Any] | None
    student_mode: str | None  # a STUDENT_MODES name; None for the teacher row
    orders: int  # the highest label order any planned student of the group reads
    evaluate: dict[str, Any] = field(default_factory=dict)
    label_batch_size: int = 1024
    variant: str | None = None
    kind: str = "ncl"
    #: set by :func:`prepare_teachers` before the runs start: what training the teacher
    #: and labelling it cost in this call (seconds)
    prepared: dict[str, Any] = field(default_factory=dict)


def _train_keys() -> set[str]:
    from ..learn.config import TrainingConfig

    return {f.name for f in dataclasses.fields(TrainingConfig)}


def _evaluate_options(table: dict, where: str = "", error=ValueError) -> NCLEvaluateOptions:
    """The typed ``evaluate`` table (one-line ``error(msg)`` naming the bad key)."""
    from ..learn.evaluate_options import validate_options

    try:
        return validate_options(NCLEvaluateOptions, table, where="evaluate", what="NCL metrics")
    except ValueError as exc:
        raise error(f"{where}: {exc}" if where else str(exc)) from None


def validate_group(path, g: dict, error) -> None:
    """Refuse unknown keys of an ncl group, its teacher/student tables and modes."""
    from ..transfer.euler_ball import STUDENT_MODES, TEACHER_WEIGHTS

    where = f"{path}: group {g['name']!r}"
    bad = set(g) - NCL_GROUP_KEYS
    if bad:
        raise error(f"{where}: unknown key {sorted(bad)[0]!r} for kind = 'ncl'")
    train_keys = _train_keys()

    def table(name, value, keys, weights):
        if not isinstance(value, dict):
            raise error(f"{where}: {name} must be a table")
        bad = set(value) - keys
        if bad:
            raise error(f"{where}: {name}: unknown key {sorted(bad)[0]!r}")
        bad = set(value.get("train", {})) - train_keys
        if bad:
            raise error(f"{where}: {name}.train: unknown key {sorted(bad)[0]!r}")
        bad = set(value.get("weights", {})) - set(weights)
        if bad:
            raise error(
                f"{where}: {name}.weights: unknown key {sorted(bad)[0]!r}; "
                f"keys are {', '.join(weights)}"
            )

    table("teacher", g.get("teacher", {}), TEACHER_KEYS, TEACHER_WEIGHTS)
    table("student", g.get("student", {}), STUDENT_KEYS, ("sys", "init", "bc"))
    bad = set(g.get("evaluate", {})) - EVALUATE_KEYS
    if bad:
        raise error(f"{where}: evaluate: unknown key {sorted(bad)[0]!r}")
    for m, mv in g["modes"].items():
        if not isinstance(mv, dict):
            raise error(f"{where}: mode {m!r} must be a table")
        mode = mv.get("mode", m)
        if mode == TEACHER:
            bad = set(mv) - {"mode", "label"}
        else:
            if mode not in STUDENT_MODES:
                raise error(
                    f"{where}: mode {m!r}: unknown NCL mode {mode!r}; choose one of "
                    f"teacher, {', '.join(STUDENT_MODES)}"
                )
            bad = set(mv) - MODE_KEYS
        if bad:
            raise error(f"{path}: {g['name']}.{m}: unknown key {sorted(bad)[0]!r}")
        table(
            f"{m}",
            {k: v for k, v in mv.items() if k not in ("mode", "label")},
            MODE_KEYS,
            ("sys", "init", "bc"),
        )


def _label(mode_key: str, mv: dict) -> str:
    if "label" in mv:
        return mv["label"]
    mode = mv.get("mode", mode_key)
    return _LABELS.get(mode, "NCL teacher" if mode == TEACHER else mode.upper())


def _config(kind: str, mode: str | None, model: dict, train: dict, extra: dict) -> dict:
    """A validated ``TrainConfig`` dict of the teacher or of a student."""
    from ..learn.config import TrainConfig
    from ..transfer.euler_ball import student_config, teacher_config

    if kind == TEACHER:
        base = teacher_config(model=model, weights=extra.get("weights"))
    else:
        if mode is None:  # _plan gives every student its mode
            raise ValueError("a student needs a mode")
        base = student_config(
            mode,
            model=model,
            weights=extra.get("weights"),
            hessian_projection=extra.get("hessian_projection"),
        )
    cfg = base.to_dict()
    cfg["train"] = _merge(cfg["train"], train)
    cfg["train"]["progress"] = False
    return TrainConfig.from_dict(cfg).to_dict()  # validates (ConfigError: one line)


def plan_group(g: dict, defaults: dict, seeds: list[int], modes: list[str] | None, error):
    """The rows of one ncl group (``g`` already patched by the scale): a teacher row when
    the mode ``teacher`` is chosen, one student per other chosen mode, per seed."""
    from ..learn.config import ConfigError
    from ..transfer.euler_ball import orders_needed

    model = _merge(defaults.get("model", {}), g.get("model", {}))
    train = _merge(defaults.get("train", {}), g.get("train", {}))
    t = g.get("teacher", {})
    s = g.get("student", {})
    chosen = [(k, mv) for k, mv in g["modes"].items() if modes is None or k in modes]
    orders = max(
        (orders_needed(mv.get("mode", k)) for k, mv in chosen if mv.get("mode", k) != TEACHER),
        default=0,
    )
    evaluate = _merge(defaults.get("evaluate", {}), g.get("evaluate", {}))
    _evaluate_options(evaluate, f"group {g['name']!r}", error)
    runs = []
    for seed in seeds:
        try:
            teacher = _config(
                TEACHER,
                None,
                _merge(model, t.get("model", {})),
                _merge(train, {**t.get("train", {}), "seed": int(seed)}),
                t,
            )
        except (ConfigError, ValueError, TypeError) as exc:
            raise error(f"group {g['name']!r}: teacher: {exc}") from None
        for mode_key, mv in chosen:
            mode = mv.get("mode", mode_key)
            student = None
            if mode != TEACHER:
                extra = {
                    "weights": _merge(s.get("weights", {}), mv.get("weights", {})),
                    "hessian_projection": _merge(
                        s.get("hessian_projection", {}), mv.get("hessian_projection", {})
                    ),
                }
                m = _merge(_merge(model, s.get("model", {})), mv.get("model", {}))
                tr = _merge(_merge(train, s.get("train", {})), mv.get("train", {}))
                tr["seed"] = int(seed)
                try:
                    student = _config("student", mode, m, tr, extra)
                except (ConfigError, ValueError, TypeError) as exc:
                    raise error(f"group {g['name']!r}: mode {mode_key!r}: {exc}") from None
            runs.append(
                NCLRun(
                    name=f"{g['name']}-{mode_key.replace('+', '_')}-s{seed}",
                    group=g["name"],
                    mode=mode_key,
                    label=_label(mode_key, mv),
                    seed=int(seed),
                    dataset=g["dataset"],
                    teacher=teacher,
                    student=student,
                    student_mode=None if mode == TEACHER else mode,
                    orders=orders,
                    evaluate=copy.deepcopy(evaluate),
                    label_batch_size=int(t.get("label_batch_size", 1024)),
                )
            )
    return runs


# ------------------------------------------------------------------------------------------
# running


def teacher_dir(run: NCLRun, data: Path, out: Path) -> Path:
    """The teacher's folder: one per group, seed, teacher configuration and dataset."""
    cfg = copy.deepcopy(run.teacher)
    for k in _NOT_HASHED:
        cfg["train"].pop(k, None)
    cfg["data"].pop("path", None)
    key = short_hash({"group": run.group, "teacher": cfg, "data": Path(data).name})
    return Path(out) / "runs" / "_shared" / f"{run.group}-teacher-s{run.seed}-{key}"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _atomic_json(path: Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=1))


def _finished(rdir: Path, epochs: int) -> bool:
    from ..learn.trainer import CHECKPOINT

    if not (rdir / CHECKPOINT).exists():
        return False
    info = _read_json(rdir / "train.json")
    return int(info.get("epochs") or 0) >= int(epochs)


@contextlib.contextmanager
def _threads(train: dict, width: int, batch: int):
    """Intra-op threads for labelling and metrics, by the trainer's rule (``train.threads``;
    else one thread for small batches, where more only add synchronisation)."""
    import torch

    before = torch.get_num_threads()
    n = int(train.get("threads") or 0) or (1 if batch * width <= 2**18 else before)
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _labels_fresh(tdir: Path, orders: int) -> bool:
    from ..learn.trainer import CHECKPOINT

    rec = _read_json(tdir / "labels.json")
    ckpt = tdir / CHECKPOINT
    return (
        ckpt.exists()
        and rec.get("teacher_mtime_ns") == ckpt.stat().st_mtime_ns
        and int(rec.get("orders", -1)) >= orders
        and all((tdir / "labels" / f"{s}.h5").exists() for s in ("train", "initial"))
    )


def prepare_teacher(run: NCLRun, data: Path, out: Path) -> dict[str, Any]:
    """Train (or resume) the run's teacher and label its points, unless done; returns
    ``{"dir", "stopped", "train_seconds", "label_seconds"}`` (this call's seconds)."""
    from ..learn.config import TrainConfig
    from ..learn.trainer import CHECKPOINT, TrainingDiverged, load_model, resolve_device, train
    from ..transfer.euler_ball import label_teacher, teacher_problem_from_file

    tdir = teacher_dir(run, data, out)
    ckpt, marker = tdir / CHECKPOINT, tdir / "diverged.json"
    res: dict[str, Any] = {"dir": str(tdir), "stopped": None, "train_seconds": 0.0}
    res["label_seconds"] = 0.0
    if marker.exists() and (not ckpt.exists() or marker.stat().st_mtime >= ckpt.stat().st_mtime):
        res["stopped"] = _read_json(marker).get("reason", "stopped")
        return res
    cfg = copy.deepcopy(run.teacher)
    cfg["data"]["path"] = str(Path(data).resolve())
    tc = TrainConfig.from_dict(cfg)
    problem = None
    if not _finished(tdir, tc.train.epochs):
        problem = teacher_problem_from_file(data)
        t0 = time.perf_counter()
        try:
            train(tc, tdir, problem=problem, progress=False)
        except TrainingDiverged as exc:
            res["stopped"] = f"teacher stopped by the NaN guard: {exc}"
            _atomic_json(marker, {"reason": res["stopped"]})
            return res
        finally:
            res["train_seconds"] = time.perf_counter() - t0
    if not _labels_fresh(tdir, run.orders):
        problem = problem or teacher_problem_from_file(data)
        t0 = time.perf_counter()
        teacher = load_model(ckpt, map_location=resolve_device(tc.train.device))[0]
        sets = {"train": tuple(range(run.orders + 1)), "initial": (0,)}
        width = int(tc.model.get("width", 128))
        with _threads(cfg["train"], width, run.label_batch_size):
            label_teacher(
                teacher,
                problem,
                tdir / "labels",
                sets=sets,
                batch_size=run.label_batch_size,
                overwrite=True,
            )
        res["label_seconds"] = time.perf_counter() - t0
        _atomic_json(
            tdir / "labels.json",
            {
                "orders": run.orders,
                "teacher_mtime_ns": ckpt.stat().st_mtime_ns,
                "seconds": res["label_seconds"],
            },
        )
    return res


def prepare_teachers(runs: list[NCLRun], paths: dict[str, Path], out: Path) -> None:
    """Train and label each distinct teacher of ``runs`` once (before the runs start, so
    that parallel students never race for it); records the cost on the runs."""
    done: dict[str, dict] = {}
    for r in runs:
        data = paths[r.dataset]
        key = str(teacher_dir(r, data, out))
        if key not in done:
            done[key] = prepare_teacher(r, data, out)
            done[key]["first"] = r.name
        info = done[key]
        # this call's cost of the teacher is counted on its row (else on its first run)
        counted = r.student is None if _has_teacher_row(runs, r) else r.name == info["first"]
        r.prepared = {**info, "counted": counted}


def _has_teacher_row(runs, r) -> bool:
    return any(x.student is None and x.group == r.group and x.seed == r.seed for x in runs)


def _fresh_metrics(mpath: Path, ckpts: list[Path], n: int, seed: int) -> dict | None:
    if not mpath.exists():
        return None
    t = mpath.stat().st_mtime_ns
    if any(c.stat().st_mtime_ns > t for c in ckpts):
        return None
    m = _read_json(mpath)
    if m.get("points") != n or m.get("points_seed") != seed:
        return None
    return m


def _evaluate(model, teacher_ckpt: Path, run: NCLRun, train: dict, mpath: Path) -> dict:
    import torch

    from ..learn.metrics import write_metrics
    from ..learn.trainer import load_model
    from ..transfer.euler_ball import metric_points, ncl_metrics

    opts = _evaluate_options(run.evaluate)
    n, batch = opts.points, opts.batch_size
    device = next(model.parameters()).device
    teacher = load_model(teacher_ckpt, map_location=device)[0]
    X = metric_points(n, seed=run.seed + 1).to(device)
    width = int(getattr(getattr(model, "config", None), "width", 128))
    model.eval()
    teacher.eval()
    with _threads(train, width, batch), torch.no_grad():
        stats = ncl_metrics(model, teacher, X, batch_size=batch)
    metrics = {
        "kind": "ncl",
        "teacher_checkpoint": str(teacher_ckpt),
        "points": n,
        "points_seed": run.seed + 1,
        "metrics": stats,
    }
    write_metrics(mpath, metrics)
    return metrics


def _clear(rdir: Path) -> None:
    for name in ("checkpoint.pt", "train.json", "metrics.json", "diverged.json"):
        p = rdir / name
        if p.exists():
            p.unlink()


def run_one(run: NCLRun, data: Path, out: Path, divergence) -> dict:
    """Run (or resume) one row of an ncl group and evaluate it; returns its row."""
    from ..learn.config import TrainConfig
    from ..learn.trainer import CHECKPOINT, TrainingDiverged, load_model, resolve_device, train
    from ..transfer.euler_ball import orders_needed, student_problem, teacher_problem_from_file
    from ..transfer.labels import read_labels
    from .pipelines import run_row

    t0 = time.perf_counter()
    prep = dict(run.prepared) or prepare_teacher(run, data, out)
    if not run.prepared:
        prep["counted"] = True
    tdir = Path(prep["dir"])
    tckpt = tdir / CHECKPOINT
    tinfo = _read_json(tdir / "train.json")
    n = _evaluate_options(run.evaluate).points
    row = {
        **run_row(run, data),
        "kind": "ncl",
        "teacher": str(tdir),
        "teacher_train_seconds": round(float(tinfo.get("training_seconds", 0.0)), 2),
        "label_seconds": round(float(_read_json(tdir / "labels.json").get("seconds", 0.0)), 2),
    }
    this_call = (prep["train_seconds"] + prep["label_seconds"]) if prep.get("counted") else 0.0
    if run.student is None:  # the teacher's own row
        rdir = out / "runs" / run.name
        mpath = rdir / "metrics.json"
        metrics = {}
        if tckpt.exists():
            metrics = _fresh_metrics(mpath, [tckpt], n, run.seed + 1)
            if metrics is None:
                device = resolve_device(run.teacher["train"].get("device", "auto"))
                teacher = load_model(tckpt, map_location=device)[0]
                metrics = _evaluate(teacher, tckpt, run, run.teacher["train"], mpath)
        return {
            **row,
            "checkpoint": str(tckpt),
            "config": run.teacher,
            "epochs": tinfo.get("epochs"),
            "trained_this_call": prep["train_seconds"] > 0,
            "train_seconds_this_call": round(this_call, 2),
            "train_seconds": row["teacher_train_seconds"],
            "diverged": prep["stopped"] or divergence(tinfo),
            "metrics": metrics,
        }
    rdir = out / "runs" / run.name
    ckpt, marker = rdir / CHECKPOINT, rdir / "diverged.json"
    cfg = copy.deepcopy(run.student)
    cfg["data"]["path"] = str((tdir / "labels" / "train.h5").resolve())
    row.update(checkpoint=str(ckpt), config=cfg)
    if prep["stopped"]:
        return {
            **row,
            "epochs": None,
            "trained_this_call": False,
            "train_seconds_this_call": round(this_call, 2),
            "train_seconds": 0.0,
            "diverged": f"not trained: {prep['stopped']}",
            "metrics": {},
        }
    # a student distilled from another teacher (its folder reused) is trained afresh
    link = rdir / "teacher.json"
    if _read_json(link).get("teacher") not in (None, tdir.name):
        _clear(rdir)
    tc = TrainConfig.from_dict(cfg)
    stopped, trained = None, False
    s0 = time.perf_counter()
    model = None
    if marker.exists() and (not ckpt.exists() or marker.stat().st_mtime >= ckpt.stat().st_mtime):
        stopped = _read_json(marker).get("reason", "stopped")
    elif not _finished(rdir, tc.train.epochs):
        student_mode = run.student_mode
        assert student_mode is not None  # a student row (run.student is set)
        _atomic_json(link, {"teacher": tdir.name, "checkpoint": str(tckpt)})
        problem = teacher_problem_from_file(data)
        sp = student_problem(
            read_labels(tdir / "labels" / "train.h5"),
            read_labels(tdir / "labels" / "initial.h5"),
            problem.sets["boundary"],
            min_order=orders_needed(student_mode),
        )
        trained = True
        try:
            model = train(tc, rdir, problem=sp, progress=False).model
        except TrainingDiverged as exc:
            stopped = f"stopped by the NaN guard: {exc}"
            _atomic_json(marker, {"reason": stopped})
    train_s = time.perf_counter() - s0
    info = _read_json(rdir / "train.json")
    mpath = rdir / "metrics.json"
    metrics: dict | None = {}
    if ckpt.exists():
        metrics = _fresh_metrics(mpath, [ckpt, tckpt], n, run.seed + 1)
        if metrics is None:
            if model is None:
                model = load_model(ckpt, map_location=resolve_device(tc.train.device))[0]
            metrics = _evaluate(model, tckpt, run, cfg["train"], mpath)
    return {
        **row,
        "epochs": info.get("epochs"),
        "trained_this_call": trained,
        "train_seconds_this_call": round(train_s + this_call, 2),
        "train_seconds": round(float(info.get("training_seconds", train_s)), 2),
        "diverged": stopped or divergence(info),
        "metrics": metrics,
        "wall_seconds_this_call": round(time.perf_counter() - t0, 2),
    }
