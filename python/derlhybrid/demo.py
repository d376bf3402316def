"""The stencil demo behind ``derl demo``: what the kernels do, measured on this machine."""

from __future__ import annotations

import numpy as np

from .kernels import backends, derivative
from .timing import best_of


def convergence_table(backend: str | None = None, orders=(1, 2, 3), accuracies=(2, 4, 6, 8)):
    """Max error of d^k/dx^k exp(sin x) on periodic grids and the observed order."""
    rows = []
    ns = (32, 64)
    for k in orders:
        for p in accuracies:
            errs = []
            for n in ns:
                x = np.arange(n) * 2 * np.pi / n
                s, c = np.sin(x), np.cos(x)
                f = np.exp(s)
                exact = [c * f, (c * c - s) * f, (c**3 - 3 * c * s - c) * f][k - 1]
                du = derivative(f, x[1], order=k, accuracy=p, backend=backend)
                errs.append(float(np.abs(du - exact).max()))
            rate = np.log(errs[0] / errs[1]) / np.log(ns[1] / ns[0])
            rows.append((k, p, errs[0], errs[1], rate))
    return rows


def stencil_demo(backend: str | None = None, size: int = 2048, repeats: int = 5) -> None:
    if size < 16:
        raise ValueError(f"--size must be at least 16, got {size}")
    if repeats < 1:
        raise ValueError(f"--repeats must be at least 1, got {repeats}")
    name = backends.resolve(backend)
    print(f"derlhybrid stencil demo (backend: {name})")
    print("\nmax error of d^k/dx^k exp(sin x), periodic grid, n = 32 -> 64")
    print(f"{'k':>2} {'accuracy':>8} {'err n=32':>11} {'err n=64':>11} {'observed order':>15}")
    for k, p, e1, e2, rate in convergence_table(backend):
        print(f"{k:>2} {p:>8} {e1:>11.3e} {e2:>11.3e} {rate:>15.2f}")
    u = np.random.default_rng(0).standard_normal((size, size))
    derivative(u, 0.01, accuracy=6, backend=backend)  # compile / warm up
    t_ours = best_of(lambda: derivative(u, 0.01, accuracy=6, backend=backend), repeats)
    t_copy = best_of(lambda: np.copy(u), repeats)
    t_grad = best_of(lambda: np.gradient(u, 0.01, axis=-1), repeats)
    print(f"\n6th-order d/dx of a {size}x{size} float64 field (best of {repeats}):")
    print(f"  derlhybrid      {t_ours * 1e3:8.1f} ms   ({t_ours / t_copy:.2f} x numpy.copy)")
    print(f"  numpy.copy      {t_copy * 1e3:8.1f} ms")
    print(f"  numpy.gradient  {t_grad * 1e3:8.1f} ms   (2nd order only)")
