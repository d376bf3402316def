"""Stencils: exact coefficients, convergence slopes, operator application, bad input."""

from __future__ import annotations

import itertools
from fractions import Fraction as F

import mpmath
import numpy as np
import pytest

from derlhybrid.kernels import _python, derivative, fornberg_weights
from derlhybrid.kernels.stencils import build_operator, stencil_width

# --------------------------------------------------------------------------------------
# exact coefficients
# --------------------------------------------------------------------------------------
KNOWN = [
    # (order, nodes, exact weights)
    (1, [-1, 0, 1], [F(-1, 2), 0, F(1, 2)]),
    (1, [-2, -1, 0, 1, 2], [F(1, 12), F(-2, 3), 0, F(2, 3), F(-1, 12)]),
    (
        1,
        [-3, -2, -1, 0, 1, 2, 3],
        [F(-1, 60), F(3, 20), F(-3, 4), 0, F(3, 4), F(-3, 20), F(1, 60)],
    ),
    (2, [-1, 0, 1], [1, -2, 1]),
    (2, [-2, -1, 0, 1, 2], [F(-1, 12), F(4, 3), F(-5, 2), F(4, 3), F(-1, 12)]),
    (3, [-2, -1, 0, 1, 2], [F(-1, 2), 1, 0, -1, F(1, 2)]),
    (1, [0, 1], [-1, 1]),  # plain forward difference
    (1, [0, 1, 2], [F(-3, 2), 2, F(-1, 2)]),
    (2, [0, 1, 2, 3], [2, -5, 4, -1]),
    (1, [-2, -1, 0], [F(1, 2), -2, F(3, 2)]),
]


@pytest.mark.parametrize(("order", "nodes", "expected"), KNOWN)
def test_fornberg_exact_coefficients(order, nodes, expected):
    exact = fornberg_weights(0, nodes, order, exact=True)
    assert list(exact) == [F(e) for e in expected]
    approx = fornberg_weights(0.0, nodes, order)
    np.testing.assert_allclose(approx, [float(e) for e in expected], rtol=0, atol=2e-15)


def test_fornberg_reproduces_polynomials_on_random_nodes():
    """N nodes differentiate every polynomial of degree < N exactly (here: to rounding)."""
    rng = np.random.default_rng(7)
    for n_nodes, order in [(3, 1), (5, 2), (7, 3), (9, 4)]:
        xs = np.sort(rng.uniform(-1, 1, n_nodes))
        x0 = rng.uniform(-0.5, 0.5)
        w = fornberg_weights(x0, xs, order)
        for deg in range(n_nodes):
            exact = 0.0
            if deg >= order:
                exact = np.prod(np.arange(deg - order + 1, deg + 1)) * x0 ** (deg - order)
            assert abs(w @ xs**deg - exact) <= 1e-9 * (1 + abs(exact))


def test_fornberg_exact_rational_nonuniform():
    # f'(0) from nodes {-1, 0, 2}: weights -2/3, 1/2, 1/6 (hand computation)
    assert list(fornberg_weights(0, [-1, 0, 2], 1, exact=True)) == [F(-2, 3), F(1, 2), F(1, 6)]


@pytest.mark.parametrize(
    ("order", "accuracy", "scheme", "width"),
    [
        (1, 2, "central", 3),
        (1, 6, "central", 7),
        (2, 2, "central", 3),
        (2, 4, "central", 5),
        (3, 2, "central", 5),
        (3, 8, "central", 11),
        (1, 1, "forward", 2),
        (2, 3, "backward", 5),
    ],
)
def test_stencil_widths(order, accuracy, scheme, width):
    assert stencil_width(order, accuracy, scheme) == width


def test_operator_interior_is_the_textbook_stencil():
    op = build_operator(32, 0.5, 1, 4, "periodic", "central")
    np.testing.assert_allclose(op.w_int * 0.5, [1 / 12, -2 / 3, 0, 2 / 3, -1 / 12], atol=1e-15)
    m = op.matrix()
    assert m[0, -1] == pytest.approx(-2 / 3 / 0.5) and m[0, -2] == pytest.approx(1 / 12 / 0.5)


