"""Training speed: derlhybrid's trainer against the paper's style, in one process.

Five measurements (paper.md §3, §8, §9, §10.1; issue 15), ours and the paper style timed
alternately in one process, best of ``--repeats``:

* **pendulum epoch** — the damped pendulum preset (30 030 training samples), MLP
  3 → 4×50 tanh → 1, batch 64, DERL with the initial-condition loss, Adam. Ours: one epoch of
  ``derl train`` in its default configuration (``ours_epoch_s``; with ``train.compile =
  true`` too, printed beside it). Paper style: a ``DataLoader`` over a ``TensorDataset`` and
  per-sample ``torch.func.vmap(jacrev(model))`` Jacobians for the batch and its t = 0 points.
* **KdV PINN step, batch 64** — MLP 2 → 9×50 tanh → 1, 64 collocation points (u_t, u_x,
  u_xxx) + 64 initial points + 64 periodic pairs (u and u_x). Paper style: u_t, u_x by
  ``vmap(jacrev)``, u_xxx by ``vmap(jacrev(jacrev(jacrev)))``.
* **kdv-transfer step** (``specs/kdv-transfer.toml``, phase p2 of a DERL pipeline): batch
  1000 collocation points in t ∈ [0.7, 1] (u_t, u_x, u_xxx), the phase's initial data (the
  t = 1 slice, batch min(1000, 400)), its periodic pairs (u and u_x), and the derivative
  distillation term (∇û against labels, batch 1000 of the previous phase's points); weights
  pde 1, init 10, bc 0.001, distillation 1, Adam lr 1e-3. Paper style: the same terms with
  ``vmap(jacrev)`` / triple-nested ``jacrev`` and ``DataLoader`` s.
* **NCL teacher step** (``specs/ncl-ball.toml``): raw MLP 4 → 4×128 softplus(β = 25) → 5 in
  float64, batch 1000 interior points (momentum F and ρDρ/Dt: third raw derivatives) + 1000
  initial + 1000 sphere points (the field's value: second raw derivatives), weights 0.1,
  0.1, 0.1, 30. Paper style: the field v_i = Σ_j ∂_j A_ij with A = J_b − J_bᵀ from
  ``jacrev`` of ``jacrev`` of the raw network, its Jacobian (with its value as auxiliary
  output) by one more ``jacrev``, all under ``vmap``.
* **peak memory** (``--memory``, default on): a child process builds the kdv-transfer p2
  stage (dataset, problem, 28 000 labelled distillation points) and the NCL teacher
  (10⁵ points per set; the spec's 10⁷ add 3 × 320 MB of float64 points) and trains a few
  steps; its peak resident set size (``ru_maxrss``) is reported.

Threads: ours as the trainer sets them (one intra-op thread for these batch sizes; the
kdv-transfer step's hand-written Taylor pass in two halves on two threads where the machine
has two cores, ``learn/fused.py``); the paper style both with torch's default and with one
thread, the faster counting. ``--threads N`` gives both sides N cores.
Extrapolated costs (one core): ``kdv_transfer_cpu_h`` = the kdv-transfer step on one core
(``ours_kdv1000_1_core_step_s``, timed beside the default configuration) × the
optimizer steps of the full protocol (the shared first phase once, 9 pipelines × phases
p1 and p2, PINN full); ``kdv_distill_cpu_h`` = the batch-64 KdV step × the teacher's and
six students' steps (200 epochs of 1257 steps each); ``ncl_teacher_cpu_h`` = the NCL step ×
10⁴ steps. The last line printed is one JSON object.

    python bench/train.py [--smoke] [--repeats 3] [--kdv-steps 50] [--data DIR]
                          [--threads N] [--no-compile] [--no-memory] [--only ...]

``--smoke``: tiny datasets and networks, a few steps, no compilation — the same code path
and JSON keys in seconds (what CI runs; its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.func import jacrev, vmap
from torch.utils.data import DataLoader, TensorDataset

from derlhybrid import __version__
from derlhybrid.data.generate import GenerateRequest, generate
from derlhybrid.learn.config import TrainConfig
from derlhybrid.learn.losses import TERMS
from derlhybrid.learn.problems import PointSet, load_problem
from derlhybrid.learn.trainer import train_threads
from derlhybrid.learn.training_run import RunExtras, TrainingRun, build_model

PEND_W = {"sys": 71.173824, "init": 2.2867589}  # paper.md §3.4, damped, Derivative
KDV_W = {"pde": 0.15237, "init": 6.6076, "bc": 0.0076557}  # paper.md §8.3
TRANSFER_W = {"pde": 1.0, "init": 10.0, "bc": 0.001}  # specs/kdv-transfer.toml
NCL_W = {"momentum": 0.1, "divergence": 0.1, "bc": 0.1, "init": 30.0}  # specs/ncl-ball.toml
NU = 0.0025

#: optimizer steps of the full protocols (specs/kdv-transfer.toml, kdv-distill.toml,
#: ncl-ball.toml): the shared p0 (30 000) once, 9 pipelines × (p1 30 000 + p2 40 000), PINN
#: full 100 000; the KdV teacher and its six students, 200 epochs × ⌈80 400 / 64⌉; the NCL
#: teacher's one pass of 10⁷ points in batches of 1000
KDV_TRANSFER_STEPS = 30_000 + 9 * (30_000 + 40_000) + 100_000
KDV_DISTILL_STEPS = 7 * 200 * 1257
NCL_TEACHER_STEPS = 10_000

WORKLOADS = ("pendulum", "kdv", "kdv1000", "ncl", "memory")

#: full sizes and --smoke sizes
SIZES = {
    "full": {
        "pendulum": {"preset": "paper"},
        "kdv": {"preset": "paper"},
        "kdv_model": {"width": 50, "depth": 9},
        "kdv1000_batch": 1000,
        "ncl_model": {"width": 128, "depth": 4},
        "ncl_batch": 1000,
        "ncl_points": 20_000,
        "memory_ncl_points": 100_000,
    },
    "smoke": {
        "pendulum": {"n_trajectories": 5, "n_times": 101},
        "kdv": {"n_points": 32, "n_times": 41},
        "kdv_model": {"width": 16, "depth": 3},
        "kdv1000_batch": 64,
        "ncl_model": {"width": 16, "depth": 2},
        "ncl_batch": 50,
        "ncl_points": 500,
        "memory_ncl_points": 500,
    },
}


def with_threads(fn, n: int):
    def run():
        before = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            fn()
        finally:
            torch.set_num_threads(before)

    return run


def timed(
    ours: dict, ours_threads: int, peer, repeats: int, peer_repeats: int | None = None
) -> tuple[float, float, dict]:
    """Best of ``repeats``, ours and the peer timed alternately (a shared machine's load
    then affects both alike). ``ours``: configurations by name, run with the trainer's
    thread setting; the first is the default configuration and counts as ours. The peer runs
    with torch's default threads and with one thread, and the faster counts; with
    ``peer_repeats`` (a slow peer) only ``peer_repeats`` times, with one thread."""
    default = torch.get_num_threads()
    runs = {name: with_threads(fn, ours_threads) for name, fn in ours.items()}
    if peer_repeats is None and default != 1:
        runs[f"peer_{default}_threads"] = with_threads(peer, default)
    runs["peer_1_thread"] = with_threads(peer, 1)
    best = dict.fromkeys(runs, float("inf"))
    for i in range(repeats):
        for name, fn in runs.items():
            if name.startswith("peer") and peer_repeats is not None and i >= peer_repeats:
                continue
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    ours_s = best[next(iter(ours))]
    peer_s = min(v for k, v in best.items() if k not in ours)
    return ours_s, peer_s, best


def dataset(data_dir: Path, system: str, request: dict) -> Path:
    tag = "-".join(f"{k}{v}" for k, v in sorted(request.items()))
    path = data_dir / f"{system}-{tag}.h5"
    if not path.exists():
        generate(GenerateRequest(system=system, out=str(path), **request), progress=False)
    return path


def _config(path, model: dict, objective: dict, **train) -> TrainConfig:
    return TrainConfig.from_dict(
        {
            "data": {"path": str(path)},
            "model": model,
            "objective": objective,
            "train": {"device": "cpu", **train},
        }
    )


#: --threads: the cores both sides may use (None: the machine's)
CORES: list[int | None] = [None]


def _runs(path, problem_fn, model, objective, compile_: bool, extras_fn=None, **train):
    """The trainer's run (default configuration) and, with ``compile_``, the same with
    ``train.compile = true``: ``{name: (config, run)}``."""
    out = {}
    for name, comp in [("ours", False), ("ours_compiled", True)][: 1 + compile_]:
        cfg = _config(path, model, objective, compile=comp, **train)
        extras = extras_fn() if extras_fn else RunExtras()
        run = TrainingRun(cfg, problem_fn(), torch.device("cpu"), extras)
        if CORES[0]:  # the hand-written engine's threads for a large step (learn/fused.py)
            run.workers = min(run.workers, CORES[0])
        out[name] = (cfg, run)
    return out


def _steps(run, steps: int):
    """``steps`` Adam steps of the trainer's run on consecutive interior batches (with its
    own condition batches, as :meth:`TrainingRun.run_epoch` draws them)."""
    opt = run.optimizer("adam")
    train = run.problem.sets["train"]
    bs = run.t.batch_size
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    per_epoch = len(train) // bs
    pos = [0]

    def go():
        with run.hand_written_backward():  # as TrainingRun.run_epoch does
            _go()

    def _go():
        for _ in range(steps):
            k = pos[0] % per_epoch
            pos[0] += 1
            batches = run.batches(train.take(perm[k * bs : (k + 1) * bs]))
            total, _ = run.loss(batches, run.ctx)
            run.zero_grad()
            total.backward()
            run.adam_step(opt)

    return go


def _warm(name: str, fn) -> float:
    t0 = time.perf_counter()
    fn()
    s = time.perf_counter() - t0
    print(f"{name}: first call (warm-up{', compiles' if 'compiled' in name else ''}) {s:.1f} s")
    return s


def _cycle(loader):
    while True:
        yield from loader


def _mse(a, b=None):
    return torch.nn.functional.mse_loss(a, torch.zeros_like(a) if b is None else b)


# -- pendulum -------------------------------------------------------------------------------
def pendulum(path: Path, repeats: int, compile_: bool) -> dict:
    problem = load_problem(path)
    runs = _runs(
        path,
        lambda: load_problem(path),
        {"width": 50, "depth": 4},
        {"mode": "derl", "weights": PEND_W},
        compile_,
        batch_size=64,
        lr=5e-4,
    )
    ours, warm = {}, {}
    for name, (_, run) in runs.items():

        def epoch(run=run, counter=[0]):  # noqa: B006 - the run's epoch counter
            run.run_epoch(counter[0])
            counter[0] += 1

        warm[name] = _warm(f"pendulum {name}", epoch)
        ours[name] = epoch
    cfg, run = runs["ours"]
    n_train = len(run.problem.sets["train"])

    model = build_model(problem, cfg.model, 30)
    train = problem.sets["train"].to(dtype=torch.float32)
    loader = DataLoader(
        TensorDataset(train.X, train.targets["jacobian"][:, 0, 0]),
        batch_size=64,
        shuffle=True,
        generator=torch.Generator().manual_seed(30),
    )
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)

    def single(x):
        return model(x[None])[0]

    jac = vmap(jacrev(single))

    def paper_epoch():
        for x, omega in loader:
            der = jac(x)[:, 0, 0]  # ∂θ̂/∂t
            x0 = x.clone()
            x0[:, 0] = 0.0
            out0 = model(x0)
            der0 = jac(x0)[:, 0, 0:1]
            init = _mse(torch.cat([out0, der0], 1), x0[:, 1:3])
            loss = PEND_W["sys"] * _mse(der, omega) + PEND_W["init"] * init
            opt.zero_grad()
            loss.backward()
            opt.step()

    paper_epoch()
    ours_s, paper_s, each = timed(ours, train_threads(cfg, 50), paper_epoch, repeats)
    return {
        "n_train": n_train,
        "ours_epoch_s": ours_s,
        "paper_style_epoch_s": paper_s,
        "pendulum_timings_s": each,
        "pendulum_first_epoch_s": warm,
    }


# -- KdV PINN, batch 64 ---------------------------------------------------------------------
def _kdv_paper_model(problem, cfg):
    model = build_model(problem, cfg.model, 30)

    def u1(x):
        return model(x[None])[0, 0]

    return model, vmap(jacrev(u1)), vmap(jacrev(jacrev(jacrev(u1))))


def _pde(model, d1, d3, x):
    u = model(x)[:, 0]
    g1 = d1(x)
    uxxx = d3(x)[:, 1, 1, 1]
    return _mse(g1[:, 0] + u * g1[:, 1] + NU * uxxx)


def _periodic(model, d1, xl, xr):
    ul, ur = model(xl), model(xr)
    gl, gr = d1(xl)[:, 1:2], d1(xr)[:, 1:2]
    return _mse(torch.cat([ul, gl], 1), torch.cat([ur, gr], 1))


def kdv(path: Path, repeats: int, steps: int, compile_: bool, model_cfg: dict) -> dict:
    problem = load_problem(path)
    runs = _runs(
        path,
        lambda: load_problem(path),
        model_cfg,
        {"mode": "pinn", "weights": KDV_W},
        compile_,
        batch_size=64,
        lr=5e-4,
    )
    ours, warm = {}, {}
    for name, (_, run) in runs.items():
        ours[name] = _steps(run, steps)
        warm[name] = _warm(f"KdV batch 64 {name} ({steps} steps)", ours[name])
    cfg = runs["ours"][0]

    model, d1, d3 = _kdv_paper_model(problem, cfg)
    opt_p = torch.optim.Adam(model.parameters(), lr=5e-4)
    sets = {k: v.to(dtype=torch.float32) for k, v in problem.sets.items()}
    left, right = (p.to(dtype=torch.float32) for p in problem.periodic)
    g = torch.Generator().manual_seed(30)
    col = DataLoader(TensorDataset(sets["train"].X), 64, shuffle=True, generator=g)
    ini = DataLoader(
        TensorDataset(sets["initial"].X, sets["initial"].targets["output"]),
        64,
        shuffle=True,
        generator=g,
    )
    per = DataLoader(TensorDataset(left.X, right.X), 64, shuffle=True, generator=g)
    it_c, it_i, it_p = _cycle(col), _cycle(ini), _cycle(per)

    def paper():
        for _ in range(steps):
            (x,) = next(it_c)
            xi, ui = next(it_i)
            xl, xr = next(it_p)
            pde = _pde(model, d1, d3, x)
            init = _mse(model(xi), ui)
            bc = _periodic(model, d1, xl, xr)
            loss = KDV_W["pde"] * pde + KDV_W["init"] * init + KDV_W["bc"] * bc
            opt_p.zero_grad()
            loss.backward()
            opt_p.step()

    paper()
    ours_s, paper_s, each = timed(ours, train_threads(cfg, model_cfg["width"]), paper, repeats)
    return {
        "ours_kdv_step_s": ours_s / steps,
        "paper_style_kdv_step_s": paper_s / steps,
        "kdv_step_timings_s": {k: v / steps for k, v in each.items()},
    }


# -- kdv-transfer step (batch 1000, phase p2 of a DERL pipeline) ----------------------------
def _region(points: PointSet, lo: float, hi: float) -> PointSet:
    keep = (points.X[:, 0] >= lo - 1e-12) & (points.X[:, 0] <= hi + 1e-12)
    return points.take(keep.nonzero()[:, 0])


def transfer_problem(path: Path):
    """Phase p2 of specs/kdv-transfer.toml on the paper preset: interior points and
    periodic pairs with t ∈ [0.7, 1], the t = 1 slice as its initial data, and the previous
    phase's points (t ∈ [0.35, 0.7]) as the distillation set with ∇û labels (seeded random
    numbers: the step's cost does not depend on their values)."""
    problem = load_problem(path)
    full = problem.sets["train"]
    init = problem.sets["initial"]
    t_end = float(full.X[:, 0].max())
    lo = 0.7 * t_end
    problem.sets["train"] = _region(full, lo, t_end)
    t_init = float(init.X[:, 0].max())  # the final-time slice (a --smoke file: t = 0)
    problem.sets["initial"] = _region(init, t_init, t_init)
    left, right = problem.periodic
    keep = (left.X[:, 0] >= lo).nonzero()[:, 0]
    problem.periodic = (left.take(keep), right.take(keep))
    old = _region(full, 0.35 * t_end, lo)
    g = torch.Generator().manual_seed(7)
    labels = torch.randn(len(old), 1, 2, generator=g, dtype=torch.float64)
    problem.sets["distill:p1"] = PointSet(old.X, {"jacobian": labels})
    return problem


