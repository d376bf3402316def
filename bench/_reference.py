"""The independent KdV reference of ``bench/kdv.py``: Krogstad's ETDRK4-B on NumPy's complex
FFT, sharing no code with ``derlhybrid.kernels.pde``. The one copy: ``tests/test_pde.py``
loads it from this file (a bench never imports from ``tests/``, which needs the test
extra)."""

from __future__ import annotations

import itertools
from math import factorial

import numpy as np


def phi(j: int, z: np.ndarray) -> np.ndarray:
    """phi_j(z) = sum_m z^m / (m + j)!: Taylor series for |z| < 1, closed form elsewhere."""
    z = np.asarray(z, dtype=np.complex128)
    out = np.empty_like(z)
    small = np.abs(z) < 1
    zs = z[small]
    acc = np.zeros_like(zs)
    for m in range(30, -1, -1):
        acc = acc * zs + 1.0 / factorial(m + j)
    out[small] = acc
    zb = z[~small]
    s = np.exp(zb)
    for m in range(j):
        s = s - zb**m / factorial(m)
    out[~small] = s / zb**j
    return out


def krogstad_kdv(nu, x, t_eval, u0, substeps: int) -> np.ndarray:
    """KdV by Krogstad's ETDRK4-B (J. Comput. Phys. 203, 2005) with ``substeps`` equal steps
    per output interval, Fourier pseudo-spectral on the periodic grid ``x`` (complex FFT)."""
    n = x.size
    period = n * (x[1] - x[0])
    k = 2 * np.pi * np.fft.fftfreq(n, d=period / n)
    if n % 2 == 0:
        k[n // 2] = 0.0
    lin = 1j * nu * k**3
    g = -0.5j * k

    def nonlinear(vh):
        u = np.fft.ifft(vh).real
        return g * np.fft.fft(u * u)

    vh = np.fft.fft(u0)
    out = [np.fft.ifft(vh).real]
    cache = {}
    for t0, t1 in itertools.pairwise(t_eval):
        h = (t1 - t0) / substeps
        key = round(h, 15)
        if key not in cache:
            z = h * lin
            p1h, p2h = phi(1, z / 2), phi(2, z / 2)
            p1, p2, p3 = phi(1, z), phi(2, z), phi(3, z)
            cache[key] = (
                np.exp(z),
                np.exp(z / 2),
                h * p1h / 2,
                h * (p1h / 2 - p2h),
                h * p2h,
                h * (p1 - 2 * p2),
                2 * h * p2,
                h * (p1 - 3 * p2 + 4 * p3),
                h * (2 * p2 - 4 * p3),
                h * (4 * p3 - p2),
            )
        e, e2, a21, a31, a32, a41, a43, b1, b23, b4 = cache[key]
        for _ in range(substeps):
            n1 = nonlinear(vh)
            a = e2 * vh + a21 * n1
            n2 = nonlinear(a)
            b = e2 * vh + a31 * n1 + a32 * n2
            n3 = nonlinear(b)
            c = e * vh + a41 * n1 + a43 * n3
            n4 = nonlinear(c)
            vh = e * vh + b1 * n1 + b23 * (n2 + n3) + b4 * n4
        out.append(np.fft.ifft(vh).real)
    return np.array(out)
