"""``derl import``: your own data into a dataset file of ours.

* :func:`import_trajectories`: measured trajectories of an ODE system from CSV, NumPy
  ``.npy``/``.npz`` or HDF5 of any layout (a time column or array, state columns; one file
  or one per trajectory; irregular times) → a ``trajectories`` file.
* :func:`import_pdebench`: one sample of a PDEBench 1-D file (``tensor``,
  ``x-coordinate``, ``t-coordinate``) → a ``grid`` file.

Both estimate the derivatives the losses need with an estimator of
:mod:`derlhybrid.data.estimators` (``derivatives="central:2"``, ``"savgol"``, …) and write
them where ``derl train`` reads them (``/trajectories/derivatives``,
``/derivatives/u_t``, ``u_x``; attribute ``estimated``). Provenance: the source files with
their SHA-256, the columns used, units, the estimator with its parameters and data-driven
choices, the split seed. Bad input raises :class:`~derlhybrid.data.store.DatasetError`, one
line naming the file and the row or column, before anything is written; the file appears
at its final name only when whole (the atomic writer, under the output's lock).

Times: the flow map of a trajectory file is (t, y0) ↦ y(t) with y0 = y(0), so each
trajectory's times are shifted to start at 0 (its first sample is its initial state; the
shifts are kept in ``/trajectories/t_offset``). Trajectories sharing their times get one
time vector ``/trajectories/t`` (n_t,); irregular ones a row each (n_traj, n_t), which
the trainer reads as such. Every trajectory needs the same number of samples.
"""

from __future__ import annotations

import csv
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..systems import FieldSystem, ODESystem, get_system
from .estimators import estimate, estimate_along, parse_estimator
from .store import DatasetError, DatasetWriter, check_target, h5_dataset, output_lock

__all__ = ["FORMATS", "TrajectoryImport", "import_pdebench", "import_trajectories"]

FORMATS = ("csv", "npy", "npz", "hdf5", "pdebench")
_SUFFIXES = {".csv": "csv", ".npy": "npy", ".npz": "npz", ".h5": "hdf5", ".hdf5": "hdf5"}


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def detect_format(path: str | Path) -> str:
    """``csv``, ``npy``, ``npz``, ``hdf5`` or ``pdebench`` (an HDF5 file with ``tensor``
    and ``x-coordinate``) from the file name and, for HDF5, its datasets."""
    p = Path(path)
    fmt = _SUFFIXES.get(p.suffix.lower())
    if fmt is None:
        raise DatasetError(
            f"{p}: cannot tell the format from the suffix {p.suffix!r}; pass --format "
            f"({', '.join(FORMATS)})"
        )
    if fmt == "hdf5":
        import h5py

        try:
            with h5py.File(p, "r") as f:
                if "tensor" in f and "x-coordinate" in f:
                    return "pdebench"
        except OSError:
            raise DatasetError(f"{p} is not a readable HDF5 file") from None
    return fmt


@dataclass(frozen=True)
class TrajectoryImport:
    """What :func:`import_trajectories` reads and how.

    ``time``: the time column (CSV header name, ``.npz``/HDF5 key, ``.npy`` column index);
    ``columns``: the state columns, in the order of the system's state names (default: those
    names; ``.npy``: the columns after the time); ``states``: instead of ``columns``, one
    array key holding every state column (last axis); ``trajectory``: a CSV column whose
    value tells the trajectories of one file apart; ``units``: column → unit (recorded)."""

    sources: tuple[str, ...]
    out: str
    system: str
    params: dict[str, Any] = field(default_factory=dict)
    format: str | None = None
    time: str = "t"
    columns: tuple[str, ...] | None = None
    states: str | None = None
    trajectory: str | None = None
    units: dict[str, str] = field(default_factory=dict)
    derivatives: str = "central:2"
    seed: int = 0
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)
    overwrite: bool = False
    compression: str = "gzip"

    def __post_init__(self):
        if not self.sources:
            raise ValueError("give at least one source file")
        if self.format is not None and self.format not in FORMATS:
            raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        if len(self.split) != 3 or min(self.split) < 0 or abs(sum(self.split) - 1) > 1e-9:
            raise ValueError(f"--split takes 3 non-negative fractions summing to 1: {self.split}")
        if self.seed < 0:
            raise ValueError(f"--seed must be a non-negative integer, got {self.seed}")
        parse_estimator(self.derivatives)


