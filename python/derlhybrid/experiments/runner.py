"""One runner for every experiment of the paper: ``derl reproduce EXPERIMENT``.

An experiment is a TOML file in ``specs/`` (data, not code):

* ``[datasets.<key>]``: a generation request (``system``, ``params``, ``preset``, sizes…);
* ``[defaults]``: ``model``, ``objective``, ``train`` tables and ``evaluate`` options shared
  by all runs (typed by the metrics of the dataset's system,
  :mod:`derlhybrid.learn.evaluate_options`, and checked before any data exist);
* ``[[groups]]``: a dataset (and ``variant``), ``seeds``, table overrides and ``modes``: one
  run per mode and seed, each mode with its ``weights``, ``lr`` and further overrides
  (``modes_from`` copies another group's modes);
* ``[scales.quick]`` / ``[scales.smoke]``: which groups (and ``modes``) run, and overrides
  (``train``, ``evaluate``, ``seeds``, per-dataset replacements ``datasets.<key>``,
  per-group patches ``patch.<group>``); ``full`` is the spec itself;
* ``[[columns]]`` (what the results table shows, as dotted paths into a run's metrics),
  ``[[paper]]`` (the paper's numbers, paper.md §11), ``[[checks]]`` (the qualitative
  orderings the paper claims) and ``figures``.

Everything is resumable: datasets are reused when their request is unchanged (the file name
carries its hash), training resumes from its checkpoint and finished runs are skipped, and
metrics are recomputed only when the checkpoint is newer. Outputs are written atomically.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from .._io import exclusive_lock, write_text_atomic
from .._revision import source_revision
from .._tables import deep_merge as _merge
from .._tables import read_toml
from . import ncl as _ncl
from .ncl import NCLRun
from .pipelines import PipelineRun, plan_group, run_row, validate_group
from .spec_model import SpecError, validate_spec

SPECS = Path(__file__).with_name("specs")
EXPERIMENTS = tuple(sorted(p.stem for p in SPECS.glob("*.toml")))
SCALES = ("full", "quick", "smoke")


class ReproduceError(ValueError):
    """A bad experiment name, scale, seed list or spec (one line; ``derl`` exits with 2)."""


# ------------------------------------------------------------------------------------------
# the spec
def load_spec(name: str) -> dict:
    """The validated spec of experiment ``name`` (a name of :data:`EXPERIMENTS` or a path)."""
    path = Path(name)
    if path.suffix != ".toml":
        path = SPECS / f"{name}.toml"
    if not path.exists():
        raise ReproduceError(
            f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)} "
            "(or give a spec .toml file)"
        )
    spec = read_toml(path, "experiment spec", ReproduceError)
    try:  # the typed tree: unknown keys and wrong types, with their path (spec_model.py)
        validate_spec(spec, str(path))
    except SpecError as exc:
        raise ReproduceError(str(exc)) from None
    spec.setdefault("name", path.stem)
    names = [g.get("name") for g in spec.get("groups", [])]
    if not names or None in names or len(set(names)) != len(names):
        raise ReproduceError(f"{path}: every [[groups]] entry needs a unique name")
    by_name = {g["name"]: g for g in spec["groups"]}
    for g in spec["groups"]:
        if g.get("dataset") not in spec.get("datasets", {}):
            raise ReproduceError(
                f"{path}: group {g['name']!r}: unknown dataset {g.get('dataset')!r}"
            )
        if "modes_from" in g:
            src = by_name.get(g["modes_from"])
            if src is None or "modes" not in src:
                raise ReproduceError(f"{path}: group {g['name']!r}: bad modes_from")
            g["modes"] = _merge(src["modes"], g.get("modes", {}))
        if not g.get("modes"):
            raise ReproduceError(f"{path}: group {g['name']!r} has no modes")
        if g.get("kind") == "stages":  # what a stage group's tables hold (pipelines.py)
            validate_group(path, g, ReproduceError)
        elif g.get("kind") == "ncl":  # the teacher/student tables (ncl.py)
            _ncl.validate_group(path, g, ReproduceError)
    for scale, sv in spec.get("scales", {}).items():
        for gname in sv.get("groups", []):
            if gname not in by_name:
                raise ReproduceError(f"{path}: scales.{scale}: unknown group {gname!r}")
        known = {m for g in spec["groups"] for m in g["modes"]}
        for mode in sv.get("modes", []):
            if mode not in known:
                raise ReproduceError(f"{path}: scales.{scale}: unknown mode {mode!r}")
    columns = {c.get("key") for c in spec.get("columns", [])}
    for i, c in enumerate(spec.get("checks", [])):
        where = f"{path}: checks[{i}]"
        if c.get("column") not in columns:
            raise ReproduceError(f"{where}: column {c.get('column')!r} is not a [[columns]] key")
        if c.get("group") not in by_name:
            raise ReproduceError(f"{where}: unknown group {c.get('group')!r}")
    spec["_path"] = str(path)
    return spec


# ------------------------------------------------------------------------------------------
# the plan
@dataclass
class Run:
    name: str
    group: str
    mode: str
    label: str
    seed: int
    dataset: str
    variant: str | None
    config: dict[str, Any]  # TrainConfig.from_dict input, data.path filled in later
    evaluate: dict[str, Any] = field(default_factory=dict)


def _label(mode: str) -> str:
    return {"outl+pinn": "OUTL+PINN", "der+hesl": "DER+HESL", "sob+hesl": "SOB+HESL"}.get(
        mode, mode.upper()
    )


def plan(
    spec: dict,
    scale: str = "full",
    seeds: list[int] | None = None,
    groups: list[str] | None = None,
):
    """The datasets (key → generation request dict) and runs of ``spec`` at ``scale``;
    ``groups`` restricts them to those groups of the scale."""
    if scale not in SCALES:
        raise ReproduceError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
    sc = spec.get("scales", {}).get(scale, {}) if scale != "full" else {}
    wanted = sc.get("groups") or [g["name"] for g in spec["groups"]]
    if groups:
        for gname in groups:
            if gname not in wanted:
                raise ReproduceError(
                    f"--groups: {spec['name']} has no group {gname!r} at scale {scale}; "
                    f"choose from {', '.join(wanted)}"
                )
        wanted = [g for g in wanted if g in groups]
    # precedence, lowest first: defaults, the scale's tables, the group, the scale's patch of
    # the group, the mode
    defaults = _merge(
        spec.get("defaults", {}),
        {k: sc[k] for k in ("data", "model", "objective", "train", "evaluate") if k in sc},
    )
    datasets: dict[str, dict] = {}
    runs: list[Run] = []
    for g0 in spec["groups"]:
        if g0["name"] not in wanted:
            continue
        g = _merge(g0, sc.get("patch", {}).get(g0["name"], {}))
        key = g["dataset"]
        datasets[key] = dict(sc.get("datasets", {}).get(key) or spec["datasets"][key])
        variant = g.get("variant") or None
        group_seeds = seeds or g.get("seeds") or sc.get("seeds") or [30]
        if g.get("kind") == "stages":
            runs += plan_group(g, defaults, group_seeds, sc.get("modes"))
            continue
        if g.get("kind") == "ncl":
            runs += _ncl.plan_group(g, defaults, group_seeds, sc.get("modes"), ReproduceError)
            continue
        for mode_key, mv in g["modes"].items():
            if "modes" in sc and mode_key not in sc["modes"]:
                continue
            mode = mv.get("mode", mode_key)
            for seed in group_seeds:
                cfg: dict[str, Any] = {
                    "data": _merge(defaults.get("data", {}), g.get("data", {})),
                    "model": _merge(defaults.get("model", {}), g.get("model", {})),
                    "objective": _merge(defaults.get("objective", {}), g.get("objective", {})),
                    "train": _merge(defaults.get("train", {}), g.get("train", {})),
                }
                for part in ("data", "model", "objective", "train"):
                    cfg[part] = _merge(cfg[part], mv.get(part, {}))
                cfg["objective"]["mode"] = mode
                if "weights" in mv:
                    cfg["objective"]["weights"] = dict(mv["weights"])
                if "lr" in mv:
                    cfg["train"]["lr"] = mv["lr"]
                cfg["train"]["seed"] = int(seed)
                cfg["train"]["progress"] = False
                if variant:
                    cfg["data"]["variant"] = variant
                ev = _merge(defaults.get("evaluate", {}), g.get("evaluate", {}))
                runs.append(
                    Run(
                        name=f"{g['name']}-{mode_key.replace('+', '_')}-s{seed}",
                        group=g["name"],
                        mode=mode,
                        label=mv.get("label", _label(mode)),
                        seed=int(seed),
                        dataset=key,
                        variant=variant,
                        config=cfg,
                        evaluate=ev,
                    )
                )
    return datasets, runs


def _check_seeds(seeds) -> list[int] | None:
    if seeds is None:
        return None
    out = []
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int | np.integer) or s < 0:
            raise ReproduceError(f"--seeds takes non-negative integers, got {s!r}")
        out.append(int(s))
    return out or None


# ------------------------------------------------------------------------------------------
# running
def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:10]


def _dataset_path(out: Path, key: str, request: dict) -> Path:
    """Where the dataset ``key`` of a plan lives: its request's hash in the name."""
    return out / "data" / f"{key}-{_hash(request)}.h5"


