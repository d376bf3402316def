"""Issue 17, cases 1 and 3–7 and 10: what breaking the package on purpose found, each
case held to the promise of docs/reliability.md — a correct result, or one line and exit 2
with nothing that existed changed and nothing left that looks complete."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from derlhybrid.cli import main
from derlhybrid.data import DatasetError, open_dataset
from derlhybrid.data.generate import GenerateRequest, generate
from derlhybrid.data.store import DatasetWriter, lock_path, output_lock, partial_path
from derlhybrid.learn.problems import load_problem

SMALL = dict(n_trajectories=12, n_times=21, t_end=2.0, seed=3, chunk_trajectories=4)


def _req(tmp_path, name="p.h5", **kw):
    return GenerateRequest(system="pendulum", out=str(tmp_path / name), **{**SMALL, **kw})


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with its content hash (to show nothing changed)."""
    return {
        str(p.relative_to(folder)): _sha(p) if p.is_file() else "dir"
        for p in sorted(folder.rglob("*"))
    }


def _one_line_exit_2(capsys, argv) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("derl: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


# -- 1. two runs on one output ------------------------------------------------------------


def test_a_second_run_on_a_locked_output_stops_at_once(tmp_path, capsys):
    out = tmp_path / "p.h5"
    with output_lock(out):
        before = _snapshot(tmp_path)
        err = _one_line_exit_2(
            capsys, ["generate", "pendulum", "--out", str(out), "--n-trajectories", "4"]
        )
        assert "another run is writing" in err and str(os.getpid()) in err
        assert _snapshot(tmp_path) == before  # no work folder, no file
    assert not lock_path(out).exists()  # released and removed
    generate(_req(tmp_path), progress=False)  # the lock is free again


def test_two_concurrent_generations_one_stops_the_other_writes_a_whole_file(tmp_path, capsys):
    # the defect: run B truncated run A's temporary file; A renamed the damage into place
    out = tmp_path / "c.h5"
    kw = dict(n_trajectories=3000, n_times=201, seed=5, chunk_trajectories=100)
    code = (
        "from derlhybrid.data.generate import GenerateRequest, generate\n"
        f"generate(GenerateRequest(system='pendulum', out={str(out)!r}, **{kw!r}),"
        " progress=False)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + 120
    while time.time() < deadline and not any(partial_path(out).glob("*.done")):
        time.sleep(0.02)
    argv = ["generate", "pendulum", "--out", str(out), "--no-progress"]
    argv += [f"--{k.replace('_', '-')}={v}" for k, v in kw.items() if k != "chunk_trajectories"]
    err = _one_line_exit_2(capsys, argv)
    assert "another run is writing" in err
    assert proc.wait(timeout=300) == 0
    ref = generate(
        GenerateRequest(system="pendulum", out=str(tmp_path / "r.h5"), **kw), progress=False
    )
    with open_dataset(out) as f, open_dataset(ref) as g:
        np.testing.assert_array_equal(f["trajectories/states"][...], g["trajectories/states"][...])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.h5", "r.h5"]


def test_temporary_names_are_unique_and_stale_ones_go_under_the_lock(tmp_path):
    out = tmp_path / "w.h5"
    a = DatasetWriter(out, layout="points", attrs={}, config={})
    b = DatasetWriter(out, layout="points", attrs={}, config={})
    assert a.tmp != b.tmp and a.tmp.exists() and b.tmp.exists()
    a.create("x", None, data=np.arange(3.0))
    b.abort()  # the other writer's file was not truncated by b's creation nor removed
    assert a.finish() == out
    with h5py.File(out) as f:
        np.testing.assert_array_equal(f["x"][...], np.arange(3.0))
    stale = out.with_name("w.h5.123-deadbeef.writing")
    stale.write_bytes(b"left by a killed run")
    other = tmp_path / "w.h5x.1-00.writing"  # another output's: not touched
    other.write_bytes(b"")
    with output_lock(out):
        assert not stale.exists() and other.exists()


# -- 3. wrong types in a generate config --------------------------------------------------


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('overwrite = "false"', "generate.overwrite must be true or false, got 'false'"),
        ('allow_failures = "false"', "generate.allow_failures must be true or false"),
        ('n_trajectories = "20"', "generate.n_trajectories must be an integer, got '20'"),
        ("n_trajectories = 2.5", "generate.n_trajectories must be an integer, got 2.5"),
        ("seed = true", "generate.seed must be an integer, got True"),
        ('rtol = "1e-8"', "generate.rtol must be a number, got '1e-8' (a string) (write it"),
        ("split = [0.5, 0.5]", "generate.split must be a list of 3 numbers"),
        ("params = 3", "params must be a table ([params] name = value), got 3"),
    ],
)
def test_wrong_types_in_a_generate_config_change_nothing(tmp_path, capsys, line, message):
    out = tmp_path / "p.h5"
    generate(_req(tmp_path), progress=False)
    cfg = tmp_path / "gen.toml"
    cfg.write_text(f'system = "pendulum"\nout = "{out}"\nn_times = 11\n{line}\n')
    before = _snapshot(tmp_path)
    err = _one_line_exit_2(capsys, ["generate", "--config", str(cfg), "--no-progress"])
    assert message in err
    assert _snapshot(tmp_path) == before


