"""Running the plan of a ``derl reproduce`` call (:func:`run_plan`): the datasets generated
in a spawned process that never imports torch, the runs trained one after the other, in
``--jobs`` processes or as Ray tasks, the baselines, then the results files
(:mod:`.report`).

Everything is resumable: datasets are reused when their request is unchanged (the file name
carries its hash), training resumes from its checkpoint and finished runs are skipped, and
metrics are recomputed only when the checkpoint is newer. Outputs are written atomically.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from .. import __version__
from .._io import write_text_atomic
from .._revision import numerics_platform, source_revision
from .._tables import deep_merge as _merge
from . import ncl, pipelines
from .ncl import NCLRun
from .pipelines import PipelineRun, run_row
from .plan import Run, dataset_path, plan_baselines
from .report import aggregate, check_claims, draw_figures, write_results
from .spec import ReproduceError

#: where the runs of a reproduce execute: this machine (``--jobs N`` processes) or Ray tasks
ENGINES = ("local", "ray")


def ensure_dataset(out: Path, key: str, request: dict, progress: bool) -> Path:
    """The file of dataset ``key`` (:func:`~.plan.dataset_path`): generated from ``request``
    unless an earlier call wrote it; one there that cannot be opened is an error, not deleted."""
    from ..data.generate import GenerateRequest, generate
    from ..data.store import DatasetError, open_dataset

    path = dataset_path(out, key, request)
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


def run_one(run: Run | PipelineRun | NCLRun, data: Path, out: Path, progress: bool) -> dict:
    """Train (or resume, or skip when finished) and evaluate one run of the plan (a single
    run, a pipeline or an NCL student): its row of ``results.json``."""
    if isinstance(run, PipelineRun):
        return pipelines.run_one(run, data, out, divergence)
    if isinstance(run, NCLRun):
        return ncl.run_one(run, data, out, divergence)
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


def _baselines(spec, datasets_paths, out, scale, progress, runs) -> list[dict]:
    """The spec's baselines (:func:`plan.plan_baselines`: once per seed of their group's
    runs), each trained in ``runs/<name>-s<seed>``."""
    rows = []
    for b in plan_baselines(spec, scale, runs):
        if b["kind"] != "hnn":
            raise ReproduceError(f"unknown baseline kind {b['kind']!r}")
        from ..learn.hnn import train_hnn

        key = b["dataset"]
        if key not in datasets_paths:
            continue
        rdir = out / "runs" / b["name"]
        t0 = time.perf_counter()
        metrics = train_hnn(datasets_paths[key], rdir, progress=progress, **b["config"])
        rows.append(
            {
                "name": b["name"],
                "group": b["group"],
                "mode": "hnn",
                "label": "HNN",
                "seed": b["seed"],
                "dataset": key,
                "variant": None,
                "data": str(datasets_paths[key]),
                "checkpoint": str(rdir / "hnn.pt"),
                "config": b["config"],
                # the epochs' own times (a finished HNN evaluated again trains nothing)
                "train_seconds": round(_history_seconds(metrics, time.perf_counter() - t0), 2),
                "metrics": {"metrics": metrics},
            }
        )
    return rows


def _history_seconds(metrics: dict, fallback: float) -> float:
    """The training time a baseline's per-epoch history records (every call's epochs), or
    ``fallback`` (this call's time) where the history has none."""
    secs = [r.get("seconds") for r in metrics.get("history") or [] if isinstance(r, dict)]
    secs = [x for x in secs if isinstance(x, int | float)]
    return float(sum(secs)) if secs else fallback


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
    spawned process that never imports torch (:func:`run_plan`). Returns
    ``{"paths": {key: path}, "torch_imported": bool}``."""
    paths = {}
    for key, req in datasets.items():
        print(f"[data] {key}: {req.get('system')} {req.get('preset') or ''}".rstrip(), flush=True)
        paths[key] = ensure_dataset(out, key, req, progress)
    return {"paths": paths, "torch_imported": "torch" in sys.modules}


def run_plan(out, spec, scale, datasets, runs, progress, figures, jobs, t_start, ray=None) -> Path:
    """The body of :func:`~.runner.reproduce`, under the output folder's lock: the datasets,
    the runs (one after the other, ``jobs`` processes, or Ray tasks at ``ray["address"]``),
    the baselines and the results files; returns the path of ``results.json``."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    import torch

    # the data are generated in a fresh process that never imports torch (its OpenMP and
    # thread pools, its memory), whatever this process has loaded already; where every
    # file exists (a rerun), they are only opened here
    if all(dataset_path(out, k, r).exists() for k, r in datasets.items()):
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
        ncl.prepare_teachers(ncls, paths, out)
    if ray is not None:
        from ..scale.ray_reproduce import run_tasks

        def finished(label):
            bar.set_postfix_str(label)
            bar.update()

        calls = [(run.name, run_one, (run, paths[run.dataset], out, False)) for run in runs]
        rows = run_tasks(calls, address=ray["address"], on_done=finished)
    elif jobs == 1:
        rows = []
        for run in runs:
            bar.set_postfix_str(run.name)
            rows.append(run_one(run, paths[run.dataset], out, False))
            bar.update()
    else:  # runs in parallel processes, one intra-op thread each
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        _one_thread(runs)
        done: dict[str, dict] = {}
        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
            futures = {
                pool.submit(run_one, run, paths[run.dataset], out, False): run for run in runs
            }
            for fut in as_completed(futures):
                done[futures[fut].name] = fut.result()
                bar.set_postfix_str(futures[fut].name)
                bar.update()
        rows = [done[run.name] for run in runs]
    bar.close()
    rows += _baselines(spec, paths, out, scale, progress, runs)

    columns = spec.get("columns", [])
    table = aggregate(rows, columns)
    checks = check_claims(spec, table, scale, rows)
    figs: list[str] = []
    if figures and spec.get("figures"):
        figs = draw_figures(spec, rows, datasets, out / "figures")
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
        "platform": numerics_platform(),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": time.perf_counter() - t_start,
        "figures": figs,
        "spec": spec["_path"],
        "data_generation": {k: generated[k] for k in ("process", "torch_imported")},
    }
    datasets_written = {"datasets": {k: str(v) for k, v in paths.items()}}
    return write_results(out, spec, scale, table, checks, rows, meta, datasets_written)
