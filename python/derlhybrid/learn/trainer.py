"""The trainer: Adam, L-BFGS or Adam-then-L-BFGS over an objective, with checkpoints that
resume a killed run exactly.

``train(config, out_dir)`` loads the problem the config names and drives one training run
(:class:`~derlhybrid.learn.training_run.TrainingRun`: the network, the objective, the
optimizers, the batches and the epochs) through its epochs. Every ``checkpoint_every``
epochs the whole state — weights, optimizer, scheduler, random generators, history — goes to
``out_dir/checkpoint.pt`` (atomically); rerunning the same command resumes from it and gives
the same weights, bit for bit, as an uninterrupted run. A larger ``epochs`` extends a run,
again bit for bit as a run of that length from the start, except under a cosine schedule of
the Adam optimizer, whose every learning rate depends on the total: that is refused
(:func:`_extensible`). A non-finite loss stops training with one line that names the term
and keeps the last good checkpoint.

A caller may add to a run what its config cannot say (:class:`RunExtras`: the distillation
terms and EWC penalty of :mod:`derlhybrid.transfer`, the batch sizes of the extra point
sets those terms read, weights to start from); the extras are recorded in the checkpoint
and a resume with other extras is refused. A loss term of your own class needs no extras:
it goes into the config's objective (:class:`~derlhybrid.learn.config.ObjectiveConfig`),
which records it, so a resume with another term is refused as well.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .._io import exclusive_lock
from .._io import write_json_atomic as _write_json
from .._revision import source_revision
from ..data.store import DatasetError
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint, stale_temporaries
from .config import ConfigError, TrainConfig
from .losses import Objective
from .models import MLP, MLPConfig
from .problems import Problem, StreamPolicy, load_problem
from .training_run import RunExtras as RunExtras
from .training_run import TrainingRun
from .training_run import chunks as chunks
from .training_run import resolve_device as resolve_device

__all__ = [
    "CHECKPOINT",
    "RunExtras",
    "TrainResult",
    "TrainingDiverged",
    "chunks",
    "load_model",
    "resolve_device",
    "train",
    "train_threads",
]

CHECKPOINT = "checkpoint.pt"
# what a resumed run reads from its checkpoint
_RESUME_KEYS = ("config", "system", "problem", "epoch", "model_state", "rng", "history")


class TrainingDiverged(RuntimeError):
    """The loss became non-finite; the message names the term and the checkpoint kept."""


@dataclass
class TrainResult:
    model: MLP
    problem: Problem
    objective: Objective
    history: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: Path | None = None
    start_epoch: int = 0
    seconds: float = 0.0


def _resumable(saved: dict, now: dict) -> str | None:
    """Why a checkpoint's config cannot continue under ``now`` (None if it can). Only the
    number of epochs, the progress bar, the device, threads and compilation may change
    between runs."""
    a, b = json.loads(json.dumps(saved)), json.loads(json.dumps(now))
    for cfg in (a, b):
        for k in (
            "epochs",
            "progress",
            "device",
            "checkpoint_every",
            "val_every",
            "compile",
            "threads",
        ):
            cfg["train"].pop(k, None)
        cfg["data"].pop("path", None)
    if a != b:
        diff = sorted(
            f"{sec}.{k}"
            for sec in b
            for k in set(a.get(sec, {})) | set(b[sec])
            if a.get(sec, {}).get(k) != b[sec].get(k)
        )
        return ", ".join(diff) or "the configuration"
    return None


def _extensible(saved: dict, now: TrainConfig) -> str | None:
    """Why a checkpoint cannot be continued to ``now.train.epochs`` exactly (None if it
    can). A cosine schedule of the Adam optimizer spans ``train.epochs``: its learning rate
    at every epoch depends on that total, so a run of another length differs from the first
    epoch on and no continuation can equal it. Step and exponential schedules do not depend
    on the total, and with ``adam+lbfgs`` the cosine spans ``adam_epochs`` (compared by
    :func:`_resumable`), so those extend exactly."""
    t = now.train
    was = saved.get("train", {}).get("epochs")
    if t.optimizer != "adam" or t.schedule.kind != "cosine" or was == t.epochs:
        return None
    return (
        f"its cosine schedule spans train.epochs = {was} (the learning rate of every epoch "
        f"depends on that total), so it cannot be continued to {t.epochs} epochs exactly: "
        f"keep train.epochs = {was}, or train {t.epochs} epochs from the start in another "
        "--out (step and exponential schedules can be extended)"
    )


def _fmt(v: float) -> str:
    return f"{v:.3e}"


def train_threads(config: TrainConfig, width: int) -> int:
    """Intra-op threads for a run (``train.threads``; 0 = auto, see the config)."""
    if config.train.threads:
        return config.train.threads
    if config.train.batch_size * width <= 2**18:
        return 1
    return torch.get_num_threads()


def train(
    config: TrainConfig,
    out_dir,
    *,
    resume: bool = True,
    problem: Problem | None = None,
    progress: bool | None = None,
    extras: RunExtras | None = None,
    on_epoch: Callable[[dict[str, Any], MLP], None] | None = None,
) -> TrainResult:
    """Train as ``config`` says, checkpointing into ``out_dir`` (created). With
    ``resume=True`` an existing checkpoint of the same configuration is continued.
    ``extras`` adds terms, point-set batch sizes or initial weights (:class:`RunExtras`).
    ``on_epoch(record, model)`` is called after every epoch (and its checkpoint) with the
    epoch's history record (e.g. a hyper-parameter search reporting to its scheduler)."""
    width = int(config.model.get("width", MLPConfig.__dataclass_fields__["width"].default))
    out = Path(out_dir)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create {out.parent} ({exc.strerror}); choose another --out"
        ) from None
    before = torch.get_num_threads()
    torch.set_num_threads(train_threads(config, width))
    try:
        # one run per folder at a time: two would overwrite each other's checkpoints
        with exclusive_lock(out, error=ConfigError):
            return _train(
                config,
                out_dir,
                resume=resume,
                problem=problem,
                progress=progress,
                extras=extras or RunExtras(),
                on_epoch=on_epoch,
            )
    finally:
        torch.set_num_threads(before)