def test_failed_trajectories_are_refused_unless_allowed_by_a_real_boolean(tmp_path, capsys):
    from derlhybrid.kernels import ode

    cfg = tmp_path / "gen.toml"
    body = f'system = "pendulum"\nout = "{tmp_path / "f.h5"}"\nn_trajectories = 4\n'
    body += 'n_times = 11\nt_end = 1.0\nallow_failures = "false"\n'
    cfg.write_text(body)
    real = ode.solve_ensemble

    def failing(*a, **kw):
        res = real(*a, **kw)
        res.status[1] = 2
        res.states[1] = np.nan
        return res

    mp = pytest.MonkeyPatch()
    mp.setattr(ode, "solve_ensemble", failing)
    try:
        _one_line_exit_2(capsys, ["generate", "--config", str(cfg), "--no-progress"])
        assert not (tmp_path / "f.h5").exists()
        cfg.write_text(body.replace('"false"', "false"))
        err = _one_line_exit_2(capsys, ["generate", "--config", str(cfg), "--no-progress"])
        assert "trajectory 1" in err and not (tmp_path / "f.h5").exists()
        cfg.write_text(body.replace('"false"', "true"))
        assert main(["generate", "--config", str(cfg), "--no-progress"]) == 0
    finally:
        mp.undo()
    # kept as NaN rows with their status, and left out when training reads the file
    problem = load_problem(tmp_path / "f.h5", form="state")
    n_train = len(problem.sets["train"])
    with h5py.File(tmp_path / "f.h5") as f:
        assert list(f["trajectories/status"][...]) == [0, 2, 0, 0]
        train = set(f["splits/train"][...].tolist())
    assert n_train == len(train - {1}) * 11


def test_seed_zero_is_seed_zero_with_the_paper_preset_and_huge_seeds_are_refused(tmp_path, capsys):
    from derlhybrid.data.store import provenance

    for seed, want in ((None, 30), (0, 0), (7, 7)):
        extra = [] if seed is None else ["--seed", str(seed)]
        out = tmp_path / f"p{seed}.h5"
        assert main(["generate", "pendulum", "--preset", "paper", "--out", str(out), *extra]) == 0
        with open_dataset(out) as f:
            assert provenance(f)["seed"] == want
    with open_dataset(tmp_path / "p0.h5") as a, open_dataset(tmp_path / "pNone.h5") as b:
        assert not np.array_equal(
            a["trajectories/initial_states"], b["trajectories/initial_states"]
        )
    capsys.readouterr()
    before = _snapshot(tmp_path)
    err = _one_line_exit_2(
        capsys, ["generate", "pendulum", "--out", str(tmp_path / "s.h5"), "--seed", str(2**64)]
    )
    assert "seed must be an integer in [0, 2**63)" in err
    err = _one_line_exit_2(
        capsys,
        ["generate", "pendulum", "--preset", "paper", "--seed", str(2**40), "--out", "s.h5"],
    )
    assert "below 2**32" in err
    assert _snapshot(tmp_path) == before


