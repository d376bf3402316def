"""The trainer: Adam, L-BFGS or Adam-then-L-BFGS over an objective, with checkpoints that
resume a killed run exactly.

``train(config, out_dir)`` loads the problem the config names, builds the network and the
objective, and runs epochs. Data that fit stay on the device as tensors and are batched by
indexing with a seeded permutation (no ``DataLoader``: its per-sample collation costs more
than a step of a small MLP). Every ``checkpoint_every`` epochs the whole state — weights,
optimizer, scheduler, random generators, history — goes to ``out_dir/checkpoint.pt``
(atomically); rerunning the same command resumes from it and gives the same weights, bit for
bit, as an uninterrupted run. A larger ``epochs`` extends a run, again bit for bit as a run
of that length from the start, except under a cosine schedule of the Adam optimizer, whose
every learning rate depends on the total: that is refused (:func:`_extensible`). A
non-finite loss stops training with one line that names the term and keeps the last good
checkpoint.

Seeds: one root ``numpy.random.SeedSequence(seed)`` spawns the seeds of the weight
initialisation, of the batch order and of the random terms (Hessian projections).

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
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from .._io import exclusive_lock
from .._io import write_json_atomic as _write_json
from .._revision import source_revision
from ..data.store import DatasetError
from . import fused
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint, stale_temporaries
from .config import ConfigError, TrainConfig
from .losses import Objective, StepContext, Term, build_objective
from .models import MLP, MLPConfig
from .optimizers import AdamThenLBFGS
from .problems import PointSet, Problem, StreamingSet, StreamPolicy, load_problem

__all__ = ["RunExtras", "TrainResult", "TrainingDiverged", "resolve_device", "train"]

CHECKPOINT = "checkpoint.pt"
# what a resumed run reads from its checkpoint
_RESUME_KEYS = ("config", "system", "problem", "epoch", "model_state", "rng", "history")
EVAL_CHUNK = 8192


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


@dataclass(frozen=True)
class RunExtras:
    """What a caller adds to a run beyond its config.

    ``terms``: ``(term, weight)`` pairs appended to the config's objective; a term may read
    any point set of the problem by name (drawn cyclically like the boundary set, in
    batches of ``batch_sizes[name]``, default the condition batch size). ``initial_state``:
    a state dict the network starts from instead of its seeded initialisation (ignored on
    resume). ``record``: JSON-able description stored in the checkpoint; resuming with a
    different one is refused. ``payload``: stored in the checkpoint as is (tensors too).
    ``desc``: the progress bar's label."""

    terms: Sequence[tuple[Term, float]] = ()
    batch_sizes: Mapping[str, int] = field(default_factory=dict)
    initial_state: Mapping[str, torch.Tensor] | None = None
    record: Mapping[str, Any] = field(default_factory=dict)
    payload: Mapping[str, Any] = field(default_factory=dict)
    desc: str | None = None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError('train.device asks for CUDA but torch sees no GPU; use device = "cpu"')
    return torch.device(name)


def _seeds(seed: int) -> tuple[int, int, int]:
    kids = np.random.SeedSequence(seed).spawn(3)
    return cast(
        "tuple[int, int, int]",
        tuple(int(k.generate_state(1, np.uint64)[0] % (2**63 - 1)) for k in kids),
    )


