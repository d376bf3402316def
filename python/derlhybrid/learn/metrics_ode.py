"""Evaluators of flow-map networks (t, y0) → ŷ on reference trajectories (paper.md §3.5):
:func:`evaluate_pendulum` (the pendulum, positions or state form) and :func:`evaluate_ode`
(any ODE system, through its vector field alone). Both return JSON-ready dicts of
:func:`~.metrics_stats.trajectory_errors`, :func:`~.metrics_stats.cumulative_error_curve`
and phase-space :func:`~.metrics_stats.error_stats`."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .metrics_json import to_jsonable
from .metrics_predict import DEFAULT_BATCH, Predict, predict_batched
from .metrics_stats import cumulative_error_curve, error_stats, trajectory_errors

__all__ = ["evaluate_ode", "evaluate_pendulum"]


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
    v = predict_batched(predict, X, indices, batch)
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
        vp = predict_batched(predict, Xp, [(T,), (T, T)] if form == "positions" else [(T,)], batch)
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

    v = predict_batched(predict, X, indices, batch)
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
        fp = field_of(predict_batched(predict, Xp, indices, batch))
        ft = f(Xp[:, 0], Xp[:, 1:])
        cell = (a1 - a0) * (b1 - b0) / g**2
        err = np.linalg.norm(fp - ft, axis=1)
        stats = error_stats(err, cell=cell, reference=np.linalg.norm(ft, axis=1))
        out["phase_space"] = {"grid": g, "box": [[a0, a1], [b0, b1]], "cell": cell, **stats}
    return to_jsonable(out)
