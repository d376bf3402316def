"""Pointwise files of systems with a closed form (inputs, outputs, Jacobians, Hessians,
forcing, boundary data, splits; a :class:`PointDesign` says where), the measured grid
variant (noisy samples and estimated gradients) and the collocation sets of the
Euler-in-a-ball setting."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..systems import FieldSystem
from .request import DTYPES, GenerateRequest
from .writing import common_attrs, split_indices, writer


@dataclass
class PointDesign:
    """Where a pointwise file samples a closed-form system: coordinates shared by every
    parameter set, the parameter sets of a family, splits (of points, or of parameter sets
    for a family), boundary resolution, extra point sets (``variants``) and a description."""

    points: np.ndarray
    psets: np.ndarray | None
    splits: dict[str, np.ndarray]
    generator: dict[str, Any]
    n_boundary: int = 101
    variants: dict[str, np.ndarray] = field(default_factory=dict)
    extra_psets: dict[str, np.ndarray] = field(default_factory=dict)


def default_point_design(req: GenerateRequest, system: FieldSystem) -> PointDesign:
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(req.seed)))
    n_pts = req.n_points or 1000
    box = system.domain()
    lo = np.array([box[c][0] for c in system.coordinates])
    hi = np.array([box[c][1] for c in system.coordinates])
    pts = lo + (hi - lo) * rng.random((n_pts, lo.size))
    generator = {"sampler": f"{n_pts} points uniform in the coordinate box (PCG64)"}
    psets = None
    if system.parameter_inputs:
        n_sets = req.n_parameter_sets or 10
        plo = np.array([box[c][0] for c in system.parameter_inputs])
        phi = np.array([box[c][1] for c in system.parameter_inputs])
        psets = plo + (phi - plo) * rng.random((n_sets, plo.size))
        splits = split_indices(n_sets, req.split)
        generator["parameter_sets"] = f"{n_sets} uniform draws; the same points for every set"
    else:
        splits = split_indices(n_pts, req.split)
    return PointDesign(pts, psets, splits, generator, req.n_boundary or 101)


def _with_params(system: FieldSystem, pts: np.ndarray, psets: np.ndarray | None) -> np.ndarray:
    """Rows (coordinates, parameters) for every parameter set, columns in ``inputs`` order."""
    if psets is None:
        X = pts
    else:
        X = np.concatenate([np.tile(pts, (len(psets), 1)), np.repeat(psets, len(pts), 0)], 1)
    order = list(system.coordinates + system.parameter_inputs)
    return X[:, [order.index(c) for c in system.inputs]]


def _write_point_set(w, group: str, system: FieldSystem, X: np.ndarray, dtype) -> None:
    w.create(f"{group}/inputs", None, data=X.astype(dtype), attrs={"columns": list(system.inputs)})
    w.create(
        f"{group}/outputs",
        None,
        data=system.exact(X).astype(dtype),
        attrs={"columns": list(system.outputs)},
    )
    w.create(
        f"{group}/jacobian",
        None,
        data=system.jacobian(X).astype(dtype),
        attrs={"axes": "point, output, coordinate", "columns": list(system.coordinates)},
    )
    for name, fn in (("hessian", system.hessian), ("forcing", system.forcing)):
        try:
            w.create(f"{group}/{name}", None, data=fn(X).astype(dtype))
        except NotImplementedError:
            pass


def generate_points(
    req: GenerateRequest, system: FieldSystem, design: PointDesign | None = None, finalize=None
) -> Path:
    """Pointwise training file of a system with a closed-form solution: inputs, outputs,
    Jacobians, Hessians (and forcing), boundary data, splits (by parameter set for
    parametric families, by point otherwise)."""
    design = design or default_point_design(req, system)
    dtype = DTYPES[req.dtype]
    measured = _measured_grid(req, system, design)  # checked before any file exists
    n_pts = len(design.points)
    X = _with_params(system, design.points, design.psets)
    if design.psets is None:
        splits = design.splits
    else:  # a split of parameter sets → the rows of those sets
        splits = {
            k: (np.asarray(v)[:, None] * n_pts + np.arange(n_pts)).ravel()
            for k, v in design.splits.items()
        }
    generator = {**design.generator, "derivatives": "closed form (exact)"}
    attrs = common_attrs(req, system, generator, "python")
    attrs["inputs"], attrs["outputs"] = list(system.inputs), list(system.outputs)
    attrs["derivative_inputs"] = list(system.coordinates)
    with writer(req, "points", attrs) as w:
        _write_point_set(w, "points", system, X, dtype)
        for name, idx in splits.items():
            w.create(
                f"splits/{name}",
                None,
                data=np.asarray(idx, np.int64),
                attrs={"unit": "point index"},
            )
        if design.psets is not None:
            w.create(
                "parameters/values",
                None,
                data=design.psets,
                attrs={"columns": list(system.parameter_inputs)},
            )
            for name, idx in design.splits.items():
                w.create(f"parameters/{name}", None, data=np.asarray(idx, np.int64))
        for name, ps in design.extra_psets.items():  # e.g. the paper's fixed test λ values
            w.create(
                f"parameters/{name}_values",
                None,
                data=ps,
                attrs={"columns": list(system.parameter_inputs)},
            )
            _write_point_set(
                w, f"variants/{name}", system, _with_params(system, design.points, ps), dtype
            )
        for name, pts in design.variants.items():
            _write_point_set(
                w, f"variants/{name}", system, _with_params(system, pts, design.psets), dtype
            )
        if len(system.coordinates) == 2:
            B = _with_params(system, system.boundary_points(design.n_boundary), design.psets)
            w.create("boundary/inputs", None, data=B.astype(dtype))
            w.create("boundary/outputs", None, data=system.exact(B).astype(dtype))
        if measured is not None:
            _write_measured_grid(w, req, system, *measured, dtype)
        if finalize is not None:
            finalize(w)
    return Path(req.out)


def _measured_grid(req: GenerateRequest, system: FieldSystem, design: PointDesign):
    """``(estimator, axes)`` of the ``measured`` variant a pointwise request with
    ``noise`` or an ``empirical`` estimator asks for, or None. The field is sampled on the
    design's ``grid`` variant, which must be a tensor-product grid of the coordinates (the
    Allen–Cahn and Kovasznay paper presets have one); derivatives are estimated along each
    grid axis, every grid line a series. Scattered points have no axes to estimate along:
    refused, as are parametric families (one grid per parameter set is not written)."""
    if not req.noise and req.empirical is None:
        return None
    what = f"{system.name}: noise / empirical derivatives"
    if req.empirical is None or req.empirical == "cubic-forward":
        raise ValueError(
            f"{what} need an estimator of the noisy grid samples (e.g. empirical = 'savgol' "
            "or 'central:2'); cubic-forward applies to trajectories"
        )
    grid = design.variants.get("grid")
    if grid is None or system.parameter_inputs or len(system.coordinates) != 2:
        raise ValueError(
            f"{what} are estimated along the axes of a grid of samples: use preset = 'paper' "
            "(its grid variant); not available for parametric families or scattered points"
        )
    axes = [np.unique(grid[:, k]) for k in range(2)]
    mesh = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2)
    if mesh.shape != grid.shape or not np.array_equal(mesh, grid):
        raise ValueError(f"{what}: the design's grid variant is not a tensor-product grid")
    from .estimators import parse_estimator

    return parse_estimator(req.empirical), axes


def _write_measured_grid(w, req, system: FieldSystem, est, axes, dtype) -> None:
    """``/variants/measured``: the grid's exact field plus N(0, noise²) per value (one
    SeedSequence(seed, spawn_key=(3,))), and its gradient estimated from those noisy values
    along each axis (:func:`~derlhybrid.data.estimators.estimate_along`); the forcing is
    the system's (a known source term, not a measurement)."""
    from .estimators import estimate_along

    X = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2)
    u = np.asarray(system.exact(X), dtype=np.float64)  # (N, n_out)
    if req.noise:
        rng = np.random.default_rng(np.random.SeedSequence(req.seed, spawn_key=(3,)))
        u = u + req.noise * rng.standard_normal(u.shape)
    U = u.reshape(*(a.size for a in axes), u.shape[1])
    jac = np.empty((X.shape[0], u.shape[1], 2))
    infos = []
    for k in range(2):
        d, info = estimate_along(est, U, axes[k], axis=k)
        jac[:, :, k] = d.reshape(-1, u.shape[1])
        infos.append(info)
    g = "variants/measured"
    w.create(f"{g}/inputs", None, data=X.astype(dtype), attrs={"columns": list(system.inputs)})
    w.create(
        f"{g}/outputs",
        None,
        data=u.astype(dtype),
        attrs={
            "columns": list(system.outputs),
            "noise": float(req.noise),
            "samples": "the exact field on the grid variant + N(0, noise²) per value "
            "(SeedSequence(seed, spawn_key=(3,)))",
        },
    )
    w.create(
        f"{g}/jacobian",
        None,
        data=jac.astype(dtype),
        attrs={
            "axes": "point, output, coordinate",
            "columns": list(system.coordinates),
            "estimator": json.dumps(
                {c: infos[k] for k, c in enumerate(system.coordinates)}, default=str
            ),
            "of": "the noisy outputs, along each grid axis (every grid line a series)",
        },
    )
    try:
        w.create(f"{g}/forcing", None, data=np.asarray(system.forcing(X)).astype(dtype))
    except NotImplementedError:
        pass