def _dataset(out: Path, key: str, request: dict, progress: bool) -> Path:
    from ..data.generate import GenerateRequest, generate
    from ..data.store import DatasetError, open_dataset

    path = _dataset_path(out, key, request)
    if path.exists():
        # a file at the final name was written whole (atomic writer): one that cannot be
        # opened was damaged or moved since (e.g. its shard folder); it is not ours to delete
        try:
            with open_dataset(path):
                return path
        except DatasetError as exc:
            raise ReproduceError(
                f"dataset {key!r}: {exc} — delete {path} to have it generated again"
            ) from None
    path.parent.mkdir(parents=True, exist_ok=True)
    req = dict(request)
    fields = {f.name for f in dataclasses.fields(GenerateRequest)}
    bad = set(req) - fields
    if bad:
        raise ReproduceError(f"dataset {key!r}: unknown generation option {sorted(bad)[0]!r}")
    if "split" in req:
        req["split"] = tuple(req["split"])
    generate(GenerateRequest(out=str(path), **req), progress=progress)
    return path


def _get(d: Any, dotted: str):
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


DIVERGED_FACTOR = 10.0  # a final training loss this far above the best epoch's: diverged


def divergence(info: dict) -> str | None:
    """Why a finished run counts as diverged (from its ``train.json``), or ``None``.

    A non-finite loss stops training (the trainer's NaN guard); a loss that blows up but
    stays finite — L-BFGS without line search reaching 1e15, say — does not, so a run whose
    final epoch's total training loss is more than :data:`DIVERGED_FACTOR` times its best
    epoch's is flagged too."""
    final = ((info.get("final") or {}).get("train") or {}).get("loss")
    best = info.get("loss_best")
    if final is None or best is None:
        return None
    if not math.isfinite(final):
        return f"final training loss is {final}"
    if best > 0 and final > DIVERGED_FACTOR * best:
        return (
            f"ended far above its best: final training loss {final:.3g} is "
            f"{final / best:.3g}× its best epoch's ({best:.3g})"
        )
    return None


