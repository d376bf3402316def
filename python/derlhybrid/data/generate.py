"""Generation pipeline: system → kernels → HDF5, streamed chunk by chunk.

:func:`generate` takes a :class:`GenerateRequest` (what ``derl generate`` parses) and writes
one dataset file through :class:`~derlhybrid.data.store.DatasetWriter`: atomically, with
bounded memory, resumable after a kill (rerun the same request), with provenance.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from .._typecheck import check_fields
from ..kernels import backends, derivative
from ..systems import FieldSystem, ODESystem, get_system
from .empirical import along_trajectories, cubic_forward_samples, on_grid, parse_scheme
from .store import (
    ChunkStore,
    DatasetError,
    DatasetWriter,
    check_target,
    output_lock,
    partial_path,
)

DTYPES = {"float64": np.float64, "float32": np.float32}
CHUNK_BYTES = 32 * 2**20  # per output buffer of one generation chunk
H5_CHUNK_BYTES = 2**20  # HDF5 chunk size target


@dataclass
class GenerateRequest:
    """Everything a generation needs; validated by :meth:`validate` (one-line errors)."""

    system: str
    out: str
    params: dict[str, Any] = field(default_factory=dict)
    n_trajectories: int | None = None
    n_points: int | None = None
    n_parameter_sets: int | None = None
    n_boundary: int | None = None
    seed: int | None = None  # None: 0, or the preset's own seed (30 for most of the paper's)
    t_end: float | None = None
    n_times: int | None = None
    rtol: float = 1e-10
    atol: float = 1e-10
    backend: str | None = None
    dtype: str = "float64"
    overwrite: bool = False
    compression: str = "gzip"
    chunk_trajectories: int | None = None
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)
    allow_failures: bool = False
    preset: str | None = None
    empirical: str | None = None
    method: str | None = None
    fd_step: float = 1e-3
    n_empirical_samples: int | None = None
    #: measurement noise: σ of Gaussian noise on the sampled states that the empirical set
    #: (``empirical`` = a stencil or an estimator of data.estimators) is estimated from
    noise: float = 0.0

    def validate(self) -> None:
        _check_types(self)
        if self.dtype not in DTYPES:
            raise ValueError(f"--dtype must be float32 or float64, got {self.dtype!r}")
        for name in ("rtol", "atol"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise ValueError(f"--{name} must be a positive number, got {v!r}")
        if self.n_trajectories is not None and self.n_trajectories < 1:
            raise ValueError(f"--n-trajectories must be >= 1, got {self.n_trajectories}")
        for name in ("n_points", "n_parameter_sets", "n_boundary"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {v!r}")
        if self.n_times is not None and self.n_times < 2:
            raise ValueError(f"--n-times must be >= 2, got {self.n_times}")
        if self.t_end is not None and not (math.isfinite(self.t_end) and self.t_end > 0):
            raise ValueError(f"--t-end must be a positive number, got {self.t_end!r}")
        if self.chunk_trajectories is not None and self.chunk_trajectories < 1:
            raise ValueError("chunk_trajectories must be >= 1")
        if len(self.split) != 3 or min(self.split) < 0 or abs(sum(self.split) - 1) > 1e-9:
            raise ValueError(f"split fractions must be 3 non-negatives summing to 1: {self.split}")
        if self.seed is not None and not 0 <= self.seed < 2**63:
            raise ValueError(f"--seed must be an integer in [0, 2**63), got {self.seed}")
        if self.empirical is not None:
            _empirical_method(self.empirical)
        if not (isinstance(self.noise, int | float) and 0 <= self.noise < math.inf):
            raise ValueError(f"noise must be a non-negative number, got {self.noise!r}")
        if self.noise and (self.empirical is None or self.empirical == "cubic-forward"):
            raise ValueError(
                "noise needs an empirical estimator of the noisy samples (e.g. "
                "empirical = 'savgol' or 'forward:1'), not cubic-forward"
            )
        if not (isinstance(self.fd_step, int | float) and 0 < self.fd_step < math.inf):
            raise ValueError(f"--fd-step must be a positive number, got {self.fd_step!r}")
        if not str(self.out):
            raise ValueError("--out FILE is required")

    def as_config(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("overwrite")
        d.pop("out")
        if not d["noise"]:  # absent when off: config hashes of earlier requests unchanged
            d.pop("noise")
        d["split"] = list(self.split)
        return d


def _empirical_method(text: str):
    """A stencil/cubic-forward scheme ``(scheme, accuracy)`` or an estimator object of
    :mod:`derlhybrid.data.estimators` (savgol, spline, trend…)."""
    from .estimators import ESTIMATORS, parse_estimator

    if str(text).partition(":")[0] in ESTIMATORS:
        return parse_estimator(text)
    return parse_scheme(text)


def _measured(req: GenerateRequest):
    """The estimator of a *measured* empirical set (noisy samples, or a smoothing
    estimator): written to /empirical/{t,states,derivatives}; None otherwise."""
    from .estimators import Estimator, parse_estimator

    if req.empirical is None or req.empirical == "cubic-forward":
        return None
    method = _empirical_method(req.empirical)
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


def _check_types(req: GenerateRequest) -> None:
    """Refuse a value of the wrong type before anything is done with it (a TOML string
    ``"false"`` is not false: it is truthy; ``"20"`` is not 20)."""
    values = {f.name: getattr(req, f.name) for f in dataclasses.fields(req)}
    check_fields(GenerateRequest, values, "generate")


def request_from_cli(args) -> GenerateRequest:
    """Build a request from ``derl generate`` options and/or a TOML ``--config`` file."""
    from ..systems import parse_params

    values: dict[str, Any] = {}
    if args.config:
        from .._tables import read_toml

        values = read_toml(args.config, "--config", ValueError)
        known = {f.name for f in dataclasses.fields(GenerateRequest)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"--config {args.config}: unknown key {unknown[0]!r}; "
                f"keys: {', '.join(sorted(known))}"
            )
        if not isinstance(values.get("params", {}), dict):
            raise ValueError(
                f"--config {args.config}: params must be a table ([params] name = value), "
                f"got {values['params']!r}"
            )
        values["params"] = {k: str(v) for k, v in values.get("params", {}).items()}
    for f in dataclasses.fields(GenerateRequest):  # every option the command line has
        v = getattr(args, f.name, None)
        if v is not None and f.name not in ("params", "overwrite"):
            values[f.name] = v
    if args.param:
        values["params"] = {**values.get("params", {}), **parse_params(args.param)}
    if args.overwrite:
        values["overwrite"] = True
    if not values.get("system"):
        raise ValueError("give a SYSTEM (e.g. `derl generate pendulum --out p.h5`) or --config")
    if not values.get("out"):
        raise ValueError("--out FILE is required")
    if isinstance(values.get("split"), list):
        values["split"] = tuple(values["split"])
    return GenerateRequest(**values)


def _progress(total: int, initial: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit="traj",
        unit_scale=True,
        dynamic_ncols=True,
        file=sys.stderr,
    )


def _splits(n: int, fractions) -> dict[str, np.ndarray]:
    n_train = round(fractions[0] * n)
    n_val = round(fractions[1] * n)
    idx = np.arange(n)
    return {
        "train": idx[:n_train],
        "val": idx[n_train : n_train + n_val],
        "test": idx[n_train + n_val :],
    }


def generate(req: GenerateRequest, *, progress: bool = True) -> Path:
    """Run a generation request; returns the path of the completed file.

    Everything that can be checked without solving is checked before the work folder
    exists; the run holds an exclusive lock on the output for its whole length (a second
    run on the same ``--out`` stops at once); a failed run that finished no chunk leaves no
    work folder behind; nothing at the final name changes unless the run completes."""
    req.validate()
    system = get_system(req.system, req.params)
    if req.preset is None and req.seed is None:
        req = dataclasses.replace(req, seed=0)
    out = Path(req.out)
    check_target(out, req.overwrite)
    with output_lock(out):
        existed = partial_path(out).exists()
        try:
            if req.preset is not None:
                from .presets import apply_preset

                return apply_preset(req, system, progress=progress)
            return generate_for(req, system, progress=progress)
        except BaseException:
            _discard_new_empty_work(out, existed)
            raise


def _discard_new_empty_work(out: Path, existed: bool) -> None:
    """After a failure: remove the ``.partial`` folder this run created if it holds no
    finished chunk (a folder that existed before, or finished work, is kept for a resume)."""
    work = partial_path(out)
    if not existed and work.is_dir() and not any(work.glob("chunk*.done")):
        import shutil

        shutil.rmtree(work, ignore_errors=True)


def generate_for(
    req: GenerateRequest,
    system,
    *,
    progress: bool = True,
    design: PointDesign | None = None,
    finalize=None,
) -> Path:
    """Dispatch on the kind of system (what :func:`generate` and the presets call).
    ``finalize(writer)`` adds datasets before the file is completed."""
    if isinstance(system, ODESystem):
        return _generate_trajectories(req, system, progress, finalize)
    layout = getattr(system, "data_layout", None)  # declared by the system, not its name
    if isinstance(system, FieldSystem) and layout == "grid":
        return _generate_grid(req, system, progress, finalize)
    if isinstance(system, FieldSystem) and layout == "points" and system.has_exact:
        return _generate_points(req, system, design, finalize)
    if isinstance(system, FieldSystem) and layout == "ball":
        return _generate_ball(req, system)
    raise ValueError(f"generation of {req.system!r} data is not available yet")


def _initial_states(req: GenerateRequest, system: ODESystem, n: int) -> np.ndarray:
    if req.preset == "paper":
        # the reference code's legacy global RNG (np.random.seed(30)), θ0 vector then ω0
        return system.sample_initial_states(np.random.RandomState(req.seed), n)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(req.seed)))
    return system.sample_initial_states(rng, n)


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
                    f"{', '.join(JULIA_ODE_SYSTEMS)}); use --backend python"
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
    attrs = _common_attrs(req, system, generator, backend)
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
    bar = _progress(total, total - todo, system.name, progress)
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
                f"{k}. Loosen --rtol/--atol or shorten --t-end (allow_failures=true in a "
                "--config keeps NaN rows with their status)"
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
    for name, idx in _splits(plan.n, plan.req.split).items():
        w.create(
            f"splits/{name}",
            None,
            data=idx.astype(np.int64),
            attrs={"unit": "trajectory index"},
        )


def _generate_trajectories(
    req: GenerateRequest, system: ODESystem, progress: bool, finalize=None
) -> Path:
    plan = plan_trajectories(req, system)
    check_target(Path(req.out), req.overwrite)
    work = ChunkStore(req.out, req.as_config(), overwrite=req.overwrite)
    rows = (0, plan.n)
    solve_rows(plan, work, rows, progress)
    with _writer(req, "trajectories", plan.attrs) as w:
        write_meta(plan, w)
        write_rows(plan, w, work, rows)
        if finalize is not None:
            finalize(w)
    work.remove()
    return Path(req.out)


def _writer(req: GenerateRequest, layout: str, attrs: dict) -> DatasetWriter:
    """The atomic HDF5 writer of a request (final name, overwrite, compression)."""
    return DatasetWriter(
        req.out,
        layout=layout,
        attrs=attrs,
        config=req.as_config(),
        overwrite=req.overwrite,
        compression=req.compression,
    )


def _common_attrs(req: GenerateRequest, system, generator: dict, backend: str) -> dict:
    return {
        "system": system.name,
        "system_parameters": system.params(),
        "generator": generator,
        "backend": backend,
        "package_version": __version__,
        "seed": req.seed,
        "dtype": req.dtype,
    }


@dataclass
class PointDesign:
    """Where a pointwise file samples a closed-form system: coordinates shared by every
    parameter set, the parameter sets of a family, splits (of points, or of parameter sets
    for a family), boundary resolution, extra point sets (``variants``) and a description."""

    points: np.ndarray
    psets: np.ndarray | None
    splits: dict[str, np.ndarray]
    generator: dict[str, Any]
    n_boundary: int = 101
    variants: dict[str, np.ndarray] = field(default_factory=dict)
    extra_psets: dict[str, np.ndarray] = field(default_factory=dict)


def default_point_design(req: GenerateRequest, system: FieldSystem) -> PointDesign:
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(req.seed)))
    n_pts = req.n_points or 1000
    box = system.domain()
    lo = np.array([box[c][0] for c in system.coordinates])
    hi = np.array([box[c][1] for c in system.coordinates])
    pts = lo + (hi - lo) * rng.random((n_pts, lo.size))
    generator = {"sampler": f"{n_pts} points uniform in the coordinate box (PCG64)"}
    psets = None
    if system.parameter_inputs:
        n_sets = req.n_parameter_sets or 10
        plo = np.array([box[c][0] for c in system.parameter_inputs])
        phi = np.array([box[c][1] for c in system.parameter_inputs])
        psets = plo + (phi - plo) * rng.random((n_sets, plo.size))
        splits = _splits(n_sets, req.split)
        generator["parameter_sets"] = f"{n_sets} uniform draws; the same points for every set"
    else:
        splits = _splits(n_pts, req.split)
    return PointDesign(pts, psets, splits, generator, req.n_boundary or 101)


def _with_params(system: FieldSystem, pts: np.ndarray, psets: np.ndarray | None) -> np.ndarray:
    """Rows (coordinates, parameters) for every parameter set, columns in ``inputs`` order."""
    if psets is None:
        X = pts
    else:
        X = np.concatenate([np.tile(pts, (len(psets), 1)), np.repeat(psets, len(pts), 0)], 1)
    order = list(system.coordinates + system.parameter_inputs)
    return X[:, [order.index(c) for c in system.inputs]]


def _write_point_set(w, group: str, system: FieldSystem, X: np.ndarray, dtype) -> None:
    w.create(f"{group}/inputs", None, data=X.astype(dtype), attrs={"columns": list(system.inputs)})
    w.create(
        f"{group}/outputs",
        None,
        data=system.exact(X).astype(dtype),
        attrs={"columns": list(system.outputs)},
    )
    w.create(
        f"{group}/jacobian",
        None,
        data=system.jacobian(X).astype(dtype),
        attrs={"axes": "point, output, coordinate", "columns": list(system.coordinates)},
    )
    for name, fn in (("hessian", system.hessian), ("forcing", system.forcing)):
        try:
            w.create(f"{group}/{name}", None, data=fn(X).astype(dtype))
        except NotImplementedError:
            pass


def _generate_points(
    req: GenerateRequest, system: FieldSystem, design: PointDesign | None = None, finalize=None
) -> Path:
    """Pointwise training file of a system with a closed-form solution: inputs, outputs,
    Jacobians, Hessians (and forcing), boundary data, splits (by parameter set for
    parametric families, by point otherwise)."""
    design = design or default_point_design(req, system)
    dtype = DTYPES[req.dtype]
    measured = _measured_grid(req, system, design)  # checked before any file exists
    n_pts = len(design.points)
    X = _with_params(system, design.points, design.psets)
    if design.psets is None:
        splits = design.splits
    else:  # a split of parameter sets → the rows of those sets
        splits = {
            k: (np.asarray(v)[:, None] * n_pts + np.arange(n_pts)).ravel()
            for k, v in design.splits.items()
        }
    generator = {**design.generator, "derivatives": "closed form (exact)"}
    attrs = _common_attrs(req, system, generator, "python")
    attrs["inputs"], attrs["outputs"] = list(system.inputs), list(system.outputs)
    attrs["derivative_inputs"] = list(system.coordinates)
    with _writer(req, "points", attrs) as w:
        _write_point_set(w, "points", system, X, dtype)
        for name, idx in splits.items():
            w.create(
                f"splits/{name}",
                None,
                data=np.asarray(idx, np.int64),
                attrs={"unit": "point index"},
            )
        if design.psets is not None:
            w.create(
                "parameters/values",
                None,
                data=design.psets,
                attrs={"columns": list(system.parameter_inputs)},
            )
            for name, idx in design.splits.items():
                w.create(f"parameters/{name}", None, data=np.asarray(idx, np.int64))
        for name, ps in design.extra_psets.items():  # e.g. the paper's fixed test λ values
            w.create(
                f"parameters/{name}_values",
                None,
                data=ps,
                attrs={"columns": list(system.parameter_inputs)},
            )
            _write_point_set(
                w, f"variants/{name}", system, _with_params(system, design.points, ps), dtype
            )
        for name, pts in design.variants.items():
            _write_point_set(
                w, f"variants/{name}", system, _with_params(system, pts, design.psets), dtype
            )
        if len(system.coordinates) == 2:
            B = _with_params(system, system.boundary_points(design.n_boundary), design.psets)
            w.create("boundary/inputs", None, data=B.astype(dtype))
            w.create("boundary/outputs", None, data=system.exact(B).astype(dtype))
        if measured is not None:
            _write_measured_grid(w, req, system, *measured, dtype)
        if finalize is not None:
            finalize(w)
    return Path(req.out)


def _measured_grid(req: GenerateRequest, system: FieldSystem, design: PointDesign):
    """``(estimator, axes)`` of the ``measured`` variant a pointwise request with
    ``noise`` or an ``empirical`` estimator asks for, or None. The field is sampled on the
    design's ``grid`` variant, which must be a tensor-product grid of the coordinates (the
    Allen–Cahn and Kovasznay paper presets have one); derivatives are estimated along each
    grid axis, every grid line a series. Scattered points have no axes to estimate along:
    refused, as are parametric families (one grid per parameter set is not written)."""
    if not req.noise and req.empirical is None:
        return None
    what = f"{system.name}: noise / empirical derivatives"
    if req.empirical is None or req.empirical == "cubic-forward":
        raise ValueError(
            f"{what} need an estimator of the noisy grid samples (e.g. empirical = 'savgol' "
            "or 'central:2'); cubic-forward applies to trajectories"
        )
    grid = design.variants.get("grid")
    if grid is None or system.parameter_inputs or len(system.coordinates) != 2:
        raise ValueError(
            f"{what} are estimated along the axes of a grid of samples: use preset = 'paper' "
            "(its grid variant); not available for parametric families or scattered points"
        )
    axes = [np.unique(grid[:, k]) for k in range(2)]
    mesh = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2)
    if mesh.shape != grid.shape or not np.array_equal(mesh, grid):
        raise ValueError(f"{what}: the design's grid variant is not a tensor-product grid")
    from .estimators import parse_estimator

    return parse_estimator(req.empirical), axes


def _write_measured_grid(w, req, system: FieldSystem, est, axes, dtype) -> None:
    """``/variants/measured``: the grid's exact field plus N(0, noise²) per value (one
    SeedSequence(seed, spawn_key=(3,))), and its gradient estimated from those noisy values
    along each axis (:func:`~derlhybrid.data.estimators.estimate_along`); the forcing is
    the system's (a known source term, not a measurement)."""
    from .estimators import estimate_along

    X = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2)
    u = np.asarray(system.exact(X), dtype=np.float64)  # (N, n_out)
    if req.noise:
        rng = np.random.default_rng(np.random.SeedSequence(req.seed, spawn_key=(3,)))
        u = u + req.noise * rng.standard_normal(u.shape)
    U = u.reshape(*(a.size for a in axes), u.shape[1])
    jac = np.empty((X.shape[0], u.shape[1], 2))
    infos = []
    for k in range(2):
        d, info = estimate_along(est, U, axes[k], axis=k)
        jac[:, :, k] = d.reshape(-1, u.shape[1])
        infos.append(info)
    g = "variants/measured"
    w.create(f"{g}/inputs", None, data=X.astype(dtype), attrs={"columns": list(system.inputs)})
    w.create(
        f"{g}/outputs",
        None,
        data=u.astype(dtype),
        attrs={
            "columns": list(system.outputs),
            "noise": float(req.noise),
            "samples": "the exact field on the grid variant + N(0, noise²) per value "
            "(SeedSequence(seed, spawn_key=(3,)))",
        },
    )
    w.create(
        f"{g}/jacobian",
        None,
        data=jac.astype(dtype),
        attrs={
            "axes": "point, output, coordinate",
            "columns": list(system.coordinates),
            "estimator": json.dumps(
                {c: infos[k] for k, c in enumerate(system.coordinates)}, default=str
            ),
            "of": "the noisy outputs, along each grid axis (every grid line a series)",
        },
    )
    try:
        w.create(f"{g}/forcing", None, data=np.asarray(system.forcing(X)).astype(dtype))
    except NotImplementedError:
        pass


