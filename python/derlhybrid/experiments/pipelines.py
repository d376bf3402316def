"""Spec groups whose runs are multi-stage pipelines (``kind = "stages"``, paper.md §8, §10).

A group of this kind has ``phases`` (a list of ``{name, region, boundary_region,
parameter_sets | parameter_range, edges, label_previous, stage}``) and a ``stage`` template
(the tables of a :mod:`derlhybrid.transfer` stage: ``model``, ``objective``, ``train``, …,
merged over the spec's ``[defaults]``). Each mode × init × seed is one pipeline, one stage
per phase, run by :func:`derlhybrid.transfer.run_pipeline` (resumable: finished stages are
skipped). A mode says how later phases learn from earlier ones:

* ``distill``: a distillation mode of :data:`derlhybrid.transfer.DISTILL_MODES` (source:
  the previous phase; ``weight``, ``fraction``, ``batch_size``, ``hessian_projection``);
* ``inits``: ``["new"]``, ``["extend"]`` or both (one pipeline each; default ``["new",
  "extend"]`` when distilling, ``["extend"]`` otherwise);
* ``ewc = { weight, batch_size }``: EWC against the previous phase;
* ``phases``: run only these phases (e.g. the teacher alone);
* ``single = { name, region, … }``: one stage instead of the phases (the "PINN full"
  baseline: the whole domain or every parameter set at once);
* ``stage``: overrides of every stage of the mode, ``stages.<phase>``: of one phase.

The group's ``by_init.<init>`` overrides the later stages of pipelines of that init,
``distill_inputs`` restricts the distilled derivatives (e.g. ``["x", "y"]``),
``reference = "<phase>"`` names the stage whose Jacobian and Hessian every stage is
compared with (the KdV teacher), ``unseen = true`` adds the file's unseen parameter sets
as an evaluation region, ``merge_sets = ["val"]`` trains on the file's validation points
too. The first stage, identical across the modes of a seed, is trained once and linked
into each pipeline's folder.

Each stage's network is evaluated on every phase's region and on the whole domain
(:func:`derlhybrid.transfer.regions.evaluate_regions`): ``metrics.stages.<stage>.<region>``
and, for the last stage, ``metrics.final.<region>`` (regions: the phase names, ``global``
and ``unseen``), e.g. ``metrics.final.p0.u.rel_l2``.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._io import write_text_atomic
from .._tables import deep_merge as _merge

GROUP_KEYS = {
    "kind",
    "phases",
    "stage",
    "by_init",
    "distill_inputs",
    "reference",
    "unseen",
    "merge_sets",
}
MODE_KEYS = {
    "label",
    "distill",
    "weight",
    "fraction",
    "batch_size",
    "hessian_projection",
    "inits",
    "ewc",
    "phases",
    "single",
    "stage",
    "stages",
}
PHASE_KEYS = {
    "name",
    "label",
    "region",
    "boundary_region",
    "parameter_sets",
    "parameter_range",
    "edges",
    "edge_points",
    "label_previous",
    "stage",
}
_STAGE_TABLES = ("data", "model", "objective", "train", "label")
_INIT_LABELS = {"new": "new", "extend": "extend"}


def short_hash(obj) -> str:
    """The 8-character key of a shared folder (first stage, teacher): the hash of ``obj``."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:8]


def run_row(run, data: Path) -> dict[str, Any]:
    """The keys every row of ``results.json`` starts with: which run it is and its data
    (a :class:`~derlhybrid.experiments.plan.Run` or a :class:`PipelineRun`)."""
    keys = ("name", "group", "mode", "label", "seed", "dataset", "variant")
    return {**{k: getattr(run, k) for k in keys}, "data": str(data)}


@dataclass
class PipelineRun:
    """One pipeline of a ``kind = "stages"`` group: its stage tables (data paths and
    parameter ranges resolved when it runs), evaluation regions and problem options."""

    name: str
    group: str
    mode: str
    label: str
    seed: int
    dataset: str
    stages: list[dict[str, Any]]
    phases: list[dict[str, Any]]
    evaluate: dict[str, Any] = field(default_factory=dict)
    reference: str | None = None
    unseen: bool = False
    merge_sets: list[str] = field(default_factory=list)
    variant: str | None = None
    kind: str = "stages"