def _run_one(run: Run | PipelineRun | NCLRun, data: Path, out: Path, progress: bool) -> dict:
    if isinstance(run, PipelineRun):
        from .pipelines import run_one

        return run_one(run, data, out, divergence)
    if isinstance(run, NCLRun):
        return _ncl.run_one(run, data, out, divergence)
    from ..learn.config import TrainConfig
    from ..learn.evaluate import evaluate
    from ..learn.metrics import write_metrics
    from ..learn.trainer import TrainingDiverged, train

    rdir = out / "runs" / run.name
    cfg = _merge(run.config, {"data": {"path": str(data.resolve())}})
    ckpt = rdir / "checkpoint.pt"
    marker = rdir / "diverged.json"  # a non-finite loss stopped this run: don't retrain it
    t0 = time.perf_counter()
    stopped = None
    if marker.exists() and (not ckpt.exists() or marker.stat().st_mtime >= ckpt.stat().st_mtime):
        stopped = json.loads(marker.read_text())["reason"]
    else:
        try:
            train(TrainConfig.from_dict(cfg), rdir, progress=progress)
        except TrainingDiverged as exc:
            stopped = f"stopped by the NaN guard: {exc}"
            write_text_atomic(marker, json.dumps({"reason": stopped}))
    train_s = time.perf_counter() - t0
    info = json.loads((rdir / "train.json").read_text()) if (rdir / "train.json").exists() else {}
    diverged = stopped or divergence(info)
    mpath = rdir / "metrics.json"
    if not ckpt.exists():
        metrics: dict = {}
    elif mpath.exists() and mpath.stat().st_mtime >= ckpt.stat().st_mtime:
        metrics = json.loads(mpath.read_text())
    else:
        opts = dict(run.evaluate)
        if run.variant:  # the split losses on the sets the run trained on (not the whole
            opts.setdefault("variant", run.variant)  # grid of a grid-layout file)
        metrics = evaluate(ckpt, data, options=opts)
        write_metrics(mpath, metrics)
    return {
        **run_row(run, data),
        "checkpoint": str(ckpt),
        "config": cfg,
        "epochs": info.get("epochs"),
        "train_seconds_this_call": round(train_s, 2),
        "train_seconds": round(info.get("training_seconds", train_s), 2),
        "trained_by": info.get("source"),  # the commit of the code that trained it
        "diverged": diverged,
        "metrics": metrics,
    }


def _baselines(spec, datasets_paths, out, scale, progress, groups) -> list[dict]:
    rows = []
    for b in spec.get("baselines", []):
        kind = b.get("kind")
        if scale not in b.get("scales", list(SCALES)) or b.get("group") not in groups:
            continue
        if kind != "hnn":
            raise ReproduceError(f"unknown baseline kind {kind!r}")
        from ..learn.hnn import train_hnn

        key = b["dataset"]
        if key not in datasets_paths:
            continue
        kw = dict(b.get("train", {}))
        kw.update(b.get(scale, {}))
        rdir = out / "runs" / f"{b['name']}"
        t0 = time.perf_counter()
        metrics = train_hnn(datasets_paths[key], rdir, progress=progress, **kw)
        rows.append(
            {
                "name": b["name"],
                "group": b["group"],
                "mode": "hnn",
                "label": "HNN",
                "seed": kw.get("seed", 30),
                "dataset": key,
                "variant": None,
                "data": str(datasets_paths[key]),
                "checkpoint": str(rdir / "hnn.pt"),
                "config": kw,
                "train_seconds": round(time.perf_counter() - t0, 2),
                "metrics": {"metrics": metrics},
            }
        )
    return rows


def _fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float) and not math.isfinite(v):
        return "nan"
    return f"{v:.4g}"


def _aggregate(rows: list[dict], columns: list[dict]) -> list[dict]:
    """Rows of the table: one per (group, mode) with mean ± std over seeds per column."""
    table: dict[tuple[str, str], dict] = {}
    for r in rows:
        key = (r["group"], r["mode"])
        t = table.setdefault(
            key,
            {
                "group": r["group"],
                "mode": r["mode"],
                "label": r["label"],
                "seeds": [],
                "diverged": [],
                "values": {},
            },
        )
        t["seeds"].append(r["seed"])
        if r.get("diverged"):
            t["diverged"].append(r["seed"])
        for c in columns:
            v = _get(r["metrics"], c["path"])
            if isinstance(v, int | float):
                t["values"].setdefault(c["key"], []).append(float(v))
    out = []
    for t in table.values():
        stats = {}
        for k, vs in t["values"].items():
            a = np.asarray(vs)
            stats[k] = {
                "mean": float(a.mean()),
                "std": float(a.std()) if a.size > 1 else None,
                "n": int(a.size),
            }
        keep = ("group", "mode", "label", "seeds", "diverged")
        out.append({**{k: t[k] for k in keep}, "stats": stats})
    return out


#: the kinds of ``[[checks]]``: a claim of the paper (the default), a question of a study of
#: this package's own, and a sanity check (true by construction, or trivially)
CHECK_KINDS = ("paper", "study", "sanity")


