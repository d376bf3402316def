"""Time-dependent PDEs of paper.md §6 and §8: the continuity equation and KdV."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import numpy as np

from .base import FieldSystem, parameter

# paper.md §6.1: centres of the four Gaussians of the initial density
GAUSSIAN_CENTRES = ((-0.3, -0.6), (-0.1, 0.2), (0.5, -0.5), (0.5, 0.4))


@dataclass(frozen=True)
class Continuity(FieldSystem):
    """ρ_t + ∇·(ρ u) = 0 with the rigid rotation u = (−y, x) (∇·u = 0), on
    [−L, L]² × [0, T], ρ0 = Σ_k exp(−‖x − c_k‖²/w). Exact: ρ(t, x) = ρ0(R(−t) x); the
    Gaussians stay inside the box (ρ0 ≤ 1e-9 at distance ≥ 1.02 from the origin for
    w = 0.05 since every centre lies within 0.81 of it... see ``boundary_mass``)."""

    name = "continuity"
    kind = "pde"
    description = "continuity equation, rotation field u = (−y, x), four Gaussians"
    inputs = ("t", "x", "y")
    outputs = ("rho",)
    has_exact = True
    data_layout = "grid"  # the MOL / finite-volume solver's fields (the closed form checks it)

    width: float = parameter(0.05, low=0.0, low_open=True, doc="w in exp(−‖x−c‖²/w)")
    half_size: float = parameter(1.5, low=0.0, low_open=True, doc="domain [−L, L]²")
    t_end: float = parameter(10.0, low=0.0, low_open=True, doc="final time T")

    def domain(self):
        L = self.half_size
        return {"t": (0.0, self.t_end), "x": (-L, L), "y": (-L, L)}

    def velocity(self, x, y):
        return -np.asarray(y), np.asarray(x)

    def rho0(self, x, y) -> np.ndarray:
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        # the builtin sum of four arrays (its start, 0, types as an int)
        return cast(
            np.ndarray,
            sum(
                np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / self.width) for cx, cy in GAUSSIAN_CENTRES
            ),
        )

    def _grad_rho0(self, x, y):
        gx = np.zeros_like(x)
        gy = np.zeros_like(y)
        for cx, cy in GAUSSIAN_CENTRES:
            g = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / self.width)
            gx -= 2 * (x - cx) / self.width * g
            gy -= 2 * (y - cy) / self.width * g
        return gx, gy

    def _back(self, X):
        X = self._points(X)
        t, x, y = X[:, 0], X[:, 1], X[:, 2]
        c, s = np.cos(t), np.sin(t)
        return t, x, y, c, s, x * c + y * s, -x * s + y * c  # (ξ, η) = R(−t)(x, y)

    def exact(self, X):
        *_, xi, eta = self._back(X)
        return self.rho0(xi, eta)[:, None]

    def jacobian(self, X):
        """(ρ_t, ρ_x, ρ_y): ∇ρ = R(t) ∇ρ0(ξ, η), ρ_t = −u·∇ρ = y ρ_x − x ρ_y."""
        _, x, y, c, s, xi, eta = self._back(X)
        gx, gy = self._grad_rho0(xi, eta)
        rx = c * gx - s * gy
        ry = s * gx + c * gy
        return np.stack([y * rx - x * ry, rx, ry], axis=-1)[:, None, :]

    def mass0(self) -> float:
        """∫ρ0 over the plane, 4πw/... = 4 · π w (each Gaussian integrates to π w)."""
        return len(GAUSSIAN_CENTRES) * math.pi * self.width

    residual_needs = (("t",), ("x",), ("y",))

    def residual(self, rho_t, rho_x, rho_y, x, y):
        """ρ_t + u·∇ρ (= ρ_t + ∇·(ρu) since ∇·u = 0)."""
        return rho_t - y * rho_x + x * rho_y

    def pde_residual(self, d, X, aux, xp=np):
        r = self.residual(d("t")[:, 0], d("x")[:, 0], d("y")[:, 0], X[:, 1], X[:, 2])
        return r[:, None]


@dataclass(frozen=True)
class KdV(FieldSystem):
    """Korteweg–de Vries u_t + u u_x + ν u_xxx = 0 on the periodic [−1, 1), t ∈ [0, T],
    u(0, x) = cos(πx) (paper.md §8). No closed form: ground truth by the spectral solver."""

    name = "kdv"
    kind = "pde"
    description = "KdV u_t + u u_x + ν u_xxx = 0, periodic on [−1, 1), u0 = cos πx"
    inputs = ("t", "x")
    outputs = ("u",)
    periodic_inputs = ("x",)
    data_layout = "grid"

    nu: float = parameter(0.0025, low=0.0, low_open=True, doc="dispersion coefficient ν")
    t_end: float = parameter(1.0, low=0.0, low_open=True, doc="final time T")

    def domain(self):
        return {"t": (0.0, self.t_end), "x": (-1.0, 1.0)}

    def initial(self, x) -> np.ndarray:
        return np.cos(np.pi * np.asarray(x, dtype=np.float64))

    residual_needs = (("t",), ("x",), ("x", "x", "x"))

    def residual(self, u, u_t, u_x, u_xxx):
        return u_t + u * u_x + self.nu * u_xxx

    def pde_residual(self, d, X, aux, xp=np):
        return self.residual(d(), d("t"), d("x"), d("x", "x", "x"))
