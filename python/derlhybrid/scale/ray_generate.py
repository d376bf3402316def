"""Sharded generation of ODE ensembles on Ray (``derl generate ... --engine ray``).

The trajectories ``0..n`` of a request are cut into ``K`` contiguous shards. Each shard is
one task that builds the request's :class:`~derlhybrid.data.trajectories.TrajectoryPlan` (the
same initial states, times and chunking as the single-process run), solves its rows chunk
by chunk into its own kill-safe work area and writes its own HDF5 shard file atomically
(``<out>.shards/shard-00000-of-00004.h5``, under a unique ``….writing`` name until
complete). The driver then writes ``<out>``: the times, the splits and, for every
per-trajectory dataset, an HDF5 virtual dataset whose rows map the shard files (relative
paths: the folder must stay beside the file), or with ``consolidate`` real datasets copied
from the shards.

Why the result equals the single-process file bit for bit: the initial states come from the
run's one ``Generator(PCG64(SeedSequence(seed)))`` whatever the shard (each task draws all
``n`` and keeps its rows: ~0.1 s per 10⁶), the empirical samples of trajectory ``i`` from
``SeedSequence(seed, spawn_key=(1, i))`` (a child of the run's root sequence keyed by the
trajectory index, not by the shard), and the solver mixes no trajectories (no operation of
``solve_ensemble`` depends on the chunking, the lanes or the threads; ``kernels/ode_lanes.py``).

Resume: a shard file at its final name is complete and is skipped by a rerun of the same
command; a shard killed mid-way restarts from its finished chunks (``.partial/``); a worker
that dies is restarted by Ray and its shard retried the same way.

Julia: with the julia backend each Ray worker process (started fresh by the raylet, never a
fork of the driver, and kept for later tasks) starts Julia once, in the first shard task it
runs, and every later task in that process reuses it (written, not run here: no Julia on
this machine).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._io import write_text_atomic
from ..data.request import GenerateRequest
from ..data.store import (
    SHARD_FORMAT,
    ChunkStore,
    DatasetError,
    DatasetWriter,
    check_target,
    config_hash,
    h5_dataset,
    output_lock,
)
from ..data.trajectories import (
    TrajectoryPlan,
    plan_trajectories,
    row_datasets,
    solve_rows,
    write_meta,
    write_rows,
)
from ..data.writing import progress_bar
from ..systems import ODESystem, get_system

RUN_FILE = "run.json"


@dataclass(frozen=True)
class RayEngine:
    """How a generation runs on Ray: the cluster (``address``: ``"auto"``, ``ray://host:port``
    or ``host:port``; None: a local instance), the number of shards (default: one per
    worker), the shards solved at once (``workers``, default: as many as the cluster's CPUs
    allow at ``worker_cpus`` each; each shard task runs that many solver threads), and
    whether the result is one self-contained file (``consolidate``) rather than virtual
    datasets over the shards."""

    address: str | None = None
    shards: int | None = None
    workers: int | None = None
    worker_cpus: int = 1
    consolidate: bool = False

    def __post_init__(self):
        for name in ("shards", "workers"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not isinstance(self.worker_cpus, int) or self.worker_cpus < 1:
            raise ValueError(
                f"ray.worker_cpus must be a positive integer, got {self.worker_cpus!r}"
            )


def shard_folder(out: str | os.PathLike) -> Path:
    p = Path(out)
    return p.with_name(p.name + ".shards")


def shard_name(index: int, n_shards: int) -> str:
    return f"shard-{index:05d}-of-{n_shards:05d}.h5"


def shard_rows(n: int, n_shards: int) -> list[tuple[int, int]]:
    """Contiguous, balanced row ranges of ``n_shards`` shards of ``n`` trajectories."""
    return [(n * i // n_shards, n * (i + 1) // n_shards) for i in range(n_shards)]


def _shard_config(req: GenerateRequest, index: int, n_shards: int, rows) -> dict[str, Any]:
    return {**req.as_config(), "shard": [index, n_shards, int(rows[0]), int(rows[1])]}


def _shard_done(path: Path, expected_hash: str) -> bool:
    """Whether ``path`` is this shard, complete (a file at the final name always is)."""
    if not path.is_file():
        return False
    import h5py

    try:
        with h5py.File(path, "r") as f:
            a = f.attrs
            return (
                a.get("format") == SHARD_FORMAT
                and bool(a.get("complete", False))
                and a.get("config_hash") == expected_hash
            )
    except OSError:
        return False


def _check_request(req: GenerateRequest):
    """Validate ``req`` for a sharded run; returns ``(request with its seed resolved, system)``."""
    req.validate()
    if req.seed is None:
        req = dataclasses.replace(req, seed=0)
    if req.preset is not None:
        raise ValueError(
            "the Ray engine does not run a preset (the paper's datasets are small): generate "
            "the preset without Ray, or give the sizes yourself"
        )
    system = get_system(req.system, req.params)
    if not isinstance(system, ODESystem):
        raise ValueError(
            f"--engine ray shards ODE trajectory ensembles; {system.name!r} data are generated "
            "in one process: drop --engine ray"
        )
    return req, system


def generate_shard(
    req: GenerateRequest,
    index: int,
    n_shards: int,
    *,
    backend: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Write shard ``index`` of ``n_shards`` of ``req`` (no Ray needed: what each Ray task
    runs). Resumes its finished chunks; a complete shard file is left as it is. Returns
    ``{"path", "rows", "seconds", "pid", "skipped"}``."""
    t0 = time.perf_counter()
    req, system = _check_request(req)
    plan = plan_trajectories(req, system, backend)
    if not 0 <= index < n_shards <= plan.n:
        raise ValueError(f"shard {index} of {n_shards} does not exist for {plan.n} trajectories")
    rows = shard_rows(plan.n, n_shards)[index]
    folder = shard_folder(req.out)
    _claim_folder(folder, req, n_shards)
    path = folder / shard_name(index, n_shards)
    config = _shard_config(req, index, n_shards, rows)
    info = {"rows": list(rows), "pid": os.getpid(), "path": str(path)}
    if _shard_done(path, config_hash(config)):
        return {**info, "seconds": time.perf_counter() - t0, "skipped": True}
    work = ChunkStore(path, config)
    solve_rows(plan, work, rows, progress)
    attrs = {
        **plan.attrs,
        "shard": {"index": index, "of": n_shards, "rows": list(rows), "n_trajectories": plan.n},
    }
    with DatasetWriter(
        path,
        layout="trajectories",
        attrs=attrs,
        config=config,
        overwrite=True,
        compression=req.compression,
        fmt=SHARD_FORMAT,
    ) as w:
        write_rows(plan, w, work, rows)
    work.remove()
    return {**info, "seconds": time.perf_counter() - t0, "skipped": False}


