"""data.estimators: each estimator against the exact derivative of known functions, with and
without noise; rates, data-driven choices, provenance, bad specs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from derlhybrid.data.estimators import (
    SavitzkyGolay,
    SmoothingSpline,
    Stencil,
    TrendFilter,
    estimate,
    estimate_along,
    noise_scale,
    parse_estimator,
)


def f(t):
    return np.sin(t) + 0.3 * np.cos(2.3 * t)


def df(t):
    return np.cos(t) - 0.69 * np.sin(2.3 * t)


def rms(a):
    return float(np.sqrt(np.mean(np.square(a))))


def noisy(t, sigma, n_series, seed=0):
    rng = np.random.default_rng(seed)
    return f(t)[None] + sigma * rng.standard_normal((n_series, t.size))


def slope(x, y):
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


# ---------------------------------------------------------------------------------------------
# stencils: exact on polynomials, their order on smooth data, uniform and not


@pytest.mark.parametrize("spec,order", [("forward:1", 1), ("central:2", 2), ("central:4", 4)])
def test_stencil_order_on_uniform_and_jittered_times(spec, order):
    errs, hs = [], []
    rng = np.random.default_rng(1)
    for n in (41, 81, 161):
        t = np.linspace(0, 4, n)
        t[1:-1] += rng.uniform(-0.2, 0.2, n - 2) * (t[1] - t[0])  # non-uniform
        d, info = estimate_along(spec, f(t)[None], t, axis=1)
        errs.append(rms(d[0] - df(t)))
        hs.append(4 / (n - 1))
        assert info["method"] == "stencil" and info["spec"] == spec
    assert abs(slope(hs, errs) - order) < 0.35


def test_stencil_exact_on_a_polynomial_of_its_degree():
    t = np.sort(np.random.default_rng(2).uniform(0, 1, 30))
    y = 3 * t**2 - t + 0.5
    d, _ = estimate_along("central:2", y, t, axis=0)
    np.testing.assert_allclose(d, 6 * t - 1, atol=1e-9)


def test_noise_amplification_of_differences_is_sigma_over_h():
    # forward differences of white noise: std sqrt(2) σ / h, whatever the signal
    t = np.linspace(0, 10, 2001)
    h, sigma = t[1] - t[0], 1e-3
    d, _ = estimate_along("forward:1", noisy(t, sigma, 8), t, axis=1)
    err = rms(d[:, 1:-1] - df(t)[1:-1])
    assert err == pytest.approx(np.sqrt(2) * sigma / h, rel=0.1)


# ---------------------------------------------------------------------------------------------
# smoothers: error against the exact derivative decreases with the noise, at a rate


SIGMAS = (3e-2, 1e-2, 3e-3, 1e-3)


@pytest.mark.parametrize("spec", ["savgol", "spline"])
def test_smoother_error_decreases_with_noise_at_a_rate(spec):
    pytest.importorskip("pynumdiff") if spec == "spline" else None
    t = np.linspace(0, 10, 401)
    errs = []
    for k, sigma in enumerate(SIGMAS):
        d, _ = estimate_along(spec, noisy(t, sigma, 4, seed=k), t, axis=1)
        errs.append(rms(d[:, 10:-10] - df(t)[10:-10]))  # interior: edges converge slower
    assert all(a > b for a, b in itertools.pairwise(errs)), errs
    # a smoother's error falls like σ^p with 0 < p < 1 (bias-variance balance), far below
    # the σ/h of plain differences (h = 0.02: 1.4 at σ = 0.03)
    p = slope(SIGMAS, errs)
    assert 0.35 < p < 1.05, (p, errs)
    assert errs[0] < 0.1


def test_savgol_gcv_window_grows_with_noise():
    t = np.linspace(0, 10, 501)
    windows = []
    for sigma in (1e-4, 1e-2, 1e-1):
        _, info = estimate_along("savgol", noisy(t, sigma, 3), t, axis=1)
        assert info["selection"] == "GCV"
        windows.append(info["window"]["median"])
    assert windows[0] < windows[1] < windows[2], windows


def test_savgol_given_window_is_used_and_recorded():
    t = np.linspace(0, 1, 101)
    d, info = estimate_along("savgol:window=11,degree=3", np.sin(t), t, axis=0)
    assert info["window"] == {"min": 11.0, "median": 11.0, "max": 11.0}
    assert info["selection"] == "given" and info["degree"] == 3
    np.testing.assert_allclose(d, np.cos(t), atol=1e-4)


def test_trend_filter_error_decreases_with_noise():
    pytest.importorskip("cvxpy")
    pytest.importorskip("pynumdiff")
    t = np.linspace(0, 10, 201)
    errs, gammas = [], []
    for sigma in (3e-2, 1e-3):
        d, info = estimate_along("trend", noisy(t, sigma, 1, seed=3), t, axis=1)
        errs.append(rms(d[:, 5:-5] - df(t)[5:-5]))
        gammas.append(info["gamma"])
        assert info["selection"] == "discrepancy" and info["order"] == 2
    assert errs[1] < errs[0] < 0.3, errs
    assert gammas[0] >= gammas[1]  # more noise, more smoothing


def test_spline_handles_irregular_times():
    pytest.importorskip("pynumdiff")
    rng = np.random.default_rng(4)
    t = np.sort(rng.uniform(0, 10, 400))
    # s = 0 interpolates: a cubic spline's derivative, O(h^3) on noise-free data
    d, info = estimate_along("spline:s=0", f(t), t, axis=0)
    assert rms(d[5:-5] - df(t)[5:-5]) < 1e-4
    assert info["method"] == "spline" and info["s"] == 0.0 and info["selection"] == "given"
    # the default budget s · N σ̂² on noisy irregular samples
    y = f(t) + 1e-2 * rng.standard_normal(t.size)
    d, info = estimate_along("spline", y, t, axis=0)
    assert rms(d[5:-5] - df(t)[5:-5]) < 0.1
    assert info["noise_sigma"]["median"] == pytest.approx(1e-2, rel=0.5)


def test_periodic_axis_wraps():
    x = np.arange(64) * (2 * np.pi / 64)
    u = np.sin(x)[None] * np.ones((3, 1))
    d, _ = estimate_along("central:4", u, x, axis=1, periodic=True, period=2 * np.pi)
    np.testing.assert_allclose(d, np.cos(x)[None] * np.ones((3, 1)), atol=1e-4)
    d, _ = estimate_along("savgol:window=9", u, x, axis=1, periodic=True, period=2 * np.pi)
    np.testing.assert_allclose(d, np.cos(x)[None] * np.ones((3, 1)), atol=1e-4)


def test_trajectories_with_their_own_times():
    rng = np.random.default_rng(5)
    t = np.sort(rng.uniform(0, 5, (3, 120)), axis=1)
    y = np.stack([f(t), 2 * f(t)], axis=-1)
    d, info = estimate("central:2", y, t)
    assert info["per_trajectory"]
    np.testing.assert_allclose(d[..., 1], 2 * d[..., 0])
    assert rms(d[:, 3:-3, 0] - df(t)[:, 3:-3]) < 5e-3
    with pytest.raises(ValueError, match="needs uniform samples"):
        estimate("savgol", y, t)


def test_noise_scale_recovers_sigma():
    t = np.linspace(0, 10, 5001)
    assert noise_scale(noisy(t, 0.02, 1)[0]) == pytest.approx(0.02, rel=0.05)


@pytest.mark.parametrize(
    "text,obj",
    [
        ("forward:1", Stencil("forward", 1)),
        ("central:4", Stencil("central", 4)),
        ("savgol", SavitzkyGolay()),
        ("savgol:window=21,degree=2", SavitzkyGolay(21, 2)),
        ("spline:s=0.5", SmoothingSpline(0.5)),
        ("trend:gamma=10,order=3", TrendFilter(10.0, 3)),
    ],
)
def test_parse(text, obj):
    assert parse_estimator(text) == obj
    assert parse_estimator(obj.spec()) == obj


@pytest.mark.parametrize(
    "text,msg",
    [
        ("kalmann", "unknown derivative estimator"),
        ("central:3", "even accuracy"),
        ("savgol:window=10", "odd number"),
        ("savgol:width=11", "KEY=VALUE"),
        ("spline:s=abc", "must be a number"),
        ("trend:order=5", "order must be"),
    ],
)
def test_bad_specs_are_one_line(text, msg):
    with pytest.raises(ValueError, match=msg) as exc:
        parse_estimator(text)
    assert "\n" not in str(exc.value)


def test_spectral_is_exact_for_a_trigonometric_polynomial_and_filters_noise():
    from derlhybrid.data.estimators import estimate_along

    n, period = 128, 2 * np.pi
    x = np.arange(n) * period / n
    u = np.sin(3 * x) + 0.5 * np.cos(5 * x)
    du = 3 * np.cos(3 * x) - 2.5 * np.sin(5 * x)  # the exact derivative
    d, info = estimate_along("spectral", u[None], x, axis=1, periodic=True, period=period)
    np.testing.assert_allclose(d[0], du, atol=1e-12)
    noisy = u + 0.01 * np.random.default_rng(0).standard_normal(n)

    def rmse(est):
        d, info = estimate_along(est, noisy[None], x, axis=1, periodic=True, period=period)
        return float(np.sqrt(np.mean((d[0] - du) ** 2))), info

    err, info = rmse("spectral")
    assert info["selection"] == "noise-floor truncation" and 6 <= info["modes_kept"]["max"] < 20
    # central differences amplify the noise (~0.13 here); the truncated series does not
    assert err < 0.03 < rmse("central:2")[0]
    assert rmse("spectral:cutoff=0.1")[1]["selection"] == "given"


def test_spectral_refuses_samples_that_are_not_periodic():
    from derlhybrid.data.estimators import estimate_along

    t = np.linspace(0, 1, 50)
    with pytest.raises(ValueError, match="needs periodic samples"):
        estimate_along("spectral", np.sin(t)[None], t, axis=1)
    with pytest.raises(ValueError, match="cutoff must be in"):
        estimate_along("spectral:cutoff=2", np.sin(t)[None], t, axis=1, periodic=True, period=1)
