"""Errors of a network per region of a multi-stage experiment and over the whole domain
(paper.md §8.5, §10.1–10.3).

A region is a closed box of inputs ``{"t": (0, 0.35)}`` (a phase of an extension in time
or space) or a list of parameter sets of a parametric family (a phase of an extension to
new parameters); ``None`` is the whole domain. :func:`evaluate_regions` predicts once on
the experiment's evaluation grid and reduces the pointwise errors per region:

The metrics follow the kind the system declares (``System.metrics_kind``):

* KdV (``grid-field``): the grid of the data file (the paper's 201×401 ``/variants/paper_grid``
  when present), cell Δt·Δx: ``u`` = |û − u| against the numerical solution, ``residual``
  = |û_t + û û_x + ν û_xxx|, and with a ``reference`` network (a teacher) ``jacobian`` =
  ‖∇û − ∇û_T‖ and ``hessian`` = ‖Hû − Hû_T‖_F;
* Allen–Cahn (``allen-cahn``): the n×n grid of the box (option ``grid``, default 201):
  ``u``, ``forcing`` (f̂ = λΔû − û + û³ against f) and ``gradient``;
* parametric Allen–Cahn families: per parameter set of the region the grid errors, and
  their means (``u.rel_l2``, ``forcing.rel_l2``, ``u.l2``, ``forcing.l2``).

Allen–Cahn regions also split the u error e = û − u into its constant part and the rest:
``u_offset`` = ē, the mean of e over the region's grid points (per parameter set), and
``u_centred`` = the statistics of e − ē, the error left after the best constant shift
(ē minimises Σ (e − c)² over c). A network that learnt only ∇u (DERL distilling the
gradient of an earlier phase) is fixed up to such a constant; ``u_centred.rel_l2`` far
below ``u.rel_l2`` says the constant is what it missed.

Every quantity is a :func:`~derlhybrid.learn.metrics.error_stats` dict (``mean``, ``max``,
``rmse``, ``l2``, ``rel_l2`` where a reference exists).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..data.store import open_dataset
from ..learn import metrics as M
from ..learn.evaluate_options import validate_options

__all__ = [
    "AllenCahnRegionOptions",
    "Region",
    "RegionOptions",
    "check_region_options",
    "evaluate_regions",
    "kdv_grid",
]

#: a region: {"box": {input: (lo, hi)}} and/or {"parameters": [[...], ...]}; {} = all
Region = Mapping[str, Any]


def _mask(X: np.ndarray, inputs: Sequence[str], box: Mapping | None, tol=1e-12) -> np.ndarray:
    keep = np.ones(len(X), dtype=bool)
    for name, (lo, hi) in (box or {}).items():
        j = list(inputs).index(name)
        keep &= (X[:, j] >= lo - tol) & (X[:, j] <= hi + tol)
    return keep


def kdv_grid(f) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(t, x, u[t, x]) of a KdV file: the paper's 401-point grid when stored, else the
    solver grid."""
    t = f["grid/t"][...]
    if "variants/paper_grid/u" in f:
        return t, f["variants/paper_grid/x"][...], f["variants/paper_grid/u"][...]
    return t, f["grid/x"][...], f["fields/u"][...]


def _predictor(model, engine="auto"):
    from ..learn.evaluate import make_predict

    return make_predict(model, engine)


