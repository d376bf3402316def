"""Scale-out on a small local Ray instance that these tests start and stop: sharded
generation equals the single-process file bit for bit, a shard killed mid-way resumes,
finished shards are skipped, and a sweep of a few trials completes and picks the best."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

ray = pytest.importorskip(
    "ray", reason='Ray is an optional extra: pip install "derlhybrid[ray]" to run these'
)
pytest.importorskip("ray.tune", reason='Ray Tune missing: pip install "derlhybrid[ray]"')

from derlhybrid.cli import main  # noqa: E402
from derlhybrid.data import DatasetError, open_dataset, provenance  # noqa: E402
from derlhybrid.data.generate import GenerateRequest, generate  # noqa: E402
from derlhybrid.learn.config import TrainConfig  # noqa: E402
from derlhybrid.learn.problems import StreamPolicy, load_problem  # noqa: E402
from derlhybrid.scale import RayEngine, SweepConfig, generate_sharded, sweep  # noqa: E402
from derlhybrid.scale.ray_generate import shard_folder, shard_name  # noqa: E402
from derlhybrid.scale.sweep import METRICS_LOG, SweepInterrupted, run_trial  # noqa: E402

SMALL = dict(system="pendulum", n_trajectories=37, n_times=41, t_end=3.0, seed=4)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _datasets(f) -> dict:
    out = {}
    f.visititems(lambda name, obj: out.setdefault(name, obj) if hasattr(obj, "shape") else None)
    return out


def _assert_same_file(ref, other, *, virtual: bool):
    """Every dataset equal in dtype, shape, values (NaN = NaN) and attributes; the root
    attributes equal but for the creation time and the shard map."""
    with open_dataset(ref) as f, open_dataset(other) as g:
        a, b = _datasets(f), _datasets(g)
        assert sorted(a) == sorted(b)
        for name in a:
            assert a[name].dtype == b[name].dtype, name
            np.testing.assert_array_equal(a[name][...], b[name][...], err_msg=name)
            assert a[name].attrs.keys() == b[name].attrs.keys(), name
            for k in a[name].attrs:
                np.testing.assert_array_equal(a[name].attrs[k], b[name].attrs[k])
            per_row = name.startswith(("trajectories/", "empirical/")) and a[name].shape[0] == 37
            assert b[name].is_virtual == (virtual and per_row), name
            if not b[name].is_virtual:
                assert (
                    b[name].chunks == a[name].chunks and b[name].compression == a[name].compression
                )
        pa, pb = provenance(f), provenance(g)
        assert ("shards" in pb) == virtual
        for k in ("created", "shards"):
            pa.pop(k, None)
            pb.pop(k, None)
        assert pa == pb  # same config, config_hash, generator, seed, backend...


@pytest.mark.parametrize(
    ("extra", "engine"),
    [
        (
            dict(empirical="cubic-forward", n_empirical_samples=20, chunk_trajectories=8),
            dict(shards=3),
        ),
        (dict(empirical="central:4", dtype="float32"), dict(shards=2, consolidate=True)),
    ],
    ids=["virtual-3-shards", "consolidated-2-shards"],
)
def test_sharded_equals_single_process_bit_for_bit(local_ray, tmp_path, extra, engine):
    ref = generate(GenerateRequest(out=str(tmp_path / "ref.h5"), **SMALL, **extra), progress=False)
    req = GenerateRequest(out=str(tmp_path / "p.h5"), **SMALL, **extra)
    out = generate_sharded(req, RayEngine(workers=2, **engine), progress=False)
    virtual = not engine.get("consolidate")
    _assert_same_file(ref, out, virtual=virtual)
    assert shard_folder(out).is_dir() == virtual
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["ref.h5", "p.h5"] + (["p.h5.shards"] if virtual else [])
    )  # no work areas or temporary files left
    # the training loader reads the stitched file as it reads the single-process one,
    # loaded or streamed block by block
    pa, pb = load_problem(ref), load_problem(out)
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(pa.sets[split].X.numpy(), pb.sets[split].X.numpy())
        for k, v in pa.sets[split].targets.items():
            np.testing.assert_array_equal(v.numpy(), pb.sets[split].targets[k].numpy())
    streamed = load_problem(out, stream=StreamPolicy("always", block_mb=0.01)).sets["train"]
    assert streamed.n_blocks > 1
    X = np.concatenate([b.X.numpy() for b in streamed.blocks()])
    np.testing.assert_array_equal(X, pa.sets["train"].X.numpy())


def test_stitched_file_needs_its_shards_and_shards_are_not_datasets(local_ray, tmp_path, capsys):
    out = tmp_path / "p.h5"
    argv = ["generate", "pendulum", "--out", str(out), "--n-trajectories", "12", "--n-times"]
    argv += ["21", "--engine", "ray", "--shards", "2", "--no-progress"]
    assert main(argv) == 0
    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert "stitched from 2 shard files" in text and "virtual" in text
    with pytest.raises(DatasetError, match="one shard of a sharded generation"):
        open_dataset(shard_folder(out) / shard_name(0, 2))
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.move(out, moved / "p.h5")  # without its folder: refused, not read as NaN rows
    with pytest.raises(DatasetError, match=r"2 of them are missing.*keep that folder"):
        open_dataset(moved / "p.h5")
    shutil.move(shard_folder(out), moved)
    with open_dataset(moved / "p.h5") as f:  # moved together: fine
        assert np.isfinite(f["trajectories/states"][...]).all()


KILL_AFTER_TWO_CHUNKS = """
import os, signal, sys
from derlhybrid.data import store
from derlhybrid.data.generate import GenerateRequest
from derlhybrid.scale import generate_shard
real, saved = store.ChunkStore.save, []
def save(self, k, **arrays):
    if len(saved) == 2:  # killed in the middle of the shard's third chunk
        os.kill(os.getpid(), signal.SIGKILL)
    real(self, k, **arrays)
    saved.append(k)
