"""What every generator shares: the progress bar, the train/val/test split indices, the
atomic HDF5 writer of a request and the file attributes common to every layout."""

from __future__ import annotations

import sys

import numpy as np

from .. import __version__
from .request import GenerateRequest
from .store import DatasetWriter


def progress_bar(total: int, initial: int, desc: str, enabled: bool):
    """A tqdm bar on stderr (its unit is ``traj``; grids set ``frame``), None when off."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit="traj",
        unit_scale=True,
        dynamic_ncols=True,
        file=sys.stderr,
    )


def split_indices(n: int, fractions) -> dict[str, np.ndarray]:
    """Contiguous train/val/test indices of ``n`` items for the fractions of ``--split``."""
    n_train = round(fractions[0] * n)
    n_val = round(fractions[1] * n)
    idx = np.arange(n)
    return {
        "train": idx[:n_train],
        "val": idx[n_train : n_train + n_val],
        "test": idx[n_train + n_val :],
    }


def writer(req: GenerateRequest, layout: str, attrs: dict) -> DatasetWriter:
    """The atomic HDF5 writer of a request (final name, overwrite, compression)."""
    return DatasetWriter(
        req.out,
        layout=layout,
        attrs=attrs,
        config=req.as_config(),
        overwrite=req.overwrite,
        compression=req.compression,
    )


def common_attrs(req: GenerateRequest, system, generator: dict, backend: str) -> dict:
    """The root attributes of every generated file (system, generator, backend, seed…)."""
    return {
        "system": system.name,
        "system_parameters": system.params(),
        "generator": generator,
        "backend": backend,
        "package_version": __version__,
        "seed": req.seed,
        "dtype": req.dtype,
    }