def _wins_needed(n: int) -> int:
    """Seeds a claim must win to hold: all of 3, 4 of 5, 8 of 10 — n − ⌊n/5⌋."""
    return n - n // 5


def paired_decision(a: dict[int, float], b: dict[int, float] | float) -> dict[str, Any]:
    """The claim "a < b" over seeds: ``a`` and ``b`` map seed → value (the same seed: the
    same data and initialisation draw), or ``b`` is a bound. Per-seed wins, the mean
    difference a − b, one-sided paired tests (SciPy: Wilcoxon signed-rank, exact for small
    n, and the paired t-test; alternative "a < b"), and the verdict: ``"holds"`` needs ≥ 3
    seeds, the mean difference below 0 and a win in n − ⌊n/5⌋ of n seeds (3 of 3, 4 of 5);
    ``"no"`` when the reverse claim holds by the same rule; else ``"not settled"``."""
    from scipy import stats

    seeds = sorted(a) if not isinstance(b, dict) else sorted(set(a) & set(b))
    va = np.array([a[k] for k in seeds], dtype=float)
    vb = np.array([b[k] if isinstance(b, dict) else float(b) for k in seeds], dtype=float)
    ok = np.isfinite(va) & np.isfinite(vb)
    d = va[ok] - vb[ok]
    n = int(d.size)
    out: dict[str, Any] = {
        "seeds": [s for s, keep in zip(seeds, ok, strict=True) if keep],
        "n": n,
        "wins": int((d < 0).sum()),
        "mean_difference": float(d.mean()) if n else None,
        "p_wilcoxon": None,
        "p_ttest": None,
    }
    if n >= 2 and np.any(d != 0):
        with np.errstate(all="ignore"):
            # SciPy's result objects are not typed with .pvalue in its stubs
            wil: Any = stats.wilcoxon(d, alternative="less")
            out["p_wilcoxon"] = float(wil.pvalue)
            if np.std(d) > 0:
                tt: Any = stats.ttest_1samp(d, 0.0, alternative="less")
                out["p_ttest"] = float(tt.pvalue)
    need = _wins_needed(n)
    if n < 3:
        out["verdict"] = "not settled"
    elif d.mean() < 0 and out["wins"] >= need:
        out["verdict"] = "holds"
    elif d.mean() > 0 and int((d > 0).sum()) >= need:
        out["verdict"] = "no"
    else:
        out["verdict"] = "not settled"
    return out


def _per_seed(rows: list[dict], group: str, mode: str, path: str) -> dict[int, float]:
    out = {}
    for r in rows:  # rows without a seed (e.g. an NCL group's shared teacher) pair nothing
        if r.get("group") == group and r.get("mode") == mode and r.get("seed") is not None:
            v = _get(r.get("metrics") or {}, path)
            out[int(r["seed"])] = float(v) if isinstance(v, int | float) else math.nan
    return out


def _checks(spec, table, scale, rows: list[dict] | None = None) -> list[dict]:
    """The claims of ``[[checks]]``: ``lower`` below ``than`` on ``column``, or, with
    ``below = <number>``, ``lower`` (a mode, or ``"*"``: every method of the group, their
    largest mean) below that bound. ``holds``: the group means are ordered as claimed;
    with ``rows``, ``paired``: the decision over seeds (:func:`paired_decision`; for
    ``"*"`` the mode with the largest mean) — what ``verdict`` reports."""
    out = []
    by = {(t["group"], t["mode"]): t for t in table}
    paths = {c["key"]: c["path"] for c in spec.get("columns", [])}
    for c in spec.get("checks", []):
        bound = c.get("below")
        if bound is not None:
            modes = (
                [t["mode"] for t in table if t["group"] == c["group"]]
                if c.get("lower", "*") == "*"
                else [c["lower"]]
            )
            found = [by.get((c["group"], m)) for m in modes]
            cells = [t for t in found if t is not None]
            if not modes or len(cells) != len(found):
                continue
            vals = [t["stats"].get(c["column"], {}).get("mean") for t in cells]
            va = None if None in vals else max(vals)
            vb = float(bound)
            pair = modes
        else:
            a, b = by.get((c["group"], c["lower"])), by.get((c["group"], c["than"]))
            if a is None or b is None:
                continue
            va = a["stats"].get(c["column"], {}).get("mean")
            vb = b["stats"].get(c["column"], {}).get("mean")
            pair = [c["lower"], c["than"]]
        holds = va is not None and vb is not None and math.isfinite(va) and va < vb
        paired = None
        if rows is not None and c["column"] in paths:
            path = paths[c["column"]]
            if bound is not None:  # the method with the largest mean against the bound
                means = [
                    by[(c["group"], m)]["stats"].get(c["column"], {}).get("mean") for m in pair
                ]
                finite = [math.nan if v is None else float(v) for v in means]
                if any(math.isfinite(v) for v in finite):
                    worst = pair[int(np.nanargmax(finite))]
                    paired = paired_decision(_per_seed(rows, c["group"], worst, path), float(bound))
            else:
                paired = paired_decision(
                    _per_seed(rows, c["group"], pair[0], path),
                    _per_seed(rows, c["group"], pair[1], path),
                )
        out.append(
            {
                "claim": c["claim"],
                "kind": c.get("kind", "paper"),
                "group": c["group"],
                "column": c["column"],
                "lower": c.get("lower", "*"),
                "than": c.get("than") if bound is None else None,
                "below": bound,
                "values": [va, vb],
                "holds": bool(holds),
                # a claim decided by a diverged run says little about the method
                "diverged": sorted(m for m in set(pair) if by[(c["group"], m)]["diverged"]),
                "expected_at_smoke": bool(c.get("smoke", False)),
                "scale": scale,
                "paired": paired,
                "verdict": paired["verdict"] if paired else ("holds" if holds else "no"),
            }
        )
    return out


