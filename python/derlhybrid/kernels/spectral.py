"""Periodic grids, spectral derivatives and a small real FFT in Numba.

:func:`periodic_grid` is the periodic grid without the duplicated endpoint,
:func:`with_periodic_endpoint` adds the end back, :func:`spectral_derivatives`
differentiates periodic samples with ``numpy.fft``. :class:`RealFFT` and the kernels
:func:`rfft` / :func:`irfft` are the Numba FFT behind the KdV time loop (:mod:`.kdv`).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numba
import numpy as np

from .pde_common import NJIT_OPTIONS, int_at_least

__all__ = [
    "RealFFT",
    "irfft",
    "periodic_grid",
    "rfft",
    "spectral_derivatives",
    "with_periodic_endpoint",
]


# ======================================================================================
# Periodic grids and spectral derivatives
# ======================================================================================
def periodic_grid(n: int, lo: float = -1.0, hi: float = 1.0) -> np.ndarray:
    """``n`` points ``lo + (hi - lo) k / n``, ``k = 0..n-1``: the periodic grid of period
    ``hi - lo`` without the duplicated endpoint (``x = hi`` is the same point as ``lo``)."""
    n = int_at_least("periodic_grid: n", n, 2)
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


@numba.njit(**NJIT_OPTIONS)
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


@numba.njit(**NJIT_OPTIONS)
def rfft(u, out, z, work, post, factors, tw, tw_off, roots, root_off):
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


@numba.njit(**NJIT_OPTIONS)
def irfft(spec, u, z, work, post, factors, tw, tw_off, roots, root_off):
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


class RealFFT:
    """Buffers and plan of :func:`rfft` / :func:`irfft` for one length."""

    def __init__(self, n: int):
        half = n // 2 if n % 2 == 0 else n
        self.n = n
        self.plan = _fft_plan(half)
        self.z = np.empty(half, dtype=np.complex128)
        self.work = np.empty(half, dtype=np.complex128)
        self.post = np.exp(-2j * np.pi * np.arange(n // 2 + 1) / n)

    def rfft(self, u: np.ndarray) -> np.ndarray:
        out = np.empty(self.n // 2 + 1, dtype=np.complex128)
        rfft(
            np.ascontiguousarray(u, dtype=np.float64), out, self.z, self.work, self.post, *self.plan
        )
        return out

    def irfft(self, spec: np.ndarray) -> np.ndarray:
        u = np.empty(self.n)
        irfft(
            np.ascontiguousarray(spec, dtype=np.complex128),
            u,
            self.z,
            self.work,
            self.post,
            *self.plan,
        )
        return u
