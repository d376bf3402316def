"""Ground-truth PDE solvers of the python backend: KdV and the 2-D continuity equation.

NumPy, SciPy and Numba only. Two problems of the paper (``paper.md`` §8.1 and §6):

* :func:`solve_kdv` — ``u_t + u u_x + nu u_xxx = 0`` on a periodic interval,
  pseudo-spectral in space (Fourier, on the periodic grid *without* the duplicated endpoint),
  ETDRK4 in time (Cox & Matthews 2002, coefficients by contour integrals as in Kassam &
  Trefethen 2005), with a step chosen from an error tolerance by default. The FFTs and the
  whole time loop run in one Numba call; :func:`spectral_derivatives` differentiates its
  periodic fields.
* :func:`solve_continuity` — ``rho_t + div(rho u) = 0`` on a rectangle with a steady
  velocity field: ``method="mol"`` (high-order central stencils of :mod:`.stencils`,
  skew-symmetric split form, classical RK4) or ``method="upwind-fv"`` (the paper's
  first-order upwind finite volumes with explicit Euler, mass-conserving to rounding).

Ground truth carried with the problems: :func:`kdv_soliton` (exact travelling wave),
:func:`rotated_density` (exact solution for the rigid rotation). Methods, accuracy and
measured numbers: ``docs/pde.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numba
import numpy as np
import scipy.sparse as sp

from .stencils import build_operator

__all__ = [
    "KDV_NU",
    "PAPER_CENTRES",
    "four_gaussians",
    "kdv_soliton",
    "periodic_grid",
    "rigid_rotation",
    "rotated_density",
    "solve_continuity",
    "solve_kdv",
    "spectral_derivatives",
    "with_periodic_endpoint",
]

#: Dispersion coefficient of the paper's KdV experiment (``paper.md`` §8.1).
KDV_NU = 0.0025
#: Centres of the paper's four Gaussians (``paper.md`` §6.1).
PAPER_CENTRES = ((-0.3, -0.6), (-0.1, 0.2), (0.5, -0.5), (0.5, 0.4))

_NJIT: dict[str, Any] = {"cache": True, "nogil": True, "fastmath": False}


# ======================================================================================
# Grids and validation helpers
# ======================================================================================
def periodic_grid(n: int, lo: float = -1.0, hi: float = 1.0) -> np.ndarray:
    """``n`` points ``lo + (hi - lo) k / n``, ``k = 0..n-1``: the periodic grid of period
    ``hi - lo`` without the duplicated endpoint (``x = hi`` is the same point as ``lo``)."""
    n = _int_at_least("periodic_grid: n", n, 2)
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise ValueError(f"periodic_grid: need finite lo < hi, got lo={lo!r}, hi={hi!r}")
    return lo + (hi - lo) * np.arange(n) / n


def with_periodic_endpoint(u, axis: int = -1) -> np.ndarray:
    """Append the periodic copy of the first slice along ``axis``.

    Turns values on :func:`periodic_grid` (``n`` points) into values on the paper's grid
    that lists both ends (``n + 1`` points, e.g. ``x = -1:0.005:1``, 401 points).
    """
    u = np.asarray(u)
    if u.ndim == 0:
        raise ValueError("with_periodic_endpoint: u must have at least one dimension")
    first = np.take(u, [0], axis=axis)
    return np.concatenate([u, first], axis=axis)


def spectral_derivatives(u: np.ndarray, period: float, orders=(1, 2, 3)) -> list[np.ndarray]:
    """Fourier derivatives of periodic samples along the last axis (exact for the
    band-limited interpolant; the Nyquist mode is dropped from odd derivatives)."""
    n = u.shape[-1]
    k = 2 * np.pi / period * np.fft.rfftfreq(n, 1.0 / n)
    uh = np.fft.rfft(u, axis=-1)
    out = []
    for m in orders:
        ik = (1j * k) ** m
        if m % 2 and n % 2 == 0:
            ik[-1] = 0.0
        out.append(np.fft.irfft(ik * uh, n=n, axis=-1))
    return out


def _int_at_least(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _positive(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {value!r}") from None
    if not (np.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return v


def _uniform_axis(name: str, x, minimum: int) -> tuple[np.ndarray, float]:
    """A 1-D, finite, strictly increasing, uniform coordinate array and its step."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1 or x.size < minimum:
        raise ValueError(
            f"{name} must be a 1-D array of at least {minimum} points, got shape {x.shape}"
        )
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} must be finite")
    d = np.diff(x)
    if not np.all(d > 0):
        raise ValueError(f"{name} must be strictly increasing")
    h = (x[-1] - x[0]) / (x.size - 1)
    if np.ptp(d) > 1e-9 * h:
        raise ValueError(f"{name} must be uniformly spaced (steps differ by {np.ptp(d):.3g})")
    return x, float(h)