# ------------------------------------------------------------------------------------------
# reading tables: every format becomes name -> array (CSV: 1-d columns)
def _read_csv(path: Path) -> dict[str, np.ndarray]:
    try:
        fh = open(path, newline="")
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror})") from None
    with fh:
        rows = csv.reader(fh)
        header = next(rows, None)
        if not header:
            raise DatasetError(f"{path}: empty file (a header row of column names is needed)")
        header = [h.strip() for h in header]
        if len(set(header)) != len(header):
            raise DatasetError(f"{path}: the header names a column twice: {header}")
        values: list[list[str]] = []
        for row in rows:
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise DatasetError(
                    f"{path}: row {rows.line_num} has {len(row)} fields, the header "
                    f"{len(header)} (ragged rows)"
                )
            values.append(row)
    if not values:
        raise DatasetError(f"{path}: no data rows after the header")
    out = {}
    for j, name in enumerate(header):
        col = np.empty(len(values))
        for i, row in enumerate(values):
            try:
                col[i] = float(row[j])
            except ValueError:
                if name and not row[j].strip():
                    raise DatasetError(
                        f"{path}: row {i + 2}, column {name!r} is empty (missing value)"
                    ) from None
                col[i] = math.nan  # a text column (e.g. an id): kept as NaN, checked on use
                out.setdefault(f"__text__{name}", [None] * len(values))[i] = row[j]
        out[name] = col
    for name in list(out):
        if name.startswith("__text__"):
            texts = out.pop(name)
            real = name[len("__text__") :]
            if any(t is None for t in texts):  # a mixed column: a bad number somewhere
                i = next(i for i, t in enumerate(texts) if t is not None)
                raise DatasetError(
                    f"{path}: row {i + 2}, column {real!r}: {texts[i]!r} is not a number"
                )
            out[real] = np.array(texts, dtype=object)
    return out


def _read_arrays(path: Path, fmt: str) -> dict[str, np.ndarray]:
    if fmt == "npy":
        try:
            a = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{path}: not a readable .npy file ({exc})") from None
        if a.ndim not in (2, 3) or a.shape[-1] < 2:
            raise DatasetError(
                f"{path}: a .npy source must be (n_t, columns) or (n_traj, n_t, columns) with "
                f"the time in one column, got shape {a.shape}"
            )
        return {str(j): a[..., j] for j in range(a.shape[-1])}
    if fmt == "npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{path}: not a readable .npz file ({exc})") from None
    import h5py

    out: dict[str, np.ndarray] = {}
    try:
        with h5py.File(path, "r") as f:

            def visit(name, obj):
                if isinstance(obj, h5py.Dataset):
                    out[name] = obj[...]

            f.visititems(visit)
    except OSError:
        raise DatasetError(f"{path}: not a readable HDF5 file") from None
    return out


def _get(table: dict, key: str, path: Path, what: str) -> np.ndarray:
    k = key.lstrip("/")
    if k not in table:
        avail = ", ".join(sorted(n for n in table if not n.startswith("__")))
        raise DatasetError(f"{path}: no {what} {key!r} (available: {avail or 'none'})")
    a = table[k]
    if a.dtype == object:  # a CSV column of text: name its first entry that is no number
        i = 0
        for i, v in enumerate(a):  # noqa: B007
            try:
                float(v)
            except ValueError:
                break
        raise DatasetError(f"{path}: row {i + 2}, column {key!r}: {a[i]!r} is not a number")
    if a.dtype.kind not in "fiu":
        raise DatasetError(f"{path}: {what} {key!r} is not numeric ({a.dtype})")
    return np.asarray(a, dtype=np.float64)


def _check_values(a: np.ndarray, path: Path, name: str, unit: str = "row") -> None:
    bad = ~np.isfinite(a)
    if bad.any():
        idx = np.unravel_index(int(np.argmax(bad)), a.shape)
        where = (
            f"{unit} {idx[0] + (2 if unit == 'row' else 0)}"
            if a.ndim == 1
            else f"trajectory {idx[0]}, sample {idx[1]}"
        )
        raise DatasetError(
            f"{path}: column {name!r} holds {a[idx]} at {where} (NaN or infinite values are "
            "not data; drop or fill those rows)"
        )


