"""The noise-estimators study: its data (noise on the sampled states only, exact ground truth
kept for the metrics, independent of chunking) and its plan (σ, estimators, modes, seeds).
Its smoke run end to end is in tests/test_reproduce.py (every experiment)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from derlhybrid.data.generate import GenerateRequest, generate
from derlhybrid.experiments import load_spec
from derlhybrid.experiments.runner import plan
from derlhybrid.learn.problems import load_problem


def _gen(tmp_path, name, **kw):
    base = dict(
        system="pendulum",
        params={"b": "0.5"},
        n_trajectories=6,
        n_times=101,
        t_end=5.0,
        seed=3,
        empirical="savgol",
        noise=0.02,
    )
    return generate(GenerateRequest(out=str(tmp_path / name), **{**base, **kw}), progress=False)


def test_noise_on_the_samples_only_and_the_truth_kept(tmp_path):
    noisy = _gen(tmp_path, "n.h5")
    clean = _gen(tmp_path, "c.h5", empirical=None, noise=0.0)
    with h5py.File(noisy) as f, h5py.File(clean) as g:
        # ground truth (what the metrics read) is the noise-free solution, bit for bit
        for key in (
            "trajectories/states",
            "trajectories/derivatives",
            "trajectories/initial_states",
        ):
            np.testing.assert_array_equal(f[key][...], g[key][...])
        e = f["empirical/states"][...] - f["trajectories/states"][...]
        assert e.std() == pytest.approx(0.02, rel=0.1) and abs(e.mean()) < 0.003
        np.testing.assert_array_equal(
            f["empirical/t"][...], np.broadcast_to(f["trajectories/t"], e.shape[:2])
        )
        # the estimate is of the noisy samples: close to f(y) but not equal
        d_err = f["empirical/derivatives"][...] - f["trajectories/derivatives"][...]
        assert 0 < np.sqrt(np.mean(d_err**2)) < 0.2
        gen = json.loads(f.attrs["generator"])["empirical"]
        assert gen["noise"] == 0.02 and gen["estimator"]["spec"] == "savgol:degree=3"
    # the trainer's empirical variant reads the noisy samples and their estimates
    p = load_problem(noisy, form="state", variant="empirical")
    with h5py.File(noisy) as f:
        train = np.sort(f["splits/train"][...])
        y = f["empirical/states"][...][train].reshape(-1, 2)
    np.testing.assert_allclose(p.sets["train"].targets["output"].numpy(), y)


def test_noise_and_estimates_do_not_depend_on_the_chunking(tmp_path):
    a = _gen(tmp_path, "a.h5", chunk_trajectories=2, empirical="central:2")
    b = _gen(tmp_path, "b.h5", chunk_trajectories=5, empirical="central:2")
    with h5py.File(a) as f, h5py.File(b) as g:
        for key in ("empirical/states", "empirical/derivatives"):
            np.testing.assert_array_equal(f[key][...], g[key][...])


@pytest.mark.parametrize(
    "kw,msg",
    [
        ({"noise": -1.0}, "non-negative"),
        ({"empirical": None}, "noise needs an empirical estimator"),
        ({"empirical": "cubic-forward"}, "noise needs an empirical estimator"),
        ({"empirical": "savgol:window=4"}, "odd number"),
    ],
)
def test_bad_noise_requests(tmp_path, kw, msg):
    with pytest.raises(ValueError, match=msg):
        _gen(tmp_path, "x.h5", **kw)
    assert not (tmp_path / "x.h5").exists()


def test_the_study_plan():
    spec = load_spec("noise-estimators")
    datasets, runs = plan(spec, "full")
    sigmas = {d["noise"] for d in datasets.values()}
    estimators = {d["empirical"] for d in datasets.values()}
    assert sigmas == {0.0, 1e-3, 1e-2, 5e-2}
    assert estimators == {"forward:1", "central:2", "savgol", "spline", "trend"}
    assert all(d["system"] == "pendulum" and d["params"] == {"b": 0.5} for d in datasets.values())
    by_group: dict[str, set] = {}
    for r in runs:
        by_group.setdefault(r.group, set()).add((r.mode, r.seed))
        assert r.variant == "empirical" and r.config["data"]["form"] == "state"
    assert len(by_group) == 20
    for g, modes in by_group.items():
        want = {"derl", "sob"} | ({"outl"} if g.endswith("-forward") else set())
        assert {m for m, _ in modes} == want
        assert {s for _, s in modes} == {1, 2, 3}  # >= 3 seeds at full scale
    _, quick = plan(spec, "quick")
    assert len(quick) == 44 and {r.config["train"]["epochs"] for r in quick} == {30}