def _times(t_eval) -> np.ndarray:
    t = np.asarray(t_eval, dtype=np.float64)
    if t.ndim != 1 or t.size < 1:
        raise ValueError(f"t_eval must be a non-empty 1-D array, got shape {t.shape}")
    if not np.all(np.isfinite(t)):
        raise ValueError("t_eval must be finite")
    if t.size > 1 and not np.all(np.diff(t) > 0):
        raise ValueError("t_eval must be strictly increasing (t_eval[0] is the initial time)")
    return t


def _substeps(dts: np.ndarray, h_max: float) -> np.ndarray:
    """Equal substeps per output interval, each at most ``h_max`` (1e-9 slack so that an
    interval that is a whole multiple of ``h_max`` is not split once more by rounding)."""
    return np.maximum(1, np.ceil(dts / h_max * (1 - 1e-9))).astype(np.int64)


# ======================================================================================
# A small real FFT in Numba (mixed radix 2, 3, 4, 5 and generic), so that the KdV time loop
# runs in one compiled call: numpy.fft costs 9-20 us per call on 400 points, mostly call
# overhead: the same ETDRK4 steps with numpy.fft take 0.8-1 s on the paper problem, 2.2-2.8x
# this (bench/kdv.py). Other prime factors use an O(p^2) butterfly: fine for grids of
# 2^a 3^b 5^c points, slow for long prime lengths.
# ======================================================================================
def _factorize(n: int) -> list[int]:
    factors = []
    for p in (4, 2, 3, 5):
        while n % p == 0:
            factors.append(p)
            n //= p
    p = 7
    while n > 1:
        while n % p == 0:
            factors.append(p)
            n //= p
        p += 2
    return factors


@lru_cache(maxsize=32)
def _fft_plan(n: int):
    """Stages of a self-sorting (Stockham) decimation-in-frequency FFT of length ``n``:
    radices, their twiddles ``exp(-2 pi i j t / n_stage)`` and the p-th roots of unity."""
    factors = _factorize(n) or [1]
    tw, tw_off, roots, root_off = [], [], [], []
    n_cur, pos, rpos = n, 0, 0
    for p in factors:
        m = n_cur // p
        j, t = np.meshgrid(np.arange(m), np.arange(p), indexing="ij")
        tw.append(np.exp(-2j * np.pi * (j * t) / n_cur).ravel())
        tw_off.append(pos)
        pos += m * p
        roots.append(np.exp(-2j * np.pi * np.arange(p) / p))
        root_off.append(rpos)
        rpos += p
        n_cur = m
    return (
        np.array(factors, dtype=np.int64),
        np.concatenate(tw).astype(np.complex128),
        np.array(tw_off, dtype=np.int64),
        np.concatenate(roots).astype(np.complex128),
        np.array(root_off, dtype=np.int64),
    )


