"""``derl import``: your own data into a dataset file of ours.

* :func:`import_trajectories`: measured trajectories of an ODE system from CSV, NumPy
  ``.npy``/``.npz`` or HDF5 of any layout (a time column or array, state columns; one file
  or one per trajectory; irregular times) → a ``trajectories`` file.
* :func:`import_pdebench`: one sample of a PDEBench 1-D file (``tensor``,
  ``x-coordinate``, ``t-coordinate``) → a ``grid`` file (:mod:`.pdebench_import`,
  re-exported here).

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

This module holds the trajectories importer (``derl import``'s options become these calls
in the CLI layer, ``derlhybrid.cli_import``); the source files are read and their values
checked by :mod:`.source_files`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..systems import ODESystem, get_system
from .estimators import estimate, parse_estimator
from .pdebench_import import PDEBENCH_SYSTEMS, import_pdebench
from .source_files import (
    FORMATS,
    check_times,
    check_values,
    column,
    detect_format,
    read_table,
    sha256,
)
from .store import DatasetError, DatasetWriter, check_target, output_lock

__all__ = [
    "FORMATS",
    "PDEBENCH_SYSTEMS",
    "TrajectoryImport",
    "detect_format",
    "import_pdebench",
    "import_trajectories",
]


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


def _trajectories_of(req: TrajectoryImport, path: Path, fmt: str, system: ODESystem):
    """(times (k, n_t), states (k, n_t, n_state), columns used) of one source file."""
    table = read_table(path, fmt)
    csv_rows = fmt == "csv"
    names = system.state_names
    time_key = req.time
    if fmt == "npy" and time_key == "t":
        time_key = "0"
    t = column(table, time_key, path, "time column")
    if req.states is not None:
        y = column(table, req.states, path, "state array")
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
            a = column(table, c, path, "state column")
            if a.shape != t.shape:
                raise DatasetError(
                    f"{path}: column {c!r} has shape {a.shape}, the time column {t.shape} "
                    "(mismatched shapes)"
                )
            check_values(a, path, c)
            arrays.append(a)
        y = np.stack(arrays, axis=-1)
        used = dict(zip(names, cols, strict=True))
    check_values(t, path, time_key)
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
            check_times(t[g], path, time_key, csv_rows=False)
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
        check_times(t, path, time_key, csv_rows=csv_rows and t.shape[0] == 1)
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