# --------------------------------------------------------------------------------------
# convergence slopes
# --------------------------------------------------------------------------------------
ORDERS = (1, 2, 3)
ACCURACIES = (2, 4, 6, 8)
K = 3.0  # wavenumber of the non-periodic test function; phase 1 avoids symmetric edges


def _f_periodic(x, d, m=np):
    """exp(sin x) and its first three derivatives."""
    s, c = m.sin(x), m.cos(x)
    f = m.exp(s)
    return [f, c * f, (c * c - s) * f, (c**3 - 3 * c * s - c) * f][d]


def _f_open(x, d, m=np):
    """sin(Kx + 1) + exp(x/2) and its first three derivatives."""
    s, c, e = m.sin(K * x + 1), m.cos(K * x + 1), m.exp(x / 2)
    return [s + e, K * c + e / 2, -(K**2) * s + e / 4, -(K**3) * c + e / 8][d]


def _grid(n, boundary, nonuniform, m=np, number=float):
    """Uniform or smoothly stretched grid; returns (x, spacing, period)."""
    if boundary == "periodic":
        length = 2 * m.pi
        xi = [number(i) * length / n for i in range(n)]
        if not nonuniform:
            return np.array(xi, dtype=object if number is not float else float), length / n, None
        x = [v + 0.3 * m.sin(v) for v in xi]  # x' = 1 + 0.3 cos > 0: a smooth map
        return np.array(x, dtype=object if number is not float else float), None, length
    xi = [number(i) / (n - 1) for i in range(n)]
    if not nonuniform:
        return (
            np.array(xi, dtype=object if number is not float else float),
            number(1) / (n - 1),
            None,
        )
    x = [v + 0.15 * m.sin(2 * m.pi * v) / m.pi for v in xi]  # x' = 1 + 0.3 cos(2πξ) > 0
    return np.array(x, dtype=object if number is not float else float), None, None


def _slope(ns, errs):
    return -np.polyfit(np.log(np.asarray(ns, float)), np.log(np.asarray(errs, float)), 1)[0]


@pytest.mark.parametrize("nonuniform", [False, True], ids=["uniform", "nonuniform"])
@pytest.mark.parametrize("boundary", ["periodic", "one-sided"])
@pytest.mark.parametrize(("order", "accuracy"), list(itertools.product(ORDERS, ACCURACIES)))
def test_convergence_slope_exact_arithmetic(order, accuracy, boundary, nonuniform):
    """Slopes of the operators themselves, built and applied in 30-digit arithmetic.

    Rounding is out of the picture, so every order 1–3 / accuracy 2–8 combination is
    measured in its asymptotic range; the float64 kernels are checked against these very
    operators (``test_kernels_apply_the_operator``) and end to end below.
    """
    mpmath.mp.dps = 30
    f = _f_periodic if boundary == "periodic" else _f_open
    ns = [91, 128, 181, 256]
    errs = []
    for n in ns:
        x, h, period = _grid(n, boundary, nonuniform, m=mpmath, number=mpmath.mpf)
        spacing = h if h is not None else x
        op = build_operator(
            n, spacing, order, accuracy, boundary, "central", period, number=mpmath.mpf
        )
        du = op.matrix().dot(np.array([f(v, 0, mpmath) for v in x], dtype=object))
        errs.append(max(abs(a - f(v, order, mpmath)) for a, v in zip(du, x, strict=True)))
    assert abs(_slope(ns, errs) - accuracy) <= 0.3, (errs, _slope(ns, errs))


# grids where truncation dominates both rounding and the pre-asymptotic range, fixed a priori
FLOAT64_GRIDS = {
    ("periodic", 2): [64, 91, 128, 181, 256],
    ("periodic", 4): [45, 64, 91, 128, 181],
    ("periodic", 6): [45, 64, 91, 128],
    ("one-sided", 2): [64, 91, 128, 181, 256],
    ("one-sided", 4): [32, 45, 64, 91, 128],
    ("one-sided", 6): [32, 45, 64, 91],
}