def _generate_ball(req: GenerateRequest, system) -> Path:
    """Collocation sets of the Euler-in-a-ball setting (no ground-truth solution exists):
    interior points, initial points with (ρ0, m0), and sphere points with their normals,
    written in chunks (the paper's sets hold 10⁷ points each)."""
    dtype = DTYPES[req.dtype]
    n = req.n_points or 100_000
    rows = 1_000_000
    generator = {
        "interior": "t ~ U(0, T), x uniform in the ball",
        "initial": "t = 0 exactly (the reference code draws t ~ U(0, 0.01)), x uniform in the ball",
        "boundary": "t ~ U(0, T), x uniform on the sphere; normal = x / radius",
    }
    attrs = _common_attrs(req, system, generator, "python")
    attrs["inputs"], attrs["outputs"] = list(system.inputs), list(system.outputs)
    root = np.random.SeedSequence(req.seed)
    sets = dict(zip(("interior", "initial", "boundary"), root.spawn(3), strict=True))
    with _writer(req, "points", attrs) as w:
        dsets = {
            "interior": w.create(
                "points/inputs",
                (n, 4),
                dtype,
                chunks=(min(n, 65536), 4),
                attrs={"columns": list(system.inputs)},
            ),
            "initial": w.create("initial/inputs", (n, 4), dtype, chunks=(min(n, 65536), 4)),
            "boundary": w.create("boundary/inputs", (n, 4), dtype, chunks=(min(n, 65536), 4)),
        }
        init_out = w.create(
            "initial/outputs",
            (n, 4),
            dtype,
            chunks=(min(n, 65536), 4),
            attrs={"columns": ["rho", "m1", "m2", "m3"]},
        )
        normals = w.create("boundary/normals", (n, 3), dtype, chunks=(min(n, 65536), 3))
        sampler = {
            "interior": system.sample_interior,
            "initial": system.sample_initial,
            "boundary": system.sample_boundary,
        }
        for name, ss in sets.items():
            rng = np.random.default_rng(ss)
            for a in range(0, n, rows):
                b = min(n, a + rows)
                X = sampler[name](rng, b - a)
                dsets[name][a:b] = X
                if name == "initial":
                    init_out[a:b] = system.initial_state(X[:, 1:])
                if name == "boundary":
                    normals[a:b] = X[:, 1:] / system.radius
        w.create(
            "splits/train", None, data=np.arange(n, dtype=np.int64), attrs={"unit": "point index"}
        )
    return Path(req.out)