def _check_times(t: np.ndarray, path: Path, name: str, csv_rows: bool) -> None:
    for k, row in enumerate(np.atleast_2d(t)):
        bad = np.flatnonzero(np.diff(row) <= 0)
        if bad.size:
            i = int(bad[0]) + 1
            where = f"row {i + 2}" if csv_rows else f"sample {i}"
            traj = f" of trajectory {k}" if t.ndim == 2 else ""
            raise DatasetError(
                f"{path}: time column {name!r} is not strictly increasing at {where}{traj} "
                f"({row[i]} after {row[i - 1]}); sort the rows or remove repeated times"
            )


def _trajectories_of(req: TrajectoryImport, path: Path, fmt: str, system: ODESystem):
    """(times (k, n_t), states (k, n_t, n_state), columns used) of one source file."""
    table = _read_csv(path) if fmt == "csv" else _read_arrays(path, fmt)
    csv_rows = fmt == "csv"
    names = system.state_names
    time_key = req.time
    if fmt == "npy" and time_key == "t":
        time_key = "0"
    t = _get(table, time_key, path, "time column")
    if req.states is not None:
        y = _get(table, req.states, path, "state array")
        used = {"states": req.states}
    else:
        cols = req.columns
        if cols is None:
            cols = (
                tuple(str(j) for j in range(len(table)) if str(j) != time_key)
                if fmt == "npy"
                else tuple(names)
            )
        if len(cols) != len(names):
            raise DatasetError(
                f"{path}: {len(cols)} state columns {list(cols)} for the {len(names)} states "
                f"{list(names)} of {system.name} (--columns lists them in that order)"
            )
        arrays = []
        for c in cols:
            a = _get(table, c, path, "state column")
            if a.shape != t.shape:
                raise DatasetError(
                    f"{path}: column {c!r} has shape {a.shape}, the time column {t.shape} "
                    "(mismatched shapes)"
                )
            _check_values(a, path, c)
            arrays.append(a)
        y = np.stack(arrays, axis=-1)
        used = dict(zip(names, cols, strict=True))
    _check_values(t, path, time_key)
    # one trajectory per file, or several: (n_traj, n_t) times / (n_traj, n_t, n_state) states
    if req.trajectory is not None:
        if not csv_rows:
            raise DatasetError("--trajectory-column applies to CSV sources only")
        if req.trajectory not in table:
            raise DatasetError(f"{path}: no trajectory column {req.trajectory!r}")
        ids = table[req.trajectory]
        order = list(dict.fromkeys(ids.tolist()))
        groups = [np.flatnonzero(ids == k) for k in order]
        if len({len(g) for g in groups}) != 1:
            sizes = {str(k): len(g) for k, g in zip(order, groups, strict=True)}
            raise DatasetError(
                f"{path}: trajectories of different lengths {sizes}: every trajectory needs "
                "the same number of samples"
            )
        for g in groups:
            _check_times(t[g], path, time_key, csv_rows=False)
        t = np.stack([t[g] for g in groups])
        y = np.stack([y[g] for g in groups])
        used["trajectory"] = req.trajectory
    else:
        if t.ndim == 1 and y.ndim == 2:
            t, y = t[None], y[None]
        elif t.ndim == 1 and y.ndim == 3:
            t = np.broadcast_to(t, y.shape[:2])
        if t.ndim != 2 or y.ndim != 3 or y.shape[:2] != t.shape or y.shape[2] != len(names):
            raise DatasetError(
                f"{path}: states of shape {y.shape} do not fit times of shape {t.shape} and "
                f"{len(names)} states (expected (n_t, {len(names)}) or (n_traj, n_t, "
                f"{len(names)})): mismatched shapes"
            )
        bad = ~np.isfinite(y)
        if bad.any():
            k, i, j = np.unravel_index(int(np.argmax(bad)), y.shape)
            raise DatasetError(
                f"{path}: state {names[j]!r} holds {y[k, i, j]} at trajectory {k}, sample {i} "
                "(NaN or infinite values are not data)"
            )
        _check_times(t, path, time_key, csv_rows=csv_rows and t.shape[0] == 1)
    if t.shape[1] < 3:
        raise DatasetError(f"{path}: {t.shape[1]} samples per trajectory; at least 3 are needed")
    return np.array(t), np.array(y), used


