"""ODE ensembles: initial states, the :class:`TrajectoryPlan` of a request, its solve chunk
by chunk into a work area (resumable) and the trajectories file written from it, with the
empirical derivatives of each chunk (stencils, the paper's cubic-forward samples, or noisy
samples and an estimator)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..kernels import backends
from ..systems import ODESystem
from .empirical import along_trajectories, cubic_forward_samples, parse_scheme
from .request import DTYPES, GenerateRequest, empirical_method
from .store import ChunkStore, DatasetError, DatasetWriter, check_target
from .writing import common_attrs, progress_bar, split_indices, writer

CHUNK_BYTES = 32 * 2**20  # per output buffer of one generation chunk
H5_CHUNK_BYTES = 2**20  # HDF5 chunk size target


def _initial_states(req: GenerateRequest, system: ODESystem, n: int) -> np.ndarray:
    if req.preset == "paper":
        # the reference code's legacy global RNG (np.random.seed(30)), θ0 vector then ω0
        return system.sample_initial_states(np.random.RandomState(req.seed), n)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(req.seed)))
    return system.sample_initial_states(rng, n)


def _measured(req: GenerateRequest):
    """The estimator of a *measured* empirical set (noisy samples, or a smoothing
    estimator): written to /empirical/{t,states,derivatives}; None otherwise."""
    from .estimators import Estimator, parse_estimator

    if req.empirical is None or req.empirical == "cubic-forward":
        return None
    method = empirical_method(req.empirical)
    if isinstance(method, Estimator):
        return method
    return parse_estimator(req.empirical) if req.noise else None


def _measured_chunk(req, est, t, states, first, dtype) -> dict[str, np.ndarray]:
    """Noisy samples of one chunk (one SeedSequence(seed, spawn_key=(2, i)) per trajectory
    ``i``) and their derivatives estimated trajectory by trajectory, so neither depends on
    the chunking."""
    from .estimators import estimate

    noisy = np.array(states, dtype=np.float64)
    d = np.empty_like(noisy)
    for i in range(noisy.shape[0]):
        if req.noise:
            ss = np.random.SeedSequence(req.seed, spawn_key=(2, first + i))
            noisy[i] += req.noise * np.random.default_rng(ss).standard_normal(noisy[i].shape)
        d[i : i + 1] = estimate(est, noisy[i : i + 1], t)[0]
    return {
        "emp_t": np.broadcast_to(t, noisy.shape[:2]).copy(),
        "emp_y": noisy.astype(dtype, copy=False),
        "emp_dy": d.astype(dtype, copy=False),
    }


def _empirical_chunk(req, emp, n_emp, t, states, first, dtype) -> dict[str, np.ndarray]:
    """Empirical derivatives of one chunk of trajectories (``first`` = its first index)."""
    if emp is None:
        return {}
    est = _measured(req)
    if est is not None:
        return _measured_chunk(req, est, t, states, first, dtype)
    if emp[0] != "cubic-forward":
        d = along_trajectories(states, t, scheme=emp[0], accuracy=emp[1])
        return {"empirical": d.astype(dtype, copy=False)}
    taus, ys, dys = [], [], []
    for i in range(states.shape[0]):  # one seed per trajectory: independent of the chunking
        ss = np.random.SeedSequence(req.seed, spawn_key=(1, first + i))
        tau, y, dy = cubic_forward_samples(
            t, states[i : i + 1], np.random.default_rng(ss), n_emp, req.fd_step
        )
        taus.append(tau[0])
        ys.append(y[0])
        dys.append(dy[0])
    return {
        "emp_t": np.array(taus),
        "emp_y": np.array(ys).astype(dtype),
        "emp_dy": np.array(dys).astype(dtype),
    }


@dataclass
class TrajectoryPlan:
    """What an ODE-ensemble generation decides before solving anything: the backend, the
    saved times, every initial state, the chunking and the file's attributes. The
    single-process path and the shards of :mod:`derlhybrid.scale` build the same plan from
    the same request, so they compute the same numbers (no operation of the solver mixes
    trajectories, and the empirical samples of trajectory ``i`` come from its own seed)."""

    req: GenerateRequest
    system: ODESystem
    backend: str
    t: np.ndarray
    y0: np.ndarray
    chunk: int
    h5rows: int
    lanes: bool
    attrs: dict[str, Any]
    emp: tuple[str, int] | None
    n_emp: int

    @property
    def n(self) -> int:
        return self.y0.shape[0]

    @property
    def dtype(self):
        return DTYPES[self.req.dtype]

    def chunks(self, rows: tuple[int, int]) -> list[tuple[int, int]]:
        """The row ranges of the chunks of ``rows`` (the whole ensemble: ``(0, n)``)."""
        a, b = rows
        c = min(self.chunk, b - a)
        return [(s, min(b, s + c)) for s in range(a, b, c)]


@dataclass(frozen=True)
class RowDataset:
    """A dataset with one row per trajectory: its name in the file, the array of a
    work-area chunk that fills it (``None``: the initial states), the shape of one row, its
    dtype and attributes, and whether it is chunked by whole trajectories."""

    name: str
    source: str | None
    row_shape: tuple[int, ...]
    dtype: Any
    attrs: dict[str, Any]
    trajectory_chunks: bool = False

    def create(self, w: DatasetWriter, plan: TrajectoryPlan, n_rows: int, data=None):
        chunks = None
        if self.trajectory_chunks:
            chunks = (max(1, min(plan.h5rows, n_rows)), *self.row_shape)
        if data is not None:
            return w.create(self.name, None, data=data, attrs=self.attrs)
        return w.create(
            self.name, (n_rows, *self.row_shape), self.dtype, chunks=chunks, attrs=self.attrs
        )


def plan_trajectories(
    req: GenerateRequest, system: ODESystem, backend: str | None = None
) -> TrajectoryPlan:
    """The plan of an ODE-ensemble request (``backend``: one already resolved elsewhere,
    e.g. by the driver of a sharded run)."""
    from ..kernels._julia import ENSEMBLE_PROVENANCE, JULIA_ODE_SYSTEMS  # constants: no Julia

    if backend is None:
        backend = backends.resolve(req.backend)
        if backend == "julia" and system.name not in JULIA_ODE_SYSTEMS:
            requested = req.backend or os.environ.get(backends.ENV_VAR, "auto")
            if requested == "julia":
                raise backends.BackendUnavailable(
                    f"the julia backend has no ODE solver for {system.name!r} (it solves "
                    f"{', '.join(JULIA_ODE_SYSTEMS)}); use backend python"
                )
            backend = "python"  # auto: the embedded default solves every ODE system
    n = req.n_trajectories or 1000
    t_end = req.t_end if req.t_end is not None else getattr(system, "t_end_default", 10.0)
    n_t = req.n_times or 1001
    t = np.linspace(0.0, t_end, n_t)
    ns = system.n_state
    dtype = DTYPES[req.dtype]
    itemsize = np.dtype(dtype).itemsize
    chunk = req.chunk_trajectories or max(1, CHUNK_BYTES // (n_t * ns * 8))
    chunk = min(chunk, n)
    h5rows = max(1, min(chunk, H5_CHUNK_BYTES // (n_t * ns * itemsize)))
    y0 = _initial_states(req, system, n)
    # The SIMD lane path whenever the system has a vector field on lanes (the pendulum:
    # ~1.3-2.5x the throughput). Its driver compiles once per machine (~11 s, the scalar
    # one ~4 s; cached on disk by kernels/_jitcache.py) and later processes load it in
    # ~0.2 s, so it pays off from the first chunk (docs/ode.md, "Compile cost").
    lanes = backend == "python" and system.rhs_lanes_kernel is not None
    generator = {
        "method": (
            "DOP853 (Dormand–Prince 8(5,3)), per-trajectory adaptive steps, "
            "7th-order dense output at the saved times"
            + (", 16 trajectories per thread in lockstep over SIMD lanes" if lanes else "")
        ),
        "rtol": req.rtol,
        "atol": req.atol,
        "t_end": t_end,
        "n_times": n_t,
        "chunk_trajectories": chunk,
        "initial_state_sampler": (
            "numpy RandomState(seed), θ0 vector then ω0 (paper.md §3.2)"
            if req.preset == "paper"
            else "numpy Generator(PCG64(SeedSequence(seed)))"
        ),
    }
    if backend == "julia":  # its own solver and step controller, recorded as such
        generator.update(ENSEMBLE_PROVENANCE)
    attrs = common_attrs(req, system, generator, backend)
    attrs["state_names"] = list(system.state_names)
    emp = None if req.empirical is None else ("measured", 0)
    if req.empirical is not None and _measured(req) is None:  # emp is not None
        emp = parse_scheme(req.empirical)
    n_emp = req.n_empirical_samples or (n_t - 1)
    if emp is not None and emp[0] == "measured":
        est = _measured(req)
        assert est is not None  # emp is "measured" only where _measured(req) is set
        n_emp = n_t
        generator["empirical"] = {
            "samples": "the saved states + N(0, noise²) per entry (initial states, the "
            "network inputs, stay exact), one SeedSequence(seed, spawn_key=(2, i)) per "
            "trajectory",
            "noise": req.noise,
            "estimator": {**est.describe(), "spec": est.spec()},
            "estimated": "per trajectory (data-driven choices: per trajectory)",
        }
    elif emp is not None:
        generator["empirical"] = (
            {
                "scheme": "cubic interpolant (scipy interp1d), forward difference",
                "h": req.fd_step,
                "samples_per_trajectory": n_emp,
                "times": "U(0, t_end - h), one SeedSequence(seed, spawn_key=(1, i)) per trajectory",
            }
            if emp[0] == "cubic-forward"
            else {
                "scheme": emp[0],
                "accuracy": emp[1],
                "boundary": "one-sided",
                "of": "the saved states, along time",
            }
        )
    return TrajectoryPlan(req, system, backend, t, y0, chunk, h5rows, lanes, attrs, emp, n_emp)


def row_datasets(plan: TrajectoryPlan) -> list[RowDataset]:
    """The per-trajectory datasets of a trajectories file, in the order they are written."""
    n_t, ns, dtype, names = plan.t.size, plan.system.n_state, plan.dtype, plan.system.state_names
    rows = [
        RowDataset("trajectories/initial_states", None, (ns,), "f8", {"columns": list(names)}),
        RowDataset(
            "trajectories/states", "states", (n_t, ns), dtype, {"columns": list(names)}, True
        ),
        RowDataset(
            "trajectories/derivatives",
            "derivatives",
            (n_t, ns),
            dtype,
            {"meaning": "vector field f(t, y) at each saved state"},
            True,
        ),
        RowDataset(
            "trajectories/status",
            "status",
            (),
            "i1",
            {"meaning": "0 ok; else the solver's failure code"},
        ),
        RowDataset("trajectories/n_steps", "n_steps", (), "i4", {}),
    ]
    if plan.emp is not None and plan.emp[0] not in ("cubic-forward", "measured"):
        rows.append(
            RowDataset(
                "trajectories/empirical_derivatives",
                "empirical",
                (n_t, ns),
                dtype,
                {"scheme": plan.req.empirical},
                True,
            )
        )
    elif plan.emp is not None:
        m = plan.n_emp
        rows += [
            RowDataset("empirical/t", "emp_t", (m,), "f8", {}),
            RowDataset("empirical/states", "emp_y", (m, ns), dtype, {}),
            RowDataset(
                "empirical/derivatives",
                "emp_dy",
                (m, ns),
                dtype,
                {"scheme": "cubic-forward", "h": plan.req.fd_step}
                if plan.emp[0] == "cubic-forward"
                else {"estimator": plan.req.empirical, "noise": plan.req.noise},
            ),
        ]
    return rows


def solve_rows(
    plan: TrajectoryPlan, work: ChunkStore, rows: tuple[int, int], progress: bool = False
) -> None:
    """Solve the trajectories ``rows`` chunk by chunk into ``work``, skipping finished
    chunks (chunk ``k`` of ``work`` is the ``k``-th chunk of ``rows``)."""
    from ..kernels.ode import EnsembleResult, solve_ensemble

    req, system, t = plan.req, plan.system, plan.t
    ranges = plan.chunks(rows)
    pending = work.pending(len(ranges))
    chunk = ranges[0][1] - ranges[0][0]
    buf_s = np.empty((chunk, t.size, system.n_state))
    buf_d = np.empty((chunk, t.size, system.n_state))
    p = system.param_vector()
    total = rows[1] - rows[0]
    todo = sum(ranges[k][1] - ranges[k][0] for k in pending)
    bar = progress_bar(total, total - todo, system.name, progress)
    for k in pending:
        a, b = ranges[k]
        m = b - a
        if plan.backend == "julia":  # pragma: no cover - needs Julia
            n_rejected = np.zeros(m, dtype=np.int64)
            n_steps, status = backends.module("julia").solve_ensemble(
                system.name,
                plan.y0[a:b],
                t,
                p,
                req.rtol,
                req.atol,
                buf_s[:m],
                buf_d[:m],
                out_rejected=n_rejected,
            )
            res = EnsembleResult(t, buf_s[:m], buf_d[:m], n_steps, n_rejected, status)
        else:
            res = solve_ensemble(
                system.rhs_kernel,
                plan.y0[a:b],
                t,
                p,
                rtol=req.rtol,
                atol=req.atol,
                out_states=buf_s[:m],
                out_derivatives=buf_d[:m],
                rhs_lanes=system.rhs_lanes_kernel if plan.lanes else None,
            )
        failed = res.failed
        if failed.size and not req.allow_failures:
            i = int(failed[0])
            raise DatasetError(
                f"{res.message(i).replace(f'trajectory {i}', f'trajectory {a + i}')} "
                f"(initial state {plan.y0[a + i].tolist()}); {failed.size} failed in chunk "
                f"{k}. Loosen rtol/atol or shorten t_end (allow_failures = true keeps NaN rows "
                "with their status)"
            )
        extra = _empirical_chunk(req, plan.emp, plan.n_emp, t, buf_s[:m], a, plan.dtype)
        work.save(
            k,
            **extra,
            states=buf_s[:m].astype(plan.dtype, copy=False),
            derivatives=buf_d[:m].astype(plan.dtype, copy=False),
            status=res.status.astype(np.int8),
            n_steps=res.n_steps.astype(np.int32),
        )
        if bar is not None:
            bar.update(m)
    if bar is not None:
        bar.close()


def write_rows(
    plan: TrajectoryPlan, w: DatasetWriter, work: ChunkStore, rows: tuple[int, int]
) -> None:
    """The per-trajectory datasets of ``rows`` (of length ``b - a``), filled from the
    chunks of ``work``."""
    a0, b0 = rows
    for spec in row_datasets(plan):
        if spec.source is None:
            spec.create(w, plan, b0 - a0, data=plan.y0[a0:b0])
            continue
        ds = spec.create(w, plan, b0 - a0)
        for k, (a, b) in enumerate(plan.chunks(rows)):
            ds[a - a0 : b - a0] = work.load(k, spec.source)


def write_meta(plan: TrajectoryPlan, w: DatasetWriter) -> None:
    """The datasets of a trajectories file that are not per trajectory: times and splits."""
    w.create("trajectories/t", None, data=plan.t, attrs={"unit": "s"})
    for name, idx in split_indices(plan.n, plan.req.split).items():
        w.create(
            f"splits/{name}",
            None,
            data=idx.astype(np.int64),
            attrs={"unit": "trajectory index"},
        )


def generate_trajectories(
    req: GenerateRequest, system: ODESystem, progress: bool, finalize=None
) -> Path:
    plan = plan_trajectories(req, system)
    check_target(Path(req.out), req.overwrite)
    work = ChunkStore(req.out, req.as_config(), overwrite=req.overwrite)
    rows = (0, plan.n)
    solve_rows(plan, work, rows, progress)
    with writer(req, "trajectories", plan.attrs) as w:
        write_meta(plan, w)
        write_rows(plan, w, work, rows)
        if finalize is not None:
            finalize(w)
    work.remove()
    return Path(req.out)
