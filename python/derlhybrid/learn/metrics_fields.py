"""Evaluators of field networks on grids and point sets: :func:`evaluate_allen_cahn`
(paper.md §4.5, §5.4), :func:`evaluate_continuity` (§6.5), :func:`evaluate_kovasznay` (§7.3)
and :func:`evaluate_field` (any field system at given points, e.g. the KdV distillation,
§8.5). Each returns a JSON-ready dict of :func:`~.metrics_stats.error_stats` and norms."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..systems.base import FieldSystem
from .metrics_json import to_jsonable
from .metrics_predict import (
    DEFAULT_BATCH,
    MultiIndex,
    Predict,
    assemble_inputs,
    derivative_getter,
    multi_index,
    predict_batched,
    residual_indices,
    stack_hessian,
    stack_jacobian,
    tensor_grid,
)
from .metrics_stats import (
    RunningStats,
    error_stats,
    frobenius_error_norm,
    mass_rmse,
    spectral_error_norm,
)

__all__ = ["evaluate_allen_cahn", "evaluate_continuity", "evaluate_field", "evaluate_kovasznay"]


# ---------------------------------------------------------------------------------------------
# E2 Allen–Cahn (§4.5, §5.4)


def _allen_cahn_on(predict, system, pts, cell, columns, batch):
    coords = system.coordinates
    X = assemble_inputs(
        system, {**{c: pts[:, i] for i, c in enumerate(coords)}, **columns}, len(pts)
    )
    pos = [system.inputs.index(c) for c in coords]
    v = predict_batched(predict, X, [(p,) for p in pos] + residual_indices(system), batch)
    d = derivative_getter(system, v)
    u_hat = v[()][:, 0]
    f_hat = np.asarray(system.pde_residual(d, X, {"forcing": np.zeros(len(X))}, np))[:, 0]
    u = system.exact(X)[:, 0]
    f = np.asarray(system.forcing(X), dtype=np.float64)
    grad_true = system.jacobian(X)[:, 0, :]
    grad_err = np.linalg.norm(stack_jacobian(v, pos)[:, 0, :] - grad_true, axis=1)
    forcing = error_stats(f_hat - f, cell, reference=f)
    return {
        "u": error_stats(u_hat - u, cell, reference=u),
        "forcing": forcing,
        "residual": {k: forcing[k] for k in ("max", "mean", "std", "rmse", "l2")},
        "gradient": error_stats(grad_err, cell, reference=np.linalg.norm(grad_true, axis=1)),
    }


def evaluate_allen_cahn(
    predict: Predict,
    system,
    *,
    n: int = 201,
    parameter_sets=None,
    batch: int = DEFAULT_BATCH,
) -> dict[str, Any]:
    """Allen–Cahn metrics (§4.5, §5.4) on the n×n grid of the (x, y) box (n = 201: step 0.01,
    cell (2/(n − 1))² = 1e-4).

    Pointwise errors |û − u|, |f̂ − f| and ‖∇û − ∇u‖, each through :func:`error_stats` with the
    cell and the true values as reference (``u``, ``forcing``, ``gradient``; ``rel_l2`` =
    sqrt(Σ e²/Σ u²) etc.). The forcing implied by the network is f̂ = D Δû − û + û³, computed
    as ``system.pde_residual`` with aux forcing = 0 (the residual is D Δu − u + u³ − f); the
    PDE residual with the true forcing is then f̂ − f pointwise, so ``residual`` repeats the
    absolute statistics of ``forcing`` (the paper reports both).

    Parametric families (``system.parameter_inputs``): ``parameter_sets`` (n_sets, n_params)
    is required, columns in the order of ``parameter_inputs``; each set is appended to the
    grid as constant input columns. Returns ``sets`` (per set: ``parameters``, ``u_rel_l2``,
    ``forcing_rel_l2`` and the full statistics) and ``mean`` (averages over the sets of the
    relative and absolute L² errors).
    """
    coords = system.coordinates
    _, pts, cell = tensor_grid(system, coords, n)
    grid = {"n": int(n), "cell": cell, "coordinates": list(coords)}
    params = tuple(system.parameter_inputs)
    if not params:
        if parameter_sets is not None:
            raise ValueError(f"{system.name} has no parameter inputs; drop parameter_sets")
        return to_jsonable({"grid": grid, **_allen_cahn_on(predict, system, pts, cell, {}, batch)})
    if parameter_sets is None:
        raise ValueError(f"{system.name} is a parametric family {params}: give parameter_sets")
    sets = np.atleast_2d(np.asarray(parameter_sets, dtype=np.float64))
    if sets.shape[1] != len(params):
        raise ValueError(f"parameter_sets must have {len(params)} columns {params}")
    results = []
    for row in sets:
        cols = {p: float(val) for p, val in zip(params, row, strict=True)}
        m = _allen_cahn_on(predict, system, pts, cell, cols, batch)
        results.append(
            {
                "parameters": cols,
                "u_rel_l2": m["u"]["rel_l2"],
                "forcing_rel_l2": m["forcing"]["rel_l2"],
                **m,
            }
        )
    keys = {
        "u_rel_l2": ("u", "rel_l2"),
        "forcing_rel_l2": ("forcing", "rel_l2"),
        "u_l2": ("u", "l2"),
        "forcing_l2": ("forcing", "l2"),
        "gradient_l2": ("gradient", "l2"),
    }
    mean = {k: float(np.mean([r[a][b] for r in results])) for k, (a, b) in keys.items()}
    return to_jsonable({"grid": grid, "n_sets": len(results), "sets": results, "mean": mean})


# ---------------------------------------------------------------------------------------------
# E3 continuity (§6.5)


def evaluate_continuity(
    predict: Predict,
    system,
    rho,
    t,
    x,
    y,
    *,
    mass_times=None,
    batch: int = DEFAULT_BATCH,
) -> dict[str, Any]:
    """Continuity-equation metrics (§6.5) against reference frames ``rho`` (n_t, n_x, n_y) on
    the grid ``t`` × ``x`` × ``y`` (equispaced axes), evaluated frame by frame.

    * ``density``: :func:`error_stats` of |ρ̂ − ρ| with cell = Δx·Δy·Δt (Δx·Δy if n_t = 1)
      and reference ρ (``rel_l2`` = sqrt(Σ err²/Σ ρ²)).
    * ``residual``: the same statistics of |ρ̂_t + u·∇ρ̂| (``system.pde_residual``), no
      reference.
    * ``mass``: M(τ) = Σ ρ̂(τ, x, y) Δx Δy at ``mass_times`` (default: every frame time; the
      paper uses τ = 0, 0.1, …, 9.9) against the true initial mass on the grid,
      M_true = Σ ρ[0] Δx Δy (``rho[0]`` taken as the initial frame); ``rmse`` as
      :func:`mass_rmse`, plus ``reference``, ``times`` and ``predicted``; ``analytic`` is
      ``system.mass0()`` where defined.
    """
    t, x, y = (np.asarray(a, dtype=np.float64).ravel() for a in (t, x, y))
    rho = np.asarray(rho, dtype=np.float64)
    if rho.shape != (t.size, x.size, y.size) or x.size < 2 or y.size < 2:
        raise ValueError(f"rho must be (n_t, n_x, n_y) = {(t.size, x.size, y.size)}")
    dx, dy = float(x[1] - x[0]), float(y[1] - y[0])
    dt = float(t[1] - t[0]) if t.size > 1 else 1.0
    cell = dx * dy * dt
    X_, Y_ = np.meshgrid(x, y, indexing="ij")
    xs, ys = X_.ravel(), Y_.ravel()
    res_idx = residual_indices(system)
    if system.residual_aux:
        raise ValueError(f"{system.name}: residual needs aux data {system.residual_aux}")

    mass_times = t if mass_times is None else np.atleast_1d(np.asarray(mass_times, float))
    mass_pred = [math.nan] * len(mass_times)
    # frame index of each mass time that coincides with a frame (else evaluated separately)
    frame_of = {}
    for j, tau in enumerate(mass_times):
        k = int(np.argmin(np.abs(t - tau)))
        if abs(t[k] - tau) <= 1e-9 * (1.0 + abs(tau)):
            frame_of.setdefault(k, []).append(j)

    dens, resid = RunningStats(), RunningStats()
    for k, tk in enumerate(t):
        X = assemble_inputs(system, {"t": tk, "x": xs, "y": ys}, xs.size)
        v = predict_batched(predict, X, res_idx, batch)
        r = np.asarray(system.pde_residual(derivative_getter(system, v), X, {}, np))
        rho_hat = v[()][:, 0]
        dens.update(rho_hat - rho[k].ravel(), rho[k])
        resid.update(np.linalg.norm(r, axis=1))
        for j in frame_of.get(k, ()):
            mass_pred[j] = float(rho_hat.sum() * dx * dy)
    for j, tau in enumerate(mass_times):
        if math.isnan(mass_pred[j]):
            X = assemble_inputs(system, {"t": float(tau), "x": xs, "y": ys}, xs.size)
            mass_pred[j] = float(predict_batched(predict, X, [], batch)[()][:, 0].sum() * dx * dy)

    m_true = float(rho[0].sum() * dx * dy)
    mass = {
        "rmse": mass_rmse(np.asarray(mass_pred)[:, None], 1.0, m_true),
        "reference": m_true,
        "times": [float(tau) for tau in mass_times],
        "predicted": mass_pred,
    }
    if hasattr(system, "mass0"):
        mass["analytic"] = float(system.mass0())
    return to_jsonable(
        {
            "grid": {"n_t": t.size, "n_x": x.size, "n_y": y.size, "cell": cell},
            "density": dens.result(cell),
            "residual": resid.result(cell),
            "mass": mass,
        }
    )


# ---------------------------------------------------------------------------------------------
# E4 Kovasznay (§7.3)


def evaluate_kovasznay(
    predict: Predict, system, *, n: int = 200, batch: int = DEFAULT_BATCH
) -> dict[str, Any]:
    """Kovasznay-flow metrics (§7.3) on the n×n grid of the domain box, cell dv = Δx·Δy.

    * ``output``: E = (û, v̂, p̂) − (u, v, p), (N, 3): ``spectral_norm_dv`` = σ_max(E)·dv (the
      reference code's number, :func:`spectral_error_norm`), ``frobenius_norm_dv`` =
      ‖E‖_F·dv, and ``per_output`` :func:`error_stats` of each component (cell dv, reference
      the true component: ``max``, ``l2``, ``rel_l2``, …) and ``pointwise`` (of ‖E_i‖).
    * ``vorticity``: ω̂ = ∂v̂/∂x − ∂û/∂y against ω from ``system.jacobian``: ``norm_dv`` =
      ‖ω̂ − ω‖₂·dv and the :func:`error_stats`.
    * ``momentum``: R = (residual_x, residual_y) (N, 2) of ``system.pde_residual``:
      ``spectral_norm_dv``, ``frobenius_norm_dv`` and the statistics of ‖R_i‖;
      ``divergence``: ``norm_dv`` = ‖∂û/∂x + ∂v̂/∂y‖₂·dv and the statistics.
    """
    coords = system.coordinates
    _, X, dv = tensor_grid(system, coords, n)
    pos = [system.inputs.index(c) for c in coords]
    v = predict_batched(predict, X, [(p,) for p in pos] + residual_indices(system), batch)
    U = system.exact(X)
    E = v[()] - U
    per_output = {
        name: error_stats(E[:, i], dv, reference=U[:, i]) for i, name in enumerate(system.outputs)
    }
    jac_true = system.jacobian(X)
    jac_hat = stack_jacobian(v, pos)
    ix, iy = coords.index("x"), coords.index("y")
    om_hat = jac_hat[:, 1, ix] - jac_hat[:, 0, iy]
    om = jac_true[:, 1, ix] - jac_true[:, 0, iy]
    R = np.asarray(system.pde_residual(derivative_getter(system, v), X, {}, np))
    mom, div = R[:, :2], R[:, 2]
    return to_jsonable(
        {
            "grid": {"n": int(n), "cell": dv},
            "output": {
                "spectral_norm_dv": spectral_error_norm(E, dv),
                "frobenius_norm_dv": frobenius_error_norm(E, dv),
                "pointwise": error_stats(np.linalg.norm(E, axis=1), dv, reference=U),
                "per_output": per_output,
            },
            "vorticity": {
                "norm_dv": frobenius_error_norm(om_hat - om, dv),
                **error_stats(om_hat - om, dv, reference=om),
            },
            "momentum": {
                "spectral_norm_dv": spectral_error_norm(mom, dv),
                "frobenius_norm_dv": frobenius_error_norm(mom, dv),
                **error_stats(np.linalg.norm(mom, axis=1), dv),
            },
            "divergence": {"norm_dv": frobenius_error_norm(div, dv), **error_stats(div, dv)},
        }
    )


# ---------------------------------------------------------------------------------------------
# generic fields (KdV distillation §8.5 and the like)


def evaluate_field(
    predict: Predict,
    system,
    X,
    u,
    *,
    jacobian=None,
    hessian=None,
    cell: float | None = None,
    coordinates: Sequence[str] | None = None,
    batch: int = DEFAULT_BATCH,
) -> dict[str, Any]:
    """Generic field metrics at points ``X`` (N, n_in) (the KdV distillation table, §8.5).

    * ``output``: :func:`error_stats` of ‖û − u‖ per point (u: (N, n_out) targets, e.g. the
      true numerical solution), reference ‖u‖, ``l2`` with ``cell`` if given.
    * ``jacobian`` (if targets (N, n_out, n_c) are given, e.g. the teacher's): statistics of
      ‖∇û − J‖_F per point, reference ‖J‖_F; derivatives with respect to ``coordinates``
      (default ``system.coordinates``), in that order.
    * ``hessian`` (targets (N, n_out, n_c, n_c)): the same with ‖Hû − H‖_F.
    * ``residual``: statistics of ‖N[û]‖ per point over the components of
      ``system.pde_residual`` (and ``components`` per residual name when there are several).
      Aux data: ``forcing`` from ``system.forcing`` when the system has its exact solution;
      otherwise (or with no residual defined) ``{"skipped": reason}``.
    """
    X = np.asarray(X, dtype=np.float64)
    u = np.asarray(u, dtype=np.float64)
    u = u[:, None] if u.ndim == 1 else u
    if X.ndim != 2 or X.shape[1] != len(system.inputs) or u.shape[0] != X.shape[0]:
        raise ValueError(
            f"X must be (N, {len(system.inputs)}) and u (N, n_out); got {X.shape}, {u.shape}"
        )
    coords = tuple(system.coordinates if coordinates is None else coordinates)
    pos = [multi_index(system.inputs, c)[0] for c in coords]
    indices: list[MultiIndex] = []
    if jacobian is not None:
        indices += [(p,) for p in pos]
    if hessian is not None:
        indices += [tuple(sorted((p, q))) for p in pos for q in pos]

    skipped = None
    aux: dict[str, np.ndarray] = {}
    if getattr(type(system), "pde_residual", None) is FieldSystem.pde_residual:
        skipped = f"{system.name} defines no PDE residual"
    for name in system.residual_aux:
        if name == "forcing" and getattr(system, "has_exact", False):
            aux[name] = np.asarray(system.forcing(X), dtype=np.float64)
        else:
            skipped = f"the residual needs {name!r}, which {system.name} cannot supply"
    if skipped is None:
        indices += residual_indices(system)

    v = predict_batched(predict, X, indices, batch)
    out: dict[str, Any] = {
        "n_points": X.shape[0],
        "output": error_stats(
            np.linalg.norm(v[()] - u, axis=1), cell, reference=np.linalg.norm(u, axis=1)
        ),
    }
    if jacobian is not None:
        J = np.asarray(jacobian, dtype=np.float64)
        err = np.sqrt(np.sum((stack_jacobian(v, pos) - J) ** 2, axis=(1, 2)))
        out["jacobian"] = error_stats(err, cell, reference=np.sqrt(np.sum(J**2, axis=(1, 2))))
    if hessian is not None:
        H = np.asarray(hessian, dtype=np.float64)
        err = np.sqrt(np.sum((stack_hessian(v, pos) - H) ** 2, axis=(1, 2, 3)))
        out["hessian"] = error_stats(err, cell, reference=np.sqrt(np.sum(H**2, axis=(1, 2, 3))))
    if skipped is not None:
        out["residual"] = {"skipped": skipped}
    else:
        R = np.asarray(system.pde_residual(derivative_getter(system, v), X, aux, np))
        R = R[:, None] if R.ndim == 1 else R
        residual: dict[str, Any] = error_stats(np.linalg.norm(R, axis=1), cell)
        out["residual"] = residual
        if R.shape[1] > 1:
            residual["components"] = {
                name: error_stats(R[:, i], cell) for i, name in enumerate(system.residual_names)
            }
    return to_jsonable(out)