def _same_run(folder: Path, req: GenerateRequest, n_shards: int) -> bool:
    """Whether ``folder`` holds shards of this very request and shard count."""
    try:
        have = json.loads((folder / RUN_FILE).read_text())
    except (OSError, ValueError):
        return False
    return (have.get("config_hash"), have.get("n_shards")) == (
        config_hash(req.as_config()),
        n_shards,
    )


def _claim_folder(folder: Path, req: GenerateRequest, n_shards: int) -> None:
    """Create the shard folder of a run, or check that an existing one is this run's (the
    driver and every shard task call it; concurrent calls write the same record)."""
    want = {"config_hash": config_hash(req.as_config()), "n_shards": n_shards}
    meta = folder / RUN_FILE
    folder.mkdir(exist_ok=True)
    if meta.exists():
        try:
            have = json.loads(meta.read_text())
        except (OSError, ValueError):
            have = {}
        if have.get("config_hash") != want["config_hash"]:
            raise DatasetError(
                f"{folder} holds shards of a different request; delete it or pass --overwrite "
                "to start again"
            )
        if have.get("n_shards") != n_shards:
            raise DatasetError(
                f"{folder} holds {have.get('n_shards')} shards of this request, not {n_shards}: "
                f"rerun with --shards {have.get('n_shards')} to resume, or pass --overwrite"
            )
        return
    write_text_atomic(
        meta, json.dumps({**want, "config": req.as_config()}, sort_keys=True, default=str)
    )


def _shard_in_worker(
    req: GenerateRequest, index: int, n_shards: int, backend: str, threads: int
) -> dict[str, Any]:
    """One Ray task: a shard, in a worker process that the raylet started fresh (never a
    fork of the driver) and keeps for later tasks. With the julia backend the first task a
    process runs starts Julia (``kernels/_julia.py`` keeps it per process), and every later
    task there reuses it: Julia starts once per worker process."""
    import numba

    # numba.config sets its NUMBA_* names at import time: no static declaration to see
    numba_threads = numba.config.NUMBA_NUM_THREADS  # pyright: ignore[reportPrivateImportUsage, reportAttributeAccessIssue]
    numba.set_num_threads(max(1, min(threads, numba_threads)))
    if backend == "julia":  # pragma: no cover - needs Julia
        from ..kernels import backends

        backends.module("julia")  # starts Julia in this process unless it already runs here
    return generate_shard(req, index, n_shards, backend=backend)


