"""The Allen–Cahn region metrics split the u error into its constant and the rest
(``u_offset``, ``u_centred``), checked against the same quantities computed here with NumPy
on the 201² grid, for a predictor û = u + c(Λ) + ε·g(x, y) with known c and g."""

from __future__ import annotations

import numpy as np
import pytest

from derlhybrid.learn import metrics as M
from derlhybrid.systems import AllenCahn, AllenCahnMulti
from derlhybrid.transfer.regions import AllenCahnRegionOptions, _allen_cahn

EPS = 1e-3


def _shift(X):
    # a constant per parameter set when the system has parameters (columns L1, L2), else 0.05
    return 0.05 + (0.3 * X[:, 2] + 0.2 * X[:, 3] if X.shape[1] > 2 else 0.0)


def _bump(X):
    return np.sin(3 * X[:, 0]) * (1 + X[:, 1] ** 2)


def predictor(system, eps=EPS):
    col = {system.inputs.index(c): i for i, c in enumerate(system.coordinates)}

    def predict(X, indices):
        out = {(): system.exact(X) + (_shift(X) + eps * _bump(X))[:, None]}
        J, H = system.jacobian(X), system.hessian(X)
        for a in indices:
            if len(a) == 1:
                out[a] = J[:, :, col[a[0]]]
            elif len(a) == 2:
                out[a] = H[:, :, col[a[0]], col[a[1]]]
        return out

    return predict


def _expected(system, X):
    u = system.exact(X)[:, 0]
    e = _shift(X) + EPS * _bump(X)
    ebar = e.mean()
    return ebar, np.linalg.norm(e) / np.linalg.norm(u), np.linalg.norm(e - ebar) / np.linalg.norm(u)


def test_constant_and_centred_error_per_parameter_set():
    system = AllenCahnMulti()
    sets = [[0.3, 0.7], [0.9, 0.1], [0.55, 0.45]]
    regions = {"a": {"parameters": sets[:2]}, "b": {"parameters": sets[1:]}}
    out = _allen_cahn(predictor(system), system, None, regions, None, AllenCahnRegionOptions())
    _, pts, _ = M.tensor_grid(system, system.coordinates, 201)
    expect = {}
    for s in sets:
        cols = {"x": pts[:, 0], "y": pts[:, 1], "L1": s[0], "L2": s[1]}
        expect[tuple(s)] = _expected(system, M.assemble_inputs(system, cols, len(pts)))
    for name, region in regions.items():
        got = out[name]
        for row, s in zip(got["sets"], region["parameters"], strict=True):
            ebar, rel, centred = expect[tuple(s)]
            assert row["u_offset"] == pytest.approx(ebar, rel=1e-12)
            assert row["u_rel_l2"] == pytest.approx(rel, rel=1e-10)
            assert row["u_centred_rel_l2"] == pytest.approx(centred, rel=1e-10)
            # the constant is most of the error here; the rest is the ε-bump's variation
            assert row["u_centred_rel_l2"] < 0.1 * row["u_rel_l2"]
        mean = np.mean([expect[tuple(s)][2] for s in region["parameters"]])
        assert got["u_centred"]["rel_l2"] == pytest.approx(mean, rel=1e-10)


def test_a_pure_constant_leaves_no_centred_error_on_a_box():
    system = AllenCahn()
    box = {"x": (-1.0, 0.0), "y": (-1.0, 1.0)}
    opts = AllenCahnRegionOptions(grid=101)
    out = _allen_cahn(predictor(system, eps=0.0), system, None, {"half": {"box": box}}, None, opts)
    r = out["half"]
    assert r["u_offset"] == pytest.approx(0.05, rel=1e-12)
    assert r["u"]["max"] == pytest.approx(0.05, rel=1e-12)
    assert r["u_centred"]["max"] < 1e-12 and r["u_centred"]["rel_l2"] < 1e-12