def _kdv(predict, system, f, regions, reference, options) -> dict:
    t, x, u = kdv_grid(f)
    T, Xg = np.meshgrid(t, x, indexing="ij")
    X = np.stack([T.ravel(), Xg.ravel()], axis=1)
    u = u.reshape(-1)
    cell = float((t[1] - t[0]) * (x[1] - x[0]))
    pos = [system.inputs.index(c) for c in system.coordinates]
    idx = [(p,) for p in pos] + [tuple(sorted((p, q))) for p in pos for q in pos]
    idx += M.residual_indices(system)
    v = M.predict_batched(predict, X, idx, M.DEFAULT_BATCH)
    err = np.abs(v[()][:, 0] - u)
    R = np.abs(np.asarray(system.pde_residual(M.derivative_getter(system, v), X, {}, np))[:, 0])
    extra = {}
    if reference is not None:
        w = M.predict_batched(reference, X, idx, M.DEFAULT_BATCH)
        J, JT = M.stack_jacobian(v, pos), M.stack_jacobian(w, pos)
        H, HT = M.stack_hessian(v, pos), M.stack_hessian(w, pos)
        extra["jacobian"] = (
            np.sqrt(np.sum((J - JT) ** 2, axis=(1, 2))),
            np.sqrt(np.sum(JT**2, axis=(1, 2))),
        )
        extra["hessian"] = (
            np.sqrt(np.sum((H - HT) ** 2, axis=(1, 2, 3))),
            np.sqrt(np.sum(HT**2, axis=(1, 2, 3))),
        )
    out = {}
    for name, region in regions.items():
        m = _mask(X, system.inputs, (region or {}).get("box"))
        r = {
            "n_points": int(m.sum()),
            "u": M.error_stats(err[m], cell, reference=u[m]),
            "residual": M.error_stats(R[m], cell),
        }
        for k, (e, ref) in extra.items():
            r[k] = M.error_stats(e[m], cell, reference=ref[m])
        out[name] = r
    return out


def _ac_pointwise(system, X, v, pos):
    """|û − u|, û − u, f̂ − f, ‖∇û − ∇u‖ and the references at points X (predictions v)."""
    d = M.derivative_getter(system, v)
    f_hat = np.asarray(system.pde_residual(d, X, {"forcing": np.zeros(len(X))}, np))[:, 0]
    u = system.exact(X)[:, 0]
    force = np.asarray(system.forcing(X), dtype=np.float64)
    g_true = system.jacobian(X)[:, 0, :]
    g_err = np.linalg.norm(M.stack_jacobian(v, pos)[:, 0, :] - g_true, axis=1)
    return v[()][:, 0] - u, u, f_hat - force, force, g_err, np.linalg.norm(g_true, axis=1)


def _ac_stats(parts, m, cell) -> dict:
    du, u, df, f, dg, g = (a[m] for a in parts)
    offset = float(np.mean(du))
    return {
        "u": M.error_stats(du, cell, reference=u),
        "u_offset": offset,
        "u_centred": M.error_stats(du - offset, cell, reference=u),
        "forcing": M.error_stats(df, cell, reference=f),
        "gradient": M.error_stats(dg, cell, reference=g),
    }


