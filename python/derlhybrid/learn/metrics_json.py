"""Metrics dicts as JSON: :func:`to_jsonable` (plain Python copy), :func:`non_finite_paths`,
and :func:`write_metrics` (atomic JSON file, non-finite numbers written as ``null`` and
listed under ``non_finite``)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._io import write_text_atomic

__all__ = ["non_finite_paths", "to_jsonable", "write_metrics"]


def to_jsonable(obj: Any) -> Any:
    """Plain Python copy of ``obj``: NumPy scalars → float/int/bool, arrays → nested lists,
    tuples → lists, mapping keys → str. Non-finite floats are kept (see
    :func:`write_metrics`)."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return float(obj)
    if obj is None or isinstance(obj, str):
        return obj
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def _finite_copy(obj: Any, path: str, bad: list[str]) -> Any:
    if isinstance(obj, dict):
        return {k: _finite_copy(v, f"{path}/{k}" if path else k, bad) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite_copy(v, f"{path}/{i}", bad) for i, v in enumerate(obj)]
    if isinstance(obj, float) and not math.isfinite(obj):
        bad.append(path)
        return None
    return obj


def non_finite_paths(metrics: Mapping[str, Any]) -> list[str]:
    """The '/'-joined key paths of the non-finite numbers in ``metrics``."""
    bad: list[str] = []
    _finite_copy(to_jsonable(metrics), "", bad)
    return bad


def write_metrics(path, metrics: Mapping[str, Any]) -> Path:
    """Write ``metrics`` as JSON at ``path``, atomically (a temporary file in the same folder,
    then ``os.replace``): sorted keys, indent 2. NumPy values are converted
    (:func:`to_jsonable`); non-finite floats are written as ``null`` and their '/'-joined key
    paths listed under a top-level ``non_finite`` (present only when there are any). Returns
    the path."""
    path = Path(path)
    bad: list[str] = []
    data = _finite_copy(to_jsonable(metrics), "", bad)
    if bad:
        data["non_finite"] = bad
    write_text_atomic(path, json.dumps(data, sort_keys=True, indent=2, allow_nan=False) + "\n")
    return path
