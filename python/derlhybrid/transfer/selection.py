"""The points a stage learns on: :func:`select_points` restricts a problem to a region
box and parameter sets; :func:`stage_problem` loads a stage's data and applies its
selection."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch

from ..data.store import DatasetError, h5_dataset, open_dataset
from ..learn.problems import PointSet, Problem, StreamPolicy, load_problem
from .stage_config import Box, Stage, jsonable_box

__all__ = ["INTERIOR_SETS", "select_points", "stage_problem"]

#: point sets a region selects by ``region`` (the others by ``boundary_region``)
INTERIOR_SETS = ("train", "val", "test")


def _in_box(X: torch.Tensor, inputs: Sequence[str], box: Box | None, tol=1e-12) -> torch.Tensor:
    keep = torch.ones(X.shape[0], dtype=torch.bool, device=X.device)
    for name, (lo, hi) in (box or {}).items():
        if name not in inputs:
            raise ValueError(f"region: unknown input {name!r}; inputs are {', '.join(inputs)}")
        j = list(inputs).index(name)
        keep &= (X[:, j] >= lo - tol) & (X[:, j] <= hi + tol)
    return keep


def _in_params(X, cols: Sequence[int], values: np.ndarray | None) -> torch.Tensor:
    keep = torch.ones(X.shape[0], dtype=torch.bool, device=X.device)
    if values is None:
        return keep
    P = X[:, list(cols)]
    V = torch.as_tensor(values, dtype=X.dtype, device=X.device)
    close = torch.isclose(P[:, None, :], V[None, :, :], rtol=1e-6, atol=1e-12)
    return keep & close.all(-1).any(-1)


def select_points(
    problem: Problem,
    *,
    region: Box | None = None,
    boundary_region: Box | None = None,
    parameters: np.ndarray | None = None,
) -> Problem:
    """The part of ``problem`` a stage learns: interior points (``train``/``val``/``test``)
    inside the closed box ``region``, the other point sets (initial, boundary, periodic
    pairs: both ends) inside ``boundary_region`` (default: ``region``), and, for a
    parametric family, only rows whose parameter inputs equal one of the rows of
    ``parameters`` (n_sets, n_par). Emptied condition, validation and test sets are
    dropped; an empty training set is refused."""
    if boundary_region is None:
        boundary_region = region
    if region is None and boundary_region is None and parameters is None:
        return problem
    inputs = problem.inputs
    par_names = tuple(getattr(problem.system, "parameter_inputs", ()))
    cols = [inputs.index(n) for n in par_names]
    if parameters is not None:
        parameters = np.atleast_2d(np.asarray(parameters, dtype=np.float64))
        if parameters.shape[1] != len(cols):
            raise ValueError(
                f"parameter selection: {parameters.shape[1]} values per set, the system has "
                f"{len(cols)} parameter inputs ({', '.join(par_names) or 'none'})"
            )
    sets = {}
    for name, pts in problem.sets.items():
        if not isinstance(pts, PointSet):
            raise ValueError(f"select: the {name} set is streamed; load it (stream = 'never')")
        box = region if name in INTERIOR_SETS else boundary_region
        keep = _in_box(pts.X, inputs, box) & _in_params(pts.X, cols, parameters)
        if bool(keep.all()):
            sets[name] = pts
        elif bool(keep.any()):
            sets[name] = pts.take(torch.nonzero(keep).squeeze(1))
        elif name == "train":
            raise ValueError(
                f"the selection leaves no training points (region {jsonable_box(region)}, "
                f"{0 if parameters is None else len(parameters)} parameter sets)"
            )
    periodic = problem.periodic
    if periodic is not None:
        left, right = periodic
        keep = _in_box(left.X, inputs, boundary_region) & _in_box(right.X, inputs, boundary_region)
        keep &= _in_params(left.X, cols, parameters)
        idx = torch.nonzero(keep).squeeze(1)
        periodic = (left.take(idx), right.take(idx)) if len(idx) else None
    source = {
        **problem.source,
        "selection": {
            "region": jsonable_box(region),
            "boundary_region": jsonable_box(boundary_region),
            "parameters": None if parameters is None else parameters.tolist(),
        },
    }
    return dataclasses.replace(problem, sets=sets, periodic=periodic, source=source)


def _parameter_values(path, indices: Sequence[int]) -> np.ndarray:
    with open_dataset(path) as f:
        if "parameters/values" not in f:
            raise DatasetError(
                f"{path} holds no parameter sets (/parameters/values): parameter_sets needs "
                "a parametric family's file"
            )
        values = h5_dataset(f, "parameters/values")[...]
    bad = [i for i in indices if i >= len(values)]
    if bad:
        raise ValueError(f"parameter set {bad[0]} does not exist: {path} holds {len(values)}")
    return values[list(indices)]


def stage_problem(stage: Stage, problem: Problem | None = None) -> Problem:
    """The stage's problem: its data file (or ``problem``), restricted to its selection."""
    d = stage.config.data
    if problem is None:
        problem = load_problem(d.path, form=d.form, variant=d.variant, stream=StreamPolicy("never"))
    else:  # a copy: training moves and trims the sets of the problem it is given
        problem = dataclasses.replace(problem, sets=dict(problem.sets))
    if d.system is not None and problem.system.name != d.system:
        raise DatasetError(
            f"{d.path} holds {problem.system.name!r} data, but stage {stage.name!r} says "
            f"data.system = {d.system!r}"
        )
    params = (
        None if stage.parameter_sets is None else _parameter_values(d.path, stage.parameter_sets)
    )
    return select_points(
        problem,
        region=stage.region,
        boundary_region=stage.boundary_region,
        parameters=params,
    )
