"""``derl import --format pdebench``: one sample of a PDEBench 1-D file → a ``grid`` file.

The file's layout and its three systems (advection, Burgers, diffusion–reaction) are
described in :mod:`derlhybrid.data.pdebench`, which registers the systems. The derivatives
u_t, u_x are estimated with an estimator of :mod:`derlhybrid.data.estimators`
(``derivatives="central:2"``, …) and written as ``/derivatives/u_t``, ``u_x`` with the
attribute ``estimated``; provenance records the source file with its SHA-256, the sample
and the estimator. Bad input raises :class:`~derlhybrid.data.store.DatasetError` before
anything is written; the file appears at its final name only when whole (the atomic
writer, under the output's lock).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import __version__
from ..systems import SYSTEMS, FieldSystem, get_system
from .estimators import estimate_along, parse_estimator
from .source_files import check_values, sha256
from .store import DatasetError, DatasetWriter, check_target, h5_dataset, output_lock

__all__ = ["PDEBENCH_SYSTEMS", "import_pdebench"]

#: the system of a PDEBench 1-D file → the root attribute that tells that PDE
PDEBENCH_SYSTEMS = {"advection": "beta", "burgers": "Nu", "diffusion-reaction": "rho"}
#: root attributes (lower-cased) that give a parameter of the same name, where the system has it
_FILE_PARAMETERS = ("beta", "nu", "rho")


def _pdebench_system(attrs, override: str | None) -> tuple[str, dict[str, float]]:
    """The system of a PDEBench file (from its attributes, or ``override``) and the
    parameters its attributes give (those of :data:`_FILE_PARAMETERS` the system declares)."""
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
    cls = SYSTEMS.get(override)
    declared = {s.name for s in cls.parameter_specs()} if cls is not None else set()
    params = {k: keys[k] for k in _FILE_PARAMETERS if k in keys and k in declared}
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
        check_values(a, path, what, unit="entry")
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
