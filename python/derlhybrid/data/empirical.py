"""Empirical (finite-difference) derivatives of generated data.

* :func:`along_trajectories` / :func:`on_grid`: any stencil of :func:`derlhybrid.derivative`
  (scheme, order, accuracy; one-sided at the ends of a time axis, periodic where the grid
  is) applied to stored samples.
* :func:`cubic_forward_samples`: the paper's pendulum ``emp`` data (paper.md §3.2): per
  trajectory a cubic interpolant of the saved states, random times in ``[t0, t_end − h)``,
  and the forward difference ``(y(t + h) − y(t))/h`` of the interpolant.
"""

from __future__ import annotations

import re

import numpy as np

from ..kernels import derivative

SCHEME_RE = re.compile(r"^(central|forward|backward):([1-9][0-9]*)$")


def parse_scheme(text: str) -> tuple[str, int]:
    """``"central:4"`` → ``("central", 4)``; ``"cubic-forward"`` → ``("cubic-forward", 1)``."""
    if text == "cubic-forward":
        return "cubic-forward", 1
    m = SCHEME_RE.match(str(text))
    if not m:
        raise ValueError(
            f"empirical scheme must be central:N, forward:N, backward:N or cubic-forward, "
            f"got {text!r}"
        )
    scheme, accuracy = m.group(1), int(m.group(2))
    if accuracy < 1 or (scheme == "central" and accuracy % 2):
        raise ValueError(
            f"empirical scheme {text!r}: central stencils have even accuracy (central:2, "
            "central:4, ...), forward/backward any accuracy >= 1"
        )
    return scheme, accuracy


def along_trajectories(states, t, *, scheme="forward", accuracy=1, out=None):
    """dy/dt estimated from saved states (n_traj, n_t, n_state) on the times ``t``."""
    return derivative(
        states,
        np.asarray(t, dtype=np.float64),
        axis=1,
        order=1,
        accuracy=accuracy,
        scheme=scheme,
        boundary="one-sided",
        out=out,
    )


def on_grid(field, coordinate, axis, *, scheme="forward", accuracy=1, periodic=False, period=None):
    """∂field/∂(coordinate) along ``axis`` of a grid field."""
    return derivative(
        field,
        coordinate,
        axis=axis,
        order=1,
        accuracy=accuracy,
        scheme=scheme,
        boundary="periodic" if periodic else "one-sided",
        period=period,
    )


def cubic_forward_samples(t, states, rng: np.random.Generator, n_samples: int, h: float):
    """The paper's ``emp`` samples for every trajectory: times ``τ ~ U(t0, t_end − h)``,
    ``y(τ)`` from a cubic interpolant (SciPy ``interp1d(kind="cubic")``, the reference
    code's choice) and ``(y(τ + h) − y(τ))/h``. Returns ``(tau (n_traj, n_samples),
    y (n_traj, n_samples, n_state), dy (same))``."""
    from scipy.interpolate import interp1d

    t = np.asarray(t, dtype=np.float64)
    states = np.asarray(states, dtype=np.float64)
    if not (np.isfinite(h) and 0 < h < t[-1] - t[0]):
        raise ValueError(f"fd step h={h!r} must be positive and shorter than the time span")
    n_traj = states.shape[0]
    tau = rng.uniform(t[0], t[-1] - h, (n_traj, n_samples))
    y = np.empty((n_traj, n_samples, states.shape[2]))
    dy = np.empty_like(y)
    for i in range(n_traj):
        f = interp1d(t, states[i], kind="cubic", axis=0, assume_sorted=True)
        y[i] = f(tau[i])
        dy[i] = (f(tau[i] + h) - y[i]) / h
    return tau, y, dy