def build_model(problem: Problem, model_cfg: dict, seed: int) -> MLP:
    config = MLPConfig(n_in=problem.n_in, n_out=problem.n_out, **model_cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MLP(config)


def _flat_parameters(model: torch.nn.Module) -> torch.nn.Parameter:
    """Make every parameter (and its gradient) a view of one flat buffer and return that
    buffer as the parameter the optimizers step: an optimizer step and zeroing the
    gradients are then one kernel each instead of one per layer. Autograd accumulates into
    the existing gradient views in place, so gradients must be zeroed, never set to None."""
    params = list(model.parameters())
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    grad = torch.zeros_like(flat)
    offset = 0
    for p in params:
        n = p.numel()
        p.data = flat[offset : offset + n].view_as(p)
        p.grad = grad[offset : offset + n].view_as(p)
        offset += n
    buffer = torch.nn.Parameter(flat)
    buffer.grad = grad
    return buffer


class _Cycle:
    """Draws batches from a point set cyclically, reshuffling at every wrap."""

    def __init__(self, points: PointSet, gen: torch.Generator, right: PointSet | None = None):
        self.points, self.right, self.gen = points, right, gen
        self.perm, self.pos = None, 0

    def next(self, n: int) -> PointSet:
        size = len(self.points)
        n = min(n, size)
        if self.perm is None or self.pos + n > size:
            self.perm = torch.randperm(size, generator=self.gen).to(self.points.X.device)
            self.pos = 0
        idx = self.perm[self.pos : self.pos + n]
        self.pos += n
        batch = self.points.take(idx)
        if self.right is not None:  # periodic pairs: left rows over right rows
            batch = PointSet(torch.cat([batch.X, self.right.X[idx]]))
        return batch

    def state(self):
        return {"perm": None if self.perm is None else self.perm.cpu(), "pos": self.pos}

    def load(self, state):
        self.perm = None if state["perm"] is None else state["perm"].to(self.points.X.device)
        self.pos = state["pos"]


class _Run:
    def __init__(self, cfg: TrainConfig, problem: Problem, device: torch.device, extras: RunExtras):
        self.cfg, self.t = cfg, cfg.train
        self.opt = cfg.train.optimizer_object
        init_seed, batch_seed, term_seed = _seeds(self.t.seed)
        self.model = build_model(problem, cfg.model, init_seed).to(device)
        self.flat = _flat_parameters(self.model)
        if extras.initial_state is not None:  # copied into the flat buffer's views
            self.model.load_state_dict(extras.initial_state)
        self.problem = problem.to(device, self.model.dtype)
        o = cfg.objective
        self.objective = build_objective(problem, o.mode, o.weights, o.terms, o.hessian_projection)
        if extras.terms:
            self.objective.terms.extend((t, float(w)) for t, w in extras.terms if w != 0.0)
            self.objective.check(problem)
        # the training loss, compiled when asked (validation stays eager: other shapes)
        self.loss = (
            torch.compile(self.objective, dynamic=False) if self.t.compile else self.objective
        )
        keep = self.objective.targets_needed(problem)
        for name in ("train", "val", "test"):  # batches index only what the terms read
            pts = problem.sets.get(name)
            if isinstance(pts, StreamingSet):
                pts.keep = keep
            elif pts is not None:
                pts.targets = {k: v for k, v in pts.targets.items() if k in keep}
        self.streaming = isinstance(problem.sets["train"], StreamingSet)
        if self.streaming and self.t.optimizer != "adam" and self.t.lbfgs.batch == "full":
            raise ValueError(
                "the training set is streamed from disk: full-batch L-BFGS cannot hold it; "
                'use train.lbfgs.batch = "mini" or data.stream = "never"'
            )
        self.batch_gen = torch.Generator().manual_seed(batch_seed)
        self.term_gen = torch.Generator().manual_seed(term_seed)
        self.val_seed = term_seed + 1
        self.ctx = StepContext(self.model, problem, self.t.engine, self.term_gen)
        # cores the hand-written engine may use for a large step (learn/fused.py):
        # train.threads, or every core this process may run on when that is 0 (auto)
        self.workers = self.t.threads or _cpus()
        cbs = self.t.condition_batch_size or self.t.batch_size
        self.cbs = cbs
        self.cycles: dict[str, _Cycle] = {}
        wanted = set(self.objective.point_sets())
        for name in ("initial", "boundary"):
            if (
                name in wanted
                and name in problem.sets
                and not (name == "initial" and problem.initial_from_batch)
            ):
                self.cycles[name] = _Cycle(problem.sets[name], self.batch_gen)
        if "periodic" in wanted and problem.periodic is not None:
            self.cycles["periodic"] = _Cycle(
                problem.periodic[0], self.batch_gen, problem.periodic[1]
            )
        for name in sorted(wanted - {"interior", "initial", "boundary", "periodic"}):
            if name in problem.sets:  # extra point sets (e.g. distillation), read by name
                self.cycles[name] = _Cycle(problem.sets[name], self.batch_gen)
        self.sizes = {name: int(extras.batch_sizes.get(name, cbs)) for name in self.cycles}
        self.adam = None
        self.lbfgs = None
        self.scheduler = None
        self.history: list[dict[str, Any]] = []
        self.epoch = 0

    def zero_grad(self) -> None:
        grad = self.flat.grad
        assert grad is not None  # set by _flat_parameters, zeroed in place, never None
        grad.zero_()  # one kernel; the parameters' grads are views of it

    def adam_step(self, opt) -> None:
        """``opt.step()`` of the fused Adam over the one flat buffer, with the optimizer's
        Python bookkeeping (~0.1 ms a step, 8 % of a small network's step) skipped once its
        state exists: the same two kernels ``torch.optim.Adam(fused=True)`` runs (step += 1,
        then ``_fused_adam_``) on the same tensors and hyper-parameters, so the result is
        bit for bit that of ``opt.step()`` (tested)."""
        state = opt.state.get(self.flat)
        group = opt.param_groups[0]
        if (
            not state
            or opt is not self.adam
            or group["amsgrad"]
            or group["maximize"]
            or group["capturable"]
            or group["differentiable"]
            or group.get("decoupled_weight_decay", False)
            or isinstance(group["lr"], torch.Tensor)
        ):
            opt.step()
            return
        step = state["step"]
        grad = self.flat.grad
        assert grad is not None  # set by _flat_parameters, zeroed in place, never None
        # private torch ops (what Adam(fused=True) runs), not exported in torch's stubs
        torch._foreach_add_([step], 1)  # pyright: ignore[reportPrivateImportUsage]
        beta1, beta2 = group["betas"]
        torch._fused_adam_(  # pyright: ignore[reportPrivateImportUsage]
            [self.flat],
            [grad],
            [state["exp_avg"]],
            [state["exp_avg_sq"]],
            [],
            [step],
            amsgrad=False,
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=False,
            grad_scale=None,
            found_inf=None,
        )

    # -- optimizers ---------------------------------------------------------------------
    def phase(self, epoch: int) -> str:
        opt = self.opt
        if isinstance(opt, AdamThenLBFGS):
            return "adam" if epoch < opt.adam_epochs else "lbfgs"
        return opt.name

    def optimizer(self, phase: str):
        params = [self.flat]
        if phase == "adam":
            if self.adam is None:
                # fused Adam over the one flat buffer: a single kernel per step
                self.adam = torch.optim.Adam(params, lr=self.t.lr, fused=True)
                self.scheduler = _scheduler(self.adam, self.t)
            return self.adam
        if self.lbfgs is None:
            lb = self.t.lbfgs
            self.lbfgs = torch.optim.LBFGS(
                params,
                lr=lb.lr,
                max_iter=lb.max_iter,
                max_eval=lb.max_eval,
                history_size=lb.history_size,
                tolerance_grad=lb.tolerance_grad,
                tolerance_change=lb.tolerance_change,
                line_search_fn=lb.line_search,
            )
        return self.lbfgs

    # -- batches ------------------------------------------------------------------------
    def batches(self, interior: PointSet, full: bool = False) -> dict[str, PointSet]:
        out = {"interior": interior}
        if self.problem.initial_from_batch and "initial" in self.objective.point_sets():
            out["initial"] = self.problem.initial_points(interior)
        for name, cyc in self.cycles.items():
            if full:
                pts = cyc.points
                out[name] = pts if cyc.right is None else PointSet(torch.cat([pts.X, cyc.right.X]))
            else:
                out[name] = cyc.next(self.sizes[name])
        return out

    # -- one epoch ----------------------------------------------------------------------
    def run_epoch(self, epoch: int) -> dict[str, float]:
        with self.hand_written_backward():
            return self._run_epoch(epoch)

    def hand_written_backward(self):
        """The block in which this run's steps take the derivatives of tanh MLPs through
        the hand-written backward pass (learn/fused.py), with this run's cores."""
        return fused.hand_written_backward(workers=self.workers)

    def _run_epoch(self, epoch: int) -> dict[str, float]:
        phase = self.phase(epoch)
        opt = self.optimizer(phase)
        train = self.problem.sets["train"]
        n = len(train)
        sums: dict[str, torch.Tensor] = {}
        steps = 0

        def accumulate(total, parts):
            nonlocal steps
            steps += 1
            sums["loss"] = sums.get("loss", 0) + total.detach()
            for k, v in parts.items():
                sums[k] = sums.get(k, 0) + v

        if phase == "lbfgs" and self.t.lbfgs.batch == "full":
            batches = self.batches(train, full=True)
            last = {}

            def full_closure():
                self.zero_grad()
                total, parts = self.loss(batches, self.ctx)
                total.backward()
                last["v"] = (total, parts)
                return total

            opt.step(full_closure)
            accumulate(*last["v"])
        else:
            bs = self.t.batch_size
            if self.streaming:
                interiors = cast(StreamingSet, train).batches(bs, self.batch_gen)
            else:
                perm = torch.randperm(n, generator=self.batch_gen).to(train.X.device)
                interiors = (train.take(perm[start : start + bs]) for start in range(0, n, bs))
            for interior in interiors:
                batches = self.batches(interior)
                if phase == "adam":
                    total, parts = self.loss(batches, self.ctx)
                    self.zero_grad()
                    total.backward()
                    self.adam_step(opt)
                    accumulate(total, parts)
                else:
                    last = {}

                    def closure(batches=batches, last=last):
                        self.zero_grad()
                        total, parts = self.loss(batches, self.ctx)
                        total.backward()
                        last["v"] = (total, parts)
                        return total

                    opt.step(closure)
                    accumulate(*last["v"])
        if phase == "adam" and self.scheduler is not None:
            self.scheduler.step()
        return {k: float(v) / steps for k, v in sums.items()}

    # -- validation ---------------------------------------------------------------------
    def validate(self) -> dict[str, float]:
        val = self.problem.sets.get("val")
        if val is None or len(val) == 0:
            return {}
        sums: dict[str, float] = {}
        # random terms (Hessian projections) draw from a generator of the validation's own,
        # the same at every validation: validating never moves the training's generators,
        # so val_every cannot change what is trained
        gen = torch.Generator().manual_seed(self.val_seed)
        ctx = StepContext(self.model, self.problem, self.t.engine, gen)
        for chunk in chunks(val):
            with torch.enable_grad():
                _, parts = self.objective({"interior": chunk}, ctx)
            w = len(chunk) / len(val)
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + w * float(v)
        return sums

    # -- checkpoints --------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "model_state": self.model.state_dict(),
            "adam": None if self.adam is None else self.adam.state_dict(),
            "lbfgs": None if self.lbfgs is None else self.lbfgs.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "rng": {
                "batch": self.batch_gen.get_state(),
                "term": self.term_gen.get_state(),
                "cycles": {k: c.state() for k, c in self.cycles.items()},
            },
            "history": self.history,
        }

    def load(self, ckpt: dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt["model_state"])
        self.epoch = ckpt["epoch"]
        if ckpt["adam"] is not None:
            self.optimizer("adam").load_state_dict(ckpt["adam"])
            if ckpt["scheduler"] is not None:
                scheduler = self.scheduler
                assert scheduler is not None  # saved with one: the same schedule (_resumable)
                scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt["lbfgs"] is not None:
            self.optimizer("lbfgs").load_state_dict(ckpt["lbfgs"])
        self.batch_gen.set_state(ckpt["rng"]["batch"])
        self.term_gen.set_state(ckpt["rng"]["term"])
        for k, s in ckpt["rng"]["cycles"].items():
            if k in self.cycles:
                self.cycles[k].load(s)
        self.history = list(ckpt["history"])


