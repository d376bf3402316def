"""PDE grid files (kdv, continuity): fields, derivatives, windows, empirical derivatives."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest

from derlhybrid.data import grid as grid_mod
from derlhybrid.data import open_dataset, provenance
from derlhybrid.data.generate import GenerateRequest, generate
from derlhybrid.systems import Continuity, FieldSystem, GridPlan, KdV, parameter


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


# A run of the windowed continuity generation that SIGKILLs itself when it starts its third
# window (two finished windows in <out>.partial/, nothing at <out>).
_KILLED_RUN = """
import os, signal, sys
from derlhybrid.data import grid as grid_mod
from derlhybrid.data.generate import GenerateRequest, generate
from derlhybrid.kernels import pde

grid_mod.GRID_BYTES = int(sys.argv[2])
real, calls = pde.solve_continuity, []


def dying(*args, **kw):
    calls.append(1)
    if len(calls) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kw)


pde.solve_continuity = dying
req = GenerateRequest(system="continuity", out=sys.argv[1], n_points=61, n_times=21,
                      params={"t_end": 1.0}, empirical="central:4")
generate(req, progress=False)
"""


def _datasets(path) -> dict[str, np.ndarray]:
    out = {}
    with open_dataset(path) as f:
        f.visititems(
            lambda name, obj: out.update({name: obj[...]}) if hasattr(obj, "dtype") else None
        )
    return out


def test_windows_and_resume_do_not_change_the_data(tmp_path, monkeypatch):
    """Killed (SIGKILL) after two windows and rerun: the rerun computes only the missing
    windows and every dataset equals the uninterrupted run's bit for bit (docs/datasets.md).
    In windows or in one go: the same bits too (the empirical time derivative uses the
    record's one uniform step in every window; it used each window's own mean step, ~2e-14
    apart)."""
    kw = dict(n_points=61, n_times=21, params={"t_end": 1.0}, empirical="central:4")
    one = _grid(tmp_path, "continuity", name="one.h5", **kw)
    window_bytes = 8 * 61 * 61 * 7 * 4  # windows of 4 frames: 7 windows for 21 frames
    monkeypatch.setattr(grid_mod, "GRID_BYTES", window_bytes)
    many = _grid(tmp_path, "continuity", name="many.h5", **kw)
    killed = tmp_path / "killed.h5"
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_RUN, str(killed), str(window_bytes)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not killed.exists()
    work = tmp_path / "killed.h5.partial"
    assert work.is_dir()
    from derlhybrid.kernels import pde

    real, calls = pde.solve_continuity, []
    monkeypatch.setattr(pde, "solve_continuity", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert _grid(tmp_path, "continuity", name="killed.h5", **kw) == killed  # the same command
    assert len(calls) == 7 - 2  # the two finished windows were not computed again
    assert not work.exists()
    ref, got = _datasets(many), _datasets(killed)
    assert {"fields/rho", "derivatives/rho_x", "empirical/rho_t", "empirical/rho_y"} <= set(ref)
    assert set(got) == set(ref)
    for name, v in ref.items():
        np.testing.assert_array_equal(got[name], v, err_msg=name)
    whole = _datasets(one)
    assert set(whole) == set(ref)
    for name, v in ref.items():
        np.testing.assert_array_equal(whole[name], v, err_msg=name)


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
    with pytest.raises(ValueError, match="method must be mol, upwind-fv or exact"):
        _grid(tmp_path, "continuity", method="spectral")
    with pytest.raises(ValueError, match="cubic-forward applies to trajectories"):
        _grid(tmp_path, "kdv", empirical="cubic-forward")


def _kdv_reference(x: np.ndarray, t: np.ndarray, nu: float) -> np.ndarray:
    """KdV from cos(pi x) by SciPy's DOP853 (rtol = atol = 1e-12) on the Fourier
    semi-discretisation: another time integrator, nothing of the package."""
    from scipy.integrate import solve_ivp

    n = x.size
    ik = 1j * 2 * np.pi / (n * (x[1] - x[0])) * np.fft.rfftfreq(n, 1.0 / n)

    def rhs(_, v):
        vh = np.fft.rfft(v)
        return -(v * np.fft.irfft(ik * vh, n) + nu * np.fft.irfft(ik**3 * vh, n))

    sol = solve_ivp(rhs, (t[0], t[-1]), np.cos(np.pi * x), "DOP853", t, rtol=1e-12, atol=1e-12)
    assert sol.success
    return sol.y.T


def test_conformance_kdv_and_continuity_generation(backend, tmp_path):
    """Every backend's PDE ground truth against references independent of the package
    (julia rows skip without Julia): KdV against SciPy on the same semi-discretisation; the
    continuity solver against its closed form, with the error falling at the solver's
    order (6th-order stencils in space, RK4 at CFL 0.5: measured 5.8)."""
    k = _grid(
        tmp_path,
        "kdv",
        name=f"k-{backend}.h5",
        backend=backend,
        n_points=128,
        n_times=11,
        params={"t_end": 0.1},
    )
    with open_dataset(k) as f:
        assert provenance(f)["backend"] == backend
        t, x, u = f["grid/t"][...], f["grid/x"][...], f["fields/u"][...]
        ux = f["derivatives/u_x"][...]
    ref = _kdv_reference(x, t, KdV().nu)
    np.testing.assert_allclose(u, ref, rtol=0, atol=1e-9)  # measured 1.4e-11
    n = x.size
    ref_x = np.fft.irfft(1j * np.pi * np.fft.rfftfreq(n, 1.0 / n) * np.fft.rfft(ref), n)
    np.testing.assert_allclose(ux, ref_x, rtol=0, atol=1e-7)  # measured 2e-9
    sys = Continuity(t_end=0.5)
    errors = []
    for n_points in (61, 121):
        c = _grid(
            tmp_path,
            "continuity",
            name=f"c{n_points}-{backend}.h5",
            backend=backend,
            n_points=n_points,
            n_times=6,
            params={"t_end": 0.5},
        )
        with open_dataset(c) as h:
            assert provenance(h)["backend"] == backend
            t, x, y = h["grid/t"][...], h["grid/x"][...], h["grid/y"][...]
            shape, P = _points(t, x, y)
            errors.append(np.abs(h["fields/rho"][...] - sys.exact(P).reshape(shape)).max())
    assert errors[0] < 2e-3, errors  # measured 5.8e-4, then 1.0e-5
    assert np.log2(errors[0] / errors[1]) > 5.3, errors


@dataclass(frozen=True)
class _Advection(FieldSystem):
    """u_t + c u_x = 0 on the periodic [0, 2π), u0 = sin x: a grid system defined outside
    the package, through the grid_plan hook alone. Its "solver" marches window to window
    by the exact Fourier shift of the previous window's last frame."""

    name = "test-advection"
    kind = "pde"
    inputs = ("t", "x")
    outputs = ("u",)
    data_layout = "grid"
    c: float = parameter(0.7)
    t_end: float = parameter(1.0)

    def grid_plan(self, *, method, n_points, n_times, backend, rtol):
        x = 2 * np.pi * np.arange(n_points or 32) / (n_points or 32)
        k = np.fft.rfftfreq(x.size, 1.0 / x.size)

        def solve(t, start):
            u0 = np.sin(x) if start is None else start
            shift = np.exp(-1j * k[None, :] * self.c * (t - t[0])[:, None])
            u = np.fft.irfft(np.fft.rfft(u0)[None, :] * shift, x.size, axis=-1)
            ux = np.fft.irfft(1j * k * np.fft.rfft(u, axis=-1), x.size, axis=-1)
            return u, {"u_t": -self.c * ux, "u_x": ux}

        return GridPlan(
            axes={"x": x},
            n_times=n_times or 11,
            t_end=self.t_end,
            field="u",
            method="exact Fourier shift",
            derivative_method="spectral u_x, u_t from the PDE",
            derivatives=("u_t", "u_x"),
            periodic=True,
            backend="python",
            solve=solve,
        )