def _splits(n: int, fractions, seed: int) -> dict[str, np.ndarray]:
    """Trajectory indices per split: a seeded permutation (PCG64(SeedSequence(seed))) cut
    by the fractions, each split sorted; at least one training trajectory."""
    perm = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed))).permutation(n)
    n_train = max(1, round(fractions[0] * n))
    n_val = min(n - n_train, round(fractions[1] * n))
    return {
        "train": np.sort(perm[:n_train]),
        "val": np.sort(perm[n_train : n_train + n_val]),
        "test": np.sort(perm[n_train + n_val :]),
    }


def import_trajectories(req: TrajectoryImport) -> Path:
    """Write the trajectories of ``req.sources`` into the ``trajectories`` file ``req.out``
    (see the module docstring); returns its path."""
    system = get_system(req.system, req.params)
    if not isinstance(system, ODESystem):
        raise ValueError(
            f"{req.system} is not an ODE system: trajectories need one (pendulum, or a system "
            "of your own registered in Python); gridded fields come from --format pdebench"
        )
    out = Path(req.out)
    check_target(out, req.overwrite)
    est = parse_estimator(req.derivatives)
    ts, ys, sources = [], [], []
    for src in req.sources:
        path = Path(src)
        if not path.is_file():
            raise DatasetError(f"{path} does not exist")
        fmt = req.format or detect_format(path)
        if fmt == "pdebench":
            raise DatasetError(f"{path} is a PDEBench file: import it with --format pdebench")
        t, y, used = _trajectories_of(req, path, fmt, system)
        ts.append(t)
        ys.append(y)
        sources.append(
            {
                "path": str(path.resolve()),
                "sha256": sha256(path),
                "format": fmt,
                "time": req.time,
                "columns": used,
                "trajectories": int(t.shape[0]),
            }
        )
    lengths = {t.shape[1] for t in ts}
    if len(lengths) != 1:
        raise DatasetError(
            f"the sources hold trajectories of {sorted(lengths)} samples: every trajectory "
            "needs the same number of samples (resample, or import them into separate files)"
        )
    t = np.concatenate(ts)
    y = np.concatenate(ys)
    offset = t[:, 0].copy()
    t = t - offset[:, None]
    shared = bool(np.all(np.abs(t - t[0]) <= 1e-12 * max(1.0, float(np.abs(t).max()))))
    times = t[0] if shared else t
    try:
        dy, est_info = estimate(est, y, times)
    except ValueError as exc:
        raise DatasetError(f"--derivatives {est.spec()}: {exc}") from None
    splits = _splits(y.shape[0], req.split, req.seed)
    generator = {
        "method": "import (measured trajectories)",
        "sources": sources,
        "units": dict(req.units),
        "derivatives": est_info,
        "times": "shared" if shared else "per trajectory (irregular)",
        "initial_states": "the first sample of each trajectory; times shifted to start at 0",
        "split": {"fractions": list(req.split), "seed": req.seed, "by": "trajectory"},
    }
    attrs = {
        "system": system.name,
        "system_parameters": system.params(),
        "generator": generator,
        "backend": "python",
        "package_version": __version__,
        "seed": req.seed,
        "dtype": "float64",
        "state_names": list(system.state_names),
    }
    config = {
        "import": "trajectories",
        "sources": [s["sha256"] for s in sources],
        "system": system.name,
        "params": system.params(),
        "time": req.time,
        "columns": list(req.columns or ()),
        "states": req.states,
        "trajectory": req.trajectory,
        "derivatives": est.spec(),
        "seed": req.seed,
        "split": list(req.split),
    }
    names = list(system.state_names)
    with output_lock(out):
        check_target(out, req.overwrite)
        with DatasetWriter(
            out,
            layout="trajectories",
            attrs=attrs,
            config=config,
            overwrite=req.overwrite,
            compression=req.compression,
        ) as w:
            w.create("trajectories/t", None, data=times, attrs={"unit": req.units.get("t", "")})
            w.create("trajectories/t_offset", None, data=offset)
            w.create("trajectories/initial_states", None, data=y[:, 0], attrs={"columns": names})
            w.create("trajectories/states", None, data=y, attrs={"columns": names})
            w.create(
                "trajectories/derivatives",
                None,
                data=dy,
                attrs={"estimated": True, "estimator": est.spec(), "columns": names},
            )
            w.create("trajectories/status", None, data=np.zeros(y.shape[0], dtype=np.int8))
            for name, idx in splits.items():
                w.create(f"splits/{name}", None, data=idx.astype(np.int64))
    return out


