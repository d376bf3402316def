"""Allen–Cahn with manufactured solutions (paper.md §4 and §5).

All three share the PDE as the reference code writes it, D Δu − u + u³ = f, Dirichlet
u = 0 on ∂[−1, 1]²; the forcing f is manufactured from the exact solution:

* ``allen-cahn``: u = sin πx sin πy, D = λ = 0.01.
* ``allen-cahn-exp``: u_λ = sin πx sin πy · exp(−λ(x + 0.7)), D = λ (the parameter is also
  the diffusion coefficient, as coded); λ is an input of the network: inputs (x, y, λ).
* ``allen-cahn-multi``: u_Λ = ½ Σ_{i=1,2} Λ_i sin(iπx) sin(iπy)/i², D = 0.1;
  inputs (x, y, Λ1, Λ2).

Jacobians and Hessians are with respect to (x, y) only (the paper ignores the parameter
derivatives), shapes (N, 1, 2) and (N, 1, 2, 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import numpy as np

from .base import FieldSystem, parameter

PI = math.pi


def _forcing(diffusion, u, hess):
    return diffusion * (hess[:, 0, 0, 0] + hess[:, 0, 1, 1]) - u + u**3


@dataclass(frozen=True)
class _AllenCahnBase(FieldSystem):
    kind = "steady"
    outputs = ("u",)
    has_exact = True
    metrics_kind = "allen-cahn"

    def diffusion(self, X) -> np.ndarray:
        raise NotImplementedError

    def forcing(self, X) -> np.ndarray:
        """f = D Δu − u + u³ of the exact solution, (N,)."""
        X = self._points(X)
        return _forcing(self.diffusion(X), self.exact(X)[:, 0], self.hessian(X))

    residual_needs = (("x", "x"), ("y", "y"))
    residual_aux = ("forcing",)

    def residual(self, u, u_xx, u_yy, f, diffusion):
        """PDE residual D(u_xx + u_yy) − u + u³ − f (NumPy or torch)."""
        return diffusion * (u_xx + u_yy) - u + u**3 - f

    def _diffusion_xp(self, X):  # the diffusion at points, without converting X
        return self.diffusion(np.zeros((1, len(self.inputs))))

    def pde_residual(self, d, X, aux, xp=np):
        u = d()[:, 0]
        r = self.residual(
            u, d("x", "x")[:, 0], d("y", "y")[:, 0], aux["forcing"], self._diffusion_xp(X)
        )
        return r[:, None]


@dataclass(frozen=True)
class AllenCahn(_AllenCahnBase):
    name = "allen-cahn"
    legacy_rng = True  # the paper preset draws with RandomState(seed)
    description = "steady Allen–Cahn λΔu − u + u³ = f, u = sin πx sin πy (manufactured)"
    inputs = ("x", "y")
    lam: float = parameter(0.01, low=0.0, low_open=True, doc="diffusion coefficient λ")

    def domain(self):
        return {"x": (-1.0, 1.0), "y": (-1.0, 1.0)}

    def diffusion(self, X):
        return self.lam

    def exact(self, X):
        X = self._points(X)
        return (np.sin(PI * X[:, 0]) * np.sin(PI * X[:, 1]))[:, None]

    def _trig(self, X):
        X = self._points(X)
        x, y = PI * X[:, 0], PI * X[:, 1]
        return np.sin(x), np.cos(x), np.sin(y), np.cos(y)

    def jacobian(self, X):
        sx, cx, sy, cy = self._trig(X)
        return np.stack([PI * cx * sy, PI * sx * cy], axis=-1)[:, None, :]

    def hessian(self, X):
        sx, cx, sy, cy = self._trig(X)
        h = np.empty((sx.shape[0], 1, 2, 2))
        h[:, 0, 0, 0] = h[:, 0, 1, 1] = -(PI**2) * sx * sy
        h[:, 0, 0, 1] = h[:, 0, 1, 0] = PI**2 * cx * cy
        return h


@dataclass(frozen=True)
class AllenCahnExp(_AllenCahnBase):
    name = "allen-cahn-exp"
    legacy_rng = True  # the paper preset draws with RandomState(seed)
    description = "parametric Allen–Cahn, u_λ = sin πx sin πy e^{−λ(x+0.7)}, D = λ"
    inputs = ("x", "y", "lam")
    parameter_inputs = ("lam",)
    shift: float = parameter(0.7, doc="x-shift a of the exponential e^{−λ(x+a)}")
    lam_low: float = parameter(0.0, low=0.0, doc="lower end of the λ range")
    lam_high: float = parameter(PI, low=0.0, low_open=True, doc="upper end of the λ range")

    def validate(self):
        if not self.lam_low < self.lam_high:
            raise ValueError(f"{self.name}: lam_low must be < lam_high")

    def domain(self):
        return {"x": (-1.0, 1.0), "y": (-1.0, 1.0), "lam": (self.lam_low, self.lam_high)}

    def diffusion(self, X):
        return self._points(X)[:, 2]

    def _diffusion_xp(self, X):
        return X[:, 2]

    def _parts(self, X):
        X = self._points(X)
        x, y, lam = X[:, 0], X[:, 1], X[:, 2]
        e = np.exp(-lam * (x + self.shift))
        return x, y, lam, e

    def exact(self, X):
        x, y, _, e = self._parts(X)
        return (np.sin(PI * x) * np.sin(PI * y) * e)[:, None]

    def jacobian(self, X):
        x, y, lam, e = self._parts(X)
        sx, cx, sy, cy = np.sin(PI * x), np.cos(PI * x), np.sin(PI * y), np.cos(PI * y)
        ux = e * sy * (PI * cx - lam * sx)
        uy = e * sx * PI * cy
        return np.stack([ux, uy], axis=-1)[:, None, :]

    def hessian(self, X):
        x, y, lam, e = self._parts(X)
        sx, cx, sy, cy = np.sin(PI * x), np.cos(PI * x), np.sin(PI * y), np.cos(PI * y)
        h = np.empty((x.size, 1, 2, 2))
        # d²/dx² [sin πx e^{−λ(x+a)}] = e (−π² sin − 2λπ cos + λ² sin)
        h[:, 0, 0, 0] = e * sy * ((lam**2 - PI**2) * sx - 2 * lam * PI * cx)
        h[:, 0, 1, 1] = -(PI**2) * e * sx * sy
        h[:, 0, 0, 1] = h[:, 0, 1, 0] = e * PI * cy * (PI * cx - lam * sx)
        return h


@dataclass(frozen=True)
class AllenCahnMulti(_AllenCahnBase):
    name = "allen-cahn-multi"
    legacy_rng = True  # the paper preset draws with RandomState(seed)
    description = "parametric Allen–Cahn, u_Λ = ½ Σ Λ_i sin(iπx) sin(iπy)/i², D = 0.1"
    inputs = ("x", "y", "L1", "L2")
    parameter_inputs = ("L1", "L2")
    diffusion_coef: float = parameter(0.1, low=0.0, low_open=True, doc="diffusion D")

    def domain(self):
        return {"x": (-1.0, 1.0), "y": (-1.0, 1.0), "L1": (0.0, 1.0), "L2": (0.0, 1.0)}

    def diffusion(self, X):
        return self.diffusion_coef

    def exact(self, X):
        X = self._points(X)
        x, y = X[:, 0], X[:, 1]
        # the builtin sum of two arrays (its start, 0, types as an int)
        u = cast(
            np.ndarray,
            sum(0.5 * X[:, 1 + i] * np.sin(i * PI * x) * np.sin(i * PI * y) / i**2 for i in (1, 2)),
        )
        return u[:, None]

    def jacobian(self, X):
        X = self._points(X)
        x, y = X[:, 0], X[:, 1]
        ux = sum(
            0.5 * X[:, 1 + i] * PI * np.cos(i * PI * x) * np.sin(i * PI * y) / i for i in (1, 2)
        )
        uy = sum(
            0.5 * X[:, 1 + i] * PI * np.sin(i * PI * x) * np.cos(i * PI * y) / i for i in (1, 2)
        )
        return np.stack([ux, uy], axis=-1)[:, None, :]

    def hessian(self, X):
        X = self._points(X)
        x, y = X[:, 0], X[:, 1]
        h = np.zeros((X.shape[0], 1, 2, 2))
        for i in (1, 2):
            a = 0.5 * X[:, 1 + i] * PI**2
            s = np.sin(i * PI * x) * np.sin(i * PI * y)
            c = np.cos(i * PI * x) * np.cos(i * PI * y)
            h[:, 0, 0, 0] -= a * s
            h[:, 0, 1, 1] -= a * s
            h[:, 0, 0, 1] += a * c
        h[:, 0, 1, 0] = h[:, 0, 0, 1]
        return h