def _markdown(spec, scale, table, checks, rows, meta) -> str:
    cols = spec.get("columns", [])
    paper = {(p["group"], p["mode"], p["column"]): p for p in spec.get("paper", [])}
    lines = [f"# {spec.get('title', spec['name'])}", ""]
    src = meta.get("source")
    rev = f" ({src['commit'][:10]}{' + local changes' if src['dirty'] else ''})" if src else ""
    lines += [
        f"`derl reproduce {spec['name']}{'' if scale == 'full' else ' --' + scale}` — "
        f"{spec.get('section', '')}; scale **{scale}**; derlhybrid {meta['version']}{rev}, "
        f"torch {meta['torch']}, {meta['machine']}, {meta['cpus']} CPUs; "
        f"{meta['seconds']:.0f} s in this call.",
        "",
    ]
    if meta.get("merged_from"):  # derl reproduce --merge: rows of earlier calls
        parts = []
        for m in meta["merged_from"]:
            made_by = m.get("source") or {}
            made = (
                f"commit {made_by['commit'][:10]}"
                if made_by.get("commit")
                else "commit not recorded"
            )
            parts.append(f"`{m['file']}` ({m['runs']} runs, finished {m.get('finished')}, {made})")
        missing = meta.get("missing") or []
        lines += [
            f"**Merged** (`--merge`, nothing trained in this call) from {'; '.join(parts)}: "
            f"{meta['planned'] - len(missing)} of the {meta['planned']} planned runs"
            + (f"; missing: {', '.join(missing)}." if missing else "."),
            "",
        ]
    sc = spec.get("scales", {}).get(scale, {}) if scale != "full" else {}
    notes = [*spec.get("notes", []), *(f"Scale {scale}: {n}" for n in sc.get("notes", []))]
    for note in notes:
        lines.append(f"- {note}")
    if notes:
        lines.append("")
    groups = list(dict.fromkeys(t["group"] for t in table))
    for gname in groups:
        g = next((g for g in spec["groups"] if g["name"] == gname), {})
        g = _merge(g, sc.get("patch", {}).get(gname, {}))
        lines += [f"## {g.get('label', gname)}", ""]
        header = ["method", "seeds"] + [c["title"] for c in cols] + ["train s"]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        flagged = []
        for t in (t for t in table if t["group"] == gname):
            label = t["label"]
            if t["diverged"]:
                label += " †"
                flagged += [
                    f"† {t['label']}, seed {r['seed']}: {r['diverged'].rstrip('.')}."
                    for r in rows
                    if r["group"] == gname and r["mode"] == t["mode"] and r.get("diverged")
                ]
            cells = [label, ",".join(str(s) for s in t["seeds"])]
            for c in cols:
                s = t["stats"].get(c["key"])
                cell = "—" if s is None else _fmt(s["mean"])
                if s is not None and s["std"] is not None:
                    cell += f" ± {_fmt(s['std'])}"
                p = paper.get((gname, t["mode"], c["key"]))
                if p is not None:
                    cell += f" (paper {_fmt(p['value'])})"
                cells.append(cell)
            secs = [
                r.get("train_seconds")
                for r in rows
                if r["group"] == gname and r["mode"] == t["mode"]
            ]
            secs = [s for s in secs if isinstance(s, int | float)]
            cells.append(f"{sum(secs):.0f}" if secs else "—")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        if flagged:
            lines += [*flagged, ""]
    if paper:
        lines.append(
            "Paper numbers: paper.md §11 ([review] quotes of an earlier version, "
            "unverified; metric definitions may differ)."
        )
        lines.append("")
    headings = {
        "paper": "## The paper's qualitative claims",
        "study": "## This study's questions",
        "sanity": "## Sanity checks (true by construction, or trivially)",
    }
    for kind in CHECK_KINDS:
        these = [c for c in checks if c.get("kind", "paper") == kind]
        if not these:
            continue
        lines += [
            headings[kind],
            "",
            "Decided over seeds, each pair from the same seed and data: *holds* needs the mean "
            "difference in the claimed direction and a win in all of 3, 4 of 5 seeds "
            "(n − ⌊n/5⌋); *no* when the reverse holds so; otherwise *not settled* (always "
            "with fewer than 3 seeds). p: one-sided Wilcoxon signed-rank / paired t-test.",
            "",
            "| claim | means (column) | seeds won | p (Wilcoxon / t) | verdict |",
            "|---|---|---|---|---|",
        ]
        for c in these:
            va, vb = c["values"]
            if c.get("below") is not None:
                who = "largest of all" if c["lower"] == "*" else c["lower"]
                ours = f"{who} {_fmt(va)} vs bound {_fmt(vb)}"
            else:
                ours = f"{c['lower']} {_fmt(va)} vs {c['than']} {_fmt(vb)}"
            pr = c.get("paired") or {}
            won = f"{pr['wins']} of {pr['n']}" if pr else "—"
            p = (
                f"{_fmt(pr.get('p_wilcoxon'))} / {_fmt(pr.get('p_ttest'))}"
                if pr.get("n", 0) >= 2
                else "—"
            )
            verdict = {"holds": "holds", "no": "**no**"}.get(c["verdict"], "not settled")
            if c.get("diverged"):
                verdict += f" ({', '.join(c['diverged'])} diverged †)"
            lines.append(f"| {c['claim']} | {ours} ({c['column']}) | {won} | {p} | {verdict} |")
        lines.append("")
    figs = meta.get("figures", [])
    if figs:
        lines += (
            ["## Figures", ""] + [f"![{Path(f).stem}](figures/{Path(f).name})" for f in figs] + [""]
        )
    return "\n".join(lines)


