"""Hyper-parameter sweeps on Ray Tune (``derl sweep CONFIG --engine ray``).

A sweep config is a ``derl train`` config (``[data] [model] [objective] [train]``, the base
of every trial) plus a ``[sweep]`` table: the search space over any keys of the base (the
paper's: every loss weight log-uniform in [1e-3, 1e2], the learning rate from a small set),
the number of trials, the metric, the searcher (Optuna or HyperOpt) and the ASHA early
stopping rule (paper.md §2, §3.4)::

    [sweep]
    num_samples = 100
    metric = "val_output"        # output MSE on the validation split (the paper's out_loss)
    searcher = "optuna"          # or "hyperopt"
    [sweep.asha]
    max_t = 200
    grace_period = 100
    [sweep.space]
    "objective.weights.sys" = { loguniform = [1e-3, 1e2] }
    "train.lr" = { choice = [1e-3, 5e-4, 1e-4] }

Each trial trains with the project's trainer (:func:`derlhybrid.learn.trainer.train`) in
``OUT/runs/<trial id>`` and reports the metric after every epoch; ASHA stops the weak ones.
The sweep is resumable: rerunning the same command restores the Tune experiment in
``OUT/tune`` (finished trials are kept, unfinished ones continue from their last epoch's
checkpoint). At the end ``OUT/best.toml`` is the best trial's configuration, ready for
``derl train``, with ``OUT/best.json`` (its metric) and ``OUT/trials.json`` (every trial).

The config is parsed and checked before any trial starts by :mod:`.sweep_config`
(:class:`SweepConfig`, re-exported here); this module runs it.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .._io import write_text_atomic
from ..learn.config import ConfigError, TrainConfig
from .sweep_config import SweepConfig

__all__ = ["METRICS_LOG", "SweepConfig", "SweepInterrupted", "dump_toml", "run_trial", "sweep"]

METRICS_LOG = "metrics.jsonl"  # a trial's reports, one JSON line per epoch, in its run folder


# -- one trial -------------------------------------------------------------------------


def _output_mse(model, points) -> float:
    """Mean squared error of the network's output on a point set (in memory or streamed)."""
    import torch

    from ..learn.problems import StreamingSet

    p = next(model.parameters())
    blocks = points.blocks() if isinstance(points, StreamingSet) else [points]
    total, count = 0.0, 0
    with torch.no_grad():
        for block in blocks:
            for start in range(0, len(block), 8192):
                X = block.X[start : start + 8192].to(p.device, p.dtype)
                y = block.targets["output"][start : start + 8192].to(p.device, p.dtype)
                total += float(((model(X) - y) ** 2).sum())
                count += y.numel()
    return total / max(count, 1)


def _metrics(record: dict[str, Any], model, val) -> dict[str, Any]:
    out: dict[str, Any] = {"epoch": int(record["epoch"])}
    out.update({f"train_{k}": float(v) for k, v in record["train"].items()})
    out.update({f"val_{k}": float(v) for k, v in record.get("val", {}).items()})
    if val is not None:
        out["val_output"] = _output_mse(model, val)
    return out


def run_trial(params: dict[str, Any], sweep: SweepConfig, root: str, report) -> None:
    """Train one trial of ``sweep`` with the hyper-parameters ``params`` in ``root``,
    calling ``report(metrics)`` after every epoch (Ray Tune's ``tune.report`` in a sweep).
    A diverged trial reports its metric as +inf (or -inf for ``mode = "max"``) and ends."""
    from ..learn.problems import PointSet, StreamingSet, StreamPolicy, load_problem
    from ..learn.trainer import TrainingDiverged, train

    cfg = sweep.train_config(params)
    d = cfg.data
    problem = load_problem(
        d.path,
        form=d.form,
        variant=d.variant,
        stream=StreamPolicy(d.stream, d.memory_mb, d.block_mb),
    )
    val = None
    if sweep.metric == "val_output":
        pts = problem.sets.get("val")
        if pts is None or len(pts) == 0 or "output" not in pts.targets:
            raise ValueError(
                f"{d.path} has no validation outputs for metric val_output; choose another "
                "sweep.metric"
            )
        # the trainer keeps only the targets its terms read: hold on to the outputs
        val = (
            copy.copy(pts) if isinstance(pts, StreamingSet) else PointSet(pts.X, dict(pts.targets))
        )
    state = {"reported": 0}
    log = Path(root) / METRICS_LOG

    def send(metrics):
        # our own record of every epoch, kept across resumes (Tune restarts a resumed
        # trial's result log), then the report
        with log.open("a") as fh:
            fh.write(json.dumps(metrics) + "\n")
        report(metrics)

    def on_epoch(record, model):
        metrics = _metrics(record, model, val)
        if sweep.metric not in metrics:
            raise ValueError(
                f"sweep.metric {sweep.metric!r} is not reported by this run; it reports "
                f"{', '.join(sorted(k for k in metrics if k != 'epoch'))}"
            )
        state["reported"] += 1
        send(metrics)

    try:
        result = train(cfg, root, problem=problem, progress=False, on_epoch=on_epoch)
    except TrainingDiverged:
        bad = math.inf if sweep.mode == "min" else -math.inf
        Path(root).mkdir(parents=True, exist_ok=True)
        send({"epoch": cfg.train.epochs, sweep.metric: bad, "diverged": True})
        return
    if not state["reported"] and result.history:  # resumed a finished run: report its end
        on_epoch(result.history[-1], result.model)