# ------------------------------------------------------------------------------------------
# PDEBench
PDEBENCH_SYSTEMS = {"advection": "beta", "burgers": "Nu", "diffusion-reaction": "rho"}


def _pdebench_system(attrs, override: str | None) -> tuple[str, dict[str, float]]:
    """The system of a PDEBench file (from its attributes, or ``override``) and the
    parameters its attributes give."""
    keys = {k.lower(): float(v) for k, v in attrs.items() if np.ndim(v) == 0}
    if override is None:
        if "beta" in keys:
            override = "advection"
        elif "rho" in keys and "nu" in keys:
            override = "diffusion-reaction"
        elif "nu" in keys:
            override = "burgers"
        else:
            raise DatasetError(
                "the PDEBench file has none of the attributes beta, Nu, rho that tell its PDE; "
                f"pass --system ({', '.join(PDEBENCH_SYSTEMS)})"
            )
    params = {}
    if override == "advection" and "beta" in keys:
        params["beta"] = keys["beta"]
    if override in ("burgers", "diffusion-reaction") and "nu" in keys:
        params["nu"] = keys["nu"]
    if override == "diffusion-reaction" and "rho" in keys:
        params["rho"] = keys["rho"]
    return override, params


def import_pdebench(
    source,
    out,
    *,
    sample: int = 0,
    system: str | None = None,
    params: dict | None = None,
    derivatives: str = "central:2",
    overwrite: bool = False,
    compression: str = "gzip",
) -> Path:
    """Sample ``sample`` of the PDEBench 1-D file ``source`` → the ``grid`` file ``out``:
    ``/grid/t`` (the first n_t entries of ``t-coordinate``), ``/grid/x`` (periodic),
    ``/fields/u`` (n_t, n_x) and the estimated ``/derivatives/u_t``, ``u_x`` (periodic in
    x). The system (advection, burgers, diffusion-reaction) comes from the file's
    attributes unless given; its interval is the cells' extent (x₀ − dx/2, x_last + dx/2)."""
    import h5py

    from . import pdebench as _pdebench  # registers the systems

    del _pdebench
    path = Path(source)
    if not path.is_file():
        raise DatasetError(f"{path} does not exist")
    out = Path(out)
    check_target(out, overwrite)
    est = parse_estimator(derivatives)
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise DatasetError(f"{path} is not a readable HDF5 file") from None
    with f:
        for key in ("tensor", "x-coordinate", "t-coordinate"):
            if key not in f:
                raise DatasetError(
                    f"{path}: no dataset {key!r}; a PDEBench 1-D file holds tensor, "
                    "x-coordinate and t-coordinate"
                )
        shape = h5_dataset(f, "tensor").shape
        if len(shape) != 3:
            raise DatasetError(
                f"{path}: tensor has shape {shape}; the 1-D layouts are (n_samples, n_t, n_x)"
            )
        if not 0 <= sample < shape[0]:
            raise DatasetError(f"{path}: --sample {sample} is outside the {shape[0]} samples")
        u = np.asarray(h5_dataset(f, "tensor")[sample], dtype=np.float64)
        x = np.asarray(h5_dataset(f, "x-coordinate")[...], dtype=np.float64)
        t = np.asarray(h5_dataset(f, "t-coordinate")[...], dtype=np.float64)
        name, file_params = _pdebench_system(dict(f.attrs), system)
    n_t, n_x = u.shape
    if x.shape != (n_x,):
        raise DatasetError(
            f"{path}: x-coordinate has shape {x.shape}, tensor {n_x} points per frame "
            "(mismatched shapes)"
        )
    if t.shape in ((n_t + 1,), (n_t,)):
        t = t[:n_t]  # PDEBench's generator writes one time more than it saves frames
    else:
        raise DatasetError(
            f"{path}: t-coordinate has shape {t.shape}, tensor {n_t} frames (expected {n_t} "
            f"or {n_t + 1} times): mismatched shapes"
        )
    for a, what in ((x, "x-coordinate"), (t, "t-coordinate")):
        _check_values(a, path, what, unit="entry")
        bad = np.flatnonzero(np.diff(a) <= 0)
        if bad.size:
            raise DatasetError(
                f"{path}: {what} is not strictly increasing at entry {int(bad[0]) + 1}"
            )
    bad = ~np.isfinite(u)
    if bad.any():
        i, j = np.unravel_index(int(np.argmax(bad)), u.shape)
        raise DatasetError(
            f"{path}: tensor[{sample}] holds {u[i, j]} at frame {i}, point {j} (NaN or "
            "infinite values are not data)"
        )
    dx = float(np.mean(np.diff(x)))
    sys_params = {
        "x_min": x[0] - dx / 2,
        "x_max": x[-1] + dx / 2,
        "t_end": float(t[-1]) if t[-1] > 0 else 1.0,
        **file_params,
        **(params or {}),
    }
    system_obj = get_system(name, sys_params)
    assert isinstance(system_obj, FieldSystem)  # the PDEBench systems are fields
    x_min, x_max = system_obj.domain()["x"]  # the periodic interval (x_min, x_max)
    period = x_max - x_min
    try:
        u_t, info_t = estimate_along(est, u, t - t[0], axis=0)
        u_x, info_x = estimate_along(est, u, x, axis=1, periodic=True, period=period)
    except ValueError as exc:
        raise DatasetError(f"--derivatives {est.spec()}: {exc}") from None
    generator = {
        "method": "import (PDEBench 1-D file)",
        "sources": [
            {
                "path": str(path.resolve()),
                "sha256": sha256(path),
                "format": "pdebench",
                "sample": sample,
                "datasets": {"u": "tensor", "x": "x-coordinate", "t": "t-coordinate[:n_t]"},
            }
        ],
        "derivatives": {"u_t": info_t, "u_x": info_x},
        "grid": {"n_t": n_t, "n_x": n_x, "x": "cell centres, periodic"},
    }
    attrs = {
        "system": system_obj.name,
        "system_parameters": system_obj.params(),
        "generator": generator,
        "backend": "python",
        "package_version": __version__,
        "seed": 0,
        "dtype": "float64",
        "inputs": ["t", "x"],
        "outputs": ["u"],
    }
    config = {
        "import": "pdebench",
        "source": generator["sources"][0]["sha256"],
        "sample": sample,
        "system": system_obj.name,
        "params": system_obj.params(),
        "derivatives": est.spec(),
    }
    with output_lock(out):
        check_target(out, overwrite)
        with DatasetWriter(
            out,
            layout="grid",
            attrs=attrs,
            config=config,
            overwrite=overwrite,
            compression=compression,
        ) as w:
            w.create("grid/t", None, data=t - t[0])
            w.create("grid/x", None, data=x, attrs={"periodic": True})
            w.create("fields/u", None, data=u)
            for key, d in (("u_t", u_t), ("u_x", u_x)):
                w.create(
                    f"derivatives/{key}",
                    None,
                    data=d,
                    attrs={"estimated": True, "estimator": est.spec()},
                )
    return out


