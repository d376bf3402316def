"""The 2-D continuity equation of the python backend: ``rho_t + div(rho u) = 0`` on a
rectangle with a steady velocity field (``paper.md`` §6).

:func:`solve_continuity`: ``method="mol"`` (high-order central stencils of
:mod:`.stencils`, skew-symmetric split form, classical RK4) or ``method="upwind-fv"`` (the
paper's first-order upwind finite volumes with explicit Euler, mass-conserving to rounding).
The paper's problem: :func:`four_gaussians` (centres :data:`PAPER_CENTRES`) carried by
:func:`rigid_rotation`; exact solution :func:`rotated_density`. Methods, accuracy, measured
numbers: ``docs/pde.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numba
import numpy as np
import scipy.sparse as sp

from .pde_common import NJIT_OPTIONS, int_at_least, output_times, positive, substeps, uniform_axis
from .stencils import build_operator

__all__ = [
    "PAPER_CENTRES",
    "four_gaussians",
    "mol_operator",
    "rigid_rotation",
    "rotated_density",
    "solve_continuity",
]

#: Centres of the paper's four Gaussians (``paper.md`` §6.1).
PAPER_CENTRES = ((-0.3, -0.6), (-0.1, 0.2), (0.5, -0.5), (0.5, 0.4))


def four_gaussians(x, y, *, centres=PAPER_CENTRES, width: float = 0.05):
    """The paper's initial density ``sum_k exp(-|p - c_k|^2 / width)`` (``paper.md`` §6.1).

    ``x`` and ``y`` broadcast against each other (``four_gaussians(x[:, None], y[None, :])``
    gives the ``(n_x, n_y)`` grid)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    out = np.zeros(np.broadcast_shapes(x.shape, y.shape))
    for cx, cy in centres:
        out += np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / width)
    return out