GRID_BYTES = 128 * 2**20  # per time window of a grid generation (all fields together)


def _spectral_derivatives(u: np.ndarray, period: float, orders=(1, 2, 3)) -> list[np.ndarray]:
    """Fourier derivatives of periodic samples along the last axis (exact for the
    band-limited interpolant; the Nyquist mode is dropped from odd derivatives)."""
    n = u.shape[-1]
    k = 2 * np.pi / period * np.fft.rfftfreq(n, 1.0 / n)
    uh = np.fft.rfft(u, axis=-1)
    out = []
    for m in orders:
        ik = (1j * k) ** m
        if m % 2 and n % 2 == 0:
            ik[-1] = 0.0
        out.append(np.fft.irfft(ik * uh, n=n, axis=-1))
    return out


def _generate_grid(req: GenerateRequest, system, progress: bool, finalize=None) -> Path:
    """PDE fields on a grid, written window by window in time (bounded memory, resumable):
    ``/grid/t``, ``/grid/x`` (``/grid/y``), ``/fields/<u>`` of shape (n_t, n_x[, n_y]) and
    ``/derivatives/<u>_<input>`` of the same shape."""
    from ..kernels import pde

    dtype = DTYPES[req.dtype]
    t_end = system.t_end
    backend = backends.resolve(req.backend)
    if req.method == "exact":
        backend = "python"  # a closed form needs no solver
    if req.noise:
        raise ValueError("noise applies to trajectory (ODE) data only")
    emp = None if req.empirical is None else parse_scheme(req.empirical)
    if emp is not None and emp[0] == "cubic-forward":
        raise ValueError("cubic-forward applies to trajectories; use forward:N/central:N here")
    method_name = req.method
    if system.name == "kdv":
        if req.method not in (None, "etdrk4"):
            raise ValueError(f"kdv: --method must be etdrk4, got {req.method!r}")
        n_x = req.n_points or 400
        n_t = req.n_times or 201
        if n_x < 4:
            raise ValueError(f"kdv: --n-points must be >= 4 (periodic grid points), got {n_x}")
        axes = {"x": pde.periodic_grid(n_x)}
        field_name, inputs = "u", ("t", "x")
        method = "Fourier pseudo-spectral (no duplicated endpoint), ETDRK4, tol = rtol"
    else:
        method_name = req.method or "mol"
        if method_name not in ("mol", "upwind-fv", "exact"):
            raise ValueError(
                f"continuity: --method must be mol, upwind-fv or exact, got {method_name!r}"
            )
        n_x = req.n_points or 301
        n_t = req.n_times or 1001
        L = system.half_size
        axes = {"x": np.linspace(-L, L, n_x), "y": np.linspace(-L, L, n_x)}
        field_name, inputs = "rho", ("t", "x", "y")
        method = {
            "mol": "method of lines, 6th-order central stencils (periodic closure), RK4 at CFL 0.5",
            "upwind-fv": "first-order upwind finite volumes, explicit Euler, dt = 0.001 (the "
            "paper's reference)",
            "exact": "closed form rho(t, x) = rho0(R(-t) x) and its exact derivatives",
        }[method_name]
    t = np.linspace(0.0, t_end, n_t)
    frame = int(np.prod([a.size for a in axes.values()]))
    n_fields = 1 + len(inputs) + (len(inputs) if emp else 0)
    window = max(2, min(n_t, GRID_BYTES // (8 * frame * n_fields)))
    starts = list(range(0, n_t - 1, window - 1))  # windows share their first/last frame
    generator = {
        "method": method,
        "n_times": n_t,
        "t_end": t_end,
        "grid": {k: [float(v[0]), float(v[-1]), int(v.size)] for k, v in axes.items()},
        "derivatives": (
            "spectral (u_x, u_xx, u_xxx), u_t from the PDE"
            if system.name == "kdv"
            else "6th-order stencils in space, rho_t from the PDE"
        ),
    }
    if emp:
        generator["empirical"] = {
            "scheme": emp[0],
            "accuracy": emp[1],
            "of": "the stored field, along each grid axis",
        }
    attrs = _common_attrs(req, system, generator, backend)
    attrs["inputs"], attrs["outputs"] = list(inputs), [field_name]
    check_target(Path(req.out), req.overwrite)
    # the windows are part of the work's identity: a resume with other windows (another
    # GRID_BYTES) would stitch frames of one split into the other
    work = ChunkStore(req.out, {**req.as_config(), "window": window}, overwrite=req.overwrite)
    bar = _progress(n_t, 0, system.name, progress)
    if bar is not None:
        bar.unit = "frame"
    for k, a in enumerate(starts):
        b = min(n_t, a + window)
        if work.done(k):
            if bar is not None:
                bar.update(b - a - (k > 0))
            continue
        tw = t[a:b]
        if system.name == "kdv":
            u0 = system.initial(axes["x"]) if k == 0 else work.load(k - 1, "field")[-1]
            if backend == "julia":  # pragma: no cover - needs Julia
                u = np.empty((tw.size, axes["x"].size))
                backends.module("julia").solve_kdv(system.nu, axes["x"], tw, u0, req.rtol, None, u)
            else:
                u = pde.solve_kdv(system.nu, axes["x"], tw, u0, tol=req.rtol)
            ux, uxx, uxxx = _spectral_derivatives(u, 2.0)
            ders = {"u_t": -(u * ux + system.nu * uxxx), "u_x": ux, "u_xx": uxx, "u_xxx": uxxx}
        elif method_name == "exact":
            T, X, Y = np.meshgrid(tw, axes["x"], axes["y"], indexing="ij")
            P = np.stack([T.ravel(), X.ravel(), Y.ravel()], 1)
            u = system.exact(P).reshape(T.shape)
            jac = system.jacobian(P)[:, 0].reshape(*T.shape, 3)
            ders = {"rho_t": jac[..., 0], "rho_x": jac[..., 1], "rho_y": jac[..., 2]}
        else:
            x, y = axes["x"], axes["y"]
            r0 = system.rho0(x[:, None], y[None, :]) if k == 0 else work.load(k - 1, "field")[-1]
            kw = (
                {"method": "mol", "accuracy": 6}
                if method_name == "mol"
                else {"method": "upwind-fv", "dt": 1e-3}
            )
            if backend == "julia":  # pragma: no cover - needs Julia
                u = np.empty((tw.size, x.size, y.size))
                backends.module("julia").solve_continuity(
                    x, y, tw, r0, kw["method"], 6, 0.5, kw.get("dt"), False, u
                )
            else:
                u = pde.solve_continuity(x, y, tw, r0, **kw)
            hx = x[1] - x[0]
            rx = derivative(u, hx, axis=1, accuracy=6, boundary="one-sided")
            ry = derivative(u, hx, axis=2, accuracy=6, boundary="one-sided")
            X, Y = x[None, :, None], y[None, None, :]
            ders = {"rho_t": Y * rx - X * ry, "rho_x": rx, "rho_y": ry}
        arrays = {"field": u, **{f"d_{n}": v for n, v in ders.items()}}
        if emp:
            for i, name in enumerate(inputs):
                if name == "t":
                    continue  # along time: computed at assembly, over the whole record
                arrays[f"e_{name}"] = on_grid(
                    u,
                    axes[name][1] - axes[name][0],
                    axis=i,
                    scheme=emp[0],
                    accuracy=emp[1],
                    periodic=system.name == "kdv",
                )
        work.save(k, **{n: v.astype(np.float64) for n, v in arrays.items()})
        if bar is not None:
            bar.update(b - a - (k > 0))
    if bar is not None:
        bar.close()
    shape = (n_t, *[a.size for a in axes.values()])
    chunks = (1, *shape[1:])
    with _writer(req, "grid", attrs) as w:
        w.create("grid/t", None, data=t)
        for name, v in axes.items():
            w.create(f"grid/{name}", None, data=v, attrs={"periodic": system.name == "kdv"})
        f_ds = w.create(
            f"fields/{field_name}", shape, dtype, chunks=chunks, attrs={"axes": ", ".join(inputs)}
        )
        names = (
            ["u_t", "u_x", "u_xx", "u_xxx"] if system.name == "kdv" else ["rho_t", "rho_x", "rho_y"]
        )
        d_ds = {n: w.create(f"derivatives/{n}", shape, dtype, chunks=chunks) for n in names}
        e_ds = {}
        if emp:
            for name in inputs:
                e_ds[name] = w.create(
                    f"empirical/{field_name}_{name}",
                    shape,
                    dtype,
                    chunks=chunks,
                    attrs={"scheme": req.empirical},
                )
        for k, a in enumerate(starts):
            b = min(n_t, a + window)
            f_ds[a:b] = work.load(k, "field")
            for n in names:
                d_ds[n][a:b] = work.load(k, f"d_{n}")
            for name in inputs:
                if name != "t" and emp:
                    e_ds[name][a:b] = work.load(k, f"e_{name}")
        if emp:  # along time, window by window with overlaps large enough for the stencil
            _empirical_time(f_ds, e_ds["t"], t, emp, window)
        if finalize is not None:
            finalize(w)
    work.remove()
    return Path(req.out)


def _empirical_time(field_ds, out_ds, t, emp, window) -> None:
    """Empirical ∂/∂t of a stored field, computed in overlapping time windows so that every
    frame gets the same stencil as on the whole record (bounded memory)."""
    from ..kernels import stencil_width

    n_t = len(t)
    # the record's one uniform step (t is a linspace): every window then gets the very
    # weights of a computation over the whole record, bit for bit
    h = (t[-1] - t[0]) / (n_t - 1)
    if not np.allclose(np.diff(t), h, rtol=1e-9, atol=0):  # pragma: no cover - linspace
        raise AssertionError("grid times must be uniform")
    halo = stencil_width(1, emp[1], emp[0], uniform=False)  # ample for every scheme
    step = max(1, window - 2 * halo)
    for a in range(0, n_t, step):
        b = min(n_t, a + step)
        lo, hi = max(0, a - halo), min(n_t, b + halo)
        d = derivative(
            field_ds[lo:hi], h, axis=0, accuracy=emp[1], scheme=emp[0], boundary="one-sided"
        )
        out_ds[a:b] = d[a - lo : a - lo + (b - a)]
