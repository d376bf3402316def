"""PDE grid files (kdv, continuity): fields, derivatives, windows, empirical derivatives."""

from __future__ import annotations

import numpy as np
import pytest

from derlhybrid.data import generate as gen_mod
from derlhybrid.data import open_dataset, provenance
from derlhybrid.data.generate import GenerateRequest, generate
from derlhybrid.systems import Continuity


def _grid(tmp_path, system, name="g.h5", **kw):
    return generate(GenerateRequest(system=system, out=str(tmp_path / name), **kw), progress=False)


def _points(t, x, y):
    T, X, Y = np.meshgrid(t, x, y, indexing="ij")
    return T.shape, np.stack([T.ravel(), X.ravel(), Y.ravel()], 1)


def test_continuity_exact_method_is_the_closed_form(tmp_path):
    path = _grid(
        tmp_path, "continuity", method="exact", n_points=61, n_times=6, params={"t_end": 2.0}
    )
    sys = Continuity(t_end=2.0)
    with open_dataset(path, layout="grid") as f:
        t, x, y = f["grid/t"][...], f["grid/x"][...], f["grid/y"][...]
        shape, P = _points(t, x, y)
        np.testing.assert_array_equal(f["fields/rho"][...], sys.exact(P).reshape(shape))
        jac = sys.jacobian(P)[:, 0].reshape(*shape, 3)
        for k, name in enumerate(("rho_t", "rho_x", "rho_y")):
            np.testing.assert_array_equal(f[f"derivatives/{name}"][...], jac[..., k])


def test_continuity_high_order_solver_against_the_exact_solution(tmp_path):
    path = _grid(tmp_path, "continuity", n_points=151, n_times=11, params={"t_end": 1.0})
    sys = Continuity(t_end=1.0)
    with open_dataset(path) as f:
        assert "6th-order" in provenance(f)["generator"]["method"]
        t, x, y = f["grid/t"][...], f["grid/x"][...], f["grid/y"][...]
        shape, P = _points(t, x, y)
        err = np.abs(f["fields/rho"][...] - sys.exact(P).reshape(shape)).max()
        assert err < 2e-4, err  # dx = 0.02, measured 5e-5
        inner = np.s_[:, 10:-10, 10:-10]
        jac = sys.jacobian(P)[:, 0].reshape(*shape, 3)
        assert np.abs(f["derivatives/rho_x"][...][inner] - jac[..., 1][inner]).max() < 2e-2


def test_continuity_paper_finite_volumes_conserve_mass(tmp_path):
    path = _grid(
        tmp_path, "continuity", method="upwind-fv", n_points=101, n_times=6, params={"t_end": 0.5}
    )
    with open_dataset(path) as f:
        rho = f["fields/rho"][...]
        mass = rho.sum(axis=(1, 2))
        np.testing.assert_allclose(mass, mass[0], rtol=1e-12)
        assert "upwind" in provenance(f)["generator"]["method"]


def test_kdv_file_derivatives_are_consistent(tmp_path):
    path = _grid(tmp_path, "kdv", n_points=128, n_times=41, params={"t_end": 0.2})
    with open_dataset(path, layout="grid") as f:
        t, x, u = f["grid/t"][...], f["grid/x"][...], f["fields/u"][...]
        assert u.shape == (41, 128) and x[0] == -1.0 and x[-1] < 1.0  # no duplicated end
        np.testing.assert_allclose(u[0], np.cos(np.pi * x), atol=1e-14)
        ux, ut = f["derivatives/u_x"][...], f["derivatives/u_t"][...]
        np.testing.assert_allclose(ux[0], -np.pi * np.sin(np.pi * x), atol=1e-11)
        # u_t stored from the PDE agrees with the time derivative of the stored field
        fd = (u[2:] - u[:-2]) / (t[2] - t[0])
        assert np.abs(fd - ut[1:-1]).max() < 5e-3 * np.abs(ut).max()
        mass = u.sum(axis=1) * (x[1] - x[0])
        np.testing.assert_allclose(mass, mass[0], atol=1e-11)


def test_windows_and_resume_do_not_change_the_data(tmp_path, monkeypatch):
    one = _grid(
        tmp_path,
        "continuity",
        name="one.h5",
        n_points=61,
        n_times=21,
        params={"t_end": 1.0},
        empirical="central:4",
    )
    monkeypatch.setattr(gen_mod, "GRID_BYTES", 8 * 61 * 61 * 7 * 4)  # windows of 4 frames
    many = _grid(
        tmp_path,
        "continuity",
        name="many.h5",
        n_points=61,
        n_times=21,
        params={"t_end": 1.0},
        empirical="central:4",
    )
    with open_dataset(one) as f, open_dataset(many) as g:
        for name in ("fields/rho", "derivatives/rho_x", "empirical/rho_t", "empirical/rho_y"):
            np.testing.assert_allclose(f[name][...], g[name][...], rtol=0, atol=1e-13)


def test_grid_empirical_forward_differences_are_first_order(tmp_path):
    errs = []
    for n in (101, 201):
        path = _grid(
            tmp_path,
            "continuity",
            name=f"e{n}.h5",
            method="exact",
            n_points=n,
            n_times=3,
            params={"t_end": 0.2},
            empirical="forward:1",
        )
        with open_dataset(path) as f:
            e = f["empirical/rho_x"][...] - f["derivatives/rho_x"][...]
            errs.append(np.abs(e).max())
    assert abs(np.log2(errs[0] / errs[1]) - 1) < 0.2, errs


def test_grid_bad_options(tmp_path):
    with pytest.raises(ValueError, match="--method must be mol, upwind-fv or exact"):
        _grid(tmp_path, "continuity", method="spectral")
    with pytest.raises(ValueError, match="cubic-forward applies to trajectories"):
        _grid(tmp_path, "kdv", empirical="cubic-forward")


def test_conformance_kdv_and_continuity_generation(backend, tmp_path):
    """Both backends produce the same PDE ground truth (julia rows skip without Julia)."""
    k = _grid(
        tmp_path,
        "kdv",
        name=f"k-{backend}.h5",
        backend=backend,
        n_points=128,
        n_times=11,
        params={"t_end": 0.1},
    )
    kp = _grid(
        tmp_path,
        "kdv",
        name=f"kp-{backend}.h5",
        backend="python",
        n_points=128,
        n_times=11,
        params={"t_end": 0.1},
    )
    c = _grid(
        tmp_path,
        "continuity",
        name=f"c-{backend}.h5",
        backend=backend,
        n_points=61,
        n_times=6,
        params={"t_end": 0.5},
    )
    sys = Continuity(t_end=0.5)
    with open_dataset(k) as f, open_dataset(kp) as g, open_dataset(c) as h:
        assert provenance(f)["backend"] == backend
        np.testing.assert_allclose(f["fields/u"][...], g["fields/u"][...], atol=1e-9)
        t, x, y = h["grid/t"][...], h["grid/x"][...], h["grid/y"][...]
        shape, P = _points(t, x, y)
        assert np.abs(h["fields/rho"][...] - sys.exact(P).reshape(shape)).max() < 5e-3