def generate_ball(req: GenerateRequest, system) -> Path:
    """Collocation sets of the Euler-in-a-ball setting (no ground-truth solution exists):
    interior points, initial points with (ρ0, m0), and sphere points with their normals,
    written in chunks (the paper's sets hold 10⁷ points each)."""
    dtype = DTYPES[req.dtype]
    n = req.n_points or 100_000
    rows = 1_000_000
    generator = {
        "interior": "t ~ U(0, T), x uniform in the ball",
        "initial": "t = 0 exactly (the reference code draws t ~ U(0, 0.01)), x uniform in the ball",
        "boundary": "t ~ U(0, T), x uniform on the sphere; normal = x / radius",
    }
    attrs = common_attrs(req, system, generator, "python")
    attrs["inputs"], attrs["outputs"] = list(system.inputs), list(system.outputs)
    root = np.random.SeedSequence(req.seed)
    sets = dict(zip(("interior", "initial", "boundary"), root.spawn(3), strict=True))
    with writer(req, "points", attrs) as w:
        dsets = {
            "interior": w.create(
                "points/inputs",
                (n, 4),
                dtype,
                chunks=(min(n, 65536), 4),
                attrs={"columns": list(system.inputs)},
            ),
            "initial": w.create("initial/inputs", (n, 4), dtype, chunks=(min(n, 65536), 4)),
            "boundary": w.create("boundary/inputs", (n, 4), dtype, chunks=(min(n, 65536), 4)),
        }
        init_out = w.create(
            "initial/outputs",
            (n, 4),
            dtype,
            chunks=(min(n, 65536), 4),
            attrs={"columns": ["rho", "m1", "m2", "m3"]},
        )
        normals = w.create("boundary/normals", (n, 3), dtype, chunks=(min(n, 65536), 3))
        sampler = {
            "interior": system.sample_interior,
            "initial": system.sample_initial,
            "boundary": system.sample_boundary,
        }
        for name, ss in sets.items():
            rng = np.random.default_rng(ss)
            for a in range(0, n, rows):
                b = min(n, a + rows)
                X = sampler[name](rng, b - a)
                dsets[name][a:b] = X
                if name == "initial":
                    init_out[a:b] = system.initial_state(X[:, 1:])
                if name == "boundary":
                    normals[a:b] = X[:, 1:] / system.radius
        w.create(
            "splits/train", None, data=np.arange(n, dtype=np.int64), attrs={"unit": "point index"}
        )
    return Path(req.out)