def _transfer_extras(batch: int):
    from derlhybrid.transfer.distill import DistillationTerm

    term = DistillationTerm(TERMS["jacobian"](), "distill:p1", (0, 1))
    return RunExtras(terms=[(term, 1.0)], batch_sizes={"distill:p1": batch})


def kdv1000(path: Path, repeats: int, steps: int, compile_: bool, model_cfg, batch) -> dict:
    problem = transfer_problem(path)

    def build(compiled: bool) -> dict:
        return _runs(
            path,
            lambda: transfer_problem(path),
            model_cfg,
            {"mode": "pinn", "weights": TRANSFER_W},
            compiled,
            extras_fn=lambda: _transfer_extras(batch),
            batch_size=batch,
            condition_batch_size=batch,
            lr=1e-3,
        )

    runs = build(compile_)
    if runs["ours"][1].workers > 1:  # the one-core cost, for the extrapolated CPU-hours
        one = build(False)["ours"]
        one[1].workers = 1
        runs["ours_1_core"] = one
    ours, warm = {}, {}
    for name, (_, run) in runs.items():
        ours[name] = _steps(run, steps)
        warm[name] = _warm(f"kdv-transfer {name} ({steps} steps)", ours[name])
    cfg = runs["ours"][0]
    sizes = {
        "interior": batch,
        "initial": min(batch, len(problem.sets["initial"])),
        "periodic_pairs": min(batch, len(problem.periodic[0])),
        "distill": batch,
    }
    print(f"kdv-transfer step batches: {sizes}")

    model, d1, d3 = _kdv_paper_model(problem, cfg)
    opt_p = torch.optim.Adam(model.parameters(), lr=1e-3)
    f32 = torch.float32
    sets = {k: v.to(dtype=f32) for k, v in problem.sets.items()}
    left, right = (p.to(dtype=f32) for p in problem.periodic)
    g = torch.Generator().manual_seed(30)

    def loader(*tensors, size):
        return _cycle(DataLoader(TensorDataset(*tensors), size, shuffle=True, generator=g))

    it_c = loader(sets["train"].X, size=sizes["interior"])
    it_i = loader(sets["initial"].X, sets["initial"].targets["output"], size=sizes["initial"])
    it_p = loader(left.X, right.X, size=sizes["periodic_pairs"])
    dist = sets["distill:p1"]
    it_d = loader(dist.X, dist.targets["jacobian"], size=sizes["distill"])

    def paper():
        for _ in range(steps):
            (x,) = next(it_c)
            xi, ui = next(it_i)
            xl, xr = next(it_p)
            xd, jd = next(it_d)
            pde = _pde(model, d1, d3, x)
            init = _mse(model(xi), ui)
            bc = _periodic(model, d1, xl, xr)
            distill = _mse(d1(xd)[:, None, :], jd)
            w = TRANSFER_W
            loss = w["pde"] * pde + w["init"] * init + w["bc"] * bc + distill
            opt_p.zero_grad()
            loss.backward()
            opt_p.step()

    paper()
    ours_s, paper_s, each = timed(ours, train_threads(cfg, model_cfg["width"]), paper, repeats)
    return {
        "ours_kdv1000_step_s": ours_s / steps,
        "ours_kdv1000_1_core_step_s": each.get("ours_1_core", ours_s) / steps,
        "paper_style_kdv1000_step_s": paper_s / steps,
        "kdv1000_step_timings_s": {k: v / steps for k, v in each.items()},
        "kdv1000_batches": sizes,
    }


