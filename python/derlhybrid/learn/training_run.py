"""One training run: the network, the objective, the optimizers and their state, the batches
and the epochs (:class:`TrainingRun`), for :func:`derlhybrid.learn.trainer.train`, which
drives it (checkpoints, resume, progress, divergence).

Data that fit stay on the device as tensors and are batched by indexing with a seeded
permutation (no ``DataLoader``: its per-sample collation costs more than a step of a small
MLP); the condition sets (initial, boundary, periodic, a term's extra sets) are drawn
cyclically (:class:`_Cycle`). Every parameter is a view of one flat buffer
(:func:`flat_parameters`), which the fused Adam steps with its two kernels
(:meth:`TrainingRun.adam_step`). :meth:`TrainingRun.state` / :meth:`TrainingRun.load` hold
everything a checkpoint must carry to resume a run bit for bit.

Seeds: one root ``numpy.random.SeedSequence(seed)`` spawns the seeds of the weight
initialisation, of the batch order and of the random terms (Hessian projections).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch

from . import fused
from .config import TrainConfig
from .losses import StepContext, Term, build_objective
from .models import MLP, MLPConfig
from .optimizers import AdamThenLBFGS
from .problems import PointSet, Problem, StreamingSet

__all__ = [
    "EVAL_CHUNK",
    "RunExtras",
    "TrainingRun",
    "build_model",
    "chunks",
    "flat_parameters",
    "resolve_device",
]

EVAL_CHUNK = 8192


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


def flat_parameters(model: torch.nn.Module) -> torch.nn.Parameter:
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


class TrainingRun:
    """One run of ``cfg`` on ``problem``: the seeded network over its flat parameter buffer,
    the objective (with the ``extras``' terms), the optimizers and scheduler (made on first
    use), the cyclic condition batches, the history and the epoch reached. The trainer
    (:func:`derlhybrid.learn.trainer.train`) calls :meth:`run_epoch` and :meth:`validate`,
    and checkpoints :meth:`state` / resumes with :meth:`load`."""

    def __init__(self, cfg: TrainConfig, problem: Problem, device: torch.device, extras: RunExtras):
        self.cfg, self.t = cfg, cfg.train
        self.opt = cfg.train.optimizer_object
        init_seed, batch_seed, term_seed = _seeds(self.t.seed)
        self.model = build_model(problem, cfg.model, init_seed).to(device)
        self.flat = flat_parameters(self.model)
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
        assert grad is not None  # set by flat_parameters, zeroed in place, never None
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
        assert grad is not None  # set by flat_parameters, zeroed in place, never None
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
    def lbfgs_step(self, opt, batches: dict[str, PointSet]):
        """One ``torch.optim.LBFGS`` step on ``batches``; the loss and its parts of the
        step's last closure call."""
        last = {}

        def closure():
            self.zero_grad()
            total, parts = self.loss(batches, self.ctx)
            total.backward()
            last["v"] = (total, parts)
            return total

        opt.step(closure)
        return last["v"]

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
            accumulate(*self.lbfgs_step(opt, self.batches(train, full=True)))
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
                    accumulate(*self.lbfgs_step(opt, batches))
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
                assert (
                    scheduler is not None
                )  # saved with one: the same schedule (the trainer's resume check)
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


def _cpus() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else (os.cpu_count() or 1)