def _cause(exc: BaseException) -> BaseException:
    """The user-facing error inside a Ray task error."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


def _run_shards(ray, plan: TrajectoryPlan, engine: RayEngine, todo: list[int], n_shards, bar):
    """Run the shards ``todo``, at most ``engine.workers`` at once (default: as many as the
    cluster's CPUs hold), each a task of ``worker_cpus`` CPUs retried twice if its worker
    dies (the retry resumes the shard's finished chunks)."""
    cpus = int(ray.cluster_resources().get("CPU", 1))
    at_once = min(len(todo), engine.workers or max(1, cpus // engine.worker_cpus))
    task = ray.remote(_shard_in_worker).options(num_cpus=engine.worker_cpus, max_retries=2)
    req, queue = plan.req, list(todo)
    rows = shard_rows(plan.n, n_shards)
    running: dict[Any, int] = {}
    results = []

    def submit():
        i = queue.pop(0)
        running[task.remote(req, i, n_shards, plan.backend, engine.worker_cpus)] = i

    try:
        while queue and len(running) < at_once:
            submit()
        while running:
            done, _ = ray.wait(list(running), num_returns=1)
            i = running.pop(done[0])
            try:
                results.append(ray.get(done[0]))
            except ray.exceptions.RayTaskError as exc:
                cause = _cause(exc)
                if isinstance(cause, ValueError):
                    raise cause from None
                raise DatasetError(
                    f"shard {i} failed ({type(cause).__name__}: {str(cause).splitlines()[0]})"
                ) from None
            except ray.exceptions.RayError as exc:  # the worker died, past the retries
                first = (str(exc).strip().splitlines() or [""])[0][:200]
                raise DatasetError(
                    f"the worker of shard {i} died ({first}); rerun the same command to resume"
                ) from None
            if bar is not None:
                bar.update(rows[i][1] - rows[i][0])
            if queue:
                submit()
    finally:
        for ref in running:
            ray.cancel(ref, force=True)
    return results


def generate_sharded(
    req: GenerateRequest, engine: RayEngine | None = None, *, progress: bool = True
) -> Path:
    """``derl generate ... --engine ray``: shards on Ray, stitched into ``req.out``. Returns
    the path of the completed file. Equal, array for array, to :func:`generate` of the same
    request."""

    engine = engine or RayEngine()
    req, system = _check_request(req)
    out = Path(req.out).absolute()  # the workers' working folder may be another one
    check_target(out, req.overwrite)
    with output_lock(out):  # one run per output, from the claim of the folder to the stitch
        return _generate_sharded(req, system, out, engine, progress)


def _generate_sharded(req, system, out: Path, engine: RayEngine, progress: bool) -> Path:
    from ._ray import connect, require

    n = req.n_trajectories or 1000  # as plan_trajectories counts them
    if engine.shards is not None and engine.shards > n:
        raise ValueError(f"--shards {engine.shards} exceeds the {n} trajectories")
    ray = require()
    req = dataclasses.replace(req, out=str(out))  # (out is not part of the request's hash)
    plan = plan_trajectories(req, system)
    folder = shard_folder(out)
    local_cpus = engine.workers * engine.worker_cpus if engine.workers else None
    connected = connect(engine.address, num_cpus=local_cpus)
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        n_shards = engine.shards or min(
            plan.n, engine.workers or max(1, cpus // engine.worker_cpus)
        )
        if req.overwrite and folder.is_dir() and not _same_run(folder, req, n_shards):
            shutil.rmtree(folder)  # --overwrite wipes only shards this request cannot reuse
        _claim_folder(folder, req, n_shards)
        names = [shard_name(i, n_shards) for i in range(n_shards)]
        rows = shard_rows(plan.n, n_shards)
        todo = [
            i
            for i in range(n_shards)
            if not _shard_done(
                folder / names[i], config_hash(_shard_config(req, i, n_shards, rows[i]))
            )
        ]
        bar = None
        if progress:
            bar = progress_bar(
                plan.n, plan.n - sum(rows[i][1] - rows[i][0] for i in todo), system.name, True
            )
        try:
            if todo:
                _run_shards(ray, plan, engine, todo, n_shards, bar)
        finally:
            if bar is not None:
                bar.close()
    finally:
        if connected:
            ray.shutdown()
    _stitch(plan, out, folder, names, rows, engine.consolidate)
    if engine.consolidate:
        shutil.rmtree(folder)
    return out


def _stitch(plan: TrajectoryPlan, out: Path, folder: Path, names, rows, consolidate: bool):
    """Write ``out``: times and splits, and every per-trajectory dataset as a virtual
    dataset over the shard files (or, consolidated, copied from them chunk by chunk)."""
    import h5py

    req = plan.req
    attrs = dict(plan.attrs)
    if not consolidate:
        attrs["shards"] = {
            "engine": "ray",
            "folder": folder.name,
            "files": list(names),
            "rows": [list(r) for r in rows],
        }
    with DatasetWriter(
        out,
        layout="trajectories",
        attrs=attrs,
        config=req.as_config(),
        overwrite=req.overwrite,
        compression=req.compression,
    ) as w:
        write_meta(plan, w)
        for spec in row_datasets(plan):
            shape = (plan.n, *spec.row_shape)
            if not consolidate:
                sources = [
                    (f"{folder.name}/{name}", spec.name, a, b)
                    for name, (a, b) in zip(names, rows, strict=True)
                ]
                w.create_virtual(spec.name, shape, spec.dtype, sources, attrs=spec.attrs)
                continue
            ds = spec.create(w, plan, plan.n)
            for name, (a, b) in zip(names, rows, strict=True):
                with h5py.File(folder / name, "r") as f:
                    src = h5_dataset(f, spec.name)
                    for s in range(a, b, plan.chunk):  # bounded memory: a chunk at a time
                        e = min(b, s + plan.chunk)
                        ds[s:e] = src[s - a : e - a]