def chunks(points, size: int = EVAL_CHUNK):
    """Consecutive pieces of a point set (in memory or streamed) of at most ``size`` rows."""
    blocks = points.blocks() if isinstance(points, StreamingSet) else [points]
    for block in blocks:
        for start in range(0, len(block), size):
            yield block.take(slice(start, start + size))


def _scheduler(opt, t):
    s = t.schedule
    if s.kind == "constant":
        return None
    if s.kind == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=s.step_size, gamma=s.gamma)
    if s.kind == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(opt, gamma=s.gamma)
    span = t.adam_epochs if t.optimizer == "adam+lbfgs" else t.epochs
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(span, 1), eta_min=s.min_lr)


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


def _cpus() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else (os.cpu_count() or 1)


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
    run = _Run(config, problem, device, extras)
    ckpt_path = out / CHECKPOINT
    start = 0
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
        # the code that trained (this call's; a resumed run's earlier calls may differ)
        "source": source_revision(),
        **base,
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


def load_model(path, map_location: str | torch.device = "cpu") -> tuple[MLP, dict[str, Any]]:
    """Rebuild the network a checkpoint holds: ``(model, checkpoint)``."""
    ckpt = load_checkpoint(path, map_location=map_location)
    try:
        model = MLP(MLPConfig(**ckpt["model_config"]))
        model.load_state_dict(ckpt["model_state"])
    except (KeyError, TypeError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot rebuild its model ({exc})") from None
    return model.to(map_location), ckpt