store.ChunkStore.save = save
generate_shard(GenerateRequest(**eval(sys.argv[1])), 0, 2)
"""


def test_killed_shard_resumes_and_finished_shards_are_skipped(local_ray, tmp_path):
    kw = dict(SMALL, chunk_trajectories=4, empirical="cubic-forward", n_empirical_samples=10)
    ref = generate(GenerateRequest(out=str(tmp_path / "ref.h5"), **kw), progress=False)
    out = tmp_path / "p.h5"
    req = GenerateRequest(out=str(out), **kw)
    proc = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_TWO_CHUNKS, repr({**kw, "out": str(out)})],
        capture_output=True,
        timeout=300,
    )
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    folder = shard_folder(out)
    work = folder / (shard_name(0, 2) + ".partial")
    assert sorted(p.name for p in work.glob("*.done")) == ["chunk0000000.done", "chunk0000001.done"]
    assert not (folder / shard_name(0, 2)).exists() and not out.exists()

    generate_sharded(req, RayEngine(shards=2, workers=2), progress=False)
    assert not work.exists()
    _assert_same_file(ref, out, virtual=True)

    # rerun after losing only the stitched file: both shards are skipped (left untouched)
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.h5")}
    out.unlink()
    generate_sharded(req, RayEngine(shards=2, workers=2), progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("*.h5")} == stamps
    _assert_same_file(ref, out, virtual=True)

    out.unlink()
    with pytest.raises(DatasetError, match="rerun with --shards 2"):
        generate_sharded(req, RayEngine(shards=3), progress=False)
    other = GenerateRequest(out=str(out), **{**kw, "seed": 5})
    with pytest.raises(DatasetError, match="different request"):
        generate_sharded(other, RayEngine(shards=2), progress=False)


SWEEP = """
[data]
path = "p.h5"
system = "pendulum"

[model]
width = 8
depth = 2

