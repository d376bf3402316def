"""The HDF5 dataset store: atomic, resumable writing and a validating reader.

Contract (documented in ``docs/datasets.md``):

* root attributes ``format = "derlhybrid-dataset"``, ``format_version``, ``layout``
  (``"trajectories"``, ``"grid"`` or ``"points"``), ``system``, ``system_parameters``
  (JSON), ``generator`` (JSON: method, tolerances, grid, FD scheme...), ``backend``,
  ``package_version``, ``seed``, ``created`` (UTC ISO 8601), ``config`` (JSON of the whole
  request), ``config_hash`` and ``complete``;
* a file is written under a temporary name of its own (``<name>.<pid>-<random>.writing``,
  created exclusively, so no other process can truncate it) and renamed to ``<name>`` only
  once ``complete`` is set, so a file at the final name is always whole;
* a generation holds an exclusive lock (``fcntl.flock`` on ``<name>.lock``) from before it
  looks at the work folder until the file is in place, so a second run on the same output
  stops at once with one line instead of sharing the work;
* long generations compute in chunks kept in ``<name>.partial/`` (one ``.npy`` file per
  array per chunk, each renamed into place when whole); a run killed at any instant is
  resumed by rerunning the same request, which computes only the missing chunks.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import glob
import hashlib
import json
import os
import secrets
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._io import exclusive_lock, lock_path, write_text_atomic  # noqa: F401 (lock_path: API)

if TYPE_CHECKING:
    import h5py

FORMAT = "derlhybrid-dataset"
#: format of the shard files of a sharded generation (``derl generate --engine ray``): rows
#: of a dataset that the stitched file maps with HDF5 virtual datasets; never opened alone
SHARD_FORMAT = "derlhybrid-shard"
FORMAT_VERSION = 1
LAYOUTS = ("trajectories", "grid", "points")


class DatasetError(ValueError):
    """A dataset file that cannot be used; the message says why and what to do."""


def _h5py():
    import h5py

    return h5py


def h5_dataset(group: h5py.Group, name: str) -> h5py.Dataset:
    """``group[name]``, which must be a dataset (h5py's item access may also give a group
    or a named type); a ``KeyError`` where it is missing, as ``group[name]`` raises."""
    obj = group[name]
    if not isinstance(obj, _h5py().Dataset):
        raise DatasetError(f"{group.file.filename}: {obj.name} is not a dataset")
    return obj


def h5_group(group: h5py.Group, name: str) -> h5py.Group:
    """``group[name]``, which must be a group (as :func:`h5_dataset`)."""
    obj = group[name]
    if not isinstance(obj, _h5py().Group):
        raise DatasetError(f"{group.file.filename}: {obj.name} is not a group")
    return obj


def config_hash(config: Mapping[str, Any]) -> str:
    """Stable hash of a request (what must match for a resume)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def partial_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p.with_name(p.name + ".partial")


def compression_options(name: str) -> dict:
    """h5py keyword arguments for ``--compression`` (gzip: level 1 + shuffle, portable)."""
    if name == "gzip":
        return {"compression": "gzip", "compression_opts": 1, "shuffle": True}
    if name == "lzf":
        return {"compression": "lzf", "shuffle": True}
    if name == "none":
        return {}
    raise ValueError(f"compression must be gzip, lzf or none, got {name!r}")


