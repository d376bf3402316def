"""torch ``Dataset`` s over dataset files, opening the HDF5 file lazily in each worker.

A file handle cannot cross a ``fork``/``spawn`` safely, so each dataset validates the file
once at construction (and closes it), then opens its own read-only handle on the first item
requested in every process (style rule 11). Items are tuples of float tensors.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import Dataset

from .store import DatasetError, h5_dataset, open_dataset


class _LazyH5(Dataset):
    def __init__(self, path, layout: str, split: str | None):
        self.path = os.fspath(path)
        with open_dataset(self.path, layout=layout) as f:
            if split is not None and f"splits/{split}" not in f:
                raise DatasetError(f"{self.path} has no split {split!r}")
            self.index = h5_dataset(f, f"splits/{split}")[...] if split is not None else None
            self._init(f)
        self._file = None
        self._pid = None

    def _init(self, f) -> None:  # read shapes / small arrays
        raise NotImplementedError

    @property
    def file(self):
        if self._file is None or self._pid != os.getpid():
            import h5py

            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_file"] = None  # never pickle a handle into a worker
        return state


class PointsDataset(_LazyH5):
    """Rows ``(inputs, outputs, jacobian[, hessian])`` of a ``points`` file's split."""

    def __init__(self, path, split: str | None = "train", with_hessian: bool = False):
        self.with_hessian = with_hessian
        super().__init__(path, "points", split)

    def _init(self, f) -> None:
        n = f["points/inputs"].shape[0]
        if self.index is None:
            self.index = np.arange(n)
        if self.with_hessian and "points/hessian" not in f:
            raise DatasetError(f"{self.path} holds no Hessians")

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i):
        j = int(self.index[i])
        f = self.file
        names = ["inputs", "outputs", "jacobian"] + (["hessian"] if self.with_hessian else [])
        return tuple(
            torch.from_numpy(np.asarray(h5_dataset(f, f"points/{k}")[j], dtype=np.float64))
            for k in names
        )


class TrajectoryPointsDataset(_LazyH5):
    """Flow-map samples of a ``trajectories`` file: item ``(t, y0, y(t), f(y(t)))`` for every
    saved time of every trajectory of the split (the pendulum experiments' samples)."""

    def __init__(self, path, split: str | None = "train"):
        super().__init__(path, "trajectories", split)

    def _init(self, f) -> None:
        self.t = f["trajectories/t"][...]
        if self.index is None:
            self.index = np.arange(f["trajectories/states"].shape[0])
        self.y0 = f["trajectories/initial_states"][...][self.index]

    def __len__(self) -> int:
        return len(self.index) * len(self.t)

    def __getitem__(self, i):
        k, m = divmod(int(i), len(self.t))
        j = int(self.index[k])
        f = self.file
        as_t = lambda a: torch.from_numpy(np.asarray(a, dtype=np.float64))  # noqa: E731
        return (
            as_t([self.t[m]]),
            as_t(self.y0[k]),
            as_t(h5_dataset(f, "trajectories/states")[j, m]),
            as_t(h5_dataset(f, "trajectories/derivatives")[j, m]),
        )
