"""Checkpoints that carry what rebuilds and resumes a run (style rule 12).

A checkpoint is one ``torch.save`` file holding: format name and version, package version,
the whole training config, the model config (``MLP(MLPConfig(**model_config))`` rebuilds
the network), the system and its parameters, the data provenance, weights, optimizer and
scheduler state, random-generator states, the epoch reached and the history.

Safe to write: the file is written to a temporary file of a unique name in the same folder,
flushed to disk and renamed into place, so a kill never leaves a torn checkpoint and two
writers never write into one temporary file.

Safe to read: a checkpoint holds only tensors and plain values (``dict``, ``list``,
``tuple``, ``str``, numbers, ``None``): :func:`save_checkpoint` turns NumPy scalars and
arrays and paths into those, and refuses anything else. :func:`load_checkpoint` reads with
``torch.load(weights_only=True)``, whose unpickler rebuilds no other object and calls no
other function, so a crafted file cannot run code. Before that it checks the CRC-32 of every
member of the file's zip archive (``torch.load`` does not), so a truncated or bit-flipped
checkpoint is refused with one line instead of loading damaged weights.
"""

from __future__ import annotations

import glob
import pickle
import re
import zipfile
from collections import OrderedDict
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import torch

from .._io import atomic_file

__all__ = ["FORMAT", "VERSION", "CheckpointError", "load_checkpoint", "save_checkpoint"]

FORMAT = "derlhybrid-checkpoint"
VERSION = 1

# what the weights_only unpickler rebuilds as they are (exact types: a subclass is a class
# of its own to the unpickler, e.g. numpy.float64 of float)
_PLAIN = (str, bytes, int, float, complex, bool, type(None), torch.dtype, torch.device)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message says why and what to do."""


#: the builtin scalar types that :func:`_plain` reduces subclasses (enums) to
_BUILTIN_BASES: tuple[type[Any], ...] = (bool, int, float, complex, str, bytes)


def _plain(obj: Any, where: str) -> Any:
    """``obj`` with NumPy values as Python numbers or tensors, paths as strings and
    subclasses of plain types as their base types; a ``TypeError`` naming ``where`` for
    anything else the safe loader would refuse. Unchanged parts are returned as they are
    (a state dict keeps its ``OrderedDict`` type)."""
    if type(obj) in _PLAIN or isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "biufc":
            return torch.from_numpy(np.array(obj))  # a copy, owned by the tensor
        return obj.tolist()
    if isinstance(obj, PurePath):
        return str(obj)
    for base in _BUILTIN_BASES:  # e.g. an IntEnum, a str Enum
        if isinstance(obj, base):
            return base(obj)
    if isinstance(obj, dict):
        items = [
            (_plain(k, f"{where} key {k!r}"), _plain(v, f"{where}[{k!r}]")) for k, v in obj.items()
        ]
        if type(obj) in (dict, OrderedDict) and all(
            a is k and b is v for (a, b), (k, v) in zip(items, obj.items(), strict=True)
        ):
            return obj
        return dict(items)
    if isinstance(obj, list | tuple):
        out = [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        if type(obj) in (list, tuple, torch.Size) and all(
            a is b for a, b in zip(out, obj, strict=True)
        ):
            return obj
        return out if isinstance(obj, list) else tuple(out)
    raise TypeError(
        f"checkpoint entry {where} is a {type(obj).__module__}.{type(obj).__qualname__}; a "
        "checkpoint holds only tensors and plain values (dict, list, tuple, str, numbers)"
    )


def save_checkpoint(path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (tensors and plain values) with the format header at ``path``,
    atomically: unique temporary file in the same folder, fsync, rename."""
    from .. import __version__

    path = Path(path)
    ckpt = _plain(
        {"format": FORMAT, "version": VERSION, "package_version": __version__, **payload},
        "checkpoint",
    )
    crc = getattr(torch.serialization, "get_crc32_options", lambda: True)()
    try:
        if not crc:  # load_checkpoint verifies the CRC-32 of every member
            torch.serialization.set_crc32_options(True)
        with atomic_file(path, "wb") as fh:
            torch.save(ckpt, fh)
    finally:
        if not crc:
            torch.serialization.set_crc32_options(False)


def stale_temporaries(path) -> list[Path]:
    """Temporary files :func:`save_checkpoint` left next to ``path`` when it was killed."""
    path = Path(path)
    return sorted(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))


def _verify_archive(path: Path) -> None:
    """Refuse a file that is not a complete zip archive of stored members with matching
    CRC-32s (what ``torch.save`` writes): truncation and flipped bits end here."""
    try:
        fh = open(path, "rb")  # closed by the with below
    except OSError as exc:
        raise CheckpointError(f"{path} cannot be read ({_one_line(exc)})") from None
    with fh:
        try:
            with zipfile.ZipFile(fh) as zf:
                infos = zf.infolist()
                # torch.save writes stored (uncompressed) members only
                foreign = not infos or any(i.compress_type != zipfile.ZIP_STORED for i in infos)
                # a member marked as a folder (the DOS attribute bit 0x10, which torch.save
                # never sets) reads as a file here but not in torch's reader (miniz), which
                # then loads other bytes: a flipped bit of the central directory
                folder = next((i.filename for i in infos if i.external_attr & 0x10), None)
                bad = None if foreign or folder else zf.testzip()
        except Exception as exc:  # zipfile raises many types for damaged files
            raise CheckpointError(
                f"{path} is not a readable checkpoint: truncated, damaged or another kind of "
                f"file ({type(exc).__name__}: {_one_line(exc)}); restore a copy or train again"
            ) from None
    if foreign:
        raise CheckpointError(f"{path} is not a derlhybrid checkpoint")
    if folder is not None:
        raise CheckpointError(
            f"{path} is damaged: its zip entry {folder} is marked as a folder, which "
            "torch.save never writes; restore a copy or train again"
        )
    if bad is not None:
        raise CheckpointError(
            f"{path} is damaged: {bad} does not match its CRC-32 checksum; restore a copy "
            "or train again"
        )


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def load_checkpoint(path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate a checkpoint (one-line :class:`CheckpointError`). Nothing in the
    file is executed: only tensors and plain values are rebuilt."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file")
    _verify_archive(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))
        what = f" ({found.group(1)})" if found else ""
        raise CheckpointError(
            f"{path} holds objects other than tensors and plain values{what}; refused "
            "without running them: it is not a derlhybrid checkpoint"
        ) from None
    except Exception as exc:  # torch raises many types for foreign or torn files
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({type(exc).__name__})"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a derlhybrid checkpoint")
    if ckpt.get("version") != VERSION:
        raise CheckpointError(
            f"{path} is a version-{ckpt.get('version')} checkpoint; this derlhybrid reads "
            f"version {VERSION} (retrain with this version, or use the derlhybrid "
            f"{ckpt.get('package_version')} that wrote it)"
        )
    return ckpt