def validate_group(path, g: dict, error) -> None:
    """Refuse unknown keys of a stages group, its phases and modes (``error(msg)``)."""
    phases = g.get("phases")
    if not isinstance(phases, list) or not phases:
        raise error(f"{path}: group {g['name']!r}: kind = 'stages' needs phases = [{{…}}, …]")
    names = [p.get("name") for p in phases]
    if None in names or len(set(names)) != len(names):
        raise error(f"{path}: group {g['name']!r}: every phase needs a unique name")
    for p in phases:
        bad = set(p) - PHASE_KEYS
        if bad:
            raise error(f"{path}: {g['name']}.phases.{p['name']}: unknown key {sorted(bad)[0]!r}")
    for m, mv in g["modes"].items():
        bad = set(mv) - MODE_KEYS
        if bad:
            raise error(f"{path}: {g['name']}.{m}: unknown key {sorted(bad)[0]!r}")
        for ph in mv.get("phases", []):
            if ph not in names:
                raise error(f"{path}: {g['name']}.{m}: unknown phase {ph!r}")
        for init in mv.get("inits", []):
            if init not in _INIT_LABELS:
                raise error(f"{path}: {g['name']}.{m}: init must be new or extend, got {init!r}")


def _label(mode_key: str, mv: dict, init: str | None, n_inits: int) -> str:
    base = mv.get("label", mode_key.upper())
    return f"{base} ({init})" if init is not None and n_inits > 1 else base


def plan_group(g: dict, defaults: dict, seeds: list[int], modes: list[str] | None):
    """The pipelines of one stages group (``g`` already patched by the scale)."""
    base = {k: defaults.get(k, {}) for k in ("data", "model", "objective", "train")}
    for k in ("data", "model", "objective", "train"):
        base[k] = _merge(base[k], g.get(k, {}))
    base = _merge(base, g.get("stage", {}))
    phases = g["phases"]
    runs = []
    for mode_key, mv in g["modes"].items():
        if modes is not None and mode_key not in modes:
            continue
        distill = mv.get("distill")
        inits = mv.get("inits") or (["new", "extend"] if distill else ["extend"])
        if mv.get("single") is not None or len(mv.get("phases", phases)) == 1:
            inits = [None]
        for init in inits:
            for seed in seeds:
                stages = _stages(g, base, phases, mode_key, mv, init, seed)
                key = mode_key if init is None or len(inits) == 1 else f"{mode_key}-{init}"
                runs.append(
                    PipelineRun(
                        name=f"{g['name']}-{key.replace('+', '_')}-s{seed}",
                        group=g["name"],
                        mode=key,
                        label=_label(mode_key, mv, init, len(inits)),
                        seed=int(seed),
                        dataset=g["dataset"],
                        stages=stages,
                        phases=copy.deepcopy(phases),
                        evaluate=_merge(defaults.get("evaluate", {}), g.get("evaluate", {})),
                        reference=g.get("reference"),
                        unseen=bool(g.get("unseen", False)),
                        merge_sets=list(g.get("merge_sets", [])),
                        variant=g.get("variant"),
                    )
                )
    return runs


def _stages(g, base, phases, mode_key, mv, init, seed) -> list[dict]:
    single = mv.get("single")
    chosen = (
        [dict(single, name=single.get("name", "all"))]
        if single is not None
        else [p for p in phases if p["name"] in mv.get("phases", [p["name"] for p in phases])]
    )
    out = []
    for i, ph in enumerate(chosen):
        st = _merge(base, ph.get("stage", {}))
        st = _merge(st, mv.get("stage", {}))
        st = _merge(st, mv.get("stages", {}).get(ph["name"], {}))
        if i > 0 and init is not None:
            st = _merge(st, g.get("by_init", {}).get(init, {}))
        st["name"] = ph["name"]
        data = st.setdefault("data", {})
        for k in ("region", "boundary_region", "parameter_sets"):
            if k in ph:
                data[k] = copy.deepcopy(ph[k])
        if "parameter_range" in ph:
            data["parameter_range"] = copy.deepcopy(ph["parameter_range"])
        if g.get("variant"):
            data["variant"] = g["variant"]
        train = st.setdefault("train", {})
        train["seed"] = int(seed)
        train["progress"] = False
        if i == 0:
            st["init"] = "new"
        else:
            st["init"] = init or "new"
            prev = chosen[i - 1]["name"]
            distill = mv.get("distill")
            sets = ["train"]
            if distill and distill != "forgetting":
                src = {"source": prev, "mode": distill, "weight": float(mv.get("weight", 1.0))}
                for k in ("fraction", "batch_size", "hessian_projection"):
                    if k in mv:
                        src[k] = copy.deepcopy(mv[k])
                if g.get("distill_inputs") and distill != "pinn":
                    src["inputs"] = list(g["distill_inputs"])
                st["distill"] = [src]
                if ph.get("label_previous"):
                    sets.append(f"{'replay' if distill == 'pinn' else 'distill'}:{prev}")
            if mv.get("ewc") is not None:
                st["ewc"] = {"source": prev, **mv["ewc"]}
            st["label"] = _merge(st.get("label", {}), {"sets": sets})
        out.append(st)
    return out