def reproduce(
    name: str,
    *,
    scale: str = "full",
    seeds: list[int] | None = None,
    out=None,
    progress: bool = True,
    figures: bool = True,
    jobs: int = 1,
    groups: list[str] | None = None,
    engine: str = "local",
    address: str | None = None,
) -> Path:
    """Run experiment ``name`` at ``scale`` into ``out`` (default ``reproduce/<name>``, or
    ``reproduce/<name>-<scale>``); returns the path of ``results.json``. ``jobs`` > 1 trains
    that many runs at once in separate processes (one intra-op thread each); ``groups`` runs
    only those groups of the scale. ``engine="ray"`` sends the runs (and the shared first
    stages of pipelines) as Ray tasks to the cluster at ``address`` (None: a local Ray
    instance; :mod:`derlhybrid.scale.ray_reproduce`), with the same results files."""
    from .. import learn  # noqa: F401 - fail early if torch is missing

    t_start = time.perf_counter()
    spec = load_spec(name)
    seeds = _check_seeds(seeds)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ReproduceError(f"--jobs must be a positive integer, got {jobs!r}")
    if engine not in ENGINES:
        raise ReproduceError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine != "ray" and address is not None:
        raise ReproduceError("--address names a Ray cluster: use it with --engine ray")
    if engine == "ray" and jobs != 1:
        raise ReproduceError("--jobs is for --engine local; Ray runs as many runs as it has CPUs")
    if engine == "ray":
        from ..scale._ray import RayUnavailable, require

        try:
            require()
        except RayUnavailable as exc:
            raise ReproduceError(str(exc)) from None
    datasets, runs = plan(spec, scale, seeds, groups)  # plan validates scale and groups
    _check_run_configs(runs)  # every run's training config, before any data exist
    _check_evaluate(runs, datasets)  # and every group's evaluate table
    out = (
        Path(out)
        if out
        else Path("reproduce") / (spec["name"] + ("" if scale == "full" else f"-{scale}"))
    )
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ReproduceError(f"cannot write to {out} ({exc.strerror}); choose --out DIR") from None

    # one reproduce per folder at a time: a second one would share its runs and data
    with exclusive_lock(out, error=ReproduceError):
        ray = {"address": address} if engine == "ray" else None
        return _reproduce_into(
            out, spec, scale, datasets, runs, progress, figures, jobs, t_start, ray
        )


#: where the runs of a reproduce execute: this machine (``--jobs N`` processes) or Ray tasks
ENGINES = ("local", "ray")


def _one_thread(runs) -> None:
    """Every run trains with one intra-op thread (runs side by side, one CPU each)."""
    for run in runs:
        if isinstance(run, PipelineRun):
            for st in run.stages:
                st.setdefault("train", {})["threads"] = 1
        elif isinstance(run, NCLRun):
            for cfg in (run.teacher, run.student):
                if cfg is not None:
                    cfg["train"]["threads"] = 1
        else:
            run.config["train"]["threads"] = 1


def _check_run_configs(runs) -> None:
    """Parse every run's training configuration now, with a stand-in data path, so that a
    typo in a spec (``train.epocs``) fails in one line before any data are generated or any
    run trains: single runs whole, each pipeline's stage tables as :class:`Pipeline` reads
    them (a parameter range, resolved from the data when the pipeline runs, stands in as
    parameter set 0). NCL runs were parsed when they were planned."""
    from ..learn.config import ConfigError, TrainConfig
    from ..transfer.stages import Pipeline

    stand_in = "<the run's data>"
    for run in runs:
        try:
            if isinstance(run, Run):
                TrainConfig.from_dict(_merge(run.config, {"data": {"path": stand_in}}))
            elif isinstance(run, PipelineRun):
                stages = copy.deepcopy(run.stages)
                for st in stages:
                    data = st.setdefault("data", {})
                    data["path"] = stand_in
                    if data.pop("parameter_range", None) is not None:
                        data["parameter_sets"] = [0]
                Pipeline.from_dict({"stages": stages})
        except ConfigError as exc:
            raise ReproduceError(f"run {run.name}: {exc}") from None


def _check_evaluate(runs, datasets: dict) -> None:
    """Check every group's ``evaluate`` table against the options of the metrics of its
    dataset's system (:mod:`derlhybrid.learn.evaluate_options`; a stages group's: those of
    its region metrics), so that ``gird = 51`` fails in one line before any data are
    generated. NCL groups' tables were checked when they were planned."""
    from ..learn.evaluate_options import check_options
    from ..systems import SYSTEMS
    from ..transfer.regions import check_region_options

    seen: set[str] = set()
    for run in runs:
        if isinstance(run, NCLRun) or run.group in seen:
            continue
        seen.add(run.group)
        cls = SYSTEMS.get(str(datasets[run.dataset].get("system")))
        if cls is None:  # generating the dataset refuses an unknown system
            continue
        try:
            if isinstance(run, PipelineRun):
                check_region_options(cls, run.evaluate)
            else:
                opts = dict(run.evaluate)
                if run.variant:  # as _run_one passes them
                    opts.setdefault("variant", run.variant)
                check_options(cls, opts)
        except ValueError as exc:
            raise ReproduceError(f"group {run.group!r}: {exc}") from None