# -- NCL teacher step -----------------------------------------------------------------------
def _ncl_problem(n: int):
    from derlhybrid.transfer.euler_ball import teacher_problem

    return teacher_problem(n, n, n)


def _ncl_config(model_cfg: dict, batch: int):
    from derlhybrid.transfer.euler_ball import teacher_config

    return teacher_config(batch_size=batch, model={**model_cfg, "dtype": "float64"})


def ncl(repeats: int, steps: int, compile_: bool, model_cfg: dict, batch: int, n: int) -> dict:
    ours, warm = {}, {}
    for name, comp in [("ours", False), ("ours_compiled", True)][: 1 + compile_]:
        cfg = _ncl_config(model_cfg, batch)
        if comp:
            cfg = TrainConfig.from_dict(
                {**cfg.to_dict(), "train": {**cfg.to_dict()["train"], "compile": True}}
            )
        run = TrainingRun(cfg, _ncl_problem(n), torch.device("cpu"), RunExtras())
        ours[name] = _steps(run, steps)
        warm[name] = _warm(f"NCL teacher {name} ({steps} steps)", ours[name])
    cfg = _ncl_config(model_cfg, batch)
    problem = _ncl_problem(n)

    net = build_model(problem, cfg.model, 30)

    def raw(z):
        return net(z[None])[0]

    def antisym(z):
        J = jacrev(raw)(z)[:4]
        return J - J.T

    def field(z):
        dA = jacrev(antisym)(z)  # dA[i, j, k] = ∂_k A_ij
        v = dA.diagonal(dim1=1, dim2=2).sum(-1)  # v_i = Σ_j ∂_j A_ij
        out = torch.cat([v, raw(z)[4:]])
        return out, out

    value = vmap(lambda z: field(z)[0])
    value_and_jac = vmap(jacrev(field, has_aux=True))
    opt_p = torch.optim.Adam(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(30)

    def loader(*tensors):
        return _cycle(DataLoader(TensorDataset(*tensors), batch, shuffle=True, generator=g))

    it_c = loader(problem.sets["train"].X)
    it_i = loader(problem.sets["initial"].X, problem.sets["initial"].targets["output"])
    it_b = loader(problem.sets["boundary"].X)

    def paper():
        for _ in range(steps):
            (x,) = next(it_c)
            xi, vi = next(it_i)
            (xb,) = next(it_b)
            jac, f = value_and_jac(x)  # (B, 5, 4), (B, 5)
            rho, m, p_grad = f[:, 0], f[:, 1:4], jac[:, 4, 1:4]
            rho_t, m_t = jac[:, 0, 0], jac[:, 1:4, 0]
            grad_rho, dm = jac[:, 0, 1:4], jac[:, 1:4, 1:4]
            r = rho[:, None]
            mom = (
                r * r * m_t
                - (rho * rho_t)[:, None] * m
                + r * torch.einsum("bij,bj->bi", dm, m)
                - m * (grad_rho * m).sum(-1, keepdim=True)
                + r * r * p_grad
            )
            div = rho * rho_t + (grad_rho * m).sum(-1)
            init = _mse(value(xi)[:, :4], vi)
            n_b = xb[:, 1:4] / xb[:, 1:4].norm(dim=-1, keepdim=True)
            bc = _mse((value(xb)[:, 1:4] * n_b).sum(-1))
            w = NCL_W
            loss = (
                w["momentum"] * _mse(mom)
                + w["divergence"] * _mse(div)
                + w["bc"] * bc
                + w["init"] * init
            )
            opt_p.zero_grad()
            loss.backward()
            opt_p.step()

    with_threads(paper, 1)()  # warm-up
    # the paper style takes over a minute a step at full size: timed once, on one thread
    # (torch's default threads measured no faster: 80 s against 78 s)
    ours_s, paper_s, each = timed(
        ours, train_threads(cfg, model_cfg["width"]), paper, repeats, peer_repeats=1
    )
    return {
        "ours_ncl_step_s": ours_s / steps,
        "paper_style_ncl_step_s": paper_s / steps,
        "ncl_step_timings_s": {k: v / steps for k, v in each.items()},
    }


# -- peak memory (a child process per workload) ---------------------------------------------
def _memory_child(which: str, path: str, size: str) -> None:
    sz = SIZES[size]
    torch.set_num_threads(1)
    if which == "kdv1000":
        cfg = _config(
            path,
            sz["kdv_model"],
            {"mode": "pinn", "weights": TRANSFER_W},
            batch_size=sz["kdv1000_batch"],
            condition_batch_size=sz["kdv1000_batch"],
            lr=1e-3,
        )
        run = TrainingRun(
            cfg,
            transfer_problem(Path(path)),
            torch.device("cpu"),
            _transfer_extras(sz["kdv1000_batch"]),
        )
    else:
        cfg = _ncl_config(sz["ncl_model"], sz["ncl_batch"])
        run = TrainingRun(
            cfg, _ncl_problem(sz["memory_ncl_points"]), torch.device("cpu"), RunExtras()
        )
    _steps(run, 3)()
    # VmHWM: this process's peak resident set (ru_maxrss would include the parent's, which
    # Linux carries across fork and exec)
    status = Path("/proc/self/status")
    if status.exists():
        hwm = next(ln for ln in status.read_text().splitlines() if ln.startswith("VmHWM:"))
        peak_mb = int(hwm.split()[1]) / 1024
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_rss_mb": peak_mb}))


def peak_memory(which: str, path: Path | None, size: str) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", which, str(path or ""), size],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_rss_mb"]