# ------------------------------------------------------------------------------------------
# running


def _parameter_rows(path):
    """(values, indices a stage may train on, unseen values or None, parameter names) of
    a parametric family's file; (None, None, None, []) otherwise."""
    from ..data.store import h5_dataset, open_dataset, provenance
    from ..systems import get_system

    with open_dataset(path) as f:
        prov = provenance(f)
        system = get_system(prov["system"], prov.get("system_parameters") or {})
        names = list(getattr(system, "parameter_inputs", ()))
        if "parameters/values" not in f or not names:
            return None, None, None, []
        values = h5_dataset(f, "parameters/values")[...]
        if "parameters/test_values" in f:  # the paper presets: unseen sets stored apart
            return (
                values,
                np.arange(len(values)),
                h5_dataset(f, "parameters/test_values")[...],
                names,
            )
        test = (
            np.sort(h5_dataset(f, "parameters/test")[...])
            if "parameters/test" in f
            else np.zeros(0, int)
        )
        trainable = np.setdiff1d(np.arange(len(values)), test)
        return values, trainable, (values[test] if len(test) else None), names


def _resolve_range(rng: dict, values, trainable, names) -> list[int]:
    """Indices of the trainable parameter sets inside the box ``rng`` {name: [lo, hi]}."""
    keep = np.ones(len(values), dtype=bool)
    for name, (lo, hi) in rng.items():
        j = list(names).index(name)
        keep &= (values[:, j] >= lo) & (values[:, j] <= hi)
    return [int(i) for i in trainable if keep[i]]


def resolve(run: PipelineRun, data: Path) -> tuple[list[dict], dict[str, dict]]:
    """The run's stage tables with the data path and parameter indices filled in, and its
    evaluation regions (name → {"box": …} or {"parameters": …}; "global" = everything)."""
    values, trainable, unseen, names = _parameter_rows(data)
    n_par = len(names)
    stages = copy.deepcopy(run.stages)
    phase_sets: dict[str, list[int]] = {}
    for st in stages:
        d = st["data"]
        d["path"] = str(Path(data).resolve())
        if "parameter_range" in d:
            d["parameter_sets"] = _resolve_range(d.pop("parameter_range"), values, trainable, names)
        if "parameter_sets" in d:
            phase_sets[st["name"]] = list(d["parameter_sets"])
    regions: dict[str, dict] = {}
    for ph in run.phases:
        if "region" in ph:
            regions[ph["name"]] = {"box": copy.deepcopy(ph["region"])}
        elif "parameter_sets" in ph or "parameter_range" in ph:
            if values is None:  # a file without /parameters/values (_parameter_rows)
                raise ValueError(
                    f"phase {ph['name']!r}: parameter sets need a parametric family's data file"
                )
            idx = phase_sets.get(ph["name"])
            if idx is None:
                idx = (
                    list(ph["parameter_sets"])
                    if "parameter_sets" in ph
                    else _resolve_range(ph["parameter_range"], values, trainable, names)
                )
            regions[ph["name"]] = {"parameters": values[idx].tolist(), "indices": idx}
    if n_par:
        assert values is not None and trainable is not None  # _parameter_rows: names => rows
        every = values[trainable]
        if run.unseen and unseen is not None:
            regions["unseen"] = {"parameters": np.asarray(unseen).tolist()}
            every = np.concatenate([every, unseen])
        regions["global"] = {"parameters": every.tolist()}
    else:
        regions["global"] = {}
    return stages, regions


