"""The pendulum of paper.md §3: θ'' = −(g/l) sin θ − (b/m) θ'.

State (θ, ω) with field f(θ, ω) = (ω, −(g/l) sin θ − (b/m) ω). Defaults are the paper's
damped pendulum (b = 0.5, m = 1, l = 10, g = 9.81); ``b = 0`` is the conservative one, which
also has an exact solution in Jacobi elliptic functions (:meth:`Pendulum.exact`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
from scipy import special

from ..kernels.vmath import SIN_SMALL_ARG, sin_small
from ..kernels.vmath import sin as vsin
from .base import ODESystem, parameter


@numba.njit(cache=True, fastmath=False)
def _pendulum_rhs(t, y, p, dy):  # p = (b, g, l, m)
    dy[0] = y[1]
    dy[1] = -(p[1] / p[2]) * math.sin(y[0]) - (p[0] / p[3]) * y[1]


# error_model="numpy": no zero-division checks, so the loops vectorise. fastmath given
# explicitly: Numba would otherwise inherit the flags of the kernel that compiles it first
# (the lane kernels contract to FMA), and its bits would depend on the order of compiles.
@numba.njit(cache=True, error_model="numpy", fastmath={"contract"})
def _pendulum_rhs_lanes(t, y, p, dy):  # columns are points: t (L,), y and dy (2, L), p (4, L)
    n = y.shape[1]
    small = True  # all angles within +-0.78 (most calls): sin without its range reduction
    for c in range(n):
        small &= abs(y[0, c]) <= SIN_SMALL_ARG
    if small:  # (sin_small gives sin's bits there)
        for c in range(n):
            dy[0, c] = y[1, c]
            dy[1, c] = -(p[1, c] / p[2, c]) * sin_small(y[0, c]) - (p[0, c] / p[3, c]) * y[1, c]
    else:
        for c in range(n):
            dy[0, c] = y[1, c]
            dy[1, c] = -(p[1, c] / p[2, c]) * vsin(y[0, c]) - (p[0, c] / p[3, c]) * y[1, c]


@dataclass(frozen=True)
class Pendulum(ODESystem):
    name = "pendulum"
    description = "damped pendulum θ'' = −(g/l) sin θ − (b/m) θ' (b = 0: conservative)"
    state_names = ("theta", "omega")
    rhs_kernel = staticmethod(_pendulum_rhs)
    rhs_lanes_kernel = staticmethod(_pendulum_rhs_lanes)  # vectorised sin: within 1 ulp
    legacy_rng = True  # the paper preset's initial states: RandomState(30)

    b: float = parameter(0.5, low=0.0, doc="damping coefficient (0: conservative)", unit="kg/s")
    g: float = parameter(9.81, low=0.0, low_open=True, doc="gravity", unit="m/s^2")
    l: float = parameter(10.0, low=0.0, low_open=True, doc="length", unit="m")  # noqa: E741
    m: float = parameter(1.0, low=0.0, low_open=True, doc="mass", unit="kg")

    # paper.md §3.1: θ0 ~ U(−π/4, π/4), ω0 ~ U(−1.5, 1.5), drawn θ0 vector first
    theta0_range = (-math.pi / 4, math.pi / 4)
    omega0_range = (-1.5, 1.5)
    t_end_default = 10.0

    second_order = True
    damped_hamiltonian_1dof = True
    metrics_kind = "pendulum"

    def vector_field(self, t, y, xp=np):
        """The field, the one array definition: the kernels above, :meth:`residual` and
        :meth:`jacobian` are checked against it (tests/test_systems.py)."""
        theta, omega = y[..., 0], y[..., 1]
        acc = -(self.g / self.l) * xp.sin(theta) - (self.b / self.m) * omega
        return xp.stack([omega, acc], -1)

    def rhs(self, t, y) -> np.ndarray:
        return self.vector_field(t, np.asarray(y, dtype=np.float64))

    def jacobian(self, y) -> np.ndarray:
        """∂f/∂(θ, ω) at states (..., 2) → (..., 2, 2)."""
        y = np.asarray(y, dtype=np.float64)
        jac = np.zeros((*y.shape[:-1], 2, 2))
        jac[..., 0, 1] = 1.0
        jac[..., 1, 0] = -(self.g / self.l) * np.cos(y[..., 0])
        jac[..., 1, 1] = -(self.b / self.m)
        return jac

    def residual(self, theta, theta_t, theta_tt):
        """Residual of the second-order ODE, θ'' + (g/l) sin θ + (b/m) θ' (works on torch
        tensors and NumPy arrays alike)."""
        sin = np.sin if isinstance(theta, np.ndarray | float) else type(theta).sin
        return theta_tt + (self.g / self.l) * sin(theta) + (self.b / self.m) * theta_t

    def energy(self, y) -> np.ndarray:
        """E = ω²/2 − (g/l) cos θ per unit m·l² (conserved when b = 0)."""
        y = np.asarray(y, dtype=np.float64)
        return 0.5 * y[..., 1] ** 2 - (self.g / self.l) * np.cos(y[..., 0])

    def sample_initial_states(
        self, rng: np.random.Generator | np.random.RandomState, n: int
    ) -> np.ndarray:
        theta0 = rng.uniform(*self.theta0_range, n)
        omega0 = rng.uniform(*self.omega0_range, n)
        return np.stack([theta0, omega0], axis=1)

    def exact(self, t, y0) -> np.ndarray:
        """Exact states at times ``t`` (n_t,) from ``y0`` (n, 2) for the conservative,
        librating pendulum: θ = 2 arcsin(k sn(√(g/l) t + u0 | k²)) → (n, n_t, 2)."""
        if self.b != 0:
            raise ValueError("the exact solution is known only for b = 0 (conservative)")
        y0 = np.atleast_2d(np.asarray(y0, dtype=np.float64))
        t = np.asarray(t, dtype=np.float64)
        w0 = math.sqrt(self.g / self.l)
        e = self.energy(y0)
        k2 = (e + w0**2) / (2 * w0**2)
        if np.any(k2 >= 1):
            raise ValueError("exact(): a state rotates over the top (k >= 1); not librating")
        k = np.sqrt(k2)
        s0 = np.clip(np.sin(y0[:, 0] / 2) / np.where(k > 0, k, 1), -1, 1)
        u0 = special.ellipkinc(np.arcsin(s0), k2)
        kk = special.ellipk(k2)
        u0 = np.where(y0[:, 1] >= 0, u0, 2 * kk - u0)  # sign of cn(u0) = sign of ω0
        u = w0 * t[None, :] + u0[:, None]
        sn, cn, _, _ = special.ellipj(u, k2[:, None])
        theta = 2 * np.arcsin(k[:, None] * sn)
        omega = 2 * k[:, None] * w0 * cn  # θ' = 2 k w0 cn dn / cos(θ/2), cos(θ/2) = dn
        return np.stack([theta, omega], axis=-1)