def _split(each: dict, peer_s: float, unit: str, scale: float) -> str:
    """Every timing of one measurement with its ratio to the (faster) peer."""
    return ", ".join(f"{k} {v * scale:.3g} {unit} ({peer_s / v:.2f}×)" for k, v in each.items())


def _report(title: str, ours_s: float, peer_s: float, each: dict, target: float, unit="ms"):
    scale = 1e3 if unit == "ms" else 1.0
    print(
        f"{title}: ours {ours_s * scale:.3g} {unit}, paper style {peer_s * scale:.3g} {unit} "
        f"→ {peer_s / ours_s:.2f}× (target ≥ {target:g}×)"
    )
    print("  " + _split(each, peer_s, unit, scale))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, seconds (CI)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--kdv-steps", type=int, default=50)
    ap.add_argument("--transfer-steps", type=int, default=10)
    ap.add_argument("--ncl-steps", type=int, default=1)
    ap.add_argument("--data", type=Path, default=None, help="directory for the datasets")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="cores both sides may use (torch's threads; the trainer's workers)",
    )
    ap.add_argument(
        "--no-compile", action="store_true", help="time the eager trainer only (no torch.compile)"
    )
    ap.add_argument(
        "--ncl-compile",
        action="store_true",
        help="also time the NCL teacher compiled (its graph compiles for many minutes)",
    )
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory children")
    ap.add_argument(
        "--only",
        nargs="+",
        choices=WORKLOADS,
        help="measure only these (the JSON line then lacks the others' keys)",
    )
    ap.add_argument("--memory-child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        _memory_child(*args.memory_child)
        return
    size = "smoke" if args.smoke else "full"
    sz = SIZES[size]
    if args.smoke:
        args.repeats, args.kdv_steps, args.transfer_steps, args.ncl_steps = 1, 3, 2, 1
        args.no_compile = True
    if args.threads:
        torch.set_num_threads(args.threads)
        CORES[0] = args.threads
    tmp = None
    if args.data is None:
        tmp = tempfile.TemporaryDirectory()
        args.data = Path(tmp.name)
    args.data.mkdir(parents=True, exist_ok=True)
    compile_ = not args.no_compile
    only = set(args.only or WORKLOADS)
    if args.no_memory:
        only.discard("memory")
    result: dict = {"smoke": args.smoke}
    if "pendulum" in only:
        pend = pendulum(dataset(args.data, "pendulum", sz["pendulum"]), args.repeats, compile_)
        _report(
            f"pendulum DERL epoch ({pend['n_train']} samples, batch 64)",
            pend["ours_epoch_s"],
            pend["paper_style_epoch_s"],
            pend["pendulum_timings_s"],
            5,
            unit="s",
        )
        result.update(pend, epoch_ratio=pend["paper_style_epoch_s"] / pend["ours_epoch_s"])
    kdv_path = dataset(args.data, "kdv", sz["kdv"]) if only - {"pendulum", "ncl"} else None
    if "kdv" in only:
        k = kdv(kdv_path, args.repeats, args.kdv_steps, compile_, sz["kdv_model"])
        _report(
            "KdV PINN step (batch 64)",
            k["ours_kdv_step_s"],
            k["paper_style_kdv_step_s"],
            k["kdv_step_timings_s"],
            5,
        )
        result.update(
            k,
            kdv_step_ratio=k["paper_style_kdv_step_s"] / k["ours_kdv_step_s"],
            kdv_distill_cpu_h=k["ours_kdv_step_s"] * KDV_DISTILL_STEPS / 3600,
        )
    if "kdv1000" in only:
        kt = kdv1000(
            kdv_path,
            args.repeats,
            args.transfer_steps,
            compile_,
            sz["kdv_model"],
            sz["kdv1000_batch"],
        )
        _report(
            f"kdv-transfer step (batch {sz['kdv1000_batch']})",
            kt["ours_kdv1000_step_s"],
            kt["paper_style_kdv1000_step_s"],
            kt["kdv1000_step_timings_s"],
            6,
        )
        result.update(
            kt,
            kdv1000_step_ratio=kt["paper_style_kdv1000_step_s"] / kt["ours_kdv1000_step_s"],
            kdv_transfer_cpu_h=kt["ours_kdv1000_1_core_step_s"] * KDV_TRANSFER_STEPS / 3600,
        )
    if "ncl" in only:
        nc = ncl(
            args.repeats,
            args.ncl_steps,
            args.ncl_compile,
            sz["ncl_model"],
            sz["ncl_batch"],
            sz["ncl_points"],
        )
        _report(
            f"NCL teacher step (batch {sz['ncl_batch']})",
            nc["ours_ncl_step_s"],
            nc["paper_style_ncl_step_s"],
            nc["ncl_step_timings_s"],
            5,
        )
        result.update(
            nc,
            ncl_step_ratio=nc["paper_style_ncl_step_s"] / nc["ours_ncl_step_s"],
            ncl_teacher_cpu_h=nc["ours_ncl_step_s"] * NCL_TEACHER_STEPS / 3600,
        )
    if "memory" in only:
        result["kdv_transfer_peak_rss_mb"] = peak_memory(
            "kdv1000", kdv_path or dataset(args.data, "kdv", sz["kdv"]), size
        )
        result["ncl_teacher_peak_rss_mb"] = peak_memory("ncl", None, size)
        print(
            f"peak RSS: kdv-transfer stage {result['kdv_transfer_peak_rss_mb']:.0f} MB, "
            f"NCL teacher {result['ncl_teacher_peak_rss_mb']:.0f} MB"
        )
    costs = [k for k in ("kdv_transfer_cpu_h", "kdv_distill_cpu_h", "ncl_teacher_cpu_h")]
    print(
        "full protocols on one core (target: kdv-transfer ≤ 8 h): "
        + ", ".join(f"{k} {result[k]:.2f}" for k in costs if k in result)
    )
    result.update(
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        machine=platform.processor() or platform.machine(),
        cpus=os.cpu_count(),
        load_average=os.getloadavg(),
        package_version=__version__,
    )
    if tmp is not None:
        tmp.cleanup()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