FLOAT64_CASES = [
    (order, accuracy, boundary, nonuniform)
    for order, accuracy, boundary, nonuniform in itertools.product(
        ORDERS, (2, 4, 6), ("periodic", "one-sided"), (False, True)
    )
    if not (boundary == "one-sided" and order == 3 and accuracy == 6)
]


@pytest.mark.parametrize(("order", "accuracy", "boundary", "nonuniform"), FLOAT64_CASES)
def test_convergence_slope_float64(order, accuracy, boundary, nonuniform):
    """End to end through ``derivative`` in float64.

    High-accuracy one-sided stencils of high derivatives have large weights, so in float64
    the rounding floor eps·Σ|w|/h^d meets the truncation error before the asymptotic range
    is reached (one-sided third derivatives at accuracy 6 show a pre-asymptotic slope of
    6.3 up to n = 91, where rounding takes over; accuracy 8 one-sided fares worse). Those
    combinations are measured in exact arithmetic above, on the same operators the float64
    kernels are shown to apply exactly; accuracy 8 is measured here on periodic grids."""
    f = _f_periodic if boundary == "periodic" else _f_open
    ns = FLOAT64_GRIDS[boundary, accuracy]
    errs = []
    for n in ns:
        x, h, period = _grid(n, boundary, nonuniform)
        du = derivative(
            f(x, 0),
            h if h is not None else x,
            order=order,
            accuracy=accuracy,
            boundary=boundary,
            period=period,
        )
        errs.append(np.abs(du - f(x, order)).max())
    assert abs(_slope(ns, errs) - accuracy) <= 0.3, (errs, _slope(ns, errs))


@pytest.mark.parametrize("order", ORDERS)
def test_convergence_slope_float64_accuracy8_periodic(order):
    ns = [45, 64, 91, 128]
    errs = []
    for n in ns:
        x, h, _ = _grid(n, "periodic", False)
        errs.append(
            np.abs(
                derivative(_f_periodic(x, 0), h, order=order, accuracy=8) - _f_periodic(x, order)
            ).max()
        )
    assert abs(_slope(ns, errs) - 8) <= 0.3, errs


@pytest.mark.parametrize("scheme", ["forward", "backward"])
@pytest.mark.parametrize(("order", "accuracy"), [(1, 1), (1, 2), (2, 1), (2, 3), (3, 2)])
def test_convergence_slope_one_sided_schemes(scheme, order, accuracy):
    ns = [64, 91, 128, 181, 256]
    errs = []
    for n in ns:
        x, h, _ = _grid(n, "one-sided", False)
        du = derivative(
            _f_open(x, 0), h, order=order, accuracy=accuracy, boundary="one-sided", scheme=scheme
        )
        errs.append(np.abs(du - _f_open(x, order)).max())
    assert abs(_slope(ns, errs) - accuracy) <= 0.3, errs


