"""Data: generation pipeline, HDF5 store, readers and torch datasets."""

from __future__ import annotations

from .store import DatasetError, DatasetWriter, open_dataset, provenance

__all__ = ["DatasetError", "DatasetWriter", "open_dataset", "provenance"]