@numba.njit(**_NJIT)
def _cfft(x, y, factors, tw, tw_off, roots, root_off):
    """In-place forward DFT of the complex array ``x`` (``y``: work array, same size)."""
    n = x.size
    c1 = math.cos(2 * math.pi / 5)
    c2 = math.cos(4 * math.pi / 5)
    s1 = math.sin(2 * math.pi / 5)
    s2 = math.sin(4 * math.pi / 5)
    s3 = math.sqrt(3.0) / 2
    src, dst = x, y
    n_cur, s = n, 1
    in_y = False
    for st in range(factors.size):
        p = factors[st]
        if p == 1:
            continue
        m = n_cur // p
        off = tw_off[st]
        for j in range(m):
            base = off + j * p
            for q in range(s):
                i0 = q + s * j
                o0 = q + s * p * j
                if p == 4:
                    a0 = src[i0]
                    a1 = src[i0 + s * m]
                    a2 = src[i0 + 2 * s * m]
                    a3 = src[i0 + 3 * s * m]
                    t0 = a0 + a2
                    t1 = a0 - a2
                    t2 = a1 + a3
                    d = a1 - a3
                    t3 = complex(d.imag, -d.real)  # -i (a1 - a3)
                    dst[o0] = t0 + t2
                    dst[o0 + s] = (t1 + t3) * tw[base + 1]
                    dst[o0 + 2 * s] = (t0 - t2) * tw[base + 2]
                    dst[o0 + 3 * s] = (t1 - t3) * tw[base + 3]
                elif p == 2:
                    a0 = src[i0]
                    a1 = src[i0 + s * m]
                    dst[o0] = a0 + a1
                    dst[o0 + s] = (a0 - a1) * tw[base + 1]
                elif p == 3:
                    a0 = src[i0]
                    a1 = src[i0 + s * m]
                    a2 = src[i0 + 2 * s * m]
                    t = a1 + a2
                    d = (a1 - a2) * s3
                    b = a0 - 0.5 * t
                    di = complex(d.imag, -d.real)  # -i d
                    dst[o0] = a0 + t
                    dst[o0 + s] = (b + di) * tw[base + 1]
                    dst[o0 + 2 * s] = (b - di) * tw[base + 2]
                elif p == 5:
                    a0 = src[i0]
                    a1 = src[i0 + s * m]
                    a2 = src[i0 + 2 * s * m]
                    a3 = src[i0 + 3 * s * m]
                    a4 = src[i0 + 4 * s * m]
                    t1 = a1 + a4
                    t2 = a2 + a3
                    t3 = a1 - a4
                    t4 = a2 - a3
                    b1 = a0 + c1 * t1 + c2 * t2
                    b2 = a0 + c2 * t1 + c1 * t2
                    d1 = s1 * t3 + s2 * t4
                    d2 = s2 * t3 - s1 * t4
                    e1 = complex(d1.imag, -d1.real)  # -i d1
                    e2 = complex(d2.imag, -d2.real)
                    dst[o0] = a0 + t1 + t2
                    dst[o0 + s] = (b1 + e1) * tw[base + 1]
                    dst[o0 + 2 * s] = (b2 + e2) * tw[base + 2]
                    dst[o0 + 3 * s] = (b2 - e2) * tw[base + 3]
                    dst[o0 + 4 * s] = (b1 - e1) * tw[base + 4]
                else:  # generic radix: O(p^2) butterfly
                    ro = root_off[st]
                    for t in range(p):
                        acc = 0j
                        for r in range(p):
                            acc += src[i0 + r * s * m] * roots[ro + (r * t) % p]
                        dst[o0 + t * s] = acc * tw[base + t]
        src, dst = dst, src
        in_y = not in_y
        n_cur = m
        s *= p
    if in_y:
        for i in range(n):
            x[i] = y[i]


@numba.njit(**_NJIT)
def _rfft(u, out, z, work, post, factors, tw, tw_off, roots, root_off):
    """``out[:] = numpy.fft.rfft(u)`` for real ``u`` of length N. Even N: one complex FFT of
    length N/2 (``z``, ``work``: N/2; ``post[k] = exp(-2 pi i k / N)``); odd N: length N."""
    n_real = u.size
    if n_real % 2 == 0:
        n = n_real // 2
        for j in range(n):
            z[j] = complex(u[2 * j], u[2 * j + 1])
        _cfft(z, work, factors, tw, tw_off, roots, root_off)
        for k in range(n + 1):
            zk = z[k % n]
            zc = z[(n - k) % n].conjugate()
            ev = 0.5 * (zk + zc)
            od = 0.5 * (zk - zc)
            od = complex(od.imag, -od.real)  # (zk - zc) / (2i)
            out[k] = ev + post[k] * od
    else:
        for j in range(n_real):
            z[j] = u[j]
        _cfft(z, work, factors, tw, tw_off, roots, root_off)
        for k in range(out.size):
            out[k] = z[k]