# -- 4. NaN in a dataset ------------------------------------------------------------------


def test_nan_in_a_dataset_is_named_with_its_row_when_loaded(tmp_path, capsys):
    path = generate(_req(tmp_path), progress=False)
    with h5py.File(path, "r+") as f:
        train = np.sort(f["splits/train"][...])
        f["trajectories/derivatives"][train[2], 5, 1] = np.nan
    with pytest.raises(DatasetError) as e:
        load_problem(path, form="state")
    msg = str(e.value)
    assert str(path) in msg and "/trajectories/derivatives" in msg
    assert f"trajectory {train[2]}" in msg and "nan" in msg
    cfg = tmp_path / "t.toml"
    cfg.write_text(
        f'[data]\npath = "{path}"\nform = "state"\n[model]\nwidth = 4\ndepth = 1\n'
        '[objective]\nmode = "derl"\n[train]\nepochs = 1\nprogress = false\n'
    )
    err = _one_line_exit_2(capsys, ["train", str(cfg), "--out", str(tmp_path / "run")])
    assert "/trajectories/derivatives" in err and f"trajectory {train[2]}" in err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_nan_in_point_and_grid_files_is_named(tmp_path):
    pts = generate(
        GenerateRequest(system="allen-cahn", out=str(tmp_path / "a.h5"), n_points=50),
        progress=False,
    )
    with h5py.File(pts, "r+") as f:
        f["points/jacobian"][17, 0, 1] = np.inf
    with pytest.raises(
        DatasetError, match=r"/points/jacobian holds a non-finite value \(inf\) in row 17"
    ):
        load_problem(pts)
    grid = generate(
        GenerateRequest(system="kdv", out=str(tmp_path / "k.h5"), n_points=16, n_times=5),
        progress=False,
    )
    with h5py.File(grid, "r+") as f:
        f["fields/u"][3, 4] = np.nan
    with pytest.raises(
        DatasetError, match=r"/fields/u holds a non-finite value \(nan\) in frame 3"
    ):
        load_problem(grid)


