"""Generation → HDF5: accuracy, provenance, atomic writes, resume after a kill, validation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import h5py
import numba
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from derlhybrid.cli import main
from derlhybrid.data import DatasetError, open_dataset, provenance
from derlhybrid.data import trajectories as traj_mod
from derlhybrid.data.generate import GenerateRequest, generate
from derlhybrid.data.store import partial_path
from derlhybrid.systems import ODESystem, Pendulum, parameter, register

SMALL = dict(n_trajectories=40, n_times=51, t_end=5.0, seed=3, chunk_trajectories=10)


def _req(tmp_path, name="p.h5", **kw):
    return GenerateRequest(system="pendulum", out=str(tmp_path / name), **{**SMALL, **kw})


def _assert_matches_dop853(states, t, y0, rows):
    """Rows of generated damped-pendulum states within 1e-8 of SciPy DOP853 at 1e-13."""
    sys = Pendulum()
    for i in rows:
        ref = solve_ivp(
            lambda s, y: sys.rhs(s, y),
            (t[0], t[-1]),
            y0[i],
            method="DOP853",
            t_eval=t,
            rtol=1e-13,
            atol=1e-13,
        )
        assert np.abs(states[i] - ref.y.T).max() < 1e-8


def test_pendulum_file_is_accurate_and_self_describing(tmp_path):
    path = generate(_req(tmp_path), progress=False)
    with open_dataset(path, layout="trajectories") as f:
        prov = provenance(f)
        states = f["trajectories/states"][...]
        derivs = f["trajectories/derivatives"][...]
        t = f["trajectories/t"][...]
        y0 = f["trajectories/initial_states"][...]
        assert states.shape == derivs.shape == (40, 51, 2)
        assert f["trajectories/states"].compression == "gzip"
        assert f["trajectories/states"].chunks is not None
        splits = {k: f[f"splits/{k}"][...] for k in ("train", "val", "test")}
    assert prov["complete"] is True and prov["system"] == "pendulum"
    assert prov["system_parameters"] == {"b": 0.5, "g": 9.81, "l": 10.0, "m": 1.0}
    assert prov["generator"]["rtol"] == 1e-10 and prov["seed"] == 3
    assert prov["package_version"] and prov["created"] and prov["backend"] == "python"
    assert "SIMD lanes" in prov["generator"]["method"]  # the pendulum's rhs_lanes_kernel
    assert sorted(np.concatenate(list(splits.values()))) == list(range(40))
    sys = Pendulum()
    np.testing.assert_array_equal(states[:, 0], y0)
    np.testing.assert_allclose(derivs, sys.rhs(0.0, states), rtol=0, atol=1e-15)
    _assert_matches_dop853(states, t, y0, (0, 17, 39))


def test_same_seed_same_file_other_seed_other_ics(tmp_path):
    a = generate(_req(tmp_path, "a.h5"), progress=False)
    b = generate(_req(tmp_path, "b.h5", chunk_trajectories=7), progress=False)
    c = generate(_req(tmp_path, "c.h5", seed=4), progress=False)
    with open_dataset(a) as fa, open_dataset(b) as fb, open_dataset(c) as fc:
        # chunking does not change the numbers
        np.testing.assert_array_equal(
            fa["trajectories/states"][...], fb["trajectories/states"][...]
        )
        assert not np.array_equal(
            fa["trajectories/initial_states"][...], fc["trajectories/initial_states"][...]
        )


def test_float32_option(tmp_path):
    path = generate(_req(tmp_path, dtype="float32"), progress=False)
    with open_dataset(path) as f:
        assert f["trajectories/states"].dtype == np.float32
        assert provenance(f)["dtype"] == "float32"


def test_interrupted_run_resumes_only_missing_chunks(tmp_path, monkeypatch):
    ref = generate(_req(tmp_path, "ref.h5"), progress=False)
    from derlhybrid.kernels import ode

    real = ode.solve_ensemble
    calls = []

    def flaky(*args, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C in chunk 3
        return real(*args, **kw)

    monkeypatch.setattr(ode, "solve_ensemble", flaky)
    req = _req(tmp_path, "p.h5")
    with pytest.raises(KeyboardInterrupt):
        generate(req, progress=False)
    out = tmp_path / "p.h5"
    assert not out.exists()  # nothing at the final name
    assert sorted(p.name for p in partial_path(out).glob("*.done")) == [
        "chunk0000000.done",
        "chunk0000001.done",
    ]
    with pytest.raises(DatasetError, match="resume"):
        open_dataset(out)
    calls.clear()
    generate(req, progress=False)
    assert len(calls) == 2  # chunks 2 and 3 of 4
    assert not partial_path(out).exists()
    with open_dataset(out) as f, open_dataset(ref) as g:
        np.testing.assert_array_equal(f["trajectories/states"][...], g["trajectories/states"][...])
    assert "solve_ensemble" not in vars(traj_mod)  # imported at call time (so patchable)


def test_killed_process_resumes(tmp_path):
    """SIGKILL at an arbitrary moment, then the same request finishes the file."""
    out = tmp_path / "k.h5"
    # 2001 saved times: a chunk takes long enough that the 40 cannot all finish between two
    # polls of the loop below (with 201, quiet cores once did: done == 40 at the kill)
    code = (
        "from derlhybrid.data.generate import GenerateRequest, generate\n"
        f"generate(GenerateRequest(system='pendulum', out={str(out)!r}, n_trajectories=4000,"
        " n_times=2001, seed=5, chunk_trajectories=100, compression='none'), progress=False)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    work = partial_path(out)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(work.glob("*.done"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list(work.glob("*.done")))
    assert 3 <= done < 40, done
    assert not out.exists()
    req = GenerateRequest(
        system="pendulum",
        out=str(out),
        n_trajectories=4000,
        n_times=2001,
        seed=5,
        chunk_trajectories=100,
        compression="none",
    )
    generate(req, progress=False)
    fresh = generate(
        GenerateRequest(**{**req.__dict__, "out": str(tmp_path / "f.h5")}), progress=False
    )
    with open_dataset(out) as f, open_dataset(fresh) as g:
        np.testing.assert_array_equal(f["trajectories/states"][...], g["trajectories/states"][...])


def test_existing_file_needs_overwrite_and_other_partial_is_refused(tmp_path):
    path = generate(_req(tmp_path), progress=False)
    with pytest.raises(DatasetError, match=r"exists; set overwrite \(derl: --overwrite\)"):
        generate(_req(tmp_path), progress=False)
    generate(_req(tmp_path, overwrite=True, seed=9), progress=False)
    with open_dataset(path) as f:
        assert provenance(f)["seed"] == 9
    partial_path(tmp_path / "q.h5").mkdir()
    (partial_path(tmp_path / "q.h5") / "request.json").write_text(json.dumps({"config_hash": "x"}))
    with pytest.raises(DatasetError, match="different request"):
        generate(_req(tmp_path, "q.h5"), progress=False)


def test_reader_refuses_foreign_incomplete_and_wrong_version(tmp_path):
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(DatasetError, match="not a derlhybrid dataset"):
        open_dataset(foreign)
    path = generate(_req(tmp_path), progress=False)
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(DatasetError, match="format version 99"):
        open_dataset(path)
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = 1
        f.attrs["complete"] = False
    with pytest.raises(DatasetError, match="incomplete"):
        open_dataset(path)
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(DatasetError, match="not an HDF5 file"):
        open_dataset(tmp_path / "text.h5")
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset(tmp_path / "missing.h5")


@numba.njit(cache=True)
def _blowup_rhs(t, y, p, dy):
    dy[0] = p[0] * y[0] * y[0]


@register
@dataclass(frozen=True)
class _BlowUp(ODESystem):
    """y' = a y²: finite-time blow-up at t = 1/(a y0) — a user-defined system."""

    name = "test-blowup"
    state_names = ("y",)
    rhs_kernel = staticmethod(_blowup_rhs)
    a: float = parameter(1.0, low=0.0, doc="growth rate")

    def sample_initial_states(self, rng, n):
        y = rng.uniform(0.1, 0.2, (n, 1))
        y[n // 2] = 1.0  # this one blows up at t = 1
        return y


def test_failed_trajectory_is_named_and_leaves_no_file(tmp_path, capsys):
    out = tmp_path / "b.h5"
    code = main(
        [
            "generate",
            "test-blowup",
            "--out",
            str(out),
            "--n-trajectories",
            "8",
            "--t-end",
            "2",
            "--n-times",
            "11",
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "trajectory 4" in err and "initial state [1.0]" in err and "\n" not in err.strip()
    assert not out.exists()


def test_system_without_lane_kernel_uses_the_scalar_path(tmp_path):
    req = GenerateRequest(
        system="test-blowup", out=str(tmp_path / "s.h5"), n_trajectories=6, t_end=0.5,
        n_times=11, seed=1,
    )  # fmt: skip
    path = generate(req, progress=False)
    with open_dataset(path) as f:
        method = provenance(f)["generator"]["method"]
        t, y0 = f["trajectories/t"][...], f["trajectories/initial_states"][...]
        states = f["trajectories/states"][...]
    assert "DOP853" in method and "SIMD lanes" not in method
    exact = 1.0 / (1.0 / y0 - t[None, :])  # y' = y², a = 1; the y0 = 1 one blows up at t = 1
    np.testing.assert_allclose(states[:, :, 0], exact, rtol=1e-8)


def test_cli_generate_inspect_and_config(tmp_path, capsys):
    out = tmp_path / "c.h5"
    cfg = tmp_path / "gen.toml"
    cfg.write_text(
        f'system = "pendulum"\nout = "{out}"\nn_trajectories = 6\nn_times = 11\n'
        "t_end = 1.0\n[params]\nb = 0\n"
    )
    assert main(["generate", "--config", str(cfg), "--no-progress"]) == 0
    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert "/trajectories/states" in text and '"b": 0.0' in text and "complete: True" in text
    cfg.write_text('system = "pendulum"\nout = "x.h5"\nn_trajectoris = 6\n')
    assert main(["generate", "--config", str(cfg)]) == 2
    assert "unknown key 'n_trajectoris'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["generate", "pendulum", "--out", "x.h5", "--rtol", "0"], "rtol must be a positive"),
        (["generate", "pendulum", "--out", "x.h5", "--param", "b=-2"], "outside its range"),
        (["generate", "pendulum", "--out", "x.h5", "--param", "zeta=1"], "unknown parameter"),
        (["generate", "warp", "--out", "x.h5"], "unknown system 'warp'"),
        (["generate", "pendulum"], "--out FILE is required"),
        (["generate", "pendulum", "--out", "/no/such/dir/x.h5"], "does not exist"),
    ],
)
def test_generate_bad_input_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not any(p.suffix == ".h5" for p in tmp_path.iterdir())


def test_no_stray_files(tmp_path):
    generate(_req(tmp_path), progress=False)
    assert sorted(os.listdir(tmp_path)) == ["p.h5"]


def test_torch_datasets_open_lazily_per_worker(tmp_path):
    import torch
    from torch.utils.data import DataLoader

    from derlhybrid.data.torch_datasets import PointsDataset, TrajectoryPointsDataset

    path = generate(_req(tmp_path), progress=False)
    ds = TrajectoryPointsDataset(path, split="val")
    assert ds._file is None and len(ds) == 8 * 51
    t, y0, y, dy = ds[51 + 7]  # trajectory 1 of the split, time index 7
    with open_dataset(path) as h:
        j = h["splits/val"][1]
        np.testing.assert_array_equal(y.numpy(), h["trajectories/states"][j, 7])
        np.testing.assert_array_equal(y0.numpy(), h["trajectories/initial_states"][j])
        np.testing.assert_array_equal(dy.numpy(), h["trajectories/derivatives"][j, 7])
        assert t.item() == h["trajectories/t"][7]
    batches = list(DataLoader(ds, batch_size=64, num_workers=2))
    assert sum(b[0].shape[0] for b in batches) == len(ds)
    assert all(isinstance(b[2], torch.Tensor) for b in batches)

    pts = generate(
        GenerateRequest(system="allen-cahn", out=str(tmp_path / "a.h5"), n_points=50, seed=1),
        progress=False,
    )
    pds = PointsDataset(pts, split="test", with_hessian=True)
    x, u, jac, hes = pds[0]
    assert x.shape == (2,) and u.shape == (1,) and jac.shape == (1, 2) and hes.shape == (1, 2, 2)
    with pytest.raises(DatasetError, match="no split"):
        PointsDataset(pts, split="holdout")


def test_empirical_derivatives_converge_at_their_order(tmp_path):
    """Stored finite-difference estimates of dy/dt match the exact field to the order of
    the scheme (errors for n_t and 2 n_t − 1 saved times). Higher accuracies meet the floor
    set by the solver's own error (rtol 1e-10 divided by the time step, ~1e-7 here)."""
    errs = {}
    for scheme in ("forward:1", "central:2", "central:4"):
        for n_t in (101, 201):
            out = tmp_path / f"{scheme.replace(':', '')}_{n_t}.h5"
            generate(_req(tmp_path, out.name, n_times=n_t, empirical=scheme), progress=False)
            with open_dataset(out) as f:
                e = (
                    f["trajectories/empirical_derivatives"][...]
                    - f["trajectories/derivatives"][...]
                )
                errs[scheme, n_t] = np.abs(e).max()
    for scheme, order in (("forward:1", 1), ("central:2", 2), ("central:4", 4)):
        rate = np.log2(errs[scheme, 101] / errs[scheme, 201])
        assert abs(rate - order) < 0.35, (scheme, rate, errs)


def test_cubic_forward_samples_are_the_papers_and_chunk_invariant(tmp_path):
    a = generate(
        _req(tmp_path, "a.h5", empirical="cubic-forward", fd_step=1e-3, n_times=1001, t_end=10.0),
        progress=False,
    )
    b = generate(
        _req(
            tmp_path,
            "b.h5",
            empirical="cubic-forward",
            fd_step=1e-3,
            n_times=1001,
            t_end=10.0,
            chunk_trajectories=13,
        ),
        progress=False,
    )
    with open_dataset(a) as f, open_dataset(b) as g:
        tau = f["empirical/t"][...]
        assert tau.shape == (40, 1000) and tau.min() >= 0 and tau.max() < 10 - 1e-3
        np.testing.assert_array_equal(tau, g["empirical/t"][...])
        y, dy = f["empirical/states"][...], f["empirical/derivatives"][...]
        # forward difference of a smooth interpolant: O(h) away from the exact field
        exact = Pendulum().rhs(0.0, y)
        assert np.abs(dy - exact).max() < 5e-3
        assert np.abs(dy - exact).max() > 1e-6  # it is an estimate, not the exact field


def test_conformance_pendulum_generation(backend, tmp_path):
    """Every available backend generates the same trajectories (to the tolerance) as an
    independent SciPy DOP853 solve at 1e-13; the julia row skips where Julia is absent."""
    path = generate(_req(tmp_path, f"{backend}.h5", backend=backend), progress=False)
    sys = Pendulum()
    with open_dataset(path) as f:
        assert provenance(f)["backend"] == backend
        t, y0 = f["trajectories/t"][...], f["trajectories/initial_states"][...]
        states, derivs = f["trajectories/states"][...], f["trajectories/derivatives"][...]
    np.testing.assert_allclose(derivs, sys.rhs(0.0, states), atol=1e-14)
    _assert_matches_dop853(states, t, y0, (0, 21, 39))