@numba.njit(**_NJIT)
def _irfft(spec, u, z, work, post, factors, tw, tw_off, roots, root_off):
    """``u[:] = numpy.fft.irfft(spec, n=u.size)`` (imaginary parts of the mean and, for even
    N, the Nyquist coefficient are ignored, as NumPy does)."""
    n_real = u.size
    if n_real % 2 == 0:
        n = n_real // 2
        for k in range(n):
            xk = spec[k]
            xc = spec[n - k].conjugate()
            if k == 0:
                xk = complex(xk.real, 0.0)
                xc = complex(spec[n].real, 0.0)
            ev = 0.5 * (xk + xc)
            od = 0.5 * (xk - xc) * post[k].conjugate()
            zk = ev + complex(-od.imag, od.real)  # ev + i od
            z[k] = zk.conjugate()  # inverse DFT by conjugation
        _cfft(z, work, factors, tw, tw_off, roots, root_off)
        for j in range(n):
            u[2 * j] = z[j].real / n
            u[2 * j + 1] = -z[j].imag / n
    else:
        m = spec.size
        z[0] = complex(spec[0].real, 0.0)
        for k in range(1, m):
            z[k] = spec[k].conjugate()
            z[n_real - k] = spec[k]
        _cfft(z, work, factors, tw, tw_off, roots, root_off)
        for j in range(n_real):
            u[j] = z[j].real / n_real