def test_evaluate_says_when_metrics_are_not_finite(tmp_path, capsys, monkeypatch):
    ev = sys.modules["derlhybrid.learn.evaluate"]
    monkeypatch.setattr(
        ev, "evaluate", lambda *a, **k: {"metrics": {"trajectory": {"mean": float("nan")}}}
    )
    out = tmp_path / "m.json"
    assert main(["evaluate", "c.pt", "d.h5", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "warning: 1 value(s) are not finite" in err and "metrics/trajectory/mean" in err
    assert json.loads(out.read_text())["non_finite"] == ["metrics/trajectory/mean"]


# -- 5. --overwrite and resume ------------------------------------------------------------


def _interrupt_at_call(monkeypatch, n: int) -> list:
    from derlhybrid.kernels import ode

    real, calls = ode.solve_ensemble, []

    def flaky(*a, **kw):
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(ode, "solve_ensemble", flaky)
    return calls  # (clear it to count again; n counts from the last clear)


def test_overwrite_resumes_its_own_work_and_wipes_only_another_requests(tmp_path, monkeypatch):
    ref = generate(_req(tmp_path, "ref.h5"), progress=False)
    out = tmp_path / "p.h5"
    generate(_req(tmp_path, seed=1), progress=False)  # an older file to be replaced
    calls = _interrupt_at_call(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        generate(_req(tmp_path, overwrite=True), progress=False)
    assert len(list(partial_path(out).glob("*.done"))) == 2
    with open_dataset(out) as f:  # the old file is untouched until the new one is whole
        assert f.attrs["seed"] == 1
    calls.clear()
    generate(_req(tmp_path, overwrite=True), progress=False)  # the same killed command
    assert len(calls) == 1  # chunk 3 of 3 only: chunks 1 and 2 were kept
    with open_dataset(out) as f, open_dataset(ref) as g:
        np.testing.assert_array_equal(f["trajectories/states"][...], g["trajectories/states"][...])
    # a different request's unfinished work is what --overwrite replaces
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        generate(_req(tmp_path, "q.h5", seed=4), progress=False)
    calls.clear()
    with pytest.raises(DatasetError, match="different request"):
        generate(_req(tmp_path, "q.h5", seed=5), progress=False)
    calls.extend(["past the interruption"] * 3)  # counts from 4 on: no interruption
    generate(_req(tmp_path, "q.h5", seed=5, overwrite=True), progress=False)
    assert len(calls) == 3 + 3 and not partial_path(tmp_path / "q.h5").exists()


# -- 6. a failed run leaves nothing that blocks the next ----------------------------------


def test_a_run_that_fails_before_any_chunk_leaves_no_work_folder(tmp_path, capsys, monkeypatch):
    from derlhybrid.kernels import ode

    real = ode.solve_ensemble

    def failing(*a, **kw):
        res = real(*a, **kw)
        res.status[0] = 2
        return res

    monkeypatch.setattr(ode, "solve_ensemble", failing)
    with pytest.raises(DatasetError, match="trajectory 0"):
        generate(_req(tmp_path), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    monkeypatch.setattr(ode, "solve_ensemble", real)
    generate(_req(tmp_path, seed=8), progress=False)  # a different request is not blocked


@pytest.mark.parametrize(
    "argv",
    [
        ["pendulum", "--n-trajectories", "4", "--n-times", "11", "--empirical", "central:3"],
        ["pendulum", "--n-trajectories", "4", "--empirical", "forward:0"],
        ["kdv", "--n-points", "3"],
        ["continuity", "--method", "spectral"],
        ["kdv", "--empirical", "cubic-forward"],
    ],
)
def test_requests_refused_before_the_work_folder_exists(tmp_path, capsys, argv):
    _one_line_exit_2(capsys, ["generate", *argv, "--out", str(tmp_path / "x.h5")])
    assert list(tmp_path.iterdir()) == []


# -- 7. one line, exit 2 instead of a traceback -------------------------------------------


@pytest.fixture
def trained(tmp_path_factory):
    """A small pendulum file and a one-epoch checkpoint trained on it."""
    tmp = tmp_path_factory.mktemp("trained")
    path = generate(_req(tmp), progress=False)
    cfg = tmp / "t.toml"
    cfg.write_text(
        f'[data]\npath = "{path}"\nform = "state"\n[model]\nwidth = 4\ndepth = 1\n'
        '[objective]\nmode = "derl"\n[train]\nepochs = 1\nprogress = false\n'
    )
    assert main(["train", str(cfg), "--out", str(tmp / "run")]) == 0
    return path, tmp / "run" / "checkpoint.pt", cfg


def _copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())
    return dst


def _evaluate_and_train(capsys, data, ckpt, cfg, tmp_path, match):
    err = _one_line_exit_2(capsys, ["evaluate", str(ckpt), str(data)])
    assert match in err, err
    cfg2 = tmp_path / "t2.toml"
    cfg2.write_text(cfg.read_text().replace(str(cfg.parent / "p.h5"), str(data)))
    err = _one_line_exit_2(capsys, ["train", str(cfg2), "--out", str(tmp_path / "r2")])
    assert match in err, err
    assert not (tmp_path / "r2" / "checkpoint.pt").exists()


def test_split_indices_out_of_range(trained, tmp_path, capsys):
    data, ckpt, cfg = trained
    bad = _copy(data, tmp_path / "p.h5")
    with h5py.File(bad, "r+") as f:
        idx = f["splits/test"][...]
        idx[0] = 99
        del f["splits/test"]
        f["splits/test"] = idx
    _evaluate_and_train(capsys, bad, ckpt, cfg, tmp_path, "/splits/test holds index 99")


def test_a_file_marked_complete_with_a_dataset_missing(trained, tmp_path, capsys):
    data, ckpt, cfg = trained
    bad = _copy(data, tmp_path / "p.h5")
    with h5py.File(bad, "r+") as f:
        del f["trajectories/states"]
    _evaluate_and_train(capsys, bad, ckpt, cfg, tmp_path, "lacks a dataset")


def test_a_damaged_hdf5_body(trained, tmp_path, capsys):
    data, ckpt, cfg = trained
    bad = _copy(data, tmp_path / "p.h5")
    with h5py.File(data) as f:  # overwrite the stored chunks of the states with garbage
        ds = f["trajectories/states"]
        offsets = [ds.id.get_chunk_info(i).byte_offset for i in range(ds.id.get_num_chunks())]
    raw = bytearray(bad.read_bytes())
    for off in offsets:
        raw[off : off + 64] = b"\xff" * 64
    bad.write_bytes(bytes(raw))
    _evaluate_and_train(capsys, bad, ckpt, cfg, tmp_path, str(bad))


def test_a_truncated_hdf5_file(trained, tmp_path, capsys):
    data, ckpt, cfg = trained
    bad = tmp_path / "p.h5"
    bad.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    _evaluate_and_train(capsys, bad, ckpt, cfg, tmp_path, str(bad))


def _read_only_folder() -> Path | None:
    """A folder where even root cannot create files (sysfs), or None."""
    for folder in (Path("/sys"), Path("/proc")):
        try:
            (folder / "derl-probe").touch()
        except OSError:
            return folder
        (folder / "derl-probe").unlink()  # pragma: no cover
    return None  # pragma: no cover


READ_ONLY = _read_only_folder()


@pytest.mark.skipif(READ_ONLY is None, reason="no folder here refuses root's writes")
def test_read_only_output_folders(trained, tmp_path, capsys):
    data, ckpt, cfg = trained
    err = _one_line_exit_2(capsys, ["generate", "pendulum", "--out", str(READ_ONLY / "x.h5")])
    assert str(READ_ONLY / "x.h5") in err and "writable" in err
    assert not list(READ_ONLY.glob("x.h5*"))
    err = _one_line_exit_2(capsys, ["train", str(cfg), "--out", str(READ_ONLY / "run")])
    assert str(READ_ONLY / "run") in err
    err = _one_line_exit_2(
        capsys, ["evaluate", str(ckpt), str(data), "--out", str(READ_ONLY / "m.json")]
    )
    assert str(READ_ONLY) in err


def test_permission_lost_mid_run(trained, tmp_path, capsys, monkeypatch):
    # root ignores file modes, so the loss is injected where the run writes its epoch record
    from derlhybrid.learn import trainer

    _, _, cfg = trained
    real = trainer.save_checkpoint

    def lost(path, payload):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(trainer, "save_checkpoint", lost)
    err = _one_line_exit_2(capsys, ["train", str(cfg), "--out", str(tmp_path / "r")])
    assert "permission denied" in err and "checkpoint.pt" in err
    monkeypatch.setattr(trainer, "save_checkpoint", real)


# -- 10. reproduce never deletes a file it cannot read ------------------------------------


def test_reproduce_keeps_a_dataset_it_cannot_read(tmp_path):
    from derlhybrid.experiments.execute import ensure_dataset
    from derlhybrid.experiments.plan import dataset_path
    from derlhybrid.experiments.spec import ReproduceError

    request = {"system": "pendulum", "n_trajectories": 4, "n_times": 11}
    path = dataset_path(tmp_path, "d", request)
    path.parent.mkdir()
    path.write_bytes(b"not an HDF5 file, but somebody's")
    with pytest.raises(ReproduceError, match=f"delete {path}"):
        ensure_dataset(tmp_path, "d", request, progress=False)
    assert path.read_bytes() == b"not an HDF5 file, but somebody's"


# -- one run per output: train, stages and reproduce too ----------------------------------


def test_train_stages_and_reproduce_refuse_an_output_another_run_holds(trained, tmp_path, capsys):
    from derlhybrid._io import exclusive_lock

    _, _, cfg = trained
    run = tmp_path / "run"
    with exclusive_lock(run):
        err = _one_line_exit_2(capsys, ["train", str(cfg), "--out", str(run)])
        assert "another run is writing" in err and not run.exists()
    pipe = tmp_path / "pipe.toml"
    pipe.write_text(
        "[defaults]\nmodel = { width = 4, depth = 1 }\ntrain = { epochs = 1, progress = false }\n"
        f'[[stages]]\nname = "a"\ndata = {{ path = "{trained[0]}", form = "state" }}\n'
    )
    with exclusive_lock(tmp_path / "st"):
        err = _one_line_exit_2(capsys, ["stages", str(pipe), "--out", str(tmp_path / "st")])
        assert "another run is writing" in err and not (tmp_path / "st").exists()
    rep = tmp_path / "rep"
    rep.mkdir()
    with exclusive_lock(rep):
        argv = ["reproduce", "pendulum", "--smoke", "--out", str(rep), "--no-progress"]
        err = _one_line_exit_2(capsys, argv)
        assert "another run is writing" in err and list(rep.iterdir()) == []
    assert main(["train", str(cfg), "--out", str(run)]) == 0  # released: free again


def test_a_grid_resume_with_other_windows_is_refused(tmp_path, monkeypatch):
    # the windows are part of the work's identity: frames of one split must not be stitched
    # into another (a resume after GRID_BYTES changed)
    from derlhybrid.data import grid as grid_mod
    from derlhybrid.kernels import pde

    req = GenerateRequest(
        system="continuity", out=str(tmp_path / "c.h5"), n_points=31, n_times=21, seed=0
    )
    monkeypatch.setattr(grid_mod, "GRID_BYTES", 8 * 31 * 31 * 4 * 4)  # windows of 4 frames
    real, calls = pde.solve_continuity, []

    def interrupted(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(pde, "solve_continuity", interrupted)
    with pytest.raises(KeyboardInterrupt):
        generate(req, progress=False)
    monkeypatch.setattr(pde, "solve_continuity", real)
    monkeypatch.setattr(grid_mod, "GRID_BYTES", 8 * 31 * 31 * 4 * 6)  # other windows
    with pytest.raises(DatasetError, match="different request"):
        generate(req, progress=False)
    monkeypatch.setattr(grid_mod, "GRID_BYTES", 8 * 31 * 31 * 4 * 4)  # the same: resumes
    generate(req, progress=False)
    with open_dataset(req.out) as f:
        assert f["fields/rho"].shape == (21, 31, 31)


def test_a_typo_in_a_reproduce_spec_fails_before_any_data_exist(tmp_path, capsys):
    # a misspelt training key used to surface only after the data were generated
    spec = tmp_path / "typo.toml"
    spec.write_text(
        'name = "typo"\ntitle = "t"\nsection = "s"\n'
        '[datasets.d]\nsystem = "pendulum"\nn_trajectories = 4\nn_times = 11\n'
        "[defaults]\nmodel = { width = 4, depth = 1 }\ntrain = { epochs = 1 }\n"
        '[[groups]]\nname = "g"\nlabel = "g"\ndataset = "d"\n[groups.modes]\n'
        "derl = { weights = { sys = 1.0 }, train = { epocs = 3 } }\n"
        '[[columns]]\nkey = "trajectory"\ntitle = "trajectory error"\n'
        'path = "metrics.trajectory.mean"\n'
    )
    out = tmp_path / "out"
    err = _one_line_exit_2(capsys, ["reproduce", str(spec), "--out", str(out), "--no-progress"])
    assert "g-derl-s30" in err and "epocs" in err
    assert not (out / "data").exists() and not (out / "runs").exists()


def test_a_typo_in_a_pipeline_stage_fails_before_any_data_exist(tmp_path, capsys):
    # stage tables of a kind = "stages" group are read by Pipeline when the pipeline starts,
    # after the data exist; reproduce now parses them first (issue 16)
    from derlhybrid.experiments.runner import SPECS

    text = (SPECS / "allen-cahn-transfer-space.toml").read_text()
    line = 'derl = { label = "DERL", distill = "derivative", inits = ["new", "extend"] }'
    assert line in text
    spec = tmp_path / "stage-typo.toml"
    spec.write_text(text.replace(line, line[:-2] + ", stage = { train = { epocs = 3 } } }"))
    out = tmp_path / "out"
    err = _one_line_exit_2(
        capsys, ["reproduce", str(spec), "--smoke", "--out", str(out), "--no-progress"]
    )
    assert "space-derl-new-s30" in err and "epocs" in err
    assert not (out / "data").exists() and not (out / "runs").exists()