def _tune_trial(params: dict[str, Any], sweep: SweepConfig, root: str) -> None:
    from ray import tune

    trial = tune.get_context().get_trial_id()
    run_trial(params, sweep, str(Path(root) / "runs" / trial), tune.report)


# -- the sweep -------------------------------------------------------------------------


class SweepInterrupted(KeyboardInterrupt):
    """The sweep stopped before all its trials finished (its state is saved: rerun)."""


def _searcher(sweep: SweepConfig):
    seed = int(np.random.SeedSequence(sweep.seed).generate_state(1)[0] % (2**31 - 1))
    try:
        if sweep.searcher == "optuna":
            import optuna
            from ray.tune.search.optuna import OptunaSearch

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            searcher = OptunaSearch(metric=sweep.metric, mode=sweep.mode, seed=seed)
        else:
            import hyperopt  # noqa: F401  # pyright: ignore[reportMissingImports]  # optional, in no extra
            from ray.tune.search.hyperopt import HyperOptSearch

            searcher = HyperOptSearch(metric=sweep.metric, mode=sweep.mode, random_state_seed=seed)
    except ImportError as exc:
        from ._ray import INSTALL, RayUnavailable

        hint = INSTALL if sweep.searcher == "optuna" else "pip install hyperopt"
        raise RayUnavailable(
            f"sweep.searcher = {sweep.searcher!r} needs {exc.name or sweep.searcher}, which is "
            f"not installed: {hint}"
        ) from None
    if sweep.max_concurrent:
        from ray.tune.search import ConcurrencyLimiter

        searcher = ConcurrencyLimiter(searcher, max_concurrent=sweep.max_concurrent)
    return searcher


def _claim(out: Path, sweep: SweepConfig) -> None:
    from ..data.store import config_hash

    meta = out / "sweep.json"
    want = config_hash(sweep.to_dict())
    if meta.exists():
        try:
            have = json.loads(meta.read_text()).get("config_hash")
        except (OSError, ValueError):
            have = None
        if have != want:
            raise ConfigError(
                f"{out} holds a sweep of another configuration; choose another --out or delete it"
            )
        return
    write_text_atomic(meta, json.dumps({"config_hash": want, "sweep": sweep.to_dict()}, indent=2))


