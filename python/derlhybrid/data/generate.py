"""Generation pipeline: system → kernels → HDF5, streamed chunk by chunk.

:func:`generate` takes a :class:`GenerateRequest` (what ``derl generate`` parses), or a
system name and the typed description of its data (:mod:`.sampling`: ``Trajectories``,
``Points``, ``Grid``), and writes one dataset file through
:class:`~derlhybrid.data.store.DatasetWriter`: atomically, with bounded memory, resumable
after a kill (rerun the same request), with provenance. The work itself lives in
:mod:`.request` (the request), :mod:`.sampling` (its typed parts), :mod:`.dispatch`
(:func:`generate_for`), :mod:`.trajectories` (ODE ensembles), :mod:`.points` (closed-form
point sets), :mod:`.grid` (PDE grids) and :mod:`.writing` (what they share); their public
names are importable here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..systems import get_system
from .dispatch import generate_for
from .points import PointDesign, default_point_design
from .presets import apply_preset
from .request import DTYPES, GenerateRequest
from .sampling import Grid, Points, Trajectories
from .store import check_target, output_lock, partial_path
from .trajectories import (
    CHUNK_BYTES,
    H5_CHUNK_BYTES,
    RowDataset,
    TrajectoryPlan,
    plan_trajectories,
    row_datasets,
    solve_rows,
    write_meta,
    write_rows,
)

__all__ = [
    "CHUNK_BYTES",
    "DTYPES",
    "H5_CHUNK_BYTES",
    "GenerateRequest",
    "PointDesign",
    "RowDataset",
    "TrajectoryPlan",
    "default_point_design",
    "generate",
    "generate_for",
    "plan_trajectories",
    "row_datasets",
    "solve_rows",
    "write_meta",
    "write_rows",
]


def generate(
    req: GenerateRequest | str,
    data: Trajectories | Points | Grid | None = None,
    /,
    *,
    progress: bool = True,
    **options: Any,
) -> Path:
    """Run a generation request; returns the path of the completed file.

    ``generate(GenerateRequest(...))``, or ``generate("pendulum", Trajectories(n=40),
    out="p.h5", params={"b": 0.5})`` — a system name, the description of its data and the
    keywords of :meth:`GenerateRequest.of` (``out``, ``params``, ``preset``, ``backend``,
    ``dtype``, ``compression``, ``overwrite``): the same request either way.

    Everything that can be checked without solving is checked before the work folder
    exists; the run holds an exclusive lock on the output for its whole length (a second
    run on the same ``out`` stops at once); a failed run that finished no chunk leaves no
    work folder behind; nothing at the final name changes unless the run completes."""
    if isinstance(req, str):
        req = GenerateRequest.of(req, data, **options)
    elif data is not None or options:
        raise TypeError("generate(request) takes no data or request options: they are in it")
    system = get_system(req.system, req.params)
    if req.preset is None and req.seed is None:
        req = dataclasses.replace(req, seed=0)
    out = Path(req.out)
    check_target(out, req.overwrite)
    with output_lock(out):
        existed = partial_path(out).exists()
        try:
            if req.preset is not None:
                return apply_preset(req, system, progress=progress)
            return generate_for(req, system, progress=progress)
        except BaseException:
            _discard_new_empty_work(out, existed)
            raise


def _discard_new_empty_work(out: Path, existed: bool) -> None:
    """After a failure: remove the ``.partial`` folder this run created if it holds no
    finished chunk (a folder that existed before, or finished work, is kept for a resume)."""
    work = partial_path(out)
    if not existed and work.is_dir() and not any(work.glob("chunk*.done")):
        import shutil

        shutil.rmtree(work, ignore_errors=True)