class _RealFFT:
    """Buffers and plan of :func:`_rfft` / :func:`_irfft` for one length."""

    def __init__(self, n: int):
        half = n // 2 if n % 2 == 0 else n
        self.n = n
        self.plan = _fft_plan(half)
        self.z = np.empty(half, dtype=np.complex128)
        self.work = np.empty(half, dtype=np.complex128)
        self.post = np.exp(-2j * np.pi * np.arange(n // 2 + 1) / n)

    def rfft(self, u: np.ndarray) -> np.ndarray:
        out = np.empty(self.n // 2 + 1, dtype=np.complex128)
        _rfft(
            np.ascontiguousarray(u, dtype=np.float64), out, self.z, self.work, self.post, *self.plan
        )
        return out

    def irfft(self, spec: np.ndarray) -> np.ndarray:
        u = np.empty(self.n)
        _irfft(
            np.ascontiguousarray(spec, dtype=np.complex128),
            u,
            self.z,
            self.work,
            self.post,
            *self.plan,
        )
        return u


# ======================================================================================
# KdV
# ======================================================================================
def _etdrk4_coefficients(lin: np.ndarray, h: float, contour_points: int) -> np.ndarray:
    """``E, E2, Q, f1, f2, f3`` of ETDRK4 (Cox & Matthews 2002) for the diagonal linear
    operator ``lin``, by the mean over a circle of radius 1 around each ``h * lin``
    (Kassam & Trefethen 2005). ``lin`` is complex here (purely imaginary for KdV), so the
    whole circle is used and no real part is taken."""
    r = np.exp(2j * np.pi * (np.arange(contour_points) + 0.5) / contour_points)
    z = h * lin[:, None] + r[None, :]
    ez = np.exp(z)
    q = h * np.mean((np.exp(z / 2) - 1) / z, axis=1)
    f1 = h * np.mean((-4 - z + ez * (4 - 3 * z + z**2)) / z**3, axis=1)
    f2 = h * np.mean((2 + z + ez * (z - 2)) / z**3, axis=1)
    f3 = h * np.mean((-4 - 3 * z - z**2 + ez * (4 - z)) / z**3, axis=1)
    return np.stack([np.exp(h * lin), np.exp(h * lin / 2), q, f1, f2, f3])


@numba.njit(**_NJIT)
def _nonlinear(v, out, u, z, work, post, factors, tw, tw_off, roots, root_off):
    """``out = FFT(IFFT(v)^2)`` (the factor ``-ik/2`` is folded into the coefficients)."""
    _irfft(v, u, z, work, post, factors, tw, tw_off, roots, root_off)
    for i in range(u.size):
        u[i] = u[i] * u[i]
    _rfft(u, out, z, work, post, factors, tw, tw_off, roots, root_off)


@numba.njit(**_NJIT)
def _etdrk4_run(
    v, steps, coef_index, coefs, frames, z, work, post, factors, tw, tw_off, roots, root_off
):
    """Advance the spectrum ``v`` (in place) through every output interval ``k``:
    ``steps[k]`` ETDRK4 steps with the coefficient set ``coefs[coef_index[k]]``
    (``E, E2, Q g, f1 g, 2 f2 g, f3 g`` with ``g = -i k / 2``); ``frames[k + 1]`` receives
    the solution in physical space at the end of interval ``k``."""
    m = v.size
    fv = np.empty(m, dtype=np.complex128)
    fa = np.empty(m, dtype=np.complex128)
    fb = np.empty(m, dtype=np.complex128)
    fc = np.empty(m, dtype=np.complex128)
    a = np.empty(m, dtype=np.complex128)
    b = np.empty(m, dtype=np.complex128)
    c = np.empty(m, dtype=np.complex128)
    u = np.empty(frames.shape[1])
    _irfft(v, frames[0], z, work, post, factors, tw, tw_off, roots, root_off)
    for k in range(steps.size):
        cs = coefs[coef_index[k]]
        e, e2, qg, f1, f2, f3 = cs[0], cs[1], cs[2], cs[3], cs[4], cs[5]
        for _ in range(steps[k]):
            _nonlinear(v, fv, u, z, work, post, factors, tw, tw_off, roots, root_off)
            for i in range(m):
                a[i] = e2[i] * v[i] + qg[i] * fv[i]
            _nonlinear(a, fa, u, z, work, post, factors, tw, tw_off, roots, root_off)
            for i in range(m):
                b[i] = e2[i] * v[i] + qg[i] * fa[i]
            _nonlinear(b, fb, u, z, work, post, factors, tw, tw_off, roots, root_off)
            for i in range(m):
                c[i] = e2[i] * a[i] + qg[i] * (2.0 * fb[i] - fv[i])
            _nonlinear(c, fc, u, z, work, post, factors, tw, tw_off, roots, root_off)
            for i in range(m):
                v[i] = e[i] * v[i] + f1[i] * fv[i] + f2[i] * (fa[i] + fb[i]) + f3[i] * fc[i]
        _irfft(v, frames[k + 1], z, work, post, factors, tw, tw_off, roots, root_off)


class _KdVETDRK4:
    """ETDRK4 for the KdV equation on one periodic grid; runs a whole ``t_eval``."""

    def __init__(self, n: int, period: float, nu: float, dealias: bool, contour_points: int):
        self.fft = _RealFFT(n)
        m = np.arange(n // 2 + 1)
        k = 2 * np.pi / period * m
        if n % 2 == 0:
            k[-1] = 0.0  # odd derivatives have no Nyquist component
        self.lin = 1j * nu * k**3  # u_t = -nu u_xxx  ->  (i nu k^3) u_hat
        g = -0.5j * k  # -(u^2 / 2)_x  ->  -(i k / 2) FFT(u^2)
        if dealias:
            g = g * (m < n / 3)  # 2/3 rule: drop the top third of the product's modes
        self.g = g
        self.contour_points = contour_points
        self._coefs: dict[float, np.ndarray] = {}

    def coefficients(self, h: float) -> np.ndarray:
        key = float(h)
        if key not in self._coefs:
            e, e2, q, f1, f2, f3 = _etdrk4_coefficients(self.lin, h, self.contour_points)
            g = self.g
            self._coefs[key] = np.stack([e, e2, q * g, f1 * g, 2 * f2 * g, f3 * g])
        return self._coefs[key]

    def run(self, v0: np.ndarray, t: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """Frames at ``t`` with ``steps[k]`` equal steps in interval ``k``."""
        dts = np.diff(t)
        hs = dts / steps
        # intervals whose step agrees to 1e-12 share one coefficient set
        keys = np.round(hs / hs.max(), 12) if hs.size else hs
        uniq, index = np.unique(keys, return_inverse=True)
        coefs = np.empty((max(uniq.size, 1), 6, v0.size), dtype=np.complex128)
        for i, key in enumerate(uniq):
            coefs[i] = self.coefficients(float(hs[np.argmax(keys == key)]))
        frames = np.empty((t.size, self.fft.n))
        v = v0.copy()
        f = self.fft
        _etdrk4_run(v, steps, index.astype(np.int64), coefs, frames, f.z, f.work, f.post, *f.plan)
        return frames


def _choose_steps(solver: _KdVETDRK4, v0, t, tol: float) -> np.ndarray:
    """Steps per output interval for a max-norm time-integration error of about ``tol``.

    Pilot runs over the whole horizon at steps ``h, h/2, h/4, ...``: Richardson's estimate
    of the error of a run is ``max|u_h - u_{h/2}| / 15`` (order 4). The pilot stops at the
    first estimate within ``1e4 * tol`` (so the final step is at most ~10x smaller than a
    measured one, and the h^4 law is not stretched far) and takes
    ``h_final = h (tol / estimate)^(1/4) / 1.1``. Before the asymptotic range the error
    falls faster than h^4 and the estimate errs on the safe side.
    """
    dts = np.diff(t)
    h = min(dts.max(), (t[-1] - t[0]) / 64)
    prev = None
    while True:
        steps = _substeps(dts, h)
        if steps.sum() > 4_000_000:
            raise ValueError(
                f"solve_kdv: tol={tol:g} is not reachable with the pilot's steps (rounding); "
                "raise tol or pass dt"
            )
        cur = solver.run(v0, t, steps)
        if not np.all(np.isfinite(cur)):
            prev = None
        elif prev is not None:
            est = float(np.abs(cur - prev).max()) / 15
            if est <= tol:
                return steps
            if est <= 1e4 * tol and est <= 1e-3 * max(1.0, float(np.abs(cur).max())):
                return _substeps(dts, h * (tol / est) ** 0.25 / 1.1)
            prev = cur
        else:
            prev = cur
        h /= 2


def solve_kdv(
    nu: float,
    x,
    t_eval,
    u0,
    *,
    method: str = "etdrk4",
    dt: float | None = None,
    tol: float = 1e-10,
    dealias: bool = False,
    contour_points: int = 64,
) -> np.ndarray:
    """Solve ``u_t + u u_x + nu u_xxx = 0`` with periodic boundary conditions.

    Parameters
    ----------
    nu : float
        Dispersion coefficient (the paper: ``KDV_NU = 0.0025``).
    x : 1-D array
        Uniform periodic grid **without** the duplicated endpoint (:func:`periodic_grid`);
        the period is ``len(x) * (x[1] - x[0])``. The paper's 401-point grid lists both ends
        of [-1, 1]: solve on ``periodic_grid(400)`` and add the end with
        :func:`with_periodic_endpoint`.
    t_eval : 1-D array
        Increasing output times; ``t_eval[0]`` is the time of ``u0``.
    u0 : array of ``x``'s shape, or a callable ``u0(x)``
        Initial condition.
    method : {"etdrk4"}
        Fourier pseudo-spectral in space, ETDRK4 in time.
    dt : float, optional
        Largest time step: each output interval is split into equal steps of at most
        ``dt``. Default: chosen from ``tol`` by pilot runs (about 20% of the cost).
    tol : float
        With ``dt=None``: target max-norm error of the time integration over all outputs
        (the spatial error of a resolved grid is far smaller; ``docs/pde.md``).
    dealias : bool
        Apply the 2/3 rule to the nonlinear term. Off by default: on the paper's grid the
        spectrum is below 1e-16 long before the top third, and the two differ by 2e-15.
    contour_points : int
        Points on the contour of the ETDRK4 coefficient integrals.

    Returns
    -------
    ndarray, shape ``(len(t_eval), len(x))``.
    """
    nu = _positive("solve_kdv: nu", nu)
    x, hx = _uniform_axis("solve_kdv: x", x, 4)
    t = _times(t_eval)
    if method != "etdrk4":
        raise ValueError(f"solve_kdv: method must be 'etdrk4', got {method!r}")
    contour_points = _int_at_least("solve_kdv: contour_points", contour_points, 8)
    u0 = u0(x) if callable(u0) else u0
    u0 = np.asarray(u0, dtype=np.float64)
    if u0.shape != x.shape or not np.all(np.isfinite(u0)):
        raise ValueError(
            f"solve_kdv: u0 must be finite with x's shape {x.shape}, got shape {u0.shape}"
        )
    if dt is not None:
        dt = _positive("solve_kdv: dt", dt)
    tol = _positive("solve_kdv: tol", tol)
    n = x.size
    solver = _KdVETDRK4(n, n * hx, nu, bool(dealias), contour_points)
    v0 = solver.fft.rfft(u0)
    if t.size == 1:
        return solver.fft.irfft(v0)[None, :]
    if dt is not None:
        steps = _substeps(np.diff(t), dt)
    else:
        steps = _choose_steps(solver, v0, t, tol)
    return solver.run(v0, t, steps)


def kdv_soliton(t, x, *, nu: float, speed: float, x0: float = 0.0, period: float | None = None):
    """The KdV soliton ``3c sech^2(sqrt(c/nu)/2 (x - x0 - c t))`` (``c = speed > 0``).

    With ``period``, the nearest periodic image is taken: an exact solution of the periodic
    problem up to the overlap of the tails, ``~ 12 c exp(-sqrt(c/nu) L/2)`` (1e-16 for
    ``c = 4``, ``nu = 0.0025``, ``L = 2``).
    """
    nu = _positive("kdv_soliton: nu", nu)
    c = _positive("kdv_soliton: speed", speed)
    xi = np.asarray(x, dtype=np.float64) - x0 - c * np.asarray(t, dtype=np.float64)
    if period is not None:
        p = _positive("kdv_soliton: period", period)
        xi = (xi + p / 2) % p - p / 2
    return 3 * c / np.cosh(0.5 * np.sqrt(c / nu) * xi) ** 2


# ======================================================================================
# Continuity equation
# ======================================================================================
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


def _mol_operator(x, y, hx, hy, u, v, accuracy, boundary):
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
    a, rate = _mol_operator(x, y, hx, hy, u, v, accuracy, boundary)
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
    steps = _substeps(np.diff(t), dt)
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


@numba.njit(**_NJIT)
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
    steps = _substeps(np.diff(t), dt)
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
    x, hx = _uniform_axis("solve_continuity: x", x, 3)
    y, hy = _uniform_axis("solve_continuity: y", y, 3)
    t = _times(t_eval)
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
    cfl = _positive("solve_continuity: cfl", cfl)
    if cfl > 1:
        raise ValueError(f"solve_continuity: cfl must be in (0, 1], got {cfl}")
    if dt is not None:
        dt = _positive("solve_continuity: dt", dt)
    if method == "upwind-fv":
        return _solve_upwind(x, y, hx, hy, t, rho0, velocity, cfl, dt, bool(paper_edges))
    if paper_edges:
        raise ValueError("solve_continuity: paper_edges applies to method='upwind-fv' only")
    if boundary not in _MOL_BOUNDARIES:
        raise ValueError(
            f"solve_continuity: boundary must be one of {_MOL_BOUNDARIES}, got {boundary!r}"
        )
    accuracy = _int_at_least("solve_continuity: accuracy", accuracy, 2)
    if accuracy % 2:
        raise ValueError(f"solve_continuity: accuracy must be even (central), got {accuracy}")
    if boundary == "inflow" and accuracy > 4:
        raise ValueError(
            f"solve_continuity: boundary='inflow' is unstable at accuracy {accuracy} (one-sided "
            "closures); use accuracy <= 4 or boundary='periodic'"
        )
    u, v = _velocity_on(velocity, xs, ys, "node")
    return _solve_mol(x, y, hx, hy, t, rho0, u, v, accuracy, boundary, cfl, dt)
