"""``derl import``: CSV, .npy, .npz, HDF5 trajectories and a PDEBench-layout file into our
schema, read back by the trainer; provenance; bad input is one line, exit 2, nothing
written."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from derlhybrid.cli import main
from derlhybrid.data import open_dataset, provenance
from derlhybrid.data.importing import TrajectoryImport, import_pdebench, import_trajectories
from derlhybrid.learn.problems import load_problem


def theta(t, k):
    return 0.3 * np.sin(t + k)


def omega(t, k):
    return 0.3 * np.cos(t + k)


def write_csv(path: Path, n_traj=5, n_t=60, t_end=3.0, irregular=False, seed=0):
    rng = np.random.default_rng(seed)
    lines = ["run,time,angle,rate"]
    for k in range(n_traj):
        t = np.linspace(0.5, 0.5 + t_end, n_t)
        if irregular:
            t = np.sort(rng.uniform(0.5, 0.5 + t_end, n_t))
        for ti in t:
            lines.append(f"r{k},{float(ti)!r},{float(theta(ti, k))!r},{float(omega(ti, k))!r}")
    path.write_text("\n".join(lines) + "\n")
    return path


def csv_request(src, out, **kw):
    base = dict(
        sources=(str(src),),
        out=str(out),
        system="pendulum",
        time="time",
        columns=("angle", "rate"),
        trajectory="run",
        units={"time": "s", "angle": "rad"},
    )
    return TrajectoryImport(**{**base, **kw})


def test_csv_with_a_trajectory_column(tmp_path):
    src = write_csv(tmp_path / "m.csv")
    out = import_trajectories(csv_request(src, tmp_path / "m.h5", seed=7))
    with open_dataset(out, layout="trajectories") as f:
        prov = provenance(f)
        t = f["trajectories/t"][...]
        y = f["trajectories/states"][...]
        dy = f["trajectories/derivatives"][...]
        off = f["trajectories/t_offset"][...]
        np.testing.assert_array_equal(f["trajectories/initial_states"][...], y[:, 0])
        splits = {k: f[f"splits/{k}"][...] for k in f["splits"]}
    assert t.shape == (60,) and t[0] == 0.0  # shared times, shifted to start at 0
    np.testing.assert_allclose(off, 0.5)
    tt = t + 0.5
    for k in range(5):  # the values of the CSV, in the system's state order
        np.testing.assert_allclose(y[k, :, 0], theta(tt, k), rtol=0, atol=1e-15)
        np.testing.assert_allclose(y[k, :, 1], omega(tt, k), rtol=0, atol=1e-15)
        # central differences of exact samples: O(h²) from d/dt sin = cos
        np.testing.assert_allclose(dy[k, 1:-1, 0], omega(tt, k)[1:-1], atol=3e-4)
    gen = prov["generator"]
    (source,) = gen["sources"]
    assert source["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert source["columns"] == {"theta": "angle", "omega": "rate", "trajectory": "run"}
    assert gen["units"] == {"time": "s", "angle": "rad"}
    assert gen["derivatives"]["spec"] == "central:2"
    assert gen["split"] == {"fractions": [0.6, 0.2, 0.2], "seed": 7, "by": "trajectory"}
    # splits by trajectory, seeded: a partition, reproducible, another seed another one
    assert sorted(np.concatenate(list(splits.values())).tolist()) == list(range(5))
    again = import_trajectories(csv_request(src, tmp_path / "m2.h5", seed=7))
    other = import_trajectories(csv_request(src, tmp_path / "m3.h5", seed=8))
    with h5py.File(again) as f, h5py.File(other) as g:
        assert all(np.array_equal(f[f"splits/{k}"], splits[k]) for k in splits)
        assert not all(np.array_equal(g[f"splits/{k}"], splits[k]) for k in splits)
    # the trainer reads it: flow-map rows (t, θ0, ω0) with the estimated derivatives
    p = load_problem(out, form="state")
    assert p.inputs == ("t", "theta0", "omega0")
    assert len(p.sets["train"]) == 60 * len(splits["train"])


def test_one_file_per_trajectory_with_irregular_times(tmp_path):
    rng = np.random.default_rng(1)
    srcs = []
    for k in range(3):
        t = np.sort(rng.uniform(0, 4, 80))
        p = tmp_path / f"traj{k}.csv"
        p.write_text(
            "t,theta,omega\n"
            + "".join(f"{float(a)!r},{float(theta(a, k))!r},{float(omega(a, k))!r}\n" for a in t)
        )
        srcs.append(str(p))
    out = import_trajectories(
        TrajectoryImport(
            sources=tuple(srcs),
            out=str(tmp_path / "i.h5"),
            system="pendulum",
            derivatives="spline:s=0",
        )
        if _has_pynumdiff()
        else TrajectoryImport(sources=tuple(srcs), out=str(tmp_path / "i.h5"), system="pendulum")
    )
    with open_dataset(out) as f:
        t = f["trajectories/t"][...]
        off = f["trajectories/t_offset"][...]
        dy = f["trajectories/derivatives"][...]
        assert json.loads(f.attrs["generator"])["times"] == "per trajectory (irregular)"
    assert t.shape == (3, 80) and np.all(t[:, 0] == 0)
    for k in range(3):
        tt = t[k] + off[k]
        np.testing.assert_allclose(dy[k, 3:-3, 0], omega(tt, k)[3:-3], atol=2e-3)
    p = load_problem(out, form="state")  # a time row per trajectory
    X = p.sets["train"].X.numpy()
    assert len(np.unique(X[:, 0])) > 80


def _has_pynumdiff():
    try:
        import pynumdiff  # noqa: F401
    except ImportError:
        return False
    return True


def test_npy_npz_and_hdf5_layouts_agree(tmp_path):
    t = np.linspace(0, 2, 50)
    y = np.stack([np.stack([theta(t, k), omega(t, k)], -1) for k in range(4)])  # (4, 50, 2)
    np.save(tmp_path / "a.npy", np.concatenate([np.broadcast_to(t, (4, 50))[..., None], y], -1))
    np.savez(tmp_path / "b.npz", time=t, Y=y)
    with h5py.File(tmp_path / "c.h5", "w") as f:  # another layout: groups, one array per state
        f["exp/time"] = np.broadcast_to(t, (4, 50))
        f["exp/th"] = y[..., 0]
        f["exp/om"] = y[..., 1]
    outs = [
        import_trajectories(
            TrajectoryImport(("%s" % (tmp_path / "a.npy"),), str(tmp_path / "A.h5"), "pendulum")
        ),
        import_trajectories(
            TrajectoryImport(
                (str(tmp_path / "b.npz"),),
                str(tmp_path / "B.h5"),
                "pendulum",
                time="time",
                states="Y",
            )
        ),
        import_trajectories(
            TrajectoryImport(
                (str(tmp_path / "c.h5"),),
                str(tmp_path / "C.h5"),
                "pendulum",
                time="/exp/time",
                columns=("/exp/th", "/exp/om"),
            )
        ),
    ]
    arrays = []
    for o in outs:
        with open_dataset(o) as f:
            arrays.append((f["trajectories/states"][...], f["trajectories/derivatives"][...]))
    for s, d in arrays[1:]:
        np.testing.assert_array_equal(s, arrays[0][0])
        np.testing.assert_array_equal(d, arrays[0][1])
    np.testing.assert_array_equal(arrays[0][0], y)


BAD = [
    ("time,theta,omega\n0,1,2\n0.1,1\n0.2,1,2\n", "row 3 has 2 fields"),
    ("time,theta,omega\n0,1,2\n0.2,1,2\n0.1,1,2\n", "not strictly increasing at row 4"),
    ("time,theta,omega\n0,1,2\n0.1,nan,2\n0.2,1,2\n", "column 'theta' holds nan at row 3"),
    ("time,theta,omega\n0,1,2\n0.1,x,2\n0.2,1,2\n", "row 3, column 'theta': 'x' is not a number"),
    ("time,theta\n0,1\n0.1,1\n0.2,1\n", "no state column 'omega'"),
]


@pytest.mark.parametrize("text,msg", BAD)
def test_bad_csv_is_one_line_exit_2_nothing_written(tmp_path, capsys, text, msg):
    src = tmp_path / "bad.csv"
    src.write_text(text)
    out = tmp_path / "o.h5"
    rc = main(["import", str(src), "--system", "pendulum", "--time", "time", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and str(src) in err and msg in err, err
    assert not out.exists() and not list(tmp_path.glob("o.h5*"))


def test_mismatched_shapes_and_bad_options(tmp_path, capsys):
    np.savez(tmp_path / "s.npz", t=np.linspace(0, 1, 10), theta=np.zeros(10), omega=np.zeros(9))
    rc = main(
        ["import", str(tmp_path / "s.npz"), "--system", "pendulum", "--out", str(tmp_path / "o.h5")]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "column 'omega' has shape (9,)" in err and "mismatched" in err
    src = write_csv(tmp_path / "m.csv", n_traj=2, n_t=10)
    for argv, msg in (
        (["--derivatives", "kalmann"], "unknown derivative estimator"),
        (["--system", "kdv"], "not an ODE system"),
        (["--split", "0.5", "0.5", "0.5"], "--split"),
    ):
        base = ["import", str(src), "--time", "time", "--columns", "angle,rate"]
        base += ["--trajectory-column", "run", "--out", str(tmp_path / "x.h5")]
        if "--system" not in argv:
            base += ["--system", "pendulum"]
        assert main(base + argv) == 2
        assert msg in capsys.readouterr().err
        assert not (tmp_path / "x.h5").exists()


# ---------------------------------------------------------------------------------------------
# PDEBench: a small file written as PDEBench's generator writes its 1-D advection data
# (Data_Merge.py transform(): tensor (N, n_t, n_x) float32, x-coordinate = the cell centres
# xe[:-1] + dx/2 of [xL, xR], t-coordinate = arange(n_t + 1) * dt_save, attribute beta)


def write_pdebench_advection(path, beta=0.4, n=3, nx=128, nt=21, dt_save=0.05):
    dx = 1.0 / nx
    xc = np.linspace(0.0, 1.0, nx + 1)[:-1] + 0.5 * dx
    tc = np.arange(nt + 1) * dt_save
    k = np.arange(n)[:, None, None]
    phase = 2 * np.pi * (xc[None, None, :] - beta * tc[None, :nt, None])
    u = (np.sin(phase + k) + 0.3 * np.cos(2 * phase)).astype(np.float32)
    with h5py.File(path, "w") as f:
        f.create_dataset("tensor", data=u)
        f.create_dataset("x-coordinate", data=xc.astype(np.float32))
        f.create_dataset("t-coordinate", data=tc.astype(np.float32))
        f.attrs["beta"] = beta
    return u, xc, tc


def test_pdebench_advection_file(tmp_path):
    src = tmp_path / "1D_Advection_Sols_beta0.4.hdf5"
    u, xc, tc = write_pdebench_advection(src)
    out = tmp_path / "adv.h5"
    rc = main(
        ["import", str(src), "--out", str(out), "--sample", "1", "--derivatives", "central:4"]
    )
    assert rc == 0
    with open_dataset(out, layout="grid") as f:
        prov = provenance(f)
        np.testing.assert_array_equal(f["fields/u"][...], u[1].astype(np.float64))
        t = f["grid/t"][...]
        x = f["grid/x"][...]
        assert f["grid/x"].attrs["periodic"]
        ux, ut = f["derivatives/u_x"][...], f["derivatives/u_t"][...]
    np.testing.assert_allclose(t, tc[:-1].astype(np.float32), rtol=0)  # n_t of the n_t + 1
    np.testing.assert_allclose(x, xc.astype(np.float32))
    assert prov["system"] == "advection"
    sp = prov["system_parameters"]
    assert sp["beta"] == pytest.approx(0.4) and sp["x_min"] == pytest.approx(0, abs=1e-6)
    assert sp["x_max"] == pytest.approx(1, abs=1e-6)
    assert prov["generator"]["sources"][0]["sample"] == 1
    # against the exact derivatives of the advected profile (periodic in x, one-sided in t)
    phase = 2 * np.pi * (x[None] - 0.4 * t[:, None])
    ux_exact = 2 * np.pi * (np.cos(phase + 1) - 0.6 * np.sin(2 * phase))
    np.testing.assert_allclose(ux, ux_exact, atol=2e-3 * np.abs(ux_exact).max())
    np.testing.assert_allclose(ut, -0.4 * ux_exact, atol=2e-2 * np.abs(ux_exact).max())
    # the trainer reads it, with periodic pairs and the PDE residual
    p = load_problem(out)
    assert p.inputs == ("t", "x") and p.periodic is not None
    assert len(p.sets["train"]) == u.shape[1] * u.shape[2]
    cfg = tmp_path / "t.toml"
    cfg.write_text(
        f'[data]\npath = "{out}"\n[model]\nwidth = 8\ndepth = 2\n'
        '[objective]\nmode = "derl"\n[train]\nepochs = 1\nbatch_size = 512\n'
    )
    assert main(["train", str(cfg), "--out", str(tmp_path / "run"), "--no-progress"]) == 0


def test_pdebench_burgers_attributes_and_bad_files(tmp_path, capsys):
    src = tmp_path / "b.hdf5"
    with h5py.File(src, "w") as f:
        f["tensor"] = np.zeros((2, 5, 16), dtype=np.float32)
        f["x-coordinate"] = (np.arange(16) / 8 - 1 + 1 / 16).astype(np.float32)
        f["t-coordinate"] = np.arange(6, dtype=np.float32) * 0.1
        f.attrs["Nu"] = 0.01
    out = import_pdebench(src, tmp_path / "b.h5")
    with open_dataset(out) as f:
        prov = provenance(f)
    assert prov["system"] == "burgers" and prov["system_parameters"]["nu"] == pytest.approx(0.01)
    assert prov["system_parameters"]["x_min"] == pytest.approx(-1.0)
    # a t-coordinate that fits neither n_t nor n_t + 1; NaN in the field; a missing dataset
    with h5py.File(src, "a") as f:
        del f["t-coordinate"]
        f["t-coordinate"] = np.arange(9, dtype=np.float32)
    assert main(["import", str(src), "--out", str(tmp_path / "x.h5")]) == 2
    assert "t-coordinate has shape (9,)" in capsys.readouterr().err
    with h5py.File(src, "a") as f:
        del f["t-coordinate"]
        f["t-coordinate"] = np.arange(6, dtype=np.float32)
        f["tensor"][0, 3, 7] = np.nan
    assert main(["import", str(src), "--format", "pdebench", "--out", str(tmp_path / "x.h5")]) == 2
    assert "frame 3, point 7" in capsys.readouterr().err
    with h5py.File(src, "a") as f:
        del f["x-coordinate"]
    assert main(["import", str(src), "--format", "pdebench", "--out", str(tmp_path / "x.h5")]) == 2
    assert "no dataset 'x-coordinate'" in capsys.readouterr().err
    assert not (tmp_path / "x.h5").exists()


def test_csv_trains(tmp_path):
    src = write_csv(tmp_path / "m.csv")
    out = tmp_path / "m.h5"
    assert (
        main(
            [
                "import",
                str(src),
                "--system",
                "pendulum",
                "--time",
                "time",
                "--columns",
                "angle,rate",
                "--trajectory-column",
                "run",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    cfg = tmp_path / "t.toml"
    cfg.write_text(
        f'[data]\npath = "{out}"\nform = "state"\n[model]\nwidth = 8\ndepth = 2\n'
        '[objective]\nmode = "sob"\n[train]\nepochs = 1\nbatch_size = 256\n'
    )
    assert main(["train", str(cfg), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    assert (tmp_path / "run" / "checkpoint.pt").exists()
