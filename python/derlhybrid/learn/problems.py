"""Learning problems: what a network learns from a dataset file, as tensors.

A :class:`Problem` holds the point sets of one training run — the interior ``train`` /
``val`` / ``test`` sets with their targets, and the initial, boundary and periodic sets that
pin the function — plus how to compute the system's residual from network derivatives.
:func:`load_problem` builds one from any file ``derl generate`` writes:

* ``trajectories`` (ODE ensembles) → a *flow map* (t, y0) ↦ y(t). For second-order systems
  (the pendulum) ``form="positions"`` (default, the paper's network) outputs the positions
  q alone: the velocity is ∂q̂/∂t, the Jacobian target is ∂q/∂t = v and the Hessian target
  ∂²q/∂t² = f_v; the initial condition pins q̂(0) = q0 and ∂q̂/∂t(0) = v0. ``form="state"``
  outputs the whole state with Jacobian target ∂y/∂t = f(y). Only time derivatives are
  supervised (the data know nothing of ∂y/∂y0; paper.md §12.1).
* ``points`` (closed-form systems) → inputs, outputs, Jacobians and Hessians with respect to
  the coordinates (not the PDE parameters of a family), forcing, Dirichlet boundary data.
* ``grid`` (KdV, continuity) → every grid point with its field and derivatives, the initial
  and boundary sets the file holds (periodic pairs for periodic inputs).

``variant`` selects an alternative target set of the file (``/variants/<name>``: e.g. the
continuity ``grid``/``full`` points or the Allen–Cahn ``noise_0.01`` targets, whose arrays
replace those of the main set) or ``"empirical"`` derivatives. For trajectories,
``"interpolate"`` is the paper's temporal gap (paper.md §3.2): train/val keep the times of
``/variants/interpolate/train_time_mask``, the test set is the gap of the train+val
trajectories, and the state of each training trajectory at ``anchor_index`` joins the
initial condition (the ``initial`` set of :class:`Problem`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import torch

from ..data.store import (
    DatasetError,
    check_finite,
    check_indices,
    damaged_file_errors,
    open_dataset,
    provenance,
)
from ..systems import get_system
from ..systems.base import FieldSystem, ODESystem, System
from .derivatives import Derivatives

__all__ = ["PointSet", "Problem", "load_problem"]

FORMS = ("positions", "state")


@dataclass
class PointSet:
    """Points ``X`` (N, n_in) and per-point targets: ``output`` (N, n_out), ``jacobian``
    (N, n_out, k), ``hessian`` (N, n_out, k, k), ``forcing`` (N,)…"""

    X: torch.Tensor
    targets: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.X.shape[0]

    def take(self, idx) -> PointSet:
        return PointSet(self.X[idx], {k: v[idx] for k, v in self.targets.items()})

    def to(self, device=None, dtype=None) -> PointSet:
        def conv(v):
            return v.to(device=device, dtype=dtype if v.is_floating_point() else None)

        return PointSet(conv(self.X), {k: conv(v) for k, v in self.targets.items()})


@dataclass(frozen=True)
class StreamPolicy:
    """When a split is read block by block instead of loaded: ``mode`` "auto" streams
    splits larger than ``memory_mb``; "always" / "never" force it. Blocks hold about
    ``block_mb`` of points."""

    mode: str = "auto"
    memory_mb: float = 2048.0
    block_mb: float = 64.0

    def __post_init__(self):
        if self.mode not in ("auto", "always", "never"):
            raise ValueError(f"data.stream must be auto, always or never, got {self.mode!r}")
        if not (self.memory_mb > 0 and self.block_mb > 0):
            raise ValueError("data.memory_mb and data.block_mb must be positive")

    def streams(self, nbytes: int) -> bool:
        if self.mode == "auto":
            return nbytes > self.memory_mb * 2**20
        return self.mode == "always"

    @property
    def block_bytes(self) -> int:
        return int(self.block_mb * 2**20)


class StreamingSet:
    """A split too large for memory, read from its HDF5 file one block of units
    (trajectories) at a time: an epoch visits the blocks in a random order and each block's
    rows in a random order, so memory stays at one block whatever the file size. The file
    is opened lazily in each process."""

    def __init__(self, path, units: np.ndarray, rows_per_unit: int, load, block_units: int):
        self.path, self.units, self.rows_per_unit = str(path), np.asarray(units), rows_per_unit
        self.load, self.block_units = load, int(block_units)
        self.keep: set[str] | None = None
        self.device, self.dtype = None, None
        self._file, self._pid = None, None
        self.targets = self._block(self.units[:1]).targets  # names (and shapes) of targets

    def __len__(self) -> int:
        return len(self.units) * self.rows_per_unit

    @property
    def n_blocks(self) -> int:
        return -(-len(self.units) // self.block_units)

    def _h5(self):
        if self._file is None or self._pid != os.getpid():
            import h5py

            self._file, self._pid = h5py.File(self.path, "r"), os.getpid()
        return self._file

    def _block(self, units) -> PointSet:
        pts = self.load(self._h5(), np.sort(units))
        if self.keep is not None:
            pts.targets = {k: v for k, v in pts.targets.items() if k in self.keep}
        return pts.to(self.device, self.dtype) if self.device is not None else pts

    def blocks(self, gen: torch.Generator | None = None):
        """Blocks of points, in a random order when ``gen`` is given (sequential otherwise)."""
        order = (
            torch.randperm(self.n_blocks, generator=gen).tolist()
            if gen is not None
            else range(self.n_blocks)
        )
        for b in order:
            yield self._block(self.units[b * self.block_units : (b + 1) * self.block_units])

    def batches(self, batch_size: int, gen: torch.Generator):
        for pts in self.blocks(gen):
            perm = torch.randperm(len(pts), generator=gen).to(pts.X.device)
            for start in range(0, len(pts), batch_size):
                yield pts.take(perm[start : start + batch_size])

    def to(self, device=None, dtype=None) -> StreamingSet:
        self.device, self.dtype = device, dtype
        return self

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_file"] = None
        return state


@dataclass
class Problem:
    """Everything a trainer needs about the data, independent of the loss terms."""

    system: System
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    #: positions of the inputs that Jacobian/Hessian targets differentiate
    derivative_inputs: tuple[int, ...]
    sets: dict[str, PointSet]
    #: flow maps: the initial condition of every batch row is (t = 0, its own y0)
    initial_from_batch: bool = False
    #: periodic pairs: (left, right) point sets and the input positions whose derivatives
    #: must match too
    periodic: tuple[PointSet, PointSet] | None = None
    periodic_derivatives: tuple[int, ...] = ()
    form: str = ""
    source: dict = field(default_factory=dict)
    residual_needs: tuple[tuple[int, ...], ...] = ()
    residual_fn: Callable | None = None

    @property
    def n_in(self) -> int:
        return len(self.inputs)

    @property
    def n_out(self) -> int:
        return len(self.outputs)

    @property
    def system_aux(self) -> tuple[str, ...]:
        """Per-point data the residual reads (e.g. a manufactured forcing)."""
        return tuple(getattr(self.system, "residual_aux", ()))

    @property
    def time_input(self) -> int | None:
        return self.inputs.index("t") if "t" in self.inputs else None

    def residual(self, d: Derivatives, X: torch.Tensor, aux: dict) -> torch.Tensor:
        if self.residual_fn is None:
            raise ValueError(f"{self.system.name} defines no residual: PINN terms need one")
        return self.residual_fn(d, X, aux)

    def initial_points(self, batch: PointSet) -> PointSet:
        """The initial-condition points of a flow-map batch: (0, y0). Their targets are
        their own columns y0 = (q0, v0): ``X[:, 1:]``, read by the initial term. Anchors
        of the problem (``sets["initial"]``: rows (t_a, y0) with the true state y(t_a) as
        target ``"state"``, the ``interpolate`` variant) are appended to every batch, all
        of them, as the paper does; the rows then carry ``"state"`` targets y0 and y(t_a)."""
        X0 = batch.X.clone()
        X0[:, self.time_input] = 0.0
        anchors = self.sets.get("initial")
        if anchors is None:
            return PointSet(X0)
        state = torch.cat([X0[:, 1:], anchors.targets["state"]])
        return PointSet(torch.cat([X0, anchors.X]), {"state": state})

    def describe(self) -> dict:
        return {
            "system": self.system.describe(),
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "derivative_inputs": [self.inputs[i] for i in self.derivative_inputs],
            "form": self.form,
            "sizes": {k: len(v) for k, v in self.sets.items()},
            "source": self.source,
        }

    def to(self, device=None, dtype=None) -> Problem:
        self.sets = {k: v.to(device, dtype) for k, v in self.sets.items()}
        if self.periodic is not None:
            self.periodic = cast(
                "tuple[PointSet, PointSet]", tuple(p.to(device, dtype) for p in self.periodic)
            )
        return self


def _t(a) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float64)


def _field_residual(system: FieldSystem, inputs: tuple[str, ...]):
    if type(system).pde_residual is FieldSystem.pde_residual:
        return (), None  # the system defines no residual: PINN terms are refused
    pos = {n: i for i, n in enumerate(inputs)}
    needs = tuple(tuple(sorted(pos[n] for n in names)) for names in system.residual_needs)

    def residual(d: Derivatives, X, aux):
        return system.pde_residual(lambda *names: d[tuple(pos[n] for n in names)], X, aux, torch)

    return needs, residual


def _flow_residual(system: ODESystem, form: str, n_q: int):
    if form == "positions":

        def residual(d: Derivatives, X, aux):  # q̈ − f_v(t, q, q̇)
            y = torch.cat([d.value, d[(0,)]], dim=1)
            return d[(0, 0)] - system.vector_field(X[:, 0], y, torch)[:, n_q:]

        return ((0, 0),), residual

    def residual(d: Derivatives, X, aux):  # ẏ − f(t, y)
        return d[(0,)] - system.vector_field(X[:, 0], d.value, torch)

    return ((0,),), residual


def _split_indices(f, n: int) -> dict[str, np.ndarray]:
    if "splits" in f:
        return {
            k: check_indices(f[f"splits/{k}"][...], n, f.filename, f"/splits/{k}")
            for k in f["splits"]
        }
    return {"train": np.arange(n)}


def _trajectory_block(
    arrays, idx: np.ndarray, form: str, n_q: int, times: np.ndarray | None = None, file=None
) -> PointSet:
    """The flow-map points of the trajectories ``idx`` (sorted): (t, y0) → targets; with
    ``times`` only those time indices of each trajectory (trajectory-major rows). Values
    that are not finite are refused, naming the dataset and the trajectory."""
    t_all, y0_all, y_all, dy_all = arrays
    ns = y0_all.shape[1]
    y, dy = y_all[idx], dy_all[idx]
    for src, a, default in (
        (y_all, y, "/trajectories/states"),
        (dy_all, dy, "/trajectories/derivatives"),
        (y0_all, y0_all[idx], "/trajectories/initial_states"),
    ):  # an h5py dataset knows its name; an array read ahead of time does not
        check_finite(a, file, getattr(src, "name", default), rows=idx, unit="trajectory")
    if times is not None:
        y, dy, t_all = y[:, times], dy[:, times], np.asarray(t_all)[..., times]
    t = t_all[idx] if getattr(t_all, "ndim", 1) == 2 else np.broadcast_to(t_all, y.shape[:2])
    y0 = np.broadcast_to(y0_all[idx][:, None, :], y.shape)
    X = np.concatenate([t[..., None], y0], axis=-1).reshape(-1, 1 + ns)
    y, dy = y.reshape(-1, ns), dy.reshape(-1, ns)
    tg = {}
    if form == "positions":
        tg["output"] = y[:, :n_q]
        tg["jacobian"] = y[:, n_q:, None]  # ∂q/∂t = v
        tg["hessian"] = dy[:, n_q:, None, None]  # ∂²q/∂t² = f_v
    else:
        tg["output"], tg["jacobian"] = y, dy[:, :, None]
    return PointSet(_t(X), {k: _t(v) for k, v in tg.items()})


def _trajectory_arrays(f, variant):
    y0_all = f["trajectories/initial_states"][...]
    if variant in (None, "true"):
        return (
            f["trajectories/t"][...],
            y0_all,
            f["trajectories/states"],
            f["trajectories/derivatives"],
        )
    if variant == "empirical" and "empirical/t" in f:
        return f["empirical/t"], y0_all, f["empirical/states"], f["empirical/derivatives"]
    if variant == "empirical" and "trajectories/empirical_derivatives" in f:
        return (
            f["trajectories/t"][...],
            y0_all,
            f["trajectories/states"],
            f["trajectories/empirical_derivatives"],
        )
    raise DatasetError(f"{f.filename} has no {variant!r} targets for a trajectory problem")


def _load_trajectories(
    f, system: ODESystem, form: str, variant: str | None, stream: StreamPolicy
) -> Problem:
    if form not in FORMS:
        raise ValueError(f"unknown form {form!r}; choose one of {', '.join(FORMS)}")
    ns = system.n_state
    if form == "positions" and not system.second_order:
        raise ValueError(
            f'{system.name} is not a second-order system: use form = "state" for its flow map'
        )
    n_q = ns // 2 if form == "positions" else ns
    if variant == "interpolate":
        sets = _interpolate_sets(f, form, n_q, stream)
        return _flow_problem(system, form, n_q, sets)
    arrays = _trajectory_arrays(f, variant)
    rows_per_traj = arrays[2].shape[1]
    row_bytes = 8 * (1 + 2 * ns + 3 * ns)
    sets = {}
    for split, idx in ok_splits(f, arrays[1].shape[0]).items():
        if stream.streams(len(idx) * rows_per_traj * row_bytes):
            per_block = max(1, stream.block_bytes // (rows_per_traj * row_bytes))

            def load(g, units, form=form, n_q=n_q):
                return _trajectory_block(
                    _trajectory_arrays(g, variant), units, form, n_q, file=g.filename
                )

            sets[split] = StreamingSet(f.filename, idx, rows_per_traj, load, per_block)
        else:
            sets[split] = _trajectory_block(arrays, idx, form, n_q, file=f.filename)
    return _flow_problem(system, form, n_q, sets)


def ok_splits(f, n: int) -> dict[str, np.ndarray]:
    """Sorted trajectory indices of every split; failed trajectories (NaN rows) are left
    out."""
    ok = f["trajectories/status"][...] == 0 if "trajectories/status" in f else None
    out = {}
    for split, idx in _split_indices(f, n).items():
        idx = np.sort(idx)
        out[split] = idx if ok is None else idx[ok[idx]]
    return out


def _interpolate_sets(f, form: str, n_q: int, stream: StreamPolicy) -> dict[str, PointSet]:
    """The ``interpolate`` variant (paper.md §3.2): train/val = the train/val trajectories
    at the masked-in times; test = the gap times of the train+val trajectories; initial =
    the anchors (t_a, y0) → y(t_a) of the train trajectories (t_a = ``anchor_index``)."""
    key = "variants/interpolate/train_time_mask"
    if key not in f:
        avail = sorted(f["variants"]) if "variants" in f else []
        raise DatasetError(
            f"{f.filename} has no interpolate variant ({key}; available variants: "
            f"{', '.join(avail) or 'none'})"
        )
    mask = np.asarray(f[key][...], dtype=bool)
    anchor = int(f[key].attrs["anchor_index"])
    t = f["trajectories/t"][...]
    y0_all = f["trajectories/initial_states"][...]
    states, derivs = f["trajectories/states"], f["trajectories/derivatives"]
    if t.ndim != 1 or mask.shape != t.shape or not 0 <= anchor < t.size:
        raise DatasetError(
            f"{f.filename}: the interpolate mask ({mask.shape}) and anchor ({anchor}) do not "
            f"fit the {t.shape} trajectory times"
        )
    splits = ok_splits(f, y0_all.shape[0])
    ns = y0_all.shape[1]
    rows = sum(len(v) for v in splits.values()) * t.size
    if stream.streams(rows * 8 * (1 + 5 * ns)):  # as the streamed splits count
        raise ValueError(
            'the interpolate variant is not streamed: set data.stream = "never" '
            "(its data must fit in memory)"
        )
    arrays = (t, y0_all, states[...], derivs[...])  # read once: the sizes were checked
    empty = np.zeros(0, dtype=int)
    train, val = splits.get("train", empty), splits.get("val", empty)
    keep, gap = np.flatnonzero(mask), np.flatnonzero(~mask)
    sets = {
        name: _trajectory_block(arrays, idx, form, n_q, keep, file=f.filename)
        for name, idx in (("train", train), ("val", val))
        if name in splits
    }
    sets["test"] = _trajectory_block(
        arrays, np.union1d(train, val), form, n_q, gap, file=f.filename
    )
    X_a = np.concatenate([np.full((len(train), 1), t[anchor]), y0_all[train]], axis=1)
    sets["initial"] = PointSet(_t(X_a), {"state": _t(arrays[2][train, anchor])})
    return sets


def _flow_problem(system: ODESystem, form: str, n_q: int, sets) -> Problem:
    names = system.state_names
    needs, residual = _flow_residual(system, form, n_q)
    return Problem(
        system=system,
        inputs=("t", *(f"{n}0" for n in names)),
        outputs=tuple(names[:n_q]),
        derivative_inputs=(0,),
        sets=sets,
        initial_from_batch=True,
        form=form,
        residual_needs=needs,
        residual_fn=residual,
    )


def _point_arrays(f, group: str, system: FieldSystem) -> dict[str, np.ndarray]:
    out = {}
    for key in ("inputs", "outputs", "jacobian", "hessian", "forcing"):
        if f"{group}/{key}" in f:
            out[key] = f[f"{group}/{key}"][...]
            check_finite(out[key], f.filename, f"/{group}/{key}")
    return out


def _targets(a: dict) -> dict[str, torch.Tensor]:
    names = {"outputs": "output", "jacobian": "jacobian", "hessian": "hessian"}
    tg = {names[k]: _t(v) for k, v in a.items() if k in names}
    if "forcing" in a:
        tg["forcing"] = _t(a["forcing"])
    return tg


def _load_points(f, system: FieldSystem, variant: str | None) -> Problem:
    base = _point_arrays(f, "points", system)
    if "inputs" not in base:
        raise DatasetError(f"{f.filename} has no /points/inputs")
    if variant is not None:
        if f"variants/{variant}" not in f:
            avail = sorted(f["variants"]) if "variants" in f else []
            raise DatasetError(
                f"{f.filename} has no variant {variant!r} (available: {', '.join(avail) or 'none'})"
            )
        over = _point_arrays(f, f"variants/{variant}", system)
        if "inputs" in over:  # a set of its own (e.g. continuity grid/full): no main splits
            base = over
            splits = {"train": np.arange(over["inputs"].shape[0])}
        else:  # replacement targets for the main points
            base = {**base, **over}
            splits = _split_indices(f, base["inputs"].shape[0])
    else:
        splits = _split_indices(f, base["inputs"].shape[0])
    full = PointSet(_t(base["inputs"]), _targets(base))
    sets = {k: full.take(torch.as_tensor(np.sort(v))) for k, v in splits.items()}
    _add_condition_sets(f, sets)
    return _field_problem(system, sets)


def _add_condition_sets(f, sets):
    for name in ("initial", "boundary"):
        if f"{name}/inputs" in f and f"{name}/outputs" in f:
            X, u = f[f"{name}/inputs"][...], f[f"{name}/outputs"][...]
            check_finite(X, f.filename, f"/{name}/inputs")
            check_finite(u, f.filename, f"/{name}/outputs")
            sets[name] = PointSet(_t(X), {"output": _t(u)})


def _field_problem(system: FieldSystem, sets, periodic=None) -> Problem:
    inputs = tuple(system.inputs)
    needs, residual = _field_residual(system, inputs)
    coords = tuple(inputs.index(c) for c in system.coordinates)
    per_d = tuple(inputs.index(c) for c in system.periodic_inputs)
    return Problem(
        system=system,
        inputs=inputs,
        outputs=tuple(system.outputs),
        derivative_inputs=coords,
        sets=sets,
        periodic=periodic,
        periodic_derivatives=per_d,
        residual_needs=needs,
        residual_fn=residual,
    )


def _load_grid(f, system: FieldSystem, variant: str | None) -> Problem:
    if variant is not None and variant != "empirical":
        # a point set stored beside the grid (continuity grid/full)
        return _load_points_variant(f, system, variant)
    inputs = tuple(system.inputs)
    axes = [f[f"grid/{n}"][...] for n in inputs]
    mesh = np.meshgrid(*axes, indexing="ij")
    X = np.stack([m.ravel() for m in mesh], axis=1)
    (field_name,) = list(f["fields"])
    u = f[f"fields/{field_name}"][...]
    check_finite(u, f.filename, f"/fields/{field_name}", unit="frame")
    u = u.reshape(-1, 1)
    group = "empirical" if variant == "empirical" else "derivatives"
    cols = []
    for c in system.coordinates:
        key = f"{group}/{field_name}_{c}"
        if key not in f:
            cols = None
            break
        col = f[key][...]
        check_finite(col, f.filename, f"/{key}", unit="frame")
        cols.append(col.reshape(-1))
    tg = {"output": _t(u)}
    if cols is not None:
        tg["jacobian"] = _t(np.stack(cols, axis=-1)[:, None, :])
    sets = {"train": PointSet(_t(X), tg)}
    _add_condition_sets(f, sets)
    if "initial" not in sets and "t" in inputs:
        first = X[: X.shape[0] // axes[0].size]
        sets["initial"] = PointSet(_t(first), {"output": _t(u[: first.shape[0]])})
    periodic = None
    if system.periodic_inputs:
        periodic = _periodic_pairs(system, sets.get("boundary"), axes, inputs)
        sets.pop("boundary", None)
    return _field_problem(system, sets, periodic)


def _load_points_variant(f, system, variant):
    g = f"variants/{variant}"
    if g not in f or f"{g}/inputs" not in f:
        avail = sorted(f["variants"]) if "variants" in f else []
        raise DatasetError(
            f"{f.filename} has no point variant {variant!r} "
            f"(available: {', '.join(avail) or 'none'})"
        )
    a = _point_arrays(f, g, system)
    sets = {"train": PointSet(_t(a["inputs"]), _targets(a))}
    _add_condition_sets(f, sets)
    return _field_problem(system, sets)


def _periodic_pairs(system, boundary, axes, inputs):
    """Left/right points of every periodic input: (…, lo, …) ↔ (…, hi, …)."""
    lo_hi = system.domain()
    (name,) = system.periodic_inputs[:1]
    j = inputs.index(name)
    if boundary is not None:
        Xb = boundary.X.numpy()
        left = Xb[np.isclose(Xb[:, j], lo_hi[name][0])]
    else:
        others = [a for i, a in enumerate(axes) if i != j]
        mesh = np.meshgrid(*others, indexing="ij")
        rest = np.stack([m.ravel() for m in mesh], axis=1)
        left = np.insert(rest, j, lo_hi[name][0], axis=1)
    right = left.copy()
    right[:, j] = lo_hi[name][1]
    return PointSet(_t(left)), PointSet(_t(right))


def load_problem(
    path,
    *,
    form: str = "positions",
    variant: str | None = None,
    system: System | None = None,
    stream: StreamPolicy | None = None,
) -> Problem:
    """Read a dataset file into a :class:`Problem` (float64 CPU tensors; move them with
    :meth:`Problem.to`). ``system`` defaults to the one the file records."""
    with open_dataset(path) as f, damaged_file_errors(path):
        prov = provenance(f)
        file_system = get_system(prov["system"], prov.get("system_parameters") or {})
        if system is None:
            system = file_system
        elif system.name != file_system.name:
            raise DatasetError(
                f"{path} holds data of system {file_system.name!r}, not {system.name!r}"
            )
        layout = prov["layout"]
        # the layout follows the system's kind: trajectories of an ODE, fields otherwise
        if layout == "trajectories":
            ode = cast(ODESystem, system)
            problem = _load_trajectories(f, ode, form, variant, stream or StreamPolicy())
        elif layout == "points":
            problem = _load_points(f, cast(FieldSystem, system), variant)
        elif layout == "grid":
            problem = _load_grid(f, cast(FieldSystem, system), variant)
        else:  # pragma: no cover - open_dataset validates layouts
            raise DatasetError(f"{path}: unknown layout {layout!r}")
        problem.source = {
            "path": str(path),
            "config_hash": prov.get("config_hash"),
            "created": prov.get("created"),
            "package_version": prov.get("package_version"),
            "seed": prov.get("seed"),
            "variant": variant,
        }
        return problem
