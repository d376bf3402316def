"""The paper's evaluation metrics (paper.md §3.5, §4.5, §5.4, §6.5, §7.3, §8.5), as JSON-ready
dicts.

Two layers, both pure NumPy in float64:

* **Statistics on arrays**: :func:`error_stats`, :func:`relative_l2`,
  :func:`trajectory_errors`, :func:`cumulative_error_curve`, :func:`mass_rmse`,
  :func:`spectral_error_norm`, :func:`frobenius_error_norm`. Each docstring states its formula.
* **Evaluators** of a model given as a ``predict`` callable::

      predict(X: ndarray (N, n_in) float64, multi_indices: list[tuple[int, ...]])
          -> dict[tuple[int, ...], ndarray (N, n_out)]

  A multi-index is a sorted tuple of input column positions (:func:`multi_index` builds one
  from input names), ``()`` is the value and is always returned. Evaluators call ``predict``
  on at most ``batch`` rows at a time and return nested dicts of Python floats and lists:
  :func:`evaluate_pendulum`, :func:`evaluate_ode` (any ODE system),
  :func:`evaluate_allen_cahn`, :func:`evaluate_continuity`,
  :func:`evaluate_kovasznay`, :func:`evaluate_field`.

:func:`write_metrics` writes such a dict as JSON, atomically. ``docs/metrics.md`` tabulates
every metric with its formula, JSON key and paper section.

Conventions: ``std`` is the population standard deviation (ddof = 0); the absolute value of
an error array is taken before its statistics (pass pointwise norms for vector errors);
non-finite values stay ``nan``/``inf`` in the dicts and become ``null`` in the JSON file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._io import write_text_atomic
from ..systems.base import FieldSystem

__all__ = [
    "DEFAULT_BATCH",
    "cumulative_error_curve",
    "error_stats",
    "evaluate_allen_cahn",
    "evaluate_continuity",
    "evaluate_field",
    "evaluate_kovasznay",
    "evaluate_ode",
    "evaluate_pendulum",
    "frobenius_error_norm",
    "mass_rmse",
    "multi_index",
    "relative_l2",
    "spectral_error_norm",
    "to_jsonable",
    "trajectory_errors",
    "write_metrics",
]

MultiIndex = tuple[int, ...]
Predict = Callable[[np.ndarray, list[MultiIndex]], Mapping[MultiIndex, np.ndarray]]

#: most rows handed to ``predict`` in one call
DEFAULT_BATCH = 65536

# ---------------------------------------------------------------------------------------------
# statistics on arrays


class _RunningStats:
    """Streaming statistics of |e| (Chan's pairwise merge of mean and M2), so that a grid too
    large for memory can be reduced chunk by chunk with the same result as one pass."""

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.max = -math.inf
        self.sumsq = 0.0
        self.refsq = 0.0
        self.has_ref = False

    def update(self, err, reference=None) -> _RunningStats:
        e = np.abs(np.asarray(err, dtype=np.float64)).ravel()
        if e.size:
            mean_b = float(e.mean())
            m2_b = float(np.sum((e - mean_b) ** 2))
            n_a, n_b = self.n, e.size
            n = n_a + n_b
            delta = mean_b - self.mean
            self.mean += delta * n_b / n
            self.m2 += m2_b + delta**2 * n_a * n_b / n
            self.n = n
            m = float(e.max())  # nan propagates, as in one np.max over everything
            self.max = math.nan if math.isnan(m) or math.isnan(self.max) else max(self.max, m)
            self.sumsq += float(np.sum(e**2))
        if reference is not None:
            r = np.asarray(reference, dtype=np.float64)
            self.refsq += float(np.sum(r**2))
            self.has_ref = True
        return self

    def result(self, cell: float | None = None) -> dict[str, float]:
        if self.n == 0:
            raise ValueError("error statistics of an empty array")
        out = {
            "max": self.max,
            "mean": self.mean,
            "std": math.sqrt(self.m2 / self.n) if self.m2 >= 0 else math.nan,
            "rmse": math.sqrt(self.sumsq / self.n),
        }
        if cell is not None:
            out["l2"] = math.sqrt(float(cell) * self.sumsq)
        if self.has_ref:
            out["rel_l2"] = _safe_sqrt_ratio(self.sumsq, self.refsq)
        return out


def _safe_sqrt_ratio(num: float, den: float) -> float:
    if den == 0.0:
        return math.nan if num == 0.0 else math.inf
    return math.sqrt(num / den)


def error_stats(err, cell: float | None = None, reference=None) -> dict[str, float]:
    """Statistics of the pointwise errors e = |err| (any shape; flattened):

    * ``max`` = max e, ``mean`` = (1/N) Σ e, ``std`` = sqrt((1/N) Σ (e − mean)²),
      ``rmse`` = sqrt((1/N) Σ e²);
    * with ``cell`` (the area/volume of one grid cell): ``l2`` = sqrt(cell · Σ e²), the
      rectangle-rule L² norm of the error over the grid;
    * with ``reference`` (the true values at the same points): ``rel_l2`` =
      sqrt(Σ e² / Σ reference²) (nan if both sums are 0, inf if only the reference's is).

    For vector-valued errors pass the pointwise norms, e.g. ``np.linalg.norm(e, axis=-1)``.
    """
    return _RunningStats().update(err, reference).result(cell)


def relative_l2(pred, true) -> float:
    """‖pred − true‖₂ / ‖true‖₂ over all entries (Frobenius norm for arrays)."""
    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    return _safe_sqrt_ratio(float(np.sum((pred - true) ** 2)), float(np.sum(true**2)))


def _trajectory_sq(pred, true) -> np.ndarray:
    """Squared pointwise error norms (n_traj, n_t) of (n_traj, n_t[, k]) arrays."""
    pred = np.asarray(pred, dtype=np.float64)
    true = np.broadcast_to(np.asarray(true, dtype=np.float64), pred.shape)
    if pred.ndim not in (2, 3):
        raise ValueError(f"trajectories must be (n_traj, n_t[, k]), got shape {pred.shape}")
    sq = (pred - true) ** 2
    return sq.sum(axis=2) if sq.ndim == 3 else sq


def trajectory_errors(pred, true, dt: float) -> dict[str, Any]:
    """Per-trajectory L² error in time, as the paper sums it (§3.5):

    E_j = sqrt(Σ_i ‖pred[j, i] − true[j, i]‖² · Δt)

    over all n_t time points (so a constant error c over t = 0, Δt, …, T gives
    c·sqrt(T + Δt)). Arrays are (n_traj, n_t) or (n_traj, n_t, k) (``true`` may broadcast,
    e.g. 0 for a residual). Returns ``mean``, ``std`` (ddof 0), ``max`` of E_j and
    ``per_trajectory`` (the list of E_j).
    """
    per = np.sqrt(_trajectory_sq(pred, true).sum(axis=1) * float(dt))
    return {
        "mean": float(per.mean()),
        "std": float(per.std()),
        "max": float(per.max()),
        "per_trajectory": [float(v) for v in per],
    }


def cumulative_error_curve(pred, true, t, horizons) -> dict[str, list[float]]:
    """Mean absolute error over [0, T] for each horizon T (§3.5):

    MAE(T) = mean over trajectories j and times t_i ≤ T of ‖pred[j, i] − true[j, i]‖

    (|·| for scalar trajectories). Arrays (n_traj, n_t[, k]) on times ``t`` (n_t,). A horizon
    below every time gives nan. Times within 1e-9·(1 + |T|) of T count as ≤ T.
    Returns ``{"T": horizons, "mae": values}``.
    """
    err = np.sqrt(_trajectory_sq(pred, true))
    t = np.asarray(t, dtype=np.float64)
    if t.shape != err.shape[1:2]:
        raise ValueError(f"t must have the {err.shape[1]} times of the trajectories")
    horizons = [float(h) for h in np.atleast_1d(np.asarray(horizons, dtype=np.float64))]
    mae = []
    for h in horizons:
        mask = t <= h + 1e-9 * (1.0 + abs(h))
        mae.append(float(err[:, mask].mean()) if mask.any() else math.nan)
    return {"T": horizons, "mae": mae}


def mass_rmse(rho_frames, cell: float, mass_true) -> float:
    """Mass-conservation error (§6.5): with M_k = cell · Σ ρ̂_k over frame k,

    RMSE = sqrt((1/K) Σ_k (M_k − M_true)²)

    ``rho_frames`` is (K, …) (each frame one grid); ``mass_true`` a scalar or (K,).
    """
    rho = np.asarray(rho_frames, dtype=np.float64)
    masses = float(cell) * rho.reshape(rho.shape[0], -1).sum(axis=1)
    return float(np.sqrt(np.mean((masses - np.asarray(mass_true, dtype=np.float64)) ** 2)))


def spectral_error_norm(err_matrix, dv: float) -> float:
    """The reference code's Kovasznay "error norm" (§7.3, pitfall §12.9): numpy's ``ord=2``
    on the (N, k) error array, i.e. its largest singular value σ_max(E), times the cell area:
    σ_max(E) · dv. Not an L² norm (see :func:`frobenius_error_norm`, ``error_stats(...)["l2"]``).
    """
    e = np.asarray(err_matrix, dtype=np.float64)
    e = e[:, None] if e.ndim == 1 else e
    return float(np.linalg.norm(e, 2) * float(dv))


def frobenius_error_norm(err_matrix, dv: float) -> float:
    """The Frobenius counterpart of :func:`spectral_error_norm`: ‖E‖_F · dv =
    sqrt(Σ_ij E_ij²) · dv (still × dv, not × sqrt(dv), to compare with the reference)."""
    return float(np.sqrt(np.sum(np.asarray(err_matrix, dtype=np.float64) ** 2)) * float(dv))


# ---------------------------------------------------------------------------------------------
# evaluating a predict callable


def multi_index(inputs: Sequence[str], *names: str) -> MultiIndex:
    """The multi-index of ∂/∂names: sorted positions of ``names`` in ``inputs``.

    >>> multi_index(("t", "x", "y"), "y", "t")
    (0, 2)
    >>> multi_index(("t", "x", "y"))
    ()
    """
    inputs = tuple(inputs)
    missing = [n for n in names if n not in inputs]
    if missing:
        raise ValueError(f"no input named {missing[0]!r}; inputs are {inputs}")
    return tuple(sorted(inputs.index(n) for n in names))


def _predict(
    predict: Predict, X: np.ndarray, indices: Iterable[MultiIndex], batch: int
) -> dict[MultiIndex, np.ndarray]:
    """Evaluate ``predict`` on ``X`` in batches of at most ``batch`` rows, checking the
    contract; returns the requested derivatives (and the value) as (N, n_out) float64."""
    if int(batch) < 1:
        raise ValueError(f"batch must be a positive number of rows, got {batch}")
    batch = int(batch)
    X = np.ascontiguousarray(X, dtype=np.float64)
    wanted = sorted({(), *(tuple(sorted(a)) for a in indices)}, key=lambda a: (len(a), a))
    asked = [a for a in wanted if a]
    parts: dict[MultiIndex, list[np.ndarray]] = {a: [] for a in wanted}
    for start in range(0, X.shape[0], batch):
        xb = X[start : start + batch]
        got = predict(xb, list(asked))
        for a in wanted:
            if a not in got:
                raise KeyError(f"predict did not return the multi-index {a}")
            v = np.asarray(got[a], dtype=np.float64)
            if v.ndim == 1:
                v = v[:, None]
            if v.ndim != 2 or v.shape[0] != xb.shape[0]:
                raise ValueError(
                    f"predict returned shape {v.shape} for {a}; expected ({xb.shape[0]}, n_out)"
                )
            parts[a].append(v)
    return {a: np.concatenate(p, axis=0) for a, p in parts.items()}


def _residual_indices(system) -> list[MultiIndex]:
    return [multi_index(system.inputs, *names) for names in system.residual_needs]


def _derivative_getter(system, values: Mapping[MultiIndex, np.ndarray]):
    """The ``d(*names)`` of :meth:`FieldSystem.pde_residual` over computed derivatives."""

    def d(*names: str) -> np.ndarray:
        return values[multi_index(system.inputs, *names)]

    return d


def _jacobian(values, positions: Sequence[int]) -> np.ndarray:
    """(N, n_out, n_c) from first derivatives at the given input positions."""
    return np.stack([values[(p,)] for p in positions], axis=-1)


def _hessian(values, positions: Sequence[int]) -> np.ndarray:
    """(N, n_out, n_c, n_c) from second derivatives at the given input positions."""
    rows = [
        np.stack([values[tuple(sorted((p, q)))] for q in positions], axis=-1) for p in positions
    ]
    return np.stack(rows, axis=-2)


def _grid(system, names: Sequence[str], n: int) -> tuple[list[np.ndarray], np.ndarray, float]:
    """A tensor grid of ``n`` points per coordinate over the domain box: the 1-D axes, the
    points (n^d, d) in 'ij' order, and the cell volume Π (b − a)/(n − 1)."""
    if int(n) < 2:
        raise ValueError(f"a grid needs n >= 2 points per axis, got {n}")
    dom = system.domain()
    axes = [np.linspace(dom[c][0], dom[c][1], int(n)) for c in names]
    mesh = np.meshgrid(*axes, indexing="ij")
    pts = np.stack([m.ravel() for m in mesh], axis=1)
    cell = float(np.prod([(dom[c][1] - dom[c][0]) / (int(n) - 1) for c in names]))
    return axes, pts, cell


def _assemble(system, columns: Mapping[str, np.ndarray | float], n: int) -> np.ndarray:
    """Points (n, n_in) in the order of ``system.inputs`` from named columns (scalars
    broadcast)."""
    X = np.empty((n, len(system.inputs)))
    for i, name in enumerate(system.inputs):
        if name not in columns:
            raise ValueError(f"{system.name}: no values given for input {name!r}")
        X[:, i] = columns[name]
    return X


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


# ---------------------------------------------------------------------------------------------
# E1 pendulum (§3.5)


def evaluate_pendulum(
    predict: Predict,
    system,
    t,
    initial_states,
    states,
    *,
    phase_grid: int | None = 250,
    form: str = "positions",
    horizons=None,
    init_consistency: bool = False,
    return_fields: bool = False,
    batch: int = DEFAULT_BATCH,
) -> dict[str, Any]:
    """Metrics of a flow-map network (t, θ0, ω0) → θ̂ (§3.5) on reference trajectories.

    ``t`` (n_t,) equispaced times (Δt = t[1] − t[0]), ``initial_states`` (n_traj, 2),
    ``states`` (n_traj, n_t, 2) the true (θ, ω). ``form="positions"``: one output θ̂, the
    velocity is ∂θ̂/∂t (multi-index (0,)), the acceleration ∂²θ̂/∂t² ((0, 0)); ``"state"``:
    outputs (θ̂, ω̂). All trajectory integrals are :func:`trajectory_errors`
    (sqrt(Σ_t ‖·‖² Δt), mean/std/max over trajectories).

    * ``trajectory``: θ̂ − θ.
    * ``field``: positions (θ̂_t, θ̂_tt) − f(θ, ω); state ∂ŷ/∂t − f(y) (f at the true states).
    * ``consistency``: the ODE residual of the prediction: positions
      ``system.residual(θ̂, θ̂_t, θ̂_tt)`` = θ̂_tt + (g/l) sin θ̂ + (b/m) θ̂_t; state
      ‖∂ŷ/∂t − f(ŷ)‖ (``system.vector_field``).
    * ``init_consistency`` (if asked; needs third derivatives in the positions form): the
      derivative of that residual with respect to (θ0, ω0), 2-norm per point. Positions:
      ∂r/∂p = θ̂_ttp − a_θ θ̂_p − a_ω θ̂_tp with (a_θ, a_ω) the second row of ``system.jacobian``
      at (θ̂, θ̂_t); state: ∂r/∂p = ŷ_tp − J_f(ŷ) ŷ_p.
    * ``cumulative``: :func:`cumulative_error_curve` of θ̂ at ``horizons`` (default
      T = 0, 0.1, …, t[-1]).
    * ``phase_space`` (skipped if ``phase_grid`` is falsy): at t = 0 on a G×G grid over
      [−π/2, π/2] × [−1.5, 1.5], e = ‖field(0, θ0, ω0) − f(θ0, ω0)‖ with the predicted field
      of the form; :func:`error_stats` with cell = 3π/G² (the paper's value) and reference ‖f‖
      (``rel_l2`` is the normalised L2). With ``return_fields`` also ``fields`` (grid axes,
      predicted and true fields (G, G, 2), error (G, G), as lists).
    """
    if form not in ("positions", "state"):
        raise ValueError(f"form must be 'positions' or 'state', got {form!r}")
    t = np.asarray(t, dtype=np.float64)
    y0 = np.asarray(initial_states, dtype=np.float64)
    true = np.asarray(states, dtype=np.float64)
    n_traj, n_t = y0.shape[0], t.size
    if y0.shape != (n_traj, 2) or true.shape != (n_traj, n_t, 2) or n_t < 2:
        raise ValueError(
            f"expected t (n_t >= 2,), initial_states (n_traj, 2), states (n_traj, n_t, 2); got "
            f"{t.shape}, {y0.shape}, {true.shape}"
        )
    dt = float(t[1] - t[0])
    X = np.concatenate(
        [np.tile(t, n_traj)[:, None], np.repeat(y0, n_t, axis=0)], axis=1
    )  # trajectory-major
    shape = (n_traj, n_t)
    T, P1, P2 = 0, 1, 2  # input positions of t, θ0, ω0
    if form == "positions":
        indices = [(T,), (T, T)]
        if init_consistency:
            indices += [(p,) for p in (P1, P2)] + [(T, p) for p in (P1, P2)]
            indices += [(T, T, p) for p in (P1, P2)]
    else:
        indices = [(T,)]
        if init_consistency:
            indices += [(p,) for p in (P1, P2)] + [(T, p) for p in (P1, P2)]
    v = _predict(predict, X, indices, batch)
    y_true = true.reshape(-1, 2)
    f_true = np.asarray(system.vector_field(X[:, 0], y_true, np), dtype=np.float64)

    if form == "positions":
        theta, theta_t, theta_tt = v[()][:, 0], v[(T,)][:, 0], v[(T, T)][:, 0]
        field = np.stack([theta_t, theta_tt], axis=1)
        resid = np.asarray(system.residual(theta, theta_t, theta_tt), dtype=np.float64)
        resid = resid.reshape(*shape)
    else:
        yhat, field = v[()], v[(T,)]
        theta = yhat[:, 0]
        f_hat = np.asarray(system.vector_field(X[:, 0], yhat, np), dtype=np.float64)
        resid = (field - f_hat).reshape(*shape, 2)

    out: dict[str, Any] = {
        "form": form,
        "n_trajectories": n_traj,
        "dt": dt,
        "trajectory": trajectory_errors(theta.reshape(shape), true[:, :, 0], dt),
        "field": trajectory_errors(field.reshape(*shape, 2), f_true.reshape(*shape, 2), dt),
        "consistency": trajectory_errors(resid, 0.0, dt),
    }
    if init_consistency:
        if form == "positions":
            jac = np.asarray(system.jacobian(np.stack([theta, theta_t], axis=1)))
            a_th, a_om = jac[:, 1, 0], jac[:, 1, 1]
            dr = [
                v[(T, T, p)][:, 0] - a_th * v[(p,)][:, 0] - a_om * v[(T, p)][:, 0] for p in (P1, P2)
            ]
            dr = np.stack(dr, axis=1)
        else:
            jac = np.asarray(system.jacobian(v[()]))
            dr = np.concatenate(
                [v[(T, p)] - np.einsum("nij,nj->ni", jac, v[(p,)]) for p in (P1, P2)], axis=1
            )
        out["init_consistency"] = trajectory_errors(dr.reshape(*shape, -1), 0.0, dt)
    if horizons is None:
        n_h = math.floor(float(t[-1]) / 0.1 + 1e-9)
        horizons = np.round(0.1 * np.arange(n_h + 1), 12)
    out["cumulative"] = cumulative_error_curve(theta.reshape(shape), true[:, :, 0], t, horizons)

    if phase_grid:
        g = int(phase_grid)
        th0 = np.linspace(-math.pi / 2, math.pi / 2, g)
        om0 = np.linspace(-1.5, 1.5, g)
        A, B = np.meshgrid(th0, om0, indexing="ij")
        Xp = np.stack([np.zeros(A.size), A.ravel(), B.ravel()], axis=1)
        vp = _predict(predict, Xp, [(T,), (T, T)] if form == "positions" else [(T,)], batch)
        if form == "positions":
            fp = np.stack([vp[(T,)][:, 0], vp[(T, T)][:, 0]], axis=1)
        else:
            fp = vp[(T,)]
        ft = np.asarray(system.vector_field(Xp[:, 0], Xp[:, 1:], np), dtype=np.float64)
        err = np.linalg.norm(fp - ft, axis=1)
        cell = math.pi * 3.0 / g**2
        stats = error_stats(err, cell=cell, reference=np.linalg.norm(ft, axis=1))
        out["phase_space"] = {"grid": g, "cell": cell, **stats}
        if return_fields:
            out["fields"] = {
                "theta0": th0.tolist(),
                "omega0": om0.tolist(),
                "predicted": fp.reshape(g, g, 2).tolist(),
                "true": ft.reshape(g, g, 2).tolist(),
                "error": err.reshape(g, g).tolist(),
            }
    return to_jsonable(out)


# ---------------------------------------------------------------------------------------------
# any ODE system, through its vector field


def evaluate_ode(
    predict: Predict,
    system,
    t,
    initial_states,
    states,
    *,
    form: str = "state",
    phase_grid: int | None = 100,
    phase_box=None,
    horizons=None,
    batch: int = DEFAULT_BATCH,
) -> dict[str, Any]:
    """The metrics of :func:`evaluate_pendulum` for a flow-map network (t, y0) → ŷ of any
    :class:`~derlhybrid.systems.ODESystem` y' = f(t, y), through ``system.vector_field``
    alone (no code per system).

    ``t`` (n_t,) equispaced, ``initial_states`` (n_traj, n), ``states`` (n_traj, n_t, n).
    ``form="state"``: the outputs are ŷ (n), its field ∂ŷ/∂t; ``"positions"`` (a
    ``second_order`` system, state (q, v)): the outputs are q̂, the field (∂q̂/∂t, ∂²q̂/∂t²).
    The tracked quantity is q (the first half of the state) for a second-order system and
    the whole state otherwise (as the pendulum's θ). Trajectory integrals are
    :func:`trajectory_errors` of pointwise 2-norms.

    * ``trajectory``: ‖q̂ − q‖.
    * ``field``: ‖field − f(t, y)‖ at the true states.
    * ``consistency``: the ODE residual of the prediction, ‖∂ŷ/∂t − f(t, ŷ)‖ (state) or
      ‖∂²q̂/∂t² − f_v(t, q̂, ∂q̂/∂t)‖ (positions).
    * ``cumulative``: :func:`cumulative_error_curve` of q̂ at ``horizons`` (default every
      0.1 up to t[-1]).
    * ``phase_space`` (two-state systems, ``phase_grid`` G truthy): at t = 0 on a G×G grid
      over ``phase_box`` ((lo, hi) per state), e = ‖field(0, y0) − f(0, y0)‖;
      :func:`error_stats` with cell = area/G² and reference ‖f‖.
    """
    if form not in ("positions", "state"):
        raise ValueError(f"form must be 'positions' or 'state', got {form!r}")
    n_s = system.n_state
    if form == "positions" and not (system.second_order and n_s % 2 == 0):
        raise ValueError(f"{system.name} is not a second-order system: use form='state'")
    t = np.asarray(t, dtype=np.float64)
    y0 = np.asarray(initial_states, dtype=np.float64)
    true = np.asarray(states, dtype=np.float64)
    n_traj, n_t = y0.shape[0], t.size
    if y0.shape != (n_traj, n_s) or true.shape != (n_traj, n_t, n_s) or n_t < 2:
        raise ValueError(
            f"expected t (n_t >= 2,), initial_states (n_traj, {n_s}), states "
            f"(n_traj, n_t, {n_s}); got {t.shape}, {y0.shape}, {true.shape}"
        )
    dt = float(t[1] - t[0])
    n_q = n_s // 2 if system.second_order else n_s  # the tracked quantity q
    X = np.concatenate([np.tile(t, n_traj)[:, None], np.repeat(y0, n_t, axis=0)], axis=1)
    T = 0
    indices = [(T,), (T, T)] if form == "positions" else [(T,)]

    def f(tt, y):
        return np.asarray(system.vector_field(tt, y, np), dtype=np.float64)

    def field_of(v):
        return np.concatenate([v[(T,)], v[(T, T)]], axis=1) if form == "positions" else v[(T,)]

    v = _predict(predict, X, indices, batch)
    field = field_of(v)
    if form == "positions":
        q_hat = v[()]
        resid = v[(T, T)] - f(X[:, 0], np.concatenate([v[()], v[(T,)]], axis=1))[:, n_q:]
    else:
        q_hat = v[()][:, :n_q]
        resid = field - f(X[:, 0], v[()])
    shape = (n_traj, n_t)
    q_true = true[:, :, :n_q]
    out: dict[str, Any] = {
        "form": form,
        "n_trajectories": n_traj,
        "dt": dt,
        "trajectory": trajectory_errors(q_hat.reshape(*shape, n_q), q_true, dt),
        "field": trajectory_errors(
            field.reshape(*shape, n_s), f(X[:, 0], true.reshape(-1, n_s)).reshape(*shape, n_s), dt
        ),
        "consistency": trajectory_errors(resid.reshape(*shape, -1), 0.0, dt),
    }
    if horizons is None:
        n_h = math.floor(float(t[-1]) / 0.1 + 1e-9)
        horizons = np.round(0.1 * np.arange(n_h + 1), 12)
    out["cumulative"] = cumulative_error_curve(q_hat.reshape(*shape, n_q), q_true, t, horizons)
    if phase_grid and n_s == 2:
        if phase_box is None:
            raise ValueError("phase_box ((lo, hi) per state) is required for the phase-space grid")
        g = int(phase_grid)
        (a0, a1), (b0, b1) = ((float(lo), float(hi)) for lo, hi in phase_box)
        A, B = np.meshgrid(np.linspace(a0, a1, g), np.linspace(b0, b1, g), indexing="ij")
        Xp = np.stack([np.zeros(A.size), A.ravel(), B.ravel()], axis=1)
        fp = field_of(_predict(predict, Xp, indices, batch))
        ft = f(Xp[:, 0], Xp[:, 1:])
        cell = (a1 - a0) * (b1 - b0) / g**2
        err = np.linalg.norm(fp - ft, axis=1)
        stats = error_stats(err, cell=cell, reference=np.linalg.norm(ft, axis=1))
        out["phase_space"] = {"grid": g, "box": [[a0, a1], [b0, b1]], "cell": cell, **stats}
    return to_jsonable(out)


# ---------------------------------------------------------------------------------------------
# E2 Allen–Cahn (§4.5, §5.4)


def _allen_cahn_on(predict, system, pts, cell, columns, batch):
    coords = system.coordinates
    X = _assemble(system, {**{c: pts[:, i] for i, c in enumerate(coords)}, **columns}, len(pts))
    pos = [system.inputs.index(c) for c in coords]
    v = _predict(predict, X, [(p,) for p in pos] + _residual_indices(system), batch)
    d = _derivative_getter(system, v)
    u_hat = v[()][:, 0]
    f_hat = np.asarray(system.pde_residual(d, X, {"forcing": np.zeros(len(X))}, np))[:, 0]
    u = system.exact(X)[:, 0]
    f = np.asarray(system.forcing(X), dtype=np.float64)
    grad_true = system.jacobian(X)[:, 0, :]
    grad_err = np.linalg.norm(_jacobian(v, pos)[:, 0, :] - grad_true, axis=1)
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
    _, pts, cell = _grid(system, coords, n)
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
    res_idx = _residual_indices(system)
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

    dens, resid = _RunningStats(), _RunningStats()
    for k, tk in enumerate(t):
        X = _assemble(system, {"t": tk, "x": xs, "y": ys}, xs.size)
        v = _predict(predict, X, res_idx, batch)
        r = np.asarray(system.pde_residual(_derivative_getter(system, v), X, {}, np))
        rho_hat = v[()][:, 0]
        dens.update(rho_hat - rho[k].ravel(), rho[k])
        resid.update(np.linalg.norm(r, axis=1))
        for j in frame_of.get(k, ()):
            mass_pred[j] = float(rho_hat.sum() * dx * dy)
    for j, tau in enumerate(mass_times):
        if math.isnan(mass_pred[j]):
            X = _assemble(system, {"t": float(tau), "x": xs, "y": ys}, xs.size)
            mass_pred[j] = float(_predict(predict, X, [], batch)[()][:, 0].sum() * dx * dy)

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
    _, X, dv = _grid(system, coords, n)
    pos = [system.inputs.index(c) for c in coords]
    v = _predict(predict, X, [(p,) for p in pos] + _residual_indices(system), batch)
    U = system.exact(X)
    E = v[()] - U
    per_output = {
        name: error_stats(E[:, i], dv, reference=U[:, i]) for i, name in enumerate(system.outputs)
    }
    jac_true = system.jacobian(X)
    jac_hat = _jacobian(v, pos)
    ix, iy = coords.index("x"), coords.index("y")
    om_hat = jac_hat[:, 1, ix] - jac_hat[:, 0, iy]
    om = jac_true[:, 1, ix] - jac_true[:, 0, iy]
    R = np.asarray(system.pde_residual(_derivative_getter(system, v), X, {}, np))
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
        indices += _residual_indices(system)

    v = _predict(predict, X, indices, batch)
    out: dict[str, Any] = {
        "n_points": X.shape[0],
        "output": error_stats(
            np.linalg.norm(v[()] - u, axis=1), cell, reference=np.linalg.norm(u, axis=1)
        ),
    }
    if jacobian is not None:
        J = np.asarray(jacobian, dtype=np.float64)
        err = np.sqrt(np.sum((_jacobian(v, pos) - J) ** 2, axis=(1, 2)))
        out["jacobian"] = error_stats(err, cell, reference=np.sqrt(np.sum(J**2, axis=(1, 2))))
    if hessian is not None:
        H = np.asarray(hessian, dtype=np.float64)
        err = np.sqrt(np.sum((_hessian(v, pos) - H) ** 2, axis=(1, 2, 3)))
        out["hessian"] = error_stats(err, cell, reference=np.sqrt(np.sum(H**2, axis=(1, 2, 3))))
    if skipped is not None:
        out["residual"] = {"skipped": skipped}
    else:
        R = np.asarray(system.pde_residual(_derivative_getter(system, v), X, aux, np))
        R = R[:, None] if R.ndim == 1 else R
        residual: dict[str, Any] = error_stats(np.linalg.norm(R, axis=1), cell)
        out["residual"] = residual
        if R.shape[1] > 1:
            residual["components"] = {
                name: error_stats(R[:, i], cell) for i, name in enumerate(system.residual_names)
            }
    return to_jsonable(out)


# ---------------------------------------------------------------------------------------------
# writing


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
