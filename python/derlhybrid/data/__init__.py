"""Data: generation pipeline, HDF5 store, readers and torch datasets."""

from __future__ import annotations

from . import pdebench as _pdebench  # registers advection, burgers, diffusion-reaction
from .store import DatasetError, DatasetWriter, open_dataset, provenance

del _pdebench

__all__ = ["DatasetError", "DatasetWriter", "open_dataset", "provenance"]
