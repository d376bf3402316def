"""`--preset paper`: sizes, sampling and splits of paper.md, exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest

from derlhybrid.cli import main
from derlhybrid.data import open_dataset, provenance
from derlhybrid.data.generate import GenerateRequest, generate


def _paper(tmp_path, system, **kw):
    return generate(
        GenerateRequest(system=system, out=str(tmp_path / f"{system}.h5"), preset="paper", **kw),
        progress=False,
    )


@pytest.mark.parametrize("b", [0.5, 0.0])
def test_pendulum_paper_dataset(tmp_path, b):
    path = _paper(tmp_path, "pendulum", params={"b": b})
    legacy = np.random.RandomState(30)  # the reference code's np.random.seed(30)
    theta0 = legacy.uniform(-math.pi / 4, math.pi / 4, 50)
    omega0 = legacy.uniform(-1.5, 1.5, 50)
    with open_dataset(path) as f:
        np.testing.assert_array_equal(
            f["trajectories/initial_states"][...], np.stack([theta0, omega0], 1)
        )
        assert f["trajectories/states"].shape == (50, 1001, 2)
        np.testing.assert_allclose(f["trajectories/t"][...], np.arange(1001) * 0.01, atol=1e-12)
        assert list(f["splits/train"][...]) == list(range(30))
        assert list(f["splits/val"][...]) == list(range(30, 40))
        assert list(f["splits/test"][...]) == list(range(40, 50))
        assert f["empirical/states"].shape == (50, 1000, 2)
        assert f["empirical/derivatives"].attrs["h"] == (1e-3 if b else 1e-2)
        mask = f["variants/interpolate/train_time_mask"][...]
        assert mask.sum() == 750 and not mask[375:626].any()
        assert f["variants/interpolate/train_time_mask"].attrs["anchor_index"] == 626
        assert provenance(f)["system_parameters"]["b"] == b


def test_allen_cahn_paper_dataset(tmp_path):
    path = _paper(tmp_path, "allen-cahn")
    with open_dataset(path) as f:
        np.testing.assert_array_equal(
            f["points/inputs"][...], np.random.RandomState(30).uniform(-1, 1, (1000, 2))
        )
        grid = f["variants/grid/inputs"][...]
        assert grid.shape == (99 * 99, 2) and grid.min() == pytest.approx(-0.98)
        assert f["boundary/inputs"].shape == (404, 2)
        assert f["points/hessian"].shape == (1000, 1, 2, 2)


def test_parametric_allen_cahn_paper_datasets(tmp_path):
    path = _paper(tmp_path, "allen-cahn-exp")
    with open_dataset(path) as f:
        lam = f["parameters/values"][...][:, 0]
        rs = np.random.RandomState(30)
        ref = rs.uniform(0, math.pi, 10)
        rs.shuffle(ref)
        np.testing.assert_array_equal(lam, ref)
        assert list(f["parameters/train"][...]) == list(range(8))
        assert list(f["parameters/val"][...]) == [8, 9]
        np.testing.assert_array_equal(
            f["parameters/test_values"][...][:, 0], [0.6, 0.9, 1.4, 2.3, 2.6, 2.8]
        )
        assert f["points/inputs"].shape == (10_000, 3)
        assert f["variants/test/inputs"].shape == (6000, 3)
        assert f["boundary/inputs"].shape == (10 * 4 * 201, 3)  # every λ set, 201 per edge
    path = _paper(tmp_path, "allen-cahn-multi")
    with open_dataset(path) as f:
        assert f["parameters/values"].shape == (20, 2)
        assert len(f["parameters/train"]) == 15 and len(f["parameters/val"]) == 5
        assert f["parameters/test_values"].shape == (5, 2)
        assert f["points/inputs"].shape == (20_000, 4)


def test_kovasznay_paper_dataset(tmp_path):
    path = _paper(tmp_path, "kovasznay")
    with open_dataset(path) as f:
        assert f["points/inputs"].shape == (10_000, 2)
        assert f["points/jacobian"].shape == (10_000, 3, 2)
        assert f["boundary/inputs"].shape == (800, 2)
        assert f["variants/grid/inputs"].shape == (40_000, 2)


def test_preset_refuses_conflicting_options(tmp_path, capsys):
    code = main(
        [
            "generate",
            "pendulum",
            "--preset",
            "paper",
            "--n-trajectories",
            "7",
            "--out",
            str(tmp_path / "x.h5"),
        ]
    )
    assert code == 2
    assert "fixes n_trajectories=50" in capsys.readouterr().err


def test_tricubic_interpolation_is_exact_for_cubics_and_fourth_order():
    from derlhybrid.data.presets import tricubic

    rng = np.random.default_rng(0)

    def grid(n):
        t, x, y = np.linspace(0, 1, n), np.linspace(-1, 1, n), np.linspace(-1, 2, n)
        return (t, x, y), np.meshgrid(t, x, y, indexing="ij")

    cubic = lambda T, X, Y: 1 + T**3 - 2 * X**2 * Y + Y**3 * T - X * Y * T  # noqa: E731
    P = rng.uniform([0, -1, -1], [1, 1, 2], (500, 3))
    axes, G = grid(11)
    assert np.abs(tricubic(cubic(*G), axes, P) - cubic(*P.T)).max() < 1e-12
    smooth = lambda T, X, Y: np.sin(2 * X + T) * np.cos(Y)  # noqa: E731
    errs = []
    for n in (21, 41):
        axes, G = grid(n)
        errs.append(np.abs(tricubic(smooth(*G), axes, P) - smooth(*P.T)).max())
    assert abs(np.log2(errs[0] / errs[1]) - 4) < 0.5, errs


def test_kdv_paper_dataset(tmp_path):
    path = _paper(tmp_path, "kdv")
    with open_dataset(path, layout="grid") as f:
        assert f["fields/u"].shape == (201, 400)
        u401 = f["variants/paper_grid/u"][...]
        assert u401.shape == (201, 401)
        np.testing.assert_array_equal(u401[:, -1], u401[:, 0])  # the periodic copy
        np.testing.assert_allclose(f["variants/paper_grid/x"][...], np.linspace(-1, 1, 401))
        assert f["initial/inputs"].shape == (802, 2) and f["boundary/inputs"].shape == (402, 2)
        np.testing.assert_allclose(
            f["initial/outputs"][:401, 0], np.cos(np.pi * np.linspace(-1, 1, 401)), atol=1e-14
        )


def test_allen_cahn_paper_ablation_targets(tmp_path):
    path = _paper(tmp_path, "allen-cahn")
    with open_dataset(path) as f:
        jac = f["points/jacobian"][...]
        for sigma in (0.001, 0.01, 0.05, 0.1):
            noisy = f[f"variants/noise_{sigma:g}/jacobian"][...]
            assert np.std(noisy - jac) == pytest.approx(sigma, rel=0.1)
        errs = [np.abs(f[f"variants/step_{h:g}/jacobian"][...] - jac).max() for h in (0.1, 0.01)]
        # central differences: error ~ π³h²/6 · |u| → a factor 100 between h = 0.1 and 0.01
        assert errs[0] / errs[1] == pytest.approx(100, rel=0.05)
