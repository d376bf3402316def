"""Incompressible flows: Kovasznay (paper.md §7) and the Euler-in-a-ball setting (§9)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .base import FieldSystem, parameter


@dataclass(frozen=True)
class Kovasznay(FieldSystem):
    """Steady Navier–Stokes −νΔu + (u·∇)u + ∇p = 0, ∇·u = 0, ν = 1/Re, with Kovasznay's
    exact solution on x ∈ [−1, 1], y ∈ [−0.5, 1.5]: u = 1 − e^{λx} cos 2πy,
    v = (λ/2π) e^{λx} sin 2πy, p = ½(1 − e^{2λx}), λ = Re/2 − √(Re²/4 + 4π²)."""

    name = "kovasznay"
    metrics_kind = "kovasznay"
    kind = "steady"
    description = "Kovasznay flow (steady Navier–Stokes, exact)"
    inputs = ("x", "y")
    outputs = ("u", "v", "p")
    has_exact = True

    Re: float = parameter(50.0, low=0.0, low_open=True, doc="Reynolds number")

    @property
    def lam(self) -> float:
        return self.Re / 2 - math.sqrt(self.Re**2 / 4 + 4 * math.pi**2)

    residual_needs = (("x",), ("y",), ("x", "x"), ("y", "y"))
    residual_names = ("momentum_x", "momentum_y", "divergence")

    def domain(self):
        return {"x": (-1.0, 1.0), "y": (-0.5, 1.5)}

    def pde_residual(self, d, X, aux, xp=np):
        """(−νΔu + (u·∇)u + ∂p/∂x, −νΔv + (u·∇)v + ∂p/∂y, ∂u/∂x + ∂v/∂y)."""
        val, dx, dy = d(), d("x"), d("y")
        lap = d("x", "x") + d("y", "y")
        nu = 1.0 / self.Re
        u, v = val[:, 0], val[:, 1]
        mom = [
            -nu * lap[:, c] + u * dx[:, c] + v * dy[:, c] + (dx[:, 2] if c == 0 else dy[:, 2])
            for c in (0, 1)
        ]
        return xp.stack([mom[0], mom[1], dx[:, 0] + dy[:, 1]], -1)

    def exact(self, X):
        X = self._points(X)
        lam, x, y = self.lam, X[:, 0], X[:, 1]
        e = np.exp(lam * x)
        tp = 2 * math.pi
        return np.stack(
            [
                1 - e * np.cos(tp * y),
                lam / tp * e * np.sin(tp * y),
                0.5 * (1 - np.exp(2 * lam * x)),
            ],
            axis=-1,
        )

    def _parts(self, X):
        """λ, x, e^{λx}, 2π, cos 2πy, sin 2πy at the points X."""
        X = self._points(X)
        lam, x, y = self.lam, X[:, 0], X[:, 1]
        tp = 2 * math.pi
        return lam, x, np.exp(lam * x), tp, np.cos(tp * y), np.sin(tp * y)

    def jacobian(self, X):
        lam, x, e, tp, c, s = self._parts(X)
        jac = np.zeros((x.size, 3, 2))
        jac[:, 0, 0] = -lam * e * c
        jac[:, 0, 1] = tp * e * s
        jac[:, 1, 0] = lam**2 / tp * e * s
        jac[:, 1, 1] = lam * e * c
        jac[:, 2, 0] = -lam * np.exp(2 * lam * x)
        return jac

    def hessian(self, X):
        lam, x, e, tp, c, s = self._parts(X)
        h = np.zeros((x.size, 3, 2, 2))
        h[:, 0, 0, 0] = -(lam**2) * e * c
        h[:, 0, 0, 1] = h[:, 0, 1, 0] = tp * lam * e * s
        h[:, 0, 1, 1] = tp**2 * e * c
        h[:, 1, 0, 0] = lam**3 / tp * e * s
        h[:, 1, 0, 1] = h[:, 1, 1, 0] = lam**2 * e * c
        h[:, 1, 1, 1] = -lam * tp * e * s
        h[:, 2, 0, 0] = -2 * lam**2 * np.exp(2 * lam * x)
        return h


@dataclass(frozen=True)
class EulerBall(FieldSystem):
    """Variable-density incompressible Euler in the unit ball, t ∈ [0, T] (paper.md §9):
    unknowns ρ, momentum m = ρu and pressure p; ρ0 = 3/2 − ‖x‖², m0 = ρ0·(−2, x − 1, 1/2);
    no flux m·n = 0 on the sphere. No closed form: the setting supplies domain, initial data
    and samplers for the Neural-Conservation-Law teacher."""

    name = "euler-ball"
    kind = "pde"
    description = "variable-density Euler in the unit ball (setting for the NCL teacher)"
    inputs = ("t", "x", "y", "z")
    outputs = ("rho", "m1", "m2", "m3", "p")
    data_layout = "ball"

    t_end: float = parameter(0.5, low=0.0, low_open=True, doc="final time T")
    radius: float = parameter(1.0, low=0.0, low_open=True, doc="ball radius")

    residual_needs = (("t",), ("x",), ("y",), ("z",))
    residual_names = ("mass", "momentum_x", "momentum_y", "momentum_z", "incompressibility")

    def domain(self):
        r = self.radius
        return {"t": (0.0, self.t_end), "x": (-r, r), "y": (-r, r), "z": (-r, r)}

    def pde_residual(self, d, X, aux, xp=np):
        """ρ_t + ∇·m, m_t + ∇·(m ⊗ m/ρ) + ∇p (three components) and ∇·(m/ρ), from the first
        derivatives of (ρ, m, p): ∂_i(m_i m_j/ρ) = (m_j ∂_i m_i + m_i ∂_i m_j)/ρ −
        m_i m_j ∂_i ρ/ρ²."""
        val = d()
        rho, m = val[:, 0], [val[:, 1 + i] for i in range(3)]
        grads = [d(c) for c in ("x", "y", "z")]  # ∂_i of every output, (N, 5)
        dt = d("t")
        div_m = sum(grads[i][:, 1 + i] for i in range(3))
        out = [dt[:, 0] + div_m]
        for j in range(3):
            flux = sum(
                (m[j] * grads[i][:, 1 + i] + m[i] * grads[i][:, 1 + j]) / rho
                - m[i] * m[j] * grads[i][:, 0] / rho**2
                for i in range(3)
            )
            out.append(dt[:, 1 + j] + flux + grads[j][:, 4])
        out.append(div_m / rho - sum(m[i] * grads[i][:, 0] for i in range(3)) / rho**2)
        return xp.stack(out, -1)

    def initial_state(self, x):
        """(ρ0, m0) at points x (N, 3) → (N, 4)."""
        x = np.asarray(x, dtype=np.float64)
        rho = 1.5 - np.sum(x**2, axis=1)
        vel = np.stack([np.full(len(x), -2.0), x[:, 0] - 1.0, np.full(len(x), 0.5)], axis=1)
        return np.concatenate([rho[:, None], rho[:, None] * vel], axis=1)

    def _ball(self, rng, n):
        d = rng.standard_normal((n, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        return d * (self.radius * rng.random(n) ** (1 / 3))[:, None]

    def sample_interior(self, rng, n):
        """(t, x) with t ~ U(0, T), x uniform in the ball → (n, 4)."""
        return np.concatenate([rng.uniform(0, self.t_end, (n, 1)), self._ball(rng, n)], 1)

    def sample_initial(self, rng, n):
        """(0, x), x uniform in the ball (the reference code draws t ~ U(0, 0.01))."""
        return np.concatenate([np.zeros((n, 1)), self._ball(rng, n)], 1)

    def sample_boundary(self, rng, n):
        """(t, x) with x uniform on the sphere, t ~ U(0, T)."""
        d = rng.standard_normal((n, 3))
        d *= self.radius / np.linalg.norm(d, axis=1, keepdims=True)
        return np.concatenate([rng.uniform(0, self.t_end, (n, 1)), d], 1)

    def sample_uniform(self, rng, n):
        return self.sample_interior(rng, n)