def rigid_rotation(x, y):
    """Velocity ``(-y, x)``: counter-clockwise rotation at unit angular speed, div u = 0."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return np.broadcast_to(-y, np.broadcast_shapes(x.shape, y.shape)), np.broadcast_to(
        x, np.broadcast_shapes(x.shape, y.shape)
    )


def rotated_density(t, x, y, rho0: Callable = four_gaussians):
    """Exact solution for :func:`rigid_rotation` on the whole plane: ``rho0(R(-t) p)``.

    On a bounded box it is exact up to what crosses the boundary: for the paper's Gaussians
    on [-1.5, 1.5]^2 the density on the boundary never exceeds 3.7e-6 (the centres lie
    within radius 0.71, 0.79 from the nearest edge)."""
    c, s = np.cos(t), np.sin(t)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return rho0(c * x + s * y, -s * x + c * y)


_MOL_BOUNDARIES = ("periodic", "inflow")
_METHODS = ("mol", "upwind-fv")


def _velocity_on(velocity: Callable, xs: np.ndarray, ys: np.ndarray, what: str):
    out = velocity(xs, ys)
    try:
        u, v = out
        shape = np.broadcast_shapes(xs.shape, ys.shape)
        u = np.broadcast_to(np.asarray(u, dtype=np.float64), shape)
        v = np.broadcast_to(np.asarray(v, dtype=np.float64), shape)
    except (TypeError, ValueError):
        raise ValueError(
            f"solve_continuity: velocity(x, y) must return a pair (u, v) broadcastable to the "
            f"{what} grid"
        ) from None
    if not (np.all(np.isfinite(u)) and np.all(np.isfinite(v))):
        raise ValueError(f"solve_continuity: velocity is not finite on the {what} grid")
    return np.ascontiguousarray(u), np.ascontiguousarray(v)


def _sparse(op) -> sp.csr_matrix:
    """The :class:`~.stencils.StencilOperator` as a sparse matrix."""
    n = op.n
    w = op.w_int.size
    j = np.arange(op.lo, op.hi)
    rows = [np.repeat(j, w)]
    cols = [(j[:, None] + op.offset + np.arange(w)[None, :]).ravel()]
    vals = [np.tile(op.w_int, j.size)]
    if op.b_index.size:
        wb = op.b_weights.shape[1]
        rows.append(np.repeat(op.b_index, wb))
        cols.append(((op.b_start[:, None] + np.arange(wb)[None, :]) % n).ravel())
        vals.append(op.b_weights.ravel())
    m = sp.coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    )
    return m.tocsr()  # pyright: ignore[reportReturnType]  # scipy's source infers csr_array; a coo_matrix gives csr_matrix


def _max_symbol(w: np.ndarray) -> float:
    """max over theta of |sum_s w_s exp(i s theta)| for a centred stencil (times h)."""
    s = np.arange(w.size) - (w.size - 1) / 2
    theta = np.linspace(0, np.pi, 2049)
    return float(np.abs(np.exp(1j * np.outer(theta, s)) @ w).max())


def mol_operator(x, y, hx, hy, u, v, accuracy, boundary):
    """Sparse ``A`` with ``rho_t = A rho`` (C order, x along axis 0) and its spectral bound.

    Split (skew-symmetric) form ``-(1/2)[D(u rho) + u D rho + rho D u]`` summed over x and
    y: with periodic closure the transport part is exactly skew-symmetric, so the
    semi-discrete energy cannot grow; for the rigid rotation it equals the advective form
    ``-(u rho_x + v rho_y)`` entry by entry (u does not vary along x, v not along y).
    """
    bnd = "periodic" if boundary == "periodic" else "one-sided"
    nx, ny = x.size, y.size
    opx = build_operator(nx, hx, 1, accuracy, bnd, "central")
    opy = build_operator(ny, hy, 1, accuracy, bnd, "central")
    dx = sp.kron(_sparse(opx), sp.identity(ny, format="csr"), format="csr")
    dy = sp.kron(sp.identity(nx, format="csr"), _sparse(opy), format="csr")
    uf, vf = u.ravel(), v.ravel()
    du, dv = sp.diags(uf), sp.diags(vf)
    div = dx @ uf + dy @ vf
    a = -0.5 * (dx @ du + du @ dx + dy @ dv + dv @ dy + sp.diags(div))
    a = a.tocsr()
    if boundary == "inflow":
        inflow = np.zeros((nx, ny), dtype=bool)
        inflow[0, :] |= u[0, :] > 0
        inflow[-1, :] |= u[-1, :] < 0
        inflow[:, 0] |= v[:, 0] > 0
        inflow[:, -1] |= v[:, -1] < 0
        a = (sp.diags((~inflow.ravel()).astype(np.float64)) @ a).tocsr()
    a.eliminate_zeros()
    rate = float(
        np.max(
            np.abs(u) * _max_symbol(opx.w_int * hx) / hx
            + np.abs(v) * _max_symbol(opy.w_int * hy) / hy
        )
    )
    return a, rate


def _solve_mol(x, y, hx, hy, t, rho0, u, v, accuracy, boundary, cfl, dt):
    a, rate = mol_operator(x, y, hx, hy, u, v, accuracy, boundary)
    dt_stable = 2 * math.sqrt(2) / rate if rate > 0 else np.inf  # RK4 on the imaginary axis
    if dt is None:
        if not np.isfinite(dt_stable):
            dt = np.inf
        else:
            dt = cfl * dt_stable
    elif dt > dt_stable:
        raise ValueError(
            f"solve_continuity: dt={dt:g} exceeds the RK4 stability limit {dt_stable:.4g} of "
            "this grid and velocity; lower dt"
        )
    out = np.empty((t.size, x.size, y.size))
    r = np.ascontiguousarray(rho0, dtype=np.float64).ravel().copy()
    out[0] = r.reshape(x.size, y.size)
    steps = substeps(np.diff(t), dt)
    k1, k2, k3, k4, w = (np.empty_like(r) for _ in range(5))
    for i, (n_steps, span) in enumerate(zip(steps, np.diff(t), strict=True)):
        h = span / n_steps
        for _ in range(n_steps):  # classical RK4
            k1[:] = a @ r
            np.multiply(k1, h / 2, out=w)
            w += r
            k2[:] = a @ w
            np.multiply(k2, h / 2, out=w)
            w += r
            k3[:] = a @ w
            np.multiply(k3, h, out=w)
            w += r
            k4[:] = a @ w
            k2 += k3
            k2 *= 2
            k1 += k2
            k1 += k4
            k1 *= h / 6
            r += k1
        out[i + 1] = r.reshape(x.size, y.size)
    return out


@numba.njit(**NJIT_OPTIONS)
def _upwind_run(rho, tmp, cxp, cxm, cyp, cym, steps, frames):
    """Explicit Euler with first-order upwind fluxes. Face arrays hold ``dt/dx * max(u, 0)``
    (``cxp``) and ``dt/dx * min(u, 0)`` (``cxm``) on the ``nx - 1`` interior x-faces (``cyp``,
    ``cym``: y-faces); boundary faces carry no flux. Every face flux is computed by one
    expression wherever it is used, so the total mass changes only by rounding."""
    nx, ny = rho.shape
    for k in range(steps.size):
        for _ in range(steps[k]):
            for i in range(nx):
                for j in range(ny):
                    r = rho[i, j]
                    d = 0.0
                    if i + 1 < nx:  # face i+1/2
                        d -= cxp[i, j] * r + cxm[i, j] * rho[i + 1, j]
                    if i > 0:  # face i-1/2
                        d += cxp[i - 1, j] * rho[i - 1, j] + cxm[i - 1, j] * r
                    if j + 1 < ny:
                        d -= cyp[i, j] * r + cym[i, j] * rho[i, j + 1]
                    if j > 0:
                        d += cyp[i, j - 1] * rho[i, j - 1] + cym[i, j - 1] * r
                    tmp[i, j] = r + d
            rho, tmp = tmp, rho
        frames[k + 1] = rho


def _solve_upwind(x, y, hx, hy, t, rho0, velocity, cfl, dt, paper_edges):
    nx, ny = x.size, y.size
    # face velocities at face midpoints (paper.md §6.2): x-faces between cells i and i+1
    uf, _ = _velocity_on(velocity, (x[:-1] + hx / 2)[:, None], y[None, :], "x-face")
    _, vf = _velocity_on(velocity, x[:, None], (y[:-1] + hy / 2)[None, :], "y-face")
    uf, vf = uf.copy(), vf.copy()
    if paper_edges:  # the paper's outermost ring of cells takes no part (held at 0)
        uf[[0, -1], :] = 0.0
        uf[:, [0, -1]] = 0.0
        vf[:, [0, -1]] = 0.0
        vf[[0, -1], :] = 0.0
    # outflow rate of each cell (per unit time): explicit Euler keeps rho >= 0 (and is
    # stable) while dt * rate <= 1
    outflow = np.zeros((nx, ny))
    outflow[:-1, :] += np.maximum(uf, 0) / hx
    outflow[1:, :] += np.maximum(-uf, 0) / hx
    outflow[:, :-1] += np.maximum(vf, 0) / hy
    outflow[:, 1:] += np.maximum(-vf, 0) / hy
    rate = float(outflow.max())
    dt_stable = 1 / rate if rate > 0 else np.inf
    if dt is None:
        dt = cfl * dt_stable
    elif dt > dt_stable * (1 + 1e-12):
        raise ValueError(
            f"solve_continuity: dt={dt:g} breaks the upwind CFL limit {dt_stable:.4g} "
            "(dt * max cell outflow rate must be <= 1); lower dt"
        )
    steps = substeps(np.diff(t), dt)
    hs = np.diff(t) / steps
    frames = np.empty((t.size, nx, ny))
    frames[0] = rho0
    rho = np.ascontiguousarray(rho0, dtype=np.float64).copy()
    if paper_edges and t.size > 1:
        rho[[0, -1], :] = 0.0
        rho[:, [0, -1]] = 0.0
    tmp = np.empty_like(rho)
    # group consecutive intervals with the same step: the face coefficients depend on it
    start = 0
    while start < steps.size:
        stop = start + 1
        while stop < steps.size and abs(hs[stop] - hs[start]) <= 1e-12 * hs[start]:
            stop += 1
        h = hs[start]
        cxp, cxm = h / hx * np.maximum(uf, 0), h / hx * np.minimum(uf, 0)
        cyp, cym = h / hy * np.maximum(vf, 0), h / hy * np.minimum(vf, 0)
        sub = frames[start : stop + 1]
        _upwind_run(rho, tmp, cxp, cxm, cyp, cym, steps[start:stop], sub)
        rho[...] = sub[-1]
        start = stop
    return frames


def solve_continuity(
    x,
    y,
    t_eval,
    rho0,
    velocity: Callable = rigid_rotation,
    *,
    method: str = "mol",
    accuracy: int = 6,
    boundary: str = "periodic",
    cfl: float = 0.5,
    dt: float | None = None,
    paper_edges: bool = False,
) -> np.ndarray:
    """Solve ``rho_t + div(rho u) = 0`` on the box ``x`` by ``y`` with a steady velocity.

    Parameters
    ----------
    x, y : 1-D arrays
        Uniform coordinates: grid nodes (``"mol"``) or cell centres (``"upwind-fv"``; the
        paper: ``-1.5:0.01:1.5``, 301 each).
    t_eval : 1-D array
        Increasing output times; ``t_eval[0]`` is the time of ``rho0``.
    rho0 : array of shape ``(len(x), len(y))`` or a callable ``rho0(X, Y)``
        Initial density (:func:`four_gaussians` for the paper).
    velocity : callable ``velocity(X, Y) -> (u, v)``
        Steady velocity, evaluated at the nodes (``"mol"``) or at the face midpoints
        (``"upwind-fv"``). Default :func:`rigid_rotation`.
    method : {"mol", "upwind-fv"}
        ``"mol"``: central stencils of order ``accuracy`` (split skew-symmetric form) and
        classical RK4. ``"upwind-fv"``: the paper's first-order upwind finite volumes with
        explicit Euler and zero flux through the outer faces (mass conserved to rounding).
    accuracy : int
        ``"mol"`` only: even stencil accuracy.
    boundary : {"periodic", "inflow"}
        ``"mol"`` only. ``"periodic"`` closes the box periodically: exact while the density
        on the boundary is negligible (the paper's problem: <= 3.7e-6) and provably stable
        (skew-symmetric operator). ``"inflow"``: one-sided stencils at the edges, density
        held at its initial value where the flow enters; stable for ``accuracy <= 4`` only
        (one-sided closures of accuracy 6 make it blow up, see ``docs/pde.md``).
    cfl : float in (0, 1]
        Step as a fraction of the stability limit: of RK4 on the imaginary axis for
        ``"mol"``, of positivity (``dt * max cell outflow rate <= 1``) for ``"upwind-fv"``.
    dt : float, optional
        Largest step instead (output intervals are split into equal steps of at most
        ``dt``); the paper's finite volumes use ``dt=0.001``. Refused beyond the limit.
    paper_edges : bool
        ``"upwind-fv"`` only: reproduce the paper's code, in which the outermost ring of
        cells never takes part (no flux, held at 0 after ``t_eval[0]``); by default every
        cell is active and only the outer faces are closed.

    Returns
    -------
    ndarray, shape ``(len(t_eval), len(x), len(y))``.
    """
    if method not in _METHODS:
        raise ValueError(f"solve_continuity: method must be one of {_METHODS}, got {method!r}")
    x, hx = uniform_axis("solve_continuity: x", x, 3)
    y, hy = uniform_axis("solve_continuity: y", y, 3)
    t = output_times(t_eval)
    if not callable(velocity):
        raise ValueError("solve_continuity: velocity must be a callable velocity(X, Y) -> (u, v)")
    xs, ys = x[:, None], y[None, :]
    rho0 = rho0(xs, ys) if callable(rho0) else rho0
    rho0 = np.asarray(rho0, dtype=np.float64)
    shape = (x.size, y.size)
    if rho0.shape != shape or not np.all(np.isfinite(rho0)):
        raise ValueError(
            f"solve_continuity: rho0 must be finite with shape {shape} (len(x), len(y)), got "
            f"shape {rho0.shape}"
        )
    cfl = positive("solve_continuity: cfl", cfl)
    if cfl > 1:
        raise ValueError(f"solve_continuity: cfl must be in (0, 1], got {cfl}")
    if dt is not None:
        dt = positive("solve_continuity: dt", dt)
    if method == "upwind-fv":
        return _solve_upwind(x, y, hx, hy, t, rho0, velocity, cfl, dt, bool(paper_edges))
    if paper_edges:
        raise ValueError("solve_continuity: paper_edges applies to method='upwind-fv' only")
    if boundary not in _MOL_BOUNDARIES:
        raise ValueError(
            f"solve_continuity: boundary must be one of {_MOL_BOUNDARIES}, got {boundary!r}"
        )
    accuracy = int_at_least("solve_continuity: accuracy", accuracy, 2)
    if accuracy % 2:
        raise ValueError(f"solve_continuity: accuracy must be even (central), got {accuracy}")
    if boundary == "inflow" and accuracy > 4:
        raise ValueError(
            f"solve_continuity: boundary='inflow' is unstable at accuracy {accuracy} (one-sided "
            "closures); use accuracy <= 4 or boundary='periodic'"
        )
    u, v = _velocity_on(velocity, xs, ys, "node")
    return _solve_mol(x, y, hx, hy, t, rho0, u, v, accuracy, boundary, cfl, dt)