class ChunkStore:
    """Kill-safe work area of a generation: ``<name>.partial/`` holding one ``.npy`` file
    per array per finished chunk, each written under a temporary name and renamed.

    A process killed at any instant leaves only whole chunk files, so rerunning the same
    request (same ``config_hash``) computes just the missing chunks. HDF5 files are not
    used here because a kill in the middle of an HDF5 write can corrupt the whole file.
    """

    def __init__(self, path: str | os.PathLike, config: Mapping[str, Any], *, overwrite=False):
        self.dir = partial_path(path)
        self.hash = config_hash(config)
        meta = self.dir / "request.json"
        if self.dir.exists():
            try:
                old = json.loads(meta.read_text())
            except (OSError, ValueError):
                old = {}
            if old.get("config_hash") != self.hash:
                if not overwrite:
                    raise DatasetError(
                        f"{self.dir} holds unfinished work of a different request; delete it "
                        "or set overwrite (derl: --overwrite) to start again"
                    )
                self.remove()  # --overwrite wipes only work that this request cannot reuse
        self.resumed = self.dir.exists()
        if not self.resumed:
            self.dir.mkdir()
            write_text_atomic(
                meta,
                json.dumps(
                    {"config_hash": self.hash, "config": dict(config)}, sort_keys=True, default=str
                ),
            )

    def _file(self, k: int, name: str) -> Path:
        return self.dir / f"chunk{k:07d}.{name}.npy"

    def done(self, k: int) -> bool:
        return (self.dir / f"chunk{k:07d}.done").exists()

    def pending(self, n_chunks: int) -> list[int]:
        return [k for k in range(n_chunks) if not self.done(k)]

    def save(self, k: int, **arrays: np.ndarray) -> None:
        for name, arr in arrays.items():
            # a temporary name of this write's own (created exclusively), renamed when whole
            fd, tmp = tempfile.mkstemp(prefix=f"chunk{k:07d}.{name}.", suffix=".tmp", dir=self.dir)
            try:
                with os.fdopen(fd, "wb") as fh:
                    np.save(fh, arr)
                os.replace(tmp, self._file(k, name))
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        (self.dir / f"chunk{k:07d}.done").touch()  # written last: the chunk is whole

    def load(self, k: int, name: str) -> np.ndarray:
        return np.load(self._file(k, name))

    def remove(self) -> None:
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)