def _edge_points(system, edges, n) -> np.ndarray:
    pts = []
    dom = system.domain()
    coords = system.coordinates
    for e in edges:
        axes = []
        for c in coords:
            lo, hi = e.get(c, dom[c])
            axes.append(np.linspace(lo, hi, n) if hi > lo else np.array([float(lo)]))
        mesh = np.meshgrid(*axes, indexing="ij")
        pts.append(np.stack([m.ravel() for m in mesh], axis=1))
    return np.unique(np.concatenate(pts), axis=0)


def _problems(run: PipelineRun, stages: list[dict], data: Path) -> dict:
    """Ready problems for stages that need sets the file does not hold: the validation
    points merged into training (``merge_sets``), boundary points on inner edges of a
    phase (``edges``, exact values)."""
    import torch

    from ..learn.problems import PointSet, StreamPolicy, load_problem
    from ..systems.base import FieldSystem

    by_phase = {p["name"]: p for p in run.phases}
    out = {}
    for st in stages:
        ph = by_phase.get(st["name"], {})
        edges = ph.get("edges")
        if not run.merge_sets and not edges:
            continue
        d = st["data"]
        problem = load_problem(
            data,
            form=d.get("form", "positions"),
            variant=d.get("variant"),
            stream=StreamPolicy("never"),
        )
        sets = dict(problem.sets)
        for name in run.merge_sets:
            if name in sets and "train" in sets:
                a, b = sets["train"], sets.pop(name)
                keys = set(a.targets) & set(b.targets)
                sets["train"] = PointSet(
                    torch.cat([a.X, b.X]),
                    {k: torch.cat([a.targets[k], b.targets[k]]) for k in keys},
                )
        if edges:
            system = problem.system
            if not isinstance(system, FieldSystem):  # edges bound a field's domain
                raise ValueError(f"stage {st['name']!r}: edges need a field system")
            P = _edge_points(system, edges, int(ph.get("edge_points", 101)))
            X = torch.as_tensor(P, dtype=torch.float64)
            u = torch.as_tensor(system.exact(P), dtype=torch.float64)
            if "boundary" in sets:
                b = sets["boundary"]
                X = torch.cat([b.X.double(), X])
                u = torch.cat([b.targets["output"].double(), u])
            sets["boundary"] = PointSet(X, {"output": u})
        out[st["name"]] = dataclasses.replace(problem, sets=sets)
    return out


def _link_stage(src: Path, dst: Path) -> None:
    """Hard-link (or copy) a finished stage folder; the rerun then skips it."""
    dst.mkdir(parents=True, exist_ok=True)
    for p in src.iterdir():
        if not p.is_file() or p.suffix == ".tmp":
            continue
        target = dst / p.name
        if target.exists():
            target.unlink()
        try:
            os.link(p, target)
        except OSError:
            shutil.copy2(p, target)


def _done(stage_dir: Path) -> bool:
    sj = stage_dir / "stage.json"
    try:
        return json.loads(sj.read_text()).get("status") == "done"
    except (OSError, ValueError):
        return False


