"""A user's source files for ``derl import``: formats, readers, and checks of their values.

Every format becomes a *table*, name → array: a CSV file's columns (1-D, by header name; a
column of text is kept as an object array and refused on use), a ``.npy`` file's columns
(by index, ``"0"``, ``"1"``, …), a ``.npz`` file's arrays, an HDF5 file's datasets (by
path). :func:`column` takes one numeric column out of a table; :func:`check_values` and
:func:`check_times` refuse non-finite values and times that do not increase. Every problem
raises :class:`~derlhybrid.data.store.DatasetError`, one line naming the file and the row or
column. The importers (``importing.py``, ``pdebench_import.py``) build on these.
"""

from __future__ import annotations

import csv
import hashlib
import math
from pathlib import Path

import numpy as np

from .store import DatasetError

__all__ = [
    "FORMATS",
    "check_times",
    "check_values",
    "column",
    "detect_format",
    "read_table",
    "sha256",
]

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


def column(table: dict, key: str, path: Path, what: str) -> np.ndarray:
    """Entry ``key`` of ``table`` as float64 (``what`` names it in errors)."""
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


def check_values(a: np.ndarray, path: Path, name: str, unit: str = "row") -> None:
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


def check_times(t: np.ndarray, path: Path, name: str, csv_rows: bool) -> None:
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


def read_table(path: Path, fmt: str) -> dict[str, np.ndarray]:
    """The table of the source file ``path`` in format ``fmt`` (``csv``, ``npy``, ``npz``
    or ``hdf5``)."""
    return _read_csv(path) if fmt == "csv" else _read_arrays(path, fmt)