def _figures(spec: dict, rows: list[dict], datasets: dict, fig_dir: Path) -> list[str]:
    """The spec's figures from the rows: figures drawn from metrics alone
    (:data:`~derlhybrid.experiments.figures.METRIC_ONLY`) get every row, the others the
    rows whose checkpoint is on this machine."""
    from .figures import FIGURES, METRIC_ONLY, RunInfo

    infos = [
        RunInfo.from_row(r, datasets.get(r.get("dataset"))) for r in rows if r["mode"] != "hnn"
    ]
    fig_dir.mkdir(parents=True, exist_ok=True)
    figs: list[str] = []
    for fname in spec["figures"]:
        use = infos if fname in METRIC_ONLY else [i for i in infos if i.checkpoint.exists()]
        figs += [str(p) for p in FIGURES[fname](use, fig_dir)]
    return figs


def _comparable(config: dict) -> dict:
    """A run's training configuration without what differs between calls of one plan:
    the data file's path and the intra-op thread count (``--jobs`` sets it)."""
    c = copy.deepcopy(config)
    c.get("data", {}).pop("path", None)
    c.get("train", {}).pop("threads", None)
    return c


def merge(
    name: str, files: list, *, out=None, figures: bool = True, scale: str | None = None
) -> Path:
    """One ``results.json`` (and ``results.md``, metric figures) from the rows of earlier
    calls of ``derl reproduce name`` — e.g. the seeds or groups of one study trained in
    separate sittings — with no training and no data: every row must be a run the spec
    plans at that scale, with the configuration the spec gives it now, and each run may
    come from one file only. The table is built over the rows found; ``planned`` and
    ``missing`` say how much of the plan that is. Returns the path of ``results.json``."""
    t_start = time.perf_counter()
    spec = load_spec(name)
    if not files:
        raise ReproduceError("--merge needs at least one results.json")
    parts = []
    for f in files:
        try:
            parts.append((Path(f), json.loads(Path(f).read_text())))
        except OSError as exc:
            raise ReproduceError(f"cannot read {f} ({exc.strerror})") from None
        except json.JSONDecodeError as exc:
            raise ReproduceError(f"{f} is not a results.json ({exc.msg})") from None
    for f, part in parts:
        if not isinstance(part, dict) or not isinstance(part.get("runs"), list):
            raise ReproduceError(f"{f} is not a results.json of derl reproduce (no runs)")
        if part.get("experiment") != spec["name"]:
            raise ReproduceError(
                f"{f} holds results of {part.get('experiment')!r}, not {spec['name']!r}"
            )
    scales = {part.get("scale") for _, part in parts}
    if scale is None:
        if len(scales) != 1:
            raise ReproduceError(f"the files are of different scales: {sorted(map(str, scales))}")
        scale = scales.pop()
    elif scales != {scale}:
        raise ReproduceError(f"the files are of scale(s) {sorted(map(str, scales))}, not {scale}")
    seeds = sorted({int(r["seed"]) for _, part in parts for r in part["runs"]})
    datasets, runs = plan(spec, str(scale), None)
    by_name = {r.name: r for r in runs}
    # runs with other seeds than the spec's (--seeds) are planned with those seeds
    extra = sorted(set(seeds) - {r.seed for r in runs})
    if extra:
        by_name.update({r.name: r for r in plan(spec, str(scale), extra)[1]})
    rows: dict[str, dict] = {}
    origin: dict[str, Path] = {}
    for f, part in parts:
        for row in part["runs"]:
            run = by_name.get(row.get("name"))
            if run is None:
                raise ReproduceError(
                    f"{f}: run {row.get('name')!r} is not planned by the spec at scale {scale}"
                )
            if row["name"] in rows:
                raise ReproduceError(
                    f"run {row['name']} is in both {origin[row['name']]} and {f}: keep one"
                )
            if isinstance(run, Run) and _comparable(row.get("config", {})) != _comparable(
                run.config
            ):
                raise ReproduceError(
                    f"{f}: run {row['name']} was trained with another configuration than "
                    "the spec gives it now: train it again instead of merging it"
                )
            rows[row["name"]] = row
            origin[row["name"]] = f
    ordered = [rows[n] for n in by_name if n in rows]
    planned = [r.name for r in runs]
    out = Path(out) if out else Path("reproduce") / f"{spec['name']}-merged"
    out.mkdir(parents=True, exist_ok=True)
    columns = spec.get("columns", [])
    table = _aggregate(ordered, columns)
    checks = _checks(spec, table, scale, ordered)
    figs = (
        _figures(spec, ordered, datasets, out / "figures")
        if figures and spec.get("figures")
        else []
    )
    meta = {
        "experiment": spec["name"],
        "scale": scale,
        "version": __version__,
        "source": source_revision(),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": time.perf_counter() - t_start,
        "figures": figs,
        "spec": spec["_path"],
        "merged_from": [
            {
                "file": str(f),
                "runs": len(part["runs"]),
                **{k: part.get(k) for k in ("finished", "version", "source", "machine", "cpus")},
                "seconds": part.get("seconds"),
            }
            for f, part in parts
        ],
        "planned": len(planned),
        "missing": [n for n in planned if n not in rows],
        "torch": parts[0][1].get("torch"),
        "machine": parts[0][1].get("machine"),
        "cpus": parts[0][1].get("cpus"),
    }
    with exclusive_lock(out, error=ReproduceError):
        return _write_results(out, spec, scale, table, checks, ordered, meta)