def test_a_user_grid_system_needs_only_its_grid_plan(tmp_path, monkeypatch):
    """A new grid PDE written outside data/: fields, derivatives, provenance, periodic
    empirical derivatives, and the same field in windows (the plan marches from the
    previous window's last frame)."""
    from derlhybrid.data.generate import generate_for

    system = _Advection()
    kw = dict(system=system.name, n_points=32, n_times=21, seed=0, empirical="central:4")
    one = generate_for(GenerateRequest(out=str(tmp_path / "one.h5"), **kw), system, progress=False)
    monkeypatch.setattr(grid_mod, "GRID_BYTES", 8 * 32 * 5 * 4)  # windows of 4 frames
    many = generate_for(
        GenerateRequest(out=str(tmp_path / "many.h5"), **kw), system, progress=False
    )
    with open_dataset(one) as f, open_dataset(many) as g:
        assert provenance(f)["generator"]["method"] == "exact Fourier shift"
        assert f["grid/x"].attrs["periodic"]
        t, x, u = f["grid/t"][...], f["grid/x"][...], f["fields/u"][...]
        X = x[None, :] - system.c * t[:, None]
        np.testing.assert_allclose(u, np.sin(X), rtol=0, atol=1e-13)
        np.testing.assert_allclose(f["derivatives/u_x"][...], np.cos(X), rtol=0, atol=1e-12)
        np.testing.assert_allclose(f["derivatives/u_t"][...], -system.c * np.cos(X), atol=1e-12)
        h = x[1] - x[0]
        np.testing.assert_allclose(f["empirical/u_x"][...], np.cos(X), rtol=0, atol=2 * h**4)
        for name in ("fields/u", "derivatives/u_t", "empirical/u_t", "empirical/u_x"):
            # each window starts from the last frame of the one before (not from u0)
            np.testing.assert_allclose(g[name][...], f[name][...], rtol=0, atol=1e-12)


def test_a_grid_plan_that_breaks_its_promise_is_named(tmp_path, monkeypatch):
    """A solve that returns other derivatives than its plan declares: one clear error, no
    file."""
    from derlhybrid.data.generate import generate_for

    system = _Advection()
    plan = system.grid_plan(method=None, n_points=8, n_times=3, backend="python", rtol=1e-9)
    broken = dataclasses.replace(plan, derivatives=("u_t", "u_x", "u_xx"))
    monkeypatch.setattr(_Advection, "grid_plan", lambda self, **kw: broken)
    req = GenerateRequest(system=system.name, out=str(tmp_path / "b.h5"))
    with pytest.raises(ValueError, match="test-advection: grid_plan's solve must return"):
        generate_for(req, system, progress=False)
    assert not (tmp_path / "b.h5").exists()