def _linked(stage_dir: Path) -> bool:
    """Whether a finished stage folder was linked from runs/_shared."""
    try:
        ckpt = json.loads((stage_dir / "stage.json").read_text())["provenance"]["checkpoint"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return Path(ckpt).resolve().parent != stage_dir.resolve()


def shared_first_stages(runs: list[PipelineRun], paths: dict[str, Path]) -> dict[str, list]:
    """Runs grouped by their first stage (resolved), for those shared by two or more."""
    by: dict[str, list] = {}
    for r in runs:
        stages, _ = resolve(r, paths[r.dataset])
        key = short_hash({"group": r.group, "stage": stages[0], "phase": r.phases[0]})
        by.setdefault(key, []).append(r)
    return {k: v for k, v in by.items() if len(v) > 1}


def run_shared(key: str, runs: list[PipelineRun], data: Path, out: Path) -> None:
    """Train the first stage common to ``runs`` once and link it into their folders."""
    from ..learn.trainer import TrainingDiverged
    from ..transfer import Pipeline, run_pipeline

    r0 = runs[0]
    stages, _ = resolve(r0, data)
    first = stages[0]["name"]
    sdir = out / "runs" / "_shared" / f"{r0.group}-{first}-s{r0.seed}-{key}"
    if not all(_done(out / "runs" / r.name / first) for r in runs):
        try:
            pipe = Pipeline.from_dict({"stages": [stages[0]]})
            run_pipeline(pipe, sdir, progress=False, problems=_problems(r0, stages[:1], data))
        except TrainingDiverged:
            return  # each pipeline then trains (and flags) it itself
        for r in runs:
            if not _done(out / "runs" / r.name / first):
                _link_stage(sdir / first, out / "runs" / r.name / first)


def run_one(run: PipelineRun, data: Path, out: Path, divergence) -> dict:
    """Run (or resume) one pipeline, evaluate every stage per region, return its row."""
    from ..learn.metrics import write_metrics
    from ..learn.trainer import CHECKPOINT, TrainingDiverged
    from ..transfer import Pipeline, run_pipeline
    from ..transfer.regions import evaluate_regions

    pdir = out / "runs" / run.name
    stages, regions = resolve(run, data)
    names = [s["name"] for s in stages]
    marker = pdir / "diverged.json"
    ckpts = [pdir / n / CHECKPOINT for n in names]
    t0 = time.perf_counter()
    stopped, ran = None, []
    newest = max((c.stat().st_mtime for c in ckpts if c.exists()), default=0.0)
    if marker.exists() and marker.stat().st_mtime >= newest:
        stopped = json.loads(marker.read_text())["reason"]
    else:
        pipe = Pipeline.from_dict({"stages": stages})
        try:
            results = run_pipeline(
                pipe,
                pdir,
                progress=False,
                problems=_problems(run, stages, data),
            )
            ran = [r.name for r in results if not r.skipped]
        except TrainingDiverged as exc:
            stopped = str(exc)
            write_text_atomic(marker, json.dumps({"reason": stopped}))
    train_s = time.perf_counter() - t0
    finished = [n for n in names if _done(pdir / n)]
    infos = {}
    for n in finished:
        tj = pdir / n / "train.json"
        infos[n] = json.loads(tj.read_text()) if tj.exists() else {}
    reasons = [f"{n}: {d}" for n in finished if (d := divergence(infos[n]))]
    diverged = stopped or ("; ".join(reasons) if reasons else None)
    # evaluation: every finished stage (or the last checkpoint of a stopped one)
    evaluated = [n for n in names if (pdir / n / CHECKPOINT).exists()]
    mpath = pdir / "metrics.json"
    newest = max(((pdir / n / CHECKPOINT).stat().st_mtime for n in evaluated), default=0.0)
    if mpath.exists() and mpath.stat().st_mtime >= newest:
        metrics = json.loads(mpath.read_text())
    elif evaluated:
        ref = None
        if run.reference is not None and (pdir / run.reference / CHECKPOINT).exists():
            ref = pdir / run.reference / CHECKPOINT
        ev = {k: v for k, v in regions.items()}
        per_stage = {
            n: evaluate_regions(
                pdir / n / CHECKPOINT, data, ev, reference=ref, options=run.evaluate
            )
            for n in evaluated
        }
        metrics = {
            "metrics": {
                "regions": regions,
                "stages_order": evaluated,
                "final_stage": evaluated[-1],
                "stages": per_stage,
                "final": per_stage[evaluated[-1]],
            }
        }
        write_metrics(mpath, metrics)
    else:
        metrics = {}
    # a shared first stage (trained under runs/_shared, linked here) is counted apart
    shared = [n for n in finished if _linked(pdir / n)]
    own = [n for n in finished if n not in shared]
    seconds = sum(float(infos[n].get("training_seconds", 0.0)) for n in own)
    shared_s = sum(float(infos[n].get("training_seconds", 0.0)) for n in shared)
    epochs = sum(int(i.get("epochs") or 0) for i in infos.values())
    return {
        **run_row(run, data),
        "kind": "stages",
        "checkpoint": str(pdir / evaluated[-1] / CHECKPOINT) if evaluated else str(ckpts[-1]),
        "config": {"stages": stages},
        "stages": names,
        "stages_trained_this_call": ran,
        "epochs": epochs,
        "train_seconds_this_call": round(train_s, 2),
        # every stage of the pipeline, a shared first stage included (the method's cost)
        "train_seconds": round(seconds + shared_s if finished else train_s, 2),
        "shared_stages": shared,
        "shared_train_seconds": round(shared_s, 2),
        "diverged": diverged,
        "metrics": metrics,
    }