# --------------------------------------------------------------------------------------
# the kernels apply exactly the operator, in every layout
# --------------------------------------------------------------------------------------
CASES = list(
    itertools.product(
        [1, 2, 3],  # order
        [2, 4],  # accuracy
        ["periodic", "one-sided"],
        ["central", "forward", "backward"],
        [0, 1, 2],  # axis of a 3-d array
        [False, True],  # non-uniform
    )
)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_kernels_apply_the_operator(dtype):
    """Numba kernels and the NumPy fallback equal the dense operator matrix."""
    rng = np.random.default_rng(3)
    for order, acc, bnd, scheme, axis, nonuni in CASES:
        n = 13
        shape = [4, 5, 6]
        shape[axis] = n
        u = rng.standard_normal(shape).astype(dtype)
        sp = np.cumsum(rng.uniform(0.5, 1.5, n)) if nonuni else 0.1
        period = sp[-1] - sp[0] + 1.0 if nonuni else None
        op = build_operator(n, sp, order, acc, bnd, scheme, period)
        ref = np.moveaxis(
            np.tensordot(op.matrix(), np.moveaxis(u.astype(np.float64), axis, 0), axes=(1, 0)),
            0,
            axis,
        )
        got = derivative(
            u,
            sp,
            axis=axis,
            order=order,
            accuracy=acc,
            boundary=bnd,
            scheme=scheme,
            period=period,
            backend="python",
        )
        pre = int(np.prod(shape[:axis]))
        fallback = np.empty_like(u)
        _python._apply_numpy(u.reshape(pre, n, -1), fallback.reshape(pre, n, -1), op)
        tol = (1e-12 if dtype == np.float64 else 2e-5) * np.abs(ref).max()
        assert got.dtype == dtype
        assert np.abs(got - ref).max() <= tol, (order, acc, bnd, scheme, axis, nonuni)
        assert np.abs(fallback - ref).max() <= tol


def test_mixed_partial_by_composition():
    n = 64
    x = np.arange(n) * 2 * np.pi / n
    h = x[1]
    X, Y = np.meshgrid(x, x, indexing="ij")
    u = np.sin(X) * np.cos(2 * Y)
    dxy = derivative(derivative(u, h, axis=0, accuracy=8), h, axis=1, accuracy=8)
    dyx = derivative(derivative(u, h, axis=1, accuracy=8), h, axis=0, accuracy=8)
    np.testing.assert_allclose(dxy, -2 * np.cos(X) * np.sin(2 * Y), atol=1e-7)
    np.testing.assert_allclose(dxy, dyx, atol=1e-13)  # the operators commute


def test_uniform_coordinates_take_the_uniform_path():
    x = np.linspace(0, 1, 50)
    u = np.exp(x)
    a = derivative(u, x, boundary="one-sided", accuracy=4)
    b = derivative(u, x[1] - x[0], boundary="one-sided", accuracy=4)
    np.testing.assert_allclose(a, b, rtol=1e-12)


# --------------------------------------------------------------------------------------
# agreement with an independent library (findiff)
# --------------------------------------------------------------------------------------
findiff = pytest.importorskip("findiff")


@pytest.mark.parametrize(("order", "accuracy"), list(itertools.product(ORDERS, ACCURACIES)))
def test_agrees_with_findiff_periodic_random_field(order, accuracy):
    rng = np.random.default_rng(11)
    n = 96
    x = np.arange(n) * 2 * np.pi / n
    h = x[1]
    X, Y = np.meshgrid(x, x, indexing="ij")
    # a random smooth periodic field: random low-mode Fourier series
    u = sum(
        rng.standard_normal() * np.cos(kx * X + ky * Y + rng.uniform(0, 6))
        for kx in range(4)
        for ky in range(4)
    )
    for axis in (0, 1):
        ref = (findiff.Diff(axis, h, periodic=True, acc=accuracy) ** order)(u)
        ours = derivative(u, h, axis=axis, order=order, accuracy=accuracy)
        assert np.abs(ours - ref).max() <= 1e-11 * np.abs(ref).max()


@pytest.mark.parametrize(("order", "accuracy"), list(itertools.product(ORDERS, (2, 4, 6))))
def test_agrees_with_findiff_interior_and_accuracy_at_edges(order, accuracy):
    """Away from the edges both libraries use the same central stencil; at the edges they
    choose different (equally accurate) one-sided stencils, so there both are compared with
    the exact derivative instead."""
    n = 81
    x = np.linspace(0, 1, n)
    h = x[1]
    rng = np.random.default_rng(5)
    coef = rng.standard_normal(4)
    u = sum(c * np.sin((k + 1) * x + k) for k, c in enumerate(coef))
    exact = sum(
        c * (k + 1) ** order * np.sin((k + 1) * x + k + order * np.pi / 2)
        for k, c in enumerate(coef)
    )
    ref = (findiff.Diff(0, h, acc=accuracy) ** order)(u)
    ours = derivative(u, h, order=order, accuracy=accuracy, boundary="one-sided")
    edge = stencil_width(order, accuracy, "central") // 2
    inner = slice(edge, n - edge)
    assert np.abs(ours[inner] - ref[inner]).max() <= 1e-9 * np.abs(ref).max()
    err_ours = np.abs(ours - exact).max()
    err_ref = np.abs(ref - exact).max()
    assert err_ours <= 10 * err_ref + 1e-9