def _train(
    config: TrainConfig, out_dir, *, resume, problem, progress, extras, on_epoch=None
) -> TrainResult:
    t0 = time.perf_counter()
    out = Path(out_dir)
    device = resolve_device(config.train.device)
    if problem is None:
        d = config.data
        policy = StreamPolicy(d.stream, d.memory_mb, d.block_mb)
        problem = load_problem(d.path, form=d.form, variant=d.variant, stream=policy)
    if config.data.system is not None and problem.system.name != config.data.system:
        raise DatasetError(
            f"{config.data.path} holds {problem.system.name!r} data, but the config says "
            f"data.system = {config.data.system!r}"
        )
    run = TrainingRun(config, problem, device, extras)
    ckpt_path = out / CHECKPOINT
    start = 0
    ckpt_source = None  # the code that trained the checkpoint's epochs, as it records it
    # the extras as the checkpoint stores them (JSON round trip: what a resume compares)
    record = json.loads(json.dumps(dict(extras.record), default=str))
    if ckpt_path.exists():
        if not resume:
            raise CheckpointError(
                f"{ckpt_path} exists: resume it (drop --no-resume) or choose another --out"
            )
        ckpt = load_checkpoint(ckpt_path, map_location=device)
        missing = [k for k in _RESUME_KEYS if k not in ckpt]
        if missing:
            raise CheckpointError(
                f"{ckpt_path} is not a checkpoint of derl train (no {missing[0]!r}): "
                "choose another --out"
            )
        was = (ckpt["system"], ckpt["problem"]["inputs"], ckpt["problem"]["outputs"])
        now = (problem.system.describe(), list(problem.inputs), list(problem.outputs))
        if json.loads(json.dumps(was)) != json.loads(json.dumps(now)):
            raise CheckpointError(
                f"{ckpt_path} holds a network of {was[0]['system']} {was[1]} → {was[2]}, "
                f"but the data are {now[0]['system']} {now[1]} → {now[2]}: choose another --out"
            )
        why = _resumable(ckpt["config"], config.to_dict())
        if why:
            raise CheckpointError(
                f"{ckpt_path} was written with another configuration ({why} differ): "
                f"choose another --out or restore that configuration"
            )
        if ckpt.get("extras", {}) != record:
            raise CheckpointError(
                f"{ckpt_path} was written with other additions to its configuration "
                f"(distillation, EWC or initial weights): choose another --out"
            )
        why = _extensible(ckpt["config"], config)
        if why:
            raise CheckpointError(f"{ckpt_path}: {why}")
        try:
            run.load(ckpt)
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
            raise CheckpointError(
                f"{ckpt_path} cannot be resumed: its training state is incomplete or "
                f"damaged ({type(exc).__name__}); choose another --out"
            ) from None
        start = run.epoch
        ckpt_source = ckpt.get("source")
    out.mkdir(parents=True, exist_ok=True)
    for tmp in stale_temporaries(ckpt_path):  # left by a run killed while saving
        tmp.unlink(missing_ok=True)
    base = {
        "config": config.to_dict(),
        "model_config": run.model.config.to_dict(),
        "system": problem.system.describe(),
        "problem": problem.describe(),
        "objective": run.objective.describe(),
    }
    if record:
        base["extras"] = record
    # the code that trained the epochs before this call: train.json's record when it
    # describes the checkpoint (written at the same epoch), else the checkpoint's own (a run
    # stopped before its end has no train.json yet, or an older one)
    before = _recorded_source(out, start, ckpt_source)
    # every checkpoint this call writes records the code that trained its epochs, so that a
    # run stopped before its end and resumed later still names it
    base["source"] = _trained_by(before, start, start + 1)
    show = config.train.progress if progress is None else progress
    bar = None
    if show and start < config.train.epochs:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=config.train.epochs,
            initial=start,
            unit="epoch",
            desc=extras.desc or f"train {problem.system.name}",
            dynamic_ncols=True,
        )
    saved = start if ckpt_path.exists() else None
    try:
        for epoch in range(start, config.train.epochs):
            tick = time.perf_counter()
            losses = run.run_epoch(epoch)
            bad = [k for k, v in losses.items() if not math.isfinite(v)]
            if bad:
                kept = (
                    f"the last good checkpoint (epoch {saved}) is kept in {ckpt_path}"
                    if saved is not None
                    else "no checkpoint was written yet"
                )
                raise TrainingDiverged(
                    f"training diverged at epoch {epoch + 1}: loss term {bad[-1]!r} is "
                    f"{losses[bad[-1]]}; {kept}. Lower the learning rate or the weights."
                )
            record = {"epoch": epoch + 1, "phase": run.phase(epoch), "train": losses}
            record["seconds"] = time.perf_counter() - tick
            if config.train.val_every and (epoch + 1) % config.train.val_every == 0:
                record["val"] = run.validate()
            run.history.append(record)
            run.epoch = epoch + 1
            last = run.epoch == config.train.epochs
            if last or run.epoch % config.train.checkpoint_every == 0:
                save_checkpoint(ckpt_path, {**base, **extras.payload, **run.state()})
                saved = run.epoch
            if on_epoch is not None:
                on_epoch(record, run.model)
            if bar is not None:
                bar.set_postfix({k: _fmt(v) for k, v in losses.items()}, refresh=False)
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    summary = {
        "epochs": run.epoch,
        "resumed_from_epoch": start,
        "seconds": time.perf_counter() - t0,  # this call
        # all epochs, across resumed calls (each history record keeps its epoch's time)
        "training_seconds": sum(r.get("seconds", 0.0) for r in run.history),
        "final": run.history[-1] if run.history else None,
        # the total training loss of the first and of the best epoch: a final loss far above
        # the best marks a run that diverged while staying finite (derl reproduce flags it)
        "loss_first": run.history[0]["train"].get("loss") if run.history else None,
        "loss_best": min((r["train"].get("loss", math.inf) for r in run.history), default=None),
        # the code that trained: this call's, or, when this call trained no epoch (a
        # finished run called again), the one recorded before (train.json or checkpoint)
        **base,
        "source": _trained_by(before, start, run.epoch),
    }
    _write_json(out / "train.json", summary)
    return TrainResult(
        model=run.model,
        problem=run.problem,
        objective=run.objective,
        history=run.history,
        checkpoint=ckpt_path,
        start_epoch=start,
        seconds=summary["seconds"],
    )


