"""Error statistics on arrays, the formulas of the paper's metrics (paper.md §3.5, §6.5,
§7.3): :func:`error_stats` (and its streaming form :class:`RunningStats`),
:func:`relative_l2`, :func:`trajectory_errors`, :func:`cumulative_error_curve`,
:func:`mass_rmse`, :func:`spectral_error_norm`, :func:`frobenius_error_norm`. Pure NumPy in
float64; each docstring states its formula.

Conventions: ``std`` is the population standard deviation (ddof = 0); the absolute value of
an error array is taken before its statistics (pass pointwise norms for vector errors).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "RunningStats",
    "cumulative_error_curve",
    "error_stats",
    "frobenius_error_norm",
    "mass_rmse",
    "relative_l2",
    "spectral_error_norm",
    "trajectory_errors",
]


class RunningStats:
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

    def update(self, err, reference=None) -> RunningStats:
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
    return RunningStats().update(err, reference).result(cell)


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