[objective]
mode = "derl"
weights = {{ sys = 1.0, init = 1.0 }}

[train]
epochs = {epochs}
batch_size = 16
lr = 1e-3
seed = 30

[sweep]
num_samples = {n}
metric = "val_output"
searcher = "optuna"
seed = 7
max_concurrent = 2

[sweep.asha]
grace_period = 10

[sweep.space]
"objective.weights.sys" = {{ loguniform = [1e-3, 1e2] }}
"objective.weights.init" = {{ loguniform = [1e-3, 1e2] }}
"train.lr" = {{ choice = [1e-3, 5e-4, 1e-4] }}
"""


def _logs(out):
    return {
        p.parent.name: [json.loads(line)["epoch"] for line in p.read_text().splitlines()]
        for p in (out / "runs").glob(f"*/{METRICS_LOG}")
    }


def test_sweep_resumes_after_interruption_and_picks_the_best(local_ray, tmp_path):
    pytest.importorskip("optuna", reason='the sweep searcher: pip install "derlhybrid[ray]"')
    generate(
        GenerateRequest(out=str(tmp_path / "p.h5"), **{**SMALL, "n_trajectories": 20}),
        progress=False,
    )
    cfg = tmp_path / "sweep.toml"
    cfg.write_text(SWEEP.format(n=3, epochs=30))
    out = tmp_path / "sweep-out"
    seen = {}

    def interrupt():  # Ctrl-C once a trial is a few epochs in
        deadline = time.time() + 240
        while time.time() < deadline:
            logs = _logs(out) if (out / "runs").is_dir() else {}
            if any(len(v) >= 2 for v in logs.values()):
                seen.update(logs)
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=interrupt)
    watcher.start()
    with pytest.raises(SweepInterrupted, match="rerun the same command"):
        sweep(cfg, out, progress=False)
    watcher.join()
    assert any(0 < len(v) < 30 for v in seen.values())  # stopped mid-trial
    assert not (out / "best.toml").exists()

    best = sweep(cfg, out, progress=False)  # the same command again: resumes
    trials = json.loads((out / "trials.json").read_text())
    assert len(trials) == 3 and all("value" in t for t in trials)
    for epochs in _logs(out).values():  # interrupted trials continued, not restarted
        assert len(epochs) == len(set(epochs)) and epochs == sorted(epochs)
    for trial, epochs in seen.items():
        assert _logs(out)[trial][: len(epochs)] == epochs
    assert best["value"] == min(t["value"] for t in trials)
    assert json.loads((out / "best.json").read_text())["value"] == best["value"]
    for key, (lo, hi) in [("objective.weights.sys", (1e-3, 1e2)), ("train.lr", (1e-4, 1e-3))]:
        assert all(lo <= t["params"][key] <= hi for t in trials)
    assert len({t["params"]["objective.weights.sys"] for t in trials}) == 3  # searched
    # best.toml is a ready-to-run training config holding the best trial's values
    tc = TrainConfig.from_toml(out / "best.toml")
    assert tc.objective.weights["sys"] == best["params"]["objective.weights.sys"]
    assert tc.train.lr == best["params"]["train.lr"] and tc.train.epochs == 30
    assert os.path.samefile(tc.data.path, tmp_path / "p.h5")
    # ... and training it reproduces the metric the sweep recorded, bit for bit
    reports = []
    sw = SweepConfig.from_toml(cfg)
    params = {**best["params"]}
    short = dataclasses.replace(
        sw, base={**sw.base, "train": {**sw.base["train"], "epochs": best["epoch"]}}
    )
    run_trial(params, short, str(tmp_path / "again"), reports.append)
    assert reports[-1]["epoch"] == best["epoch"] and reports[-1]["val_output"] == best["value"]
    cfg.write_text(SWEEP.format(n=4, epochs=30))  # another sweep into the same folder: refused
    with pytest.raises(ValueError, match="another configuration"):
        sweep(cfg, out, progress=False)