def _recorded_source(out: Path, start: int, ckpt_source):
    """The source revision that trained a run's first ``start`` epochs, as recorded:
    ``train.json``'s when it was written at that epoch (None when it names none), else the
    checkpoint's (``ckpt_source``; None for a checkpoint written before checkpoints recorded
    it)."""
    try:
        summary = json.loads((out / "train.json").read_text())
        if summary.get("epochs") == start:  # written with the checkpoint: it is the record
            return summary.get("source")
    except (OSError, ValueError, AttributeError):
        pass
    return ckpt_source


def _trained_by(before, start: int, end: int):
    """The source revision a run's ``train.json`` (and each checkpoint it writes) records
    for epochs 1..``end``, given ``before``, the record of the code that trained epochs
    1..``start``: this process's when it trained every epoch; ``before`` when it trained
    none (so that a finished run evaluated again keeps naming the commit that trained it),
    or ``{"commit": None, ...}`` when there is no such record (a run trained before runs
    recorded their source) — never this process's commit, which did not train it; and this
    process's with ``resumed_from`` (the earlier record) when it extended a run."""
    unknown = {"commit": None, "dirty": None, "note": "not recorded by the run that trained it"}
    if end == start and start > 0:
        return before if before is not None else unknown
    now = source_revision()
    if now is None:  # not run from a git checkout: no revision to record
        return None
    if isinstance(before, dict) and all(before.get(k) == v for k, v in now.items()):
        return before  # resumed by the same code that trained it so far
    if start > 0:
        return {**now, "resumed_from": before if before is not None else unknown}
    return now


def load_model(path, map_location: str | torch.device = "cpu") -> tuple[MLP, dict[str, Any]]:
    """Rebuild the network a checkpoint holds: ``(model, checkpoint)``."""
    ckpt = load_checkpoint(path, map_location=map_location)
    try:
        model = MLP(MLPConfig(**ckpt["model_config"]))
        model.load_state_dict(ckpt["model_state"])
    except (KeyError, TypeError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot rebuild its model ({exc})") from None
    return model.to(map_location), ckpt