def sweep(
    config: SweepConfig | str | os.PathLike,
    out: str | os.PathLike,
    *,
    address: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run (or resume) a sweep into ``out``; returns the best trial (what ``best.json``
    holds: ``metric``, ``value``, ``epoch``, ``params``, ``trial``, ``config`` path)."""
    from ._ray import connect, require

    sw = config if isinstance(config, SweepConfig) else SweepConfig.from_toml(config)
    require("tune")
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    out = Path(out).resolve()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder")
    _claim(out, sw)
    storage, name = out / "tune", "sweep"
    connected = connect(address)
    try:
        trainable = tune.with_resources(
            tune.with_parameters(_tune_trial, sweep=sw, root=str(out)), {"cpu": sw.cpus_per_trial}
        )
        exp = storage / name
        if tune.Tuner.can_restore(str(exp)):
            tuner = tune.Tuner.restore(
                str(exp), trainable, resume_unfinished=True, resume_errored=True
            )
        else:
            scheduler = ASHAScheduler(
                time_attr="epoch",
                max_t=sw.max_t or sw.epochs,
                grace_period=sw.grace_period,
                reduction_factor=sw.reduction_factor,
            )
            tuner = tune.Tuner(
                trainable,
                param_space={d.key: d.tune() for d in sw.space},
                tune_config=tune.TuneConfig(
                    metric=sw.metric,
                    mode=sw.mode,
                    search_alg=_searcher(sw),
                    scheduler=scheduler,
                    num_samples=sw.num_samples,
                ),
                run_config=tune.RunConfig(
                    name=name, storage_path=str(storage), verbose=1 if progress else 0
                ),
            )
        with warnings.catch_warnings():
            # a resumed trial reports its iterations from 1 again (Tune restarts its count;
            # the epochs continue): Optuna keeps the first value per step and says so
            warnings.filterwarnings("ignore", message="The reported value is ignored")
            results = tuner.fit()
        # Tune ends fit() on Ctrl-C / SIGINT after saving its state: trials still pending
        saved = tune.ExperimentAnalysis(str(exp)).trials
        finished = sum(t.status in ("TERMINATED", "ERROR") for t in saved)
        if finished < sw.num_samples:
            raise SweepInterrupted(
                f"sweep interrupted after {finished} of {sw.num_samples} trials; rerun the "
                "same command to resume it"
            )
    finally:
        if connected:
            import ray

            ray.shutdown()
    return _write_best(sw, out, results)


def _write_best(sw: SweepConfig, out: Path, results) -> dict[str, Any]:
    trials = []
    for r in results:
        if r.config is None:
            continue
        trial = (r.metrics or {}).get("trial_id")
        row = {"trial": trial, "params": _params(sw, r.config)}
        epochs, vals = _curve(sw, out, trial, r.metrics_dataframe)
        if vals.size:
            best = int(np.argmin(vals) if sw.mode == "min" else np.argmax(vals))
            if sw.scope == "last":
                best = len(vals) - 1
            row.update(value=float(vals[best]), epoch=int(epochs[best]), epochs=int(epochs[-1]))
        if r.error is not None:
            row["error"] = (str(r.error).strip().splitlines() or [""])[-1][:300]
        trials.append(row)
    scored = [t for t in trials if "value" in t and math.isfinite(t["value"])]
    if not scored:
        errors = [t["error"] for t in trials if "error" in t]
        why = f": {errors[0]}" if errors else ""
        raise ValueError(f"no trial of the sweep reported a finite {sw.metric}{why}")
    key = (lambda t: t["value"]) if sw.mode == "min" else (lambda t: -t["value"])
    best = min(scored, key=key)
    best_toml = out / "best.toml"
    tables = sw.tables(best["params"])
    data = dict(tables["data"])
    data["path"] = os.path.relpath(data["path"], out)  # derl train reads it from best.toml's folder
    tables["data"] = data
    header = (
        f"# Best of {len(trials)} trials of {sw.source} (derl sweep): {sw.metric} = "
        f"{best['value']:.6g} at epoch {best['epoch']} (trial {best['trial']}).\n"
        f"# Train it: derl train {best_toml.name}\n\n"
    )
    write_text_atomic(best_toml, header + dump_toml(tables))
    TrainConfig.from_toml(best_toml)  # ready to run: it must read back as a training config
    summary = {
        "metric": sw.metric,
        "mode": sw.mode,
        "scope": sw.scope,
        "config": str(best_toml),
        **best,
    }
    write_text_atomic(out / "best.json", json.dumps(summary, indent=2, sort_keys=True))
    write_text_atomic(out / "trials.json", json.dumps(trials, indent=2, sort_keys=True))
    return summary


def _curve(sw: SweepConfig, out: Path, trial: str | None, df) -> tuple[np.ndarray, np.ndarray]:
    """A trial's metric per epoch: from its own log (every epoch, across resumes; a
    repeated epoch keeps its last value), else from Tune's results."""
    log = out / "runs" / str(trial) / METRICS_LOG
    by_epoch: dict[int, float] = {}
    if trial is not None and log.is_file():
        for line in log.read_text().splitlines():
            try:
                m = json.loads(line)
            except ValueError:  # a line cut by a kill
                continue
            if sw.metric in m:
                by_epoch[int(m["epoch"])] = float(m[sw.metric])
    elif df is not None and sw.metric in df:
        by_epoch = dict(zip(df["epoch"].astype(int), df[sw.metric].astype(float), strict=True))
    epochs = np.array(sorted(by_epoch), dtype=int)
    return epochs, np.array([by_epoch[e] for e in epochs], dtype=float)


def _params(sw: SweepConfig, config: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for d in sw.space:
        v = config[d.key]
        out[d.key] = v.item() if isinstance(v, np.generic) else v
    return out


# -- TOML out --------------------------------------------------------------------------

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _key(k: str) -> str:
    return k if _BARE.fullmatch(k) else json.dumps(k)


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v if x is not None) + "]"
    if isinstance(v, dict):
        items = [f"{_key(k)} = {_value(x)}" for k, x in v.items() if x is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    raise ConfigError(f"cannot write {v!r} ({type(v).__name__}) to TOML")


def dump_toml(tables: dict[str, Any]) -> str:
    """TOML text of nested tables (``None`` values left out): scalars and arrays first in
    each table, then its sub-tables as ``[a.b]`` sections."""
    lines: list[str] = []

    def emit(prefix: tuple[str, ...], table: dict[str, Any]) -> None:
        scalars = {k: v for k, v in table.items() if v is not None and not isinstance(v, dict)}
        subs = {k: v for k, v in table.items() if isinstance(v, dict)}
        if prefix and (scalars or not subs):
            lines.append(f"[{'.'.join(_key(p) for p in prefix)}]")
        for k, v in scalars.items():
            lines.append(f"{_key(k)} = {_value(v)}")
        if prefix and (scalars or not subs):
            lines.append("")
        for k, v in subs.items():
            emit((*prefix, k), v)

    emit((), tables)
    return "\n".join(lines).rstrip("\n") + "\n"
