"""Noisy samples of a steady field on a grid and its gradient estimated from them along the
grid axes (``/variants/measured`` of a pointwise file; issue 19's Allen–Cahn part): the
exact field plus seeded noise, stencils checked against central differences of the closed
form, smoothers against the exact gradient, refusals where there is no grid."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from derlhybrid.cli import main
from derlhybrid.data.generate import GenerateRequest, generate
from derlhybrid.learn.problems import load_problem
from derlhybrid.systems import get_system

AC = get_system("allen-cahn", {})


def _measured(tmp_path, name, **kw):
    req = GenerateRequest(system="allen-cahn", preset="paper", out=str(tmp_path / name), **kw)
    with h5py.File(generate(req, progress=False)) as f:
        g = f["variants/measured"]
        return {k: g[k][...] for k in g}, dict(g["outputs"].attrs), dict(g["jacobian"].attrs)


def test_central_differences_of_exact_samples_equal_the_closed_form_stencil(tmp_path):
    data, _, attrs = _measured(tmp_path, "c.h5", empirical="central:2")
    X = data["inputs"]
    assert X.shape == (99 * 99, 2)
    np.testing.assert_array_equal(data["outputs"][:, 0], AC.exact(X)[:, 0])  # no noise
    h = 0.02
    interior = (np.abs(X) < 0.98 - 1e-9).all(axis=1)  # the ends use one-sided stencils
    for k in range(2):
        e = np.zeros(2)
        e[k] = h
        ref = (AC.exact(X + e) - AC.exact(X - e))[:, 0] / (2 * h)
        np.testing.assert_allclose(data["jacobian"][interior, 0, k], ref[interior], atol=1e-12)
    assert "central" in attrs["estimator"]


@pytest.mark.parametrize("estimator", ["savgol", "spline"])
def test_smoothers_recover_the_exact_gradient_better_than_central_differences(tmp_path, estimator):
    sigma = 0.01
    smooth, out_attrs, _ = _measured(tmp_path, "s.h5", empirical=estimator, noise=sigma)
    raw, _, _ = _measured(tmp_path, "r.h5", empirical="central:2", noise=sigma)
    X = smooth["inputs"]
    noise = smooth["outputs"][:, 0] - AC.exact(X)[:, 0]
    assert abs(noise.std() / sigma - 1) < 0.05 and abs(noise.mean()) < 3 * sigma / 99
    np.testing.assert_array_equal(smooth["outputs"], raw["outputs"])  # the same seeded noise
    assert out_attrs["noise"] == sigma
    exact = AC.jacobian(X)

    def rmse(j):
        return float(np.sqrt(((j - exact) ** 2).mean()))

    # central differences amplify the noise by ~1/(√2 h) = 35: rmse ~0.35 against ~0.08
    assert rmse(raw["jacobian"]) > 0.3
    assert rmse(smooth["jacobian"]) < 0.15


def test_the_variant_trains_as_its_own_point_set(tmp_path):
    out = tmp_path / "m.h5"
    generate(
        GenerateRequest(
            system="allen-cahn", preset="paper", out=str(out), empirical="savgol", noise=0.01
        ),
        progress=False,
    )
    problem = load_problem(out, variant="measured")
    train = problem.sets["train"]
    assert len(train) == 99 * 99
    assert set(train.targets) >= {"output", "jacobian", "forcing"}
    assert "boundary" in problem.sets


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--n-points", "50", "--empirical", "savgol", "--noise", "0.01"], "grid"),
        (["--preset", "paper", "--noise", "0.01"], "estimator"),
        (["--preset", "paper", "--empirical", "cubic-forward"], "cubic-forward"),
    ],
)
def test_requests_without_a_grid_or_an_estimator_are_refused(tmp_path, capsys, argv, message):
    out = tmp_path / "x.h5"
    assert main(["generate", "allen-cahn", "--out", str(out), *argv, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not out.exists() and not list(tmp_path.iterdir())
