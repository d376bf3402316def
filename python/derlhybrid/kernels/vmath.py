"""Branch-free elementary functions that LLVM can vectorise, for right-hand sides on lanes.

Numba compiles ``math.sin`` to a call of the C library's scalar ``sin`` (~9 ns); a loop that
calls it cannot be vectorised (no vector math library on our machines). :func:`sin` here is
FreeBSD/fdlibm's ``sin`` (the algorithm of most C libraries) without its branches:
Cody–Waite reduction by pi/2 in three rounds (fdlibm's ``__ieee754_rem_pio2`` "medium"
case, always all three rounds), round-to-nearest through the ``1.5 * 2**52`` trick, both of
fdlibm's kernels (``__kernel_sin`` and ``__kernel_cos``, with the tail of the reduced
argument) and a select by quadrant. In a loop over an array LLVM vectorises it (4 doubles
per AVX2 register): ~3.8 ns per value on our Xeon, against ~8-9 ns for libm's, because it
does the work of both kernels for every value. :func:`sin_small` is the same function for
``|x| <= SIN_SMALL_ARG`` (no reduction, no cosine: about a quarter of the work, same bits);
a right-hand side checks its arguments first (see ``bench/ode_ensemble.py``).

Accuracy: at most 1 ulp from ``math.sin`` over millions of random arguments with
``|x| <= SIN_MAX_ARG`` (2**19 pi/2, ~8.2e5; the tests allow 2); NaN for inf and NaN. Beyond
``SIN_MAX_ARG`` the three-part reduction is no longer exact, so :func:`sin` returns NaN
there rather than a wrong number; :func:`sin_lanes` (a whole array) computes those rare
arguments with ``math.sin`` instead, so it is accurate for every finite argument.

``fastmath={"contract"}`` only (FMA; no ``nnan``/``reassoc``, which would break the exact
steps of the reduction): every other operation is an IEEE one, and the vector loop, its
scalar remainder and a scalar call give the same bits (tested), so results do not depend on
how many arguments are computed together.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["SIN_MAX_ARG", "SIN_SMALL_ARG", "sin", "sin_lanes", "sin_small"]

SIN_MAX_ARG = 2.0**19 * (math.pi / 2)  # fdlibm's bound for its medium-size reduction
SIN_SMALL_ARG = 0.78  # |x| <= SIN_SMALL_ARG < pi/4: no reduction needed (n = 0)

_SHIFT = 1.5 * 2.0**52  # x + _SHIFT - _SHIFT rounds x to the nearest integer (|x| < 2**51)
_INVPIO2 = 6.36619772367581382433e-01  # 2/pi
# pi/2 in parts: _PIO2_k holds 33 bits (so n * _PIO2_k is exact for |n| < 2**20) and
# _PIO2_kT is the rest of pi/2 after _PIO2_1 + ... + _PIO2_k (fdlibm e_rem_pio2.c).
_PIO2_1 = 1.57079632673412561417e00
_PIO2_1T = 6.07710050650619224932e-11
_PIO2_2 = 6.07710050630396597660e-11
_PIO2_2T = 2.02226624879595063154e-21
_PIO2_3 = 2.02226624871116645580e-21
_PIO2_3T = 8.47842766036889956997e-32
# fdlibm k_sin.c / k_cos.c: minimax polynomials on [-pi/4, pi/4]
_S1 = -1.66666666666666324348e-01
_S2 = 8.33333333332248946124e-03
_S3 = -1.98412698298579493134e-04
_S4 = 2.75573137070700676789e-06
_S5 = -2.50507602534068634195e-08
_S6 = 1.58969099521155010221e-10
_C1 = 4.16666666666666019037e-02
_C2 = -1.38888888888741095749e-03
_C3 = 2.48015872894767294178e-05
_C4 = -2.75573143513906633035e-07
_C5 = 2.08757232129817482790e-09
_C6 = -1.13596475577881948265e-11


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def sin(x):
    """``sin(x)`` without branches (vectorisable); NaN for ``|x| > SIN_MAX_ARG``, inf, NaN."""
    fn = (x * _INVPIO2 + _SHIFT) - _SHIFT  # nearest integer to x / (pi/2)
    # x - fn pi/2 as r + (the tail -w), three rounds of fdlibm's __ieee754_rem_pio2
    r = x - fn * _PIO2_1
    u = r
    w = fn * _PIO2_2
    r = u - w
    w = fn * _PIO2_2T - ((u - r) - w)
    u = r
    w = fn * _PIO2_3
    r = u - w
    w = fn * _PIO2_3T - ((u - r) - w)
    y0 = r - w
    y1 = (r - y0) - w  # the reduced argument is y0 + y1, |y0| <= pi/4 (a bit more)
    z = y0 * y0
    v = z * z
    # __kernel_sin(y0, y1, 1)
    rs = _S2 + z * (_S3 + z * _S4) + z * v * (_S5 + z * _S6)
    vs = z * y0
    s = y0 - ((z * (0.5 * y1 - vs * rs) - y1) - vs * _S1)
    # __kernel_cos(y0, y1)
    rc = z * (_C1 + z * (_C2 + z * _C3)) + v * v * (_C4 + z * (_C5 + z * _C6))
    hz = 0.5 * z
    c1 = 1.0 - hz
    c = c1 + (((1.0 - c1) - hz) + (z * rc - y0 * y1))
    # quadrant fn mod 4: sin, cos, -sin, -cos (all exact operations on integers)
    q = fn - 4.0 * np.floor(fn * 0.25)
    res = c if (q == 1.0 or q == 3.0) else s
    res = -res if q >= 2.0 else res
    return res if abs(x) <= SIN_MAX_ARG else np.nan


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def sin_small(x):
    """``sin(x)`` for ``|x| <= SIN_SMALL_ARG``: bit for bit what :func:`sin` computes there
    (its reduction gives n = 0, y0 = x, y1 = 0 exactly), without the reduction and the
    cosine kernel, about a quarter of the work. Wrong for larger ``|x|``: check first, e.g.
    ``small = True; for c in ...: small &= abs(x[c]) <= SIN_SMALL_ARG`` (vectorised)."""
    y1 = 0.0
    z = x * x
    v = z * z
    rs = _S2 + z * (_S3 + z * _S4) + z * v * (_S5 + z * _S6)
    vs = z * x
    return x - ((z * (0.5 * y1 - vs * rs) - y1) - vs * _S1)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def sin_lanes(x, out):
    """``out[i] = sin(x[i])`` for 1-D float64 arrays (they may be the same array).

    At most 1 ulp for every finite argument, NaN for inf and NaN, bit for bit what
    :func:`sin` gives where that is finite. A first vectorised look at the arguments picks
    the loop: all ``|x| <= pi/4`` (a pendulum near rest, say): fdlibm's sine kernel alone,
    about a quarter of the work; some beyond ``SIN_MAX_ARG``: ``math.sin`` for those;
    else :func:`sin`.
    """
    n = x.size
    big = False
    far = False
    for i in range(n):  # x and out may be the same array: look before writing
        a = abs(x[i])
        big |= a > SIN_SMALL_ARG
        far |= a > SIN_MAX_ARG
    if not big:
        for i in range(n):
            out[i] = sin_small(x[i])
    elif not far:
        for i in range(n):
            out[i] = sin(x[i])
    else:
        for i in range(n):
            xi = x[i]
            out[i] = math.sin(xi) if abs(xi) > SIN_MAX_ARG else sin(xi)