# --------------------------------------------------------------------------------------
# buffers, dtypes, bad input
# --------------------------------------------------------------------------------------
def test_out_buffer_is_filled_and_returned():
    u = np.random.default_rng(0).standard_normal((8, 16))
    out = np.empty_like(u)
    res = derivative(u, 0.1, out=out, accuracy=4)
    assert res is out
    np.testing.assert_allclose(out, derivative(u, 0.1, accuracy=4))


def test_out_may_alias_input_and_be_noncontiguous():
    u = np.random.default_rng(1).standard_normal((8, 16))
    expected = derivative(u, 0.1, axis=0, accuracy=4)
    v = u.copy()
    derivative(v, 0.1, axis=0, accuracy=4, out=v)  # in place on the input itself
    np.testing.assert_allclose(v, expected, rtol=1e-13)
    big = np.zeros((16, 16))
    view = big[::2]  # non-contiguous buffer
    derivative(u, 0.1, axis=0, accuracy=4, out=view)
    np.testing.assert_allclose(view, expected, rtol=1e-13)
    t = derivative(np.asfortranarray(u), 0.1, axis=0, accuracy=4)  # Fortran-ordered input
    np.testing.assert_allclose(t, expected, rtol=1e-13)


def test_dtypes():
    u32 = np.linspace(0, 1, 32, dtype=np.float32) ** 2
    assert derivative(u32, 1 / 31, boundary="one-sided").dtype == np.float32
    assert derivative(np.arange(10), 1.0, boundary="one-sided").dtype == np.float64
    np.testing.assert_allclose(derivative(np.arange(10), 1.0, boundary="one-sided"), 1.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"order": 0}, "order must be >= 1"),
        ({"order": 1.5}, "order must be an integer"),
        ({"accuracy": 3}, "central stencils have even accuracy"),
        ({"accuracy": 0, "scheme": "forward"}, "accuracy must be >= 1"),
        ({"boundary": "zero"}, "boundary must be one of"),
        ({"scheme": "upwind"}, "scheme must be one of"),
        ({"axis": 3}, "axis=3 is out of range"),
        ({"spacing": -0.1}, "positive finite step"),
        ({"spacing": np.linspace(0, 1, 7)}, "coordinate array of length 16"),
        ({"spacing": np.linspace(1, 0, 16)}, "strictly increasing"),
        ({"spacing": np.linspace(0, 1, 16) ** 2}, "needs period=L"),
        ({"accuracy": 8, "order": 3, "boundary": "one-sided", "axis": 0}, "need at least 11"),
        ({"out": np.empty((4, 4))}, "out must be an ndarray of shape"),
        ({"backend": "fortran"}, "is not a backend"),
    ],
)
def test_bad_input_is_one_clear_line(kwargs, message):
    u = np.zeros((8, 16))
    kw = {"spacing": 0.1, **kwargs}
    spacing = kw.pop("spacing")
    with pytest.raises(ValueError, match=message) as info:
        derivative(u, spacing, **kw)
    assert "\n" not in str(info.value)


def test_fornberg_bad_input():
    with pytest.raises(ValueError, match="at least 3 nodes"):
        fornberg_weights(0, [0, 1], 2)
    with pytest.raises(ValueError, match="distinct"):
        fornberg_weights(0, [0, 1, 1], 1)
    with pytest.raises(ValueError, match="float32/float64 array"):
        derivative(np.zeros(8, dtype=complex), 0.1)