def _allen_cahn(predict, system, f, regions, reference, options: AllenCahnRegionOptions) -> dict:
    n = options.grid
    coords = system.coordinates
    _, pts, cell = M.tensor_grid(system, coords, n)
    pos = [system.inputs.index(c) for c in coords]
    idx = [(p,) for p in pos] + M.residual_indices(system)
    params = tuple(system.parameter_inputs)
    if not params:
        v = M.predict_batched(predict, pts, idx, M.DEFAULT_BATCH)
        parts = _ac_pointwise(system, pts, v, pos)
        out = {}
        for name, region in regions.items():
            m = _mask(pts, coords, (region or {}).get("box"))
            out[name] = {"n_points": int(m.sum()), **_ac_stats(parts, m, cell)}
        return out
    # every parameter set of every region on the grid, predicted in one pass
    rows = {}
    for region in regions.values():
        for row in (region or {}).get("parameters") or f["parameters/values"][...].tolist():
            rows.setdefault(tuple(float(a) for a in row), None)
    keys = list(rows)
    cols = {c: np.tile(pts[:, i], len(keys)) for i, c in enumerate(coords)}
    for j, p in enumerate(params):
        cols[p] = np.repeat([k[j] for k in keys], len(pts))
    X = M.assemble_inputs(system, cols, len(pts) * len(keys))
    v = M.predict_batched(predict, X, idx, M.DEFAULT_BATCH)
    parts = _ac_pointwise(system, X, v, pos)
    per_set = {}
    for i, k in enumerate(keys):
        m = np.zeros(len(X), dtype=bool)
        m[i * len(pts) : (i + 1) * len(pts)] = True
        per_set[k] = _ac_stats(parts, m, cell)
    out = {}
    for name, region in regions.items():
        sets = (region or {}).get("parameters") or f["parameters/values"][...].tolist()
        res = [per_set[tuple(float(a) for a in row)] for row in sets]

        def mean(a, b, res=res):
            return float(np.mean([r[a][b] for r in res]))

        out[name] = {
            "n_sets": len(res),
            "u": {"rel_l2": mean("u", "rel_l2"), "l2": mean("u", "l2")},
            "u_centred": {"rel_l2": mean("u_centred", "rel_l2")},
            "forcing": {"rel_l2": mean("forcing", "rel_l2"), "l2": mean("forcing", "l2")},
            "gradient": {"l2": mean("gradient", "l2")},
            "sets": [
                {
                    "parameters": dict(zip(params, map(float, row), strict=True)),
                    "u_rel_l2": r["u"]["rel_l2"],
                    "u_offset": r["u_offset"],
                    "u_centred_rel_l2": r["u_centred"]["rel_l2"],
                    "forcing_rel_l2": r["forcing"]["rel_l2"],
                }
                for row, r in zip(sets, res, strict=True)
            ],
        }
    return out


class RegionOptions(BaseModel):
    """The ``evaluate`` options of the region metrics of a grid field (KdV): none."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class AllenCahnRegionOptions(RegionOptions):
    """Allen–Cahn region metrics: ``grid`` points per axis of the box."""

    grid: int = Field(201, ge=2)


#: the region metrics and their options of each kind of metrics (``System.metrics_kind``)
_EVALUATORS = {
    "grid-field": (_kdv, RegionOptions),
    "allen-cahn": (_allen_cahn, AllenCahnRegionOptions),
}


def check_region_options(system, options: Mapping[str, Any] | None, *, where="evaluate"):
    """The region metrics of ``system`` (an instance or a class) and its ``options``,
    validated: ``(evaluator, options)``; a one-line ``ValueError`` (a
    :class:`~derlhybrid.learn.config.ConfigError` for the options) otherwise."""
    kind = getattr(system, "metrics_kind", None)
    if kind not in _EVALUATORS:
        raise ValueError(
            f"no region metrics for {system.name!r} (metrics_kind {kind!r}); "
            f"kinds with region metrics: {', '.join(_EVALUATORS)}"
        )
    fn, model = _EVALUATORS[kind]
    return fn, validate_options(model, options, where=where, what=f"{kind} region metrics")


def evaluate_regions(
    checkpoint,
    data,
    regions: Mapping[str, Region | None],
    *,
    reference=None,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Errors of the network in ``checkpoint`` on each of ``regions`` (name → region, see
    the module docstring; ``None`` or ``{}`` = the whole domain) of the dataset ``data``.
    ``reference``: a checkpoint (e.g. the teacher) whose Jacobian and Hessian the network's
    are compared with (KdV). ``options``: ``grid`` (Allen–Cahn: points per axis)."""
    from ..learn.trainer import load_model
    from ..systems import get_system

    model, ckpt = load_model(checkpoint)
    model.eval()
    sysd = ckpt["system"]
    system = get_system(sysd["system"], sysd.get("parameters") or {})
    fn, opts = check_region_options(system, options)
    engine = (ckpt.get("config") or {}).get("train", {}).get("engine", "auto")
    ref = None
    if reference is not None:
        ref_model, _ = load_model(reference)
        ref = _predictor(ref_model.eval(), engine)
    with open_dataset(data) as f:
        out = fn(_predictor(model, engine), system, f, dict(regions), ref, opts)
    return M.to_jsonable(out)