def import_from_cli(args) -> Path:
    """``derl import``'s options → :func:`import_trajectories` or :func:`import_pdebench`."""
    from ..systems import parse_params

    sources: Sequence[str] = args.sources
    fmt = args.format or detect_format(sources[0])
    params = parse_params(args.param)
    units = {}
    for item in args.units or ():
        k, sep, v = item.partition("=")
        if not sep or not k.strip():
            raise ValueError(f"--units expects COLUMN=UNIT, got {item!r}")
        units[k.strip()] = v.strip()
    derivatives = args.derivatives or "central:2"
    if fmt == "pdebench":
        if len(sources) != 1:
            raise ValueError("--format pdebench imports one file (one sample) at a time")
        return import_pdebench(
            sources[0],
            args.out,
            sample=args.sample,
            system=args.system,
            params=params,
            derivatives=derivatives,
            overwrite=args.overwrite,
        )
    if not args.system:
        raise ValueError(
            "--system is required for trajectories (e.g. --system pendulum): its state names "
            "are the columns"
        )
    return import_trajectories(
        TrajectoryImport(
            sources=tuple(sources),
            out=args.out,
            system=args.system,
            params=params,
            format=args.format,
            time=args.time,
            columns=tuple(c.strip() for c in args.columns.split(",")) if args.columns else None,
            states=args.states,
            trajectory=args.trajectory_column,
            units=units,
            derivatives=derivatives,
            seed=args.seed,
            split=tuple(args.split),
            overwrite=args.overwrite,
        )
    )