def _die_with_parent() -> None:
    """Linux: the data-generating child gets SIGTERM when this process dies (killed with
    SIGKILL, say), instead of generating on without the folder's lock."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def _generate_datasets(out: Path, datasets: dict, progress: bool) -> dict:
    """Every dataset of the plan (generated, or found from an earlier call); runs in a
    spawned process that never imports torch (:func:`_reproduce_into`). Returns
    ``{"paths": {key: path}, "torch_imported": bool}``."""
    paths = {}
    for key, req in datasets.items():
        print(f"[data] {key}: {req.get('system')} {req.get('preset') or ''}".rstrip(), flush=True)
        paths[key] = _dataset(out, key, req, progress)
    return {"paths": paths, "torch_imported": "torch" in sys.modules}


def _reproduce_into(
    out, spec, scale, datasets, runs, progress, figures, jobs, t_start, ray=None
) -> Path:
    """The body of :func:`reproduce`, under the folder's lock."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    import torch

    # the data are generated in a fresh process that never imports torch (its OpenMP and
    # thread pools, its memory), whatever this process has loaded already; where every
    # file exists (a rerun), they are only opened here
    if all(_dataset_path(out, k, r).exists() for k, r in datasets.items()):
        generated = {**_generate_datasets(out, datasets, progress), "process": "this (found)"}
    else:
        with ProcessPoolExecutor(
            1, mp_context=mp.get_context("spawn"), initializer=_die_with_parent
        ) as pool:
            generated = pool.submit(_generate_datasets, out, datasets, progress).result()
        generated["process"] = "spawned"
    paths = generated["paths"]

    from tqdm import tqdm

    bar = tqdm(
        total=len(runs),
        desc=f"{spec['name']} ({scale})",
        unit="run",
        disable=not progress,
        file=sys.stderr,
    )
    # the first stage shared by several pipelines: trained once, linked into their folders
    pipes = [r for r in runs if isinstance(r, PipelineRun)]
    if ray is not None:
        _one_thread(runs)
    if pipes:
        from .pipelines import run_shared, shared_first_stages

        calls = []
        for key, shared in shared_first_stages(pipes, paths).items():
            label = f"{shared[0].group} {shared[0].stages[0]['name']} (shared)"
            calls.append((label, run_shared, (key, shared, paths[shared[0].dataset], out)))
        if ray is not None:
            from ..scale.ray_reproduce import run_tasks

            bar.set_postfix_str(f"{len(calls)} shared first stages on Ray")
            run_tasks(calls, address=ray["address"])
        else:
            for label, fn, args in calls:
                bar.set_postfix_str(label)
                fn(*args)
    # the NCL teachers: each trained and labelled once, before their students
    ncls = [r for r in runs if isinstance(r, NCLRun)]
    if ncls:
        bar.set_postfix_str(f"{ncls[0].group} teacher (shared)")
        _ncl.prepare_teachers(ncls, paths, out)
    if ray is not None:
        from ..scale.ray_reproduce import run_tasks

        def finished(label):
            bar.set_postfix_str(label)
            bar.update()

        calls = [(run.name, _run_one, (run, paths[run.dataset], out, False)) for run in runs]
        rows = run_tasks(calls, address=ray["address"], on_done=finished)
    elif jobs == 1:
        rows = []
        for run in runs:
            bar.set_postfix_str(run.name)
            rows.append(_run_one(run, paths[run.dataset], out, False))
            bar.update()
    else:  # runs in parallel processes, one intra-op thread each
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        _one_thread(runs)
        done: dict[str, dict] = {}
        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
            futures = {
                pool.submit(_run_one, run, paths[run.dataset], out, False): run for run in runs
            }
            for fut in as_completed(futures):
                done[futures[fut].name] = fut.result()
                bar.set_postfix_str(futures[fut].name)
                bar.update()
        rows = [done[run.name] for run in runs]
    bar.close()
    rows += _baselines(spec, paths, out, scale, progress, {r.group for r in runs})

    columns = spec.get("columns", [])
    table = _aggregate(rows, columns)
    checks = _checks(spec, table, scale, rows)
    figs: list[str] = []
    if figures and spec.get("figures"):
        figs = _figures(spec, rows, datasets, out / "figures")
    meta = {
        "experiment": spec["name"],
        "scale": scale,
        "version": __version__,
        "source": source_revision(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": time.perf_counter() - t_start,
        "figures": figs,
        "spec": spec["_path"],
        "data_generation": {k: generated[k] for k in ("process", "torch_imported")},
    }
    datasets_written = {"datasets": {k: str(v) for k, v in paths.items()}}
    return _write_results(out, spec, scale, table, checks, rows, meta, datasets_written)


def _write_results(out, spec, scale, table, checks, rows, meta, extra=None) -> Path:
    """``results.json`` (``meta``, ``extra``, the table, the claims and every run) and
    ``results.md``, each written atomically; returns the path of ``results.json``."""
    from ..learn.metrics import to_jsonable

    result = {**meta, **(extra or {}), "table": table, "checks": checks, "runs": rows}
    text = json.dumps(to_jsonable(result), indent=1, allow_nan=True)
    write_text_atomic(out / "results.json", text)
    write_text_atomic(out / "results.md", _markdown(spec, scale, table, checks, rows, meta))
    return out / "results.json"
