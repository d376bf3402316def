"""Time-dependent PDEs of paper.md §6 and §8: the continuity equation and KdV, with their
grid generation (:meth:`~derlhybrid.systems.base.FieldSystem.grid_plan`) on the solvers of
:mod:`derlhybrid.kernels.pde`."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..kernels import backends, derivative, pde
from .base import FieldSystem, GridPlan, parameter

# paper.md §6.1: centres of the four Gaussians of the initial density (defined in kernels)
GAUSSIAN_CENTRES = pde.PAPER_CENTRES

_CONTINUITY_METHODS = {
    "mol": "method of lines, 6th-order central stencils (periodic closure), RK4 at CFL 0.5",
    "upwind-fv": "first-order upwind finite volumes, explicit Euler, dt = 0.001 (the "
    "paper's reference)",
    "exact": "closed form rho(t, x) = rho0(R(-t) x) and its exact derivatives",
}


@dataclass(frozen=True)
class Continuity(FieldSystem):
    """ρ_t + ∇·(ρ u) = 0 with the rigid rotation u = (−y, x) (∇·u = 0), on
    [−L, L]² × [0, T], ρ0 = Σ_k exp(−‖x − c_k‖²/w). Exact: ρ(t, x) = ρ0(R(−t) x); the
    Gaussians stay inside the box (ρ0 ≤ 1e-9 at distance ≥ 1.02 from the origin for
    w = 0.05 since every centre lies within 0.81 of it... see ``boundary_mass``)."""

    name = "continuity"
    metrics_kind = "continuity"
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
        return pde.four_gaussians(x, y, centres=GAUSSIAN_CENTRES, width=self.width)

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

    def grid_plan(self, *, method, n_points, n_times, backend, rtol) -> GridPlan:
        """``method`` ``mol`` (default), ``upwind-fv`` or ``exact`` on the (n_points)² grid
        of [−L, L]²; ρ_x, ρ_y by 6th-order stencils of the field, ρ_t = y ρ_x − x ρ_y from
        the PDE (the closed form's own derivatives for ``exact``)."""
        if method == "exact":
            backend = "python"  # a closed form needs no solver
        method = method or "mol"
        if method not in _CONTINUITY_METHODS:
            raise ValueError(f"continuity: method must be mol, upwind-fv or exact, got {method!r}")
        n_x = n_points or 301
        L = self.half_size
        x, y = np.linspace(-L, L, n_x), np.linspace(-L, L, n_x)
        kw = (
            {"method": "mol", "accuracy": 6}
            if method == "mol"
            else {"method": "upwind-fv", "dt": 1e-3}
        )

        def solve_exact(t, start):
            T, X, Y = np.meshgrid(t, x, y, indexing="ij")
            P = np.stack([T.ravel(), X.ravel(), Y.ravel()], 1)
            u = self.exact(P).reshape(T.shape)
            jac = self.jacobian(P)[:, 0].reshape(*T.shape, 3)
            return u, {"rho_t": jac[..., 0], "rho_x": jac[..., 1], "rho_y": jac[..., 2]}

        def solve(t, start):
            r0 = self.rho0(x[:, None], y[None, :]) if start is None else start
            if backend == "julia":  # pragma: no cover - needs Julia
                u = np.empty((t.size, x.size, y.size))
                backends.module("julia").solve_continuity(
                    x, y, t, r0, kw["method"], 6, 0.5, kw.get("dt"), False, u
                )
            else:
                u = pde.solve_continuity(x, y, t, r0, **kw)
            hx = x[1] - x[0]
            rx = derivative(u, hx, axis=1, accuracy=6, boundary="one-sided")
            ry = derivative(u, hx, axis=2, accuracy=6, boundary="one-sided")
            X, Y = x[None, :, None], y[None, None, :]
            return u, {"rho_t": Y * rx - X * ry, "rho_x": rx, "rho_y": ry}

        return GridPlan(
            axes={"x": x, "y": y},
            n_times=n_times or 1001,
            t_end=self.t_end,
            field="rho",
            method=_CONTINUITY_METHODS[method],
            derivative_method="6th-order stencils in space, rho_t from the PDE",
            derivatives=("rho_t", "rho_x", "rho_y"),
            periodic=False,
            backend=backend,
            solve=solve_exact if method == "exact" else solve,
            marching=method != "exact",
        )

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
    metrics_kind = "grid-field"
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

    def grid_plan(self, *, method, n_points, n_times, backend, rtol) -> GridPlan:
        """Fourier pseudo-spectral ETDRK4 (the only ``method``, ``etdrk4``) on ``n_points``
        periodic points (no duplicated endpoint), step tolerance ``rtol``; u_x, u_xx, u_xxx
        spectral, u_t = −(u u_x + ν u_xxx) from the PDE."""
        if method not in (None, "etdrk4"):
            raise ValueError(f"kdv: method must be etdrk4, got {method!r}")
        n_x = n_points or 400
        if n_x < 4:
            raise ValueError(f"kdv: n_points must be >= 4 (periodic grid points), got {n_x}")
        x = pde.periodic_grid(n_x)

        def solve(t, start):
            u0 = self.initial(x) if start is None else start
            if backend == "julia":  # pragma: no cover - needs Julia
                u = np.empty((t.size, x.size))
                backends.module("julia").solve_kdv(self.nu, x, t, u0, rtol, None, u)
            else:
                u = pde.solve_kdv(self.nu, x, t, u0, tol=rtol)
            ux, uxx, uxxx = pde.spectral_derivatives(u, 2.0)
            return u, {"u_t": -(u * ux + self.nu * uxxx), "u_x": ux, "u_xx": uxx, "u_xxx": uxxx}

        return GridPlan(
            axes={"x": x},
            n_times=n_times or 201,
            t_end=self.t_end,
            field="u",
            method="Fourier pseudo-spectral (no duplicated endpoint), ETDRK4, tol = rtol",
            derivative_method="spectral (u_x, u_xx, u_xxx), u_t from the PDE",
            derivatives=("u_t", "u_x", "u_xx", "u_xxx"),
            periodic=True,
            backend=backend,
            solve=solve,
        )

    residual_needs = (("t",), ("x",), ("x", "x", "x"))

    def residual(self, u, u_t, u_x, u_xxx):
        return u_t + u * u_x + self.nu * u_xxx

    def pde_residual(self, d, X, aux, xp=np):
        return self.residual(d(), d("t"), d("x"), d("x", "x", "x"))
