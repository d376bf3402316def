"""PDE fields on a space–time grid, planned by the system
(:meth:`~derlhybrid.systems.base.FieldSystem.grid_plan`) and written window by window in
time (bounded memory, resumable), with empirical derivatives along every axis."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..kernels import backends, derivative
from ..systems import FieldSystem, GridPlan
from .empirical import on_grid, parse_scheme
from .request import DTYPES, GenerateRequest
from .store import ChunkStore, check_target
from .writing import common_attrs, progress_bar, writer

GRID_BYTES = 128 * 2**20  # per time window of a grid generation (all fields together)


def generate_grid(req: GenerateRequest, system: FieldSystem, progress: bool, finalize=None) -> Path:
    """PDE fields on a grid, written window by window in time (bounded memory, resumable):
    ``/grid/t``, ``/grid/x`` (``/grid/y``), ``/fields/<u>`` of shape (n_t, n_x[, n_y]) and
    ``/derivatives/<name>`` of the same shape. What is solved, on which axes, and how the
    derivatives are computed is the system's :class:`~derlhybrid.systems.base.GridPlan`."""
    dtype = DTYPES[req.dtype]
    backend = backends.resolve(req.backend)
    if req.noise:
        raise ValueError("noise applies to trajectory (ODE) data only")
    emp = None if req.empirical is None else parse_scheme(req.empirical)
    if emp is not None and emp[0] == "cubic-forward":
        raise ValueError("cubic-forward applies to trajectories; use forward:N/central:N here")
    plan = system.grid_plan(
        method=req.method,
        n_points=req.n_points,
        n_times=req.n_times,
        backend=backend,
        rtol=req.rtol,
    )
    axes, inputs, n_t, field_name = plan.axes, plan.inputs, plan.n_times, plan.field
    t = np.linspace(0.0, plan.t_end, n_t)
    frame = int(np.prod([a.size for a in axes.values()]))
    n_fields = 1 + len(inputs) + (len(inputs) if emp else 0)
    window = max(2, min(n_t, GRID_BYTES // (8 * frame * n_fields)))
    starts = list(range(0, n_t - 1, window - 1))  # windows share their first/last frame
    generator = {
        "method": plan.method,
        "n_times": n_t,
        "t_end": plan.t_end,
        "grid": {k: [float(v[0]), float(v[-1]), int(v.size)] for k, v in axes.items()},
        "derivatives": plan.derivative_method,
    }
    if emp:
        generator["empirical"] = {
            "scheme": emp[0],
            "accuracy": emp[1],
            "of": "the stored field, along each grid axis",
        }
    attrs = common_attrs(req, system, generator, plan.backend)
    attrs["inputs"], attrs["outputs"] = list(inputs), [field_name]
    check_target(Path(req.out), req.overwrite)
    # the windows are part of the work's identity: a resume with other windows (another
    # GRID_BYTES) would stitch frames of one split into the other
    work = ChunkStore(req.out, {**req.as_config(), "window": window}, overwrite=req.overwrite)
    bar = progress_bar(n_t, 0, system.name, progress)
    if bar is not None:
        bar.unit = "frame"
    for k, a in enumerate(starts):
        b = min(n_t, a + window)
        if work.done(k):
            if bar is not None:
                bar.update(b - a - (k > 0))
            continue
        tw = t[a:b]
        start = work.load(k - 1, "field")[-1] if plan.marching and k > 0 else None
        u, ders = plan.solve(tw, start)
        _check_window(system, plan, tw, u, ders)
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
                    periodic=plan.periodic,
                )
        work.save(k, **{n: v.astype(np.float64) for n, v in arrays.items()})
        if bar is not None:
            bar.update(b - a - (k > 0))
    if bar is not None:
        bar.close()
    shape = (n_t, *[a.size for a in axes.values()])
    chunks = (1, *shape[1:])
    with writer(req, "grid", attrs) as w:
        w.create("grid/t", None, data=t)
        for name, v in axes.items():
            w.create(f"grid/{name}", None, data=v, attrs={"periodic": plan.periodic})
        f_ds = w.create(
            f"fields/{field_name}", shape, dtype, chunks=chunks, attrs={"axes": ", ".join(inputs)}
        )
        names = list(plan.derivatives)
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


def _check_window(system: FieldSystem, plan: GridPlan, t: np.ndarray, u, ders) -> None:
    """A plan's solve returns the field on the window and exactly the declared derivatives
    (a user-defined grid system's mistake is named here, not as a broken file)."""
    shape = (t.size, *[a.size for a in plan.axes.values()])
    bad = [n for n, v in ders.items() if np.shape(v) != shape]
    if np.shape(u) != shape or sorted(ders) != sorted(plan.derivatives) or bad:
        raise ValueError(
            f"{system.name}: grid_plan's solve must return a field of shape {shape} and the "
            f"derivatives {list(plan.derivatives)} of that shape; got {np.shape(u)} and "
            f"{ {n: np.shape(v) for n, v in ders.items()} }"
        )


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