class DatasetWriter:
    """Write one dataset file atomically: under a temporary name of its own
    (:func:`writing_path`), renamed to ``<name>``
    only after the root attribute ``complete`` is set (so a file at the final name is
    always whole).

    >>> with DatasetWriter(path, layout="points", attrs=..., config=...) as w:
    ...     w.create("points/inputs", None, data=X)
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        layout: str,
        attrs: Mapping[str, Any],
        config: Mapping[str, Any],
        overwrite: bool = False,
        compression: str = "gzip",
        fmt: str = FORMAT,
    ):
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}")
        self.path = Path(path)
        self.compression = compression_options(compression)
        check_target(self.path, overwrite)
        self.tmp = writing_path(self.path)
        try:
            self.file = _h5py().File(self.tmp, "w-")  # "w-": fails rather than truncates
        except BaseException:
            self.tmp.unlink(missing_ok=True)
            raise
        a = self.file.attrs
        a["format"] = fmt
        a["format_version"] = FORMAT_VERSION
        a["layout"] = layout
        a["complete"] = False
        a["created"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        a["config"] = json.dumps(dict(config), sort_keys=True, default=str)
        a["config_hash"] = config_hash(config)
        for k, v in attrs.items():
            a[k] = json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else v

    def create(self, name: str, shape, dtype="f8", *, chunks=None, data=None, attrs=None):
        """Create a chunked, compressed dataset (``data`` given: shape and dtype from it)."""
        opts = dict(self.compression)
        if data is not None:
            data = np.asarray(data)
            shape, dtype = data.shape, data.dtype
        if int(np.prod(shape)) == 0:
            opts, chunks = {}, None
        d = self.file.create_dataset(
            name,
            shape=shape,
            dtype=dtype,
            chunks=chunks or (True if opts else None),
            data=data,
            **opts,
        )
        for k, v in (attrs or {}).items():
            d.attrs[k] = v
        return d

    def create_virtual(self, name: str, shape, dtype, sources, *, attrs=None):
        """A virtual dataset whose rows live in other files: ``sources`` lists
        ``(file, dataset, start, stop)``, rows ``start:stop`` of this dataset being the whole
        ``dataset`` of ``file`` (a relative ``file`` is found from this file's folder).
        Unmapped rows read as NaN (floats) or the dtype's minimum (integers), never as data."""
        h5py = _h5py()
        dt = np.dtype(dtype)
        layout = h5py.VirtualLayout(shape=tuple(shape), dtype=dt)
        for file, dset, a, b in sources:
            layout[a:b] = h5py.VirtualSource(str(file), dset, shape=(b - a, *shape[1:]))
        fill = np.nan if dt.kind == "f" else np.iinfo(dt).min
        d = self.file.create_virtual_dataset(name, layout, fillvalue=fill)
        for k, v in (attrs or {}).items():
            d.attrs[k] = v
        return d

    def finish(self) -> Path:
        self.file.attrs["complete"] = True
        self.file.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Close and delete the unfinished file."""
        try:
            self.file.close()
        finally:
            self.tmp.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.finish()
        else:
            self.abort()
        return False


def writing_path(path: Path) -> Path:
    """A fresh temporary name beside ``path`` (``<name>.<pid>-<random>.writing``), unique to
    this write: two writers never share one, so neither can truncate the other's file."""
    path = Path(path)
    return path.with_name(f"{path.name}.{os.getpid()}-{secrets.token_hex(4)}.writing")


def stale_writing_files(path: Path) -> list[Path]:
    """Temporary files of earlier, killed writes of ``path`` (call under :func:`output_lock`:
    then no live writer owns any of them)."""
    path = Path(path)
    return sorted(path.parent.glob(f"{glob.escape(path.name)}.*.writing"))


@contextlib.contextmanager
def output_lock(path: str | os.PathLike) -> Iterator[Path]:
    """Hold the exclusive lock of the output ``path`` for a whole generation
    (:func:`derlhybrid._io.exclusive_lock`): a second run on the same output raises
    :class:`DatasetError` at once instead of sharing its work files. Temporary files of
    earlier, killed writes are removed once the lock is held."""
    with exclusive_lock(path, error=DatasetError) as lock:
        for stale in stale_writing_files(Path(path)):
            stale.unlink(missing_ok=True)
        yield lock


def check_target(path: Path, overwrite: bool) -> None:
    """Refuse an unwritable folder, or an existing file without ``overwrite``."""
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise DatasetError(f"cannot write {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise DatasetError(f"cannot write {path}: folder {parent} is not writable")
    if path.is_dir():
        raise DatasetError(f"cannot write {path}: it is a folder")
    if path.exists() and not overwrite:
        raise DatasetError(f"{path} exists; set overwrite (derl: --overwrite) to replace it")


def open_dataset(path: str | os.PathLike, *, layout: str | None = None):
    """Open a dataset read-only after validating it (one-line :class:`DatasetError`)."""
    h5py = _h5py()
    p = Path(path)
    if not p.exists():
        hint = " (an unfinished .partial file exists: rerun the generation to resume it)"
        raise DatasetError(f"{p} does not exist" + (hint if partial_path(p).exists() else ""))
    try:
        f = h5py.File(p, "r")
    except OSError:
        raise DatasetError(f"{p} is not an HDF5 file") from None
    a = f.attrs
    problem = None
    if a.get("format") == SHARD_FORMAT:
        problem = (
            f"{p} is one shard of a sharded generation; open the stitched file beside its "
            "folder instead"
        )
    elif a.get("format") != FORMAT:
        problem = f"{p} is not a derlhybrid dataset (no format={FORMAT!r} attribute)"
    elif int(a.get("format_version", -1)) != FORMAT_VERSION:
        problem = (
            f"{p} has dataset format version {a.get('format_version')}, this derlhybrid "
            f"reads version {FORMAT_VERSION}; regenerate it with this version"
        )
    elif not bool(a.get("complete", False)):
        problem = f"{p} is incomplete (generation was interrupted); regenerate or resume it"
    elif layout is not None and a.get("layout") != layout:
        problem = f"{p} holds {a.get('layout')} data, expected {layout}"
    elif "shards" in a:
        problem = _missing_shard(p, a["shards"])
    if problem:
        f.close()
        raise DatasetError(problem)
    return f


def shard_files(path: str | os.PathLike, shards) -> list[Path]:
    """The shard files a stitched file maps (its ``shards`` attribute), as paths."""
    info = json.loads(shards) if isinstance(shards, str | bytes) else dict(shards)
    folder = Path(path).parent / info["folder"]
    return [folder / name for name in info["files"]]


def _missing_shard(p: Path, shards) -> str | None:
    """Why a stitched file cannot be read: a shard file it maps is not there (HDF5 would
    read the missing rows as fill values without a word)."""
    files = shard_files(p, shards)
    missing = [s for s in files if not s.is_file()]
    if not missing:
        return None
    return (
        f"{p} is stitched from {len(files)} shard files in {files[0].parent}/ (HDF5 virtual "
        f"datasets) and {len(missing)} of them are missing (e.g. {missing[0].name}): keep that "
        "folder beside the file (move them together), or regenerate with --consolidate for "
        "one self-contained file"
    )


def provenance(f) -> dict[str, Any]:
    """Root attributes as Python values (JSON attributes decoded)."""
    out = {}
    for k, v in f.attrs.items():
        if isinstance(v, bytes):
            v = v.decode()
        if isinstance(v, str) and v[:1] in "{[":
            try:
                v = json.loads(v)
            except ValueError:
                pass
        elif isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out


@contextlib.contextmanager
def damaged_file_errors(path) -> Iterator[None]:
    """Turn what h5py raises on a damaged or incomplete file while reading it (``OSError``
    such as "wrong B-tree signature", ``KeyError`` for a missing dataset) into
    one-line :class:`DatasetError` errors that name the file."""
    try:
        yield
    except KeyError as exc:
        what = " ".join(str(exc.args[0] if exc.args else exc).split())
        raise DatasetError(
            f"{path} lacks a dataset this reader needs ({what}); the file is incomplete or "
            "of another layout: regenerate it"
        ) from None
    except OSError as exc:
        if exc.filename or isinstance(exc, PermissionError):
            raise  # an operating-system error on some file: the caller's message says it
        what = " ".join(str(exc).split())
        raise DatasetError(f"{path} is damaged ({what}); regenerate it") from None


def check_indices(idx, n: int, file, dataset: str) -> np.ndarray:
    """``idx`` as int64 if every entry lies in ``[0, n)``; else one line naming the
    file, the dataset and the first bad entry."""
    idx = np.asarray(idx)
    if idx.dtype.kind not in "iu" or idx.ndim != 1:
        raise DatasetError(
            f"{file}: {dataset} must be a 1-d array of integer indices, got {idx.dtype} "
            f"of shape {idx.shape}; regenerate the file"
        )
    bad = (idx < 0) | (idx >= n)
    if bad.any():
        i = int(np.argmax(bad))
        raise DatasetError(
            f"{file}: {dataset} holds index {int(idx[i])} (entry {i}), outside the {n} rows "
            "it indexes; regenerate the file"
        )
    return idx.astype(np.int64, copy=False)


def check_finite(values, file, dataset: str, *, rows=None, unit: str = "row") -> None:
    """Refuse non-finite values read from ``dataset`` of ``file``: one line naming the
    file, the dataset and the first bad row (``rows[i]`` is the file's row index of the
    ``i``-th row of ``values``; ``unit`` names what a row is, e.g. ``"trajectory"``)."""
    a = np.asarray(values)
    if a.dtype.kind not in "fc" or a.size == 0:
        return
    flat = a.reshape(a.shape[0], -1) if a.ndim > 1 else a.reshape(-1, 1)
    bad = ~np.isfinite(flat).all(axis=1)
    if not bad.any():
        return
    i = int(np.argmax(bad))
    row = int(rows[i]) if rows is not None else i
    col = int(np.argmax(~np.isfinite(flat[i])))
    v = flat[i, col]
    raise DatasetError(
        f"{file}: {dataset} holds a non-finite value ({v}) in {unit} {row} "
        f"({int(bad.sum())} {unit}s in all); regenerate the file or leave those {unit}s out"
    )
