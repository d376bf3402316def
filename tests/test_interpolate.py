"""The pendulum ``interpolate`` variant (paper.md §3.2): a temporal gap held out of training,
the gap as the test set, and an anchor after the gap in the initial-condition loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from derlhybrid.data.generate import GenerateRequest, generate
from derlhybrid.data.store import DatasetError
from derlhybrid.learn.config import TrainConfig
from derlhybrid.learn.derivatives import Derivatives
from derlhybrid.learn.losses import InitialTerm, StepContext
from derlhybrid.learn.problems import StreamPolicy, load_problem
from derlhybrid.learn.trainer import train

GAP = np.arange(375, 626)  # time indices held out: t ∈ [3.75, 6.25]
ANCHOR = 626


@pytest.fixture(scope="module")
def paper(tmp_path_factory):
    d = tmp_path_factory.mktemp("interp")
    path = generate(
        GenerateRequest(system="pendulum", out=str(d / "p.h5"), preset="paper"), progress=False
    )
    import h5py

    with h5py.File(path, "r") as f:
        raw = {
            "t": f["trajectories/t"][...],
            "y0": f["trajectories/initial_states"][...],
            "y": f["trajectories/states"][...],
            "splits": {k: np.sort(f[f"splits/{k}"][...]) for k in f["splits"]},
        }
    return path, raw


def _time_index(X, t):
    return np.rint(X[:, 0].numpy() / (t[1] - t[0])).astype(int)


def test_sets_keep_the_masked_times_and_the_gap_is_the_test_set(paper):
    path, raw = paper
    p = load_problem(path, variant="interpolate")
    t = raw["t"]
    assert len(p.sets["train"]) == 30 * 750
    assert len(p.sets["val"]) == 10 * 750
    assert len(p.sets["test"]) == 40 * 251
    gap_times = set(GAP.tolist())
    for name in ("train", "val"):
        idx = _time_index(p.sets[name].X, t)
        assert not gap_times & set(idx.tolist()), f"a gap time in {name}"
        assert len(set(idx.tolist())) == 750
    test_idx = _time_index(p.sets["test"].X, t)
    assert set(test_idx.tolist()) == gap_times
    # the test rows are the gap of the train + val trajectories, with their true states
    tv = np.union1d(raw["splits"]["train"], raw["splits"]["val"])
    y0 = p.sets["test"].X[:, 1:].numpy().reshape(40, 251, 2)
    np.testing.assert_array_equal(y0[:, 0], raw["y0"][tv])
    theta = p.sets["test"].targets["output"].numpy().reshape(40, 251)
    np.testing.assert_array_equal(theta, raw["y"][tv][:, GAP, 0])
    # train rows: the train trajectories, targets at the kept times
    keep = np.setdiff1d(np.arange(t.size), GAP)
    tr = p.sets["train"]
    np.testing.assert_array_equal(
        tr.targets["jacobian"].numpy().reshape(30, 750),
        raw["y"][raw["splits"]["train"]][:, keep, 1],
    )
    np.testing.assert_array_equal(tr.X[:, 0].numpy().reshape(30, 750)[0], t[keep])


def test_anchor_rows_join_the_initial_condition_with_exact_targets(paper):
    path, raw = paper
    p = load_problem(path, variant="interpolate")
    train_idx = raw["splits"]["train"]
    ini = p.sets["initial"]
    assert len(ini) == 30
    np.testing.assert_array_equal(ini.X[:, 0].numpy(), np.full(30, raw["t"][ANCHOR]))
    assert raw["t"][ANCHOR] == pytest.approx(6.26)
    np.testing.assert_array_equal(ini.X[:, 1:].numpy(), raw["y0"][train_idx])
    np.testing.assert_array_equal(ini.targets["state"].numpy(), raw["y"][train_idx, ANCHOR])
    # every batch's initial points: its own (0, y0) rows, then all anchors
    batch = p.sets["train"].take(slice(0, 7))
    pts = p.initial_points(batch)
    assert len(pts) == 7 + 30
    assert (pts.X[:7, 0] == 0).all() and torch.equal(pts.X[:7, 1:], batch.X[:, 1:])
    assert torch.equal(pts.X[7:], ini.X)
    assert torch.equal(pts.targets["state"][:7], batch.X[:, 1:])
    assert torch.equal(pts.targets["state"][7:], ini.targets["state"])
    # the initial term compares (θ̂, ∂θ̂/∂t) with (θ, ω) there: value and rate, both columns
    state = pts.targets["state"]
    d = Derivatives({(): state[:, :1] + 0.1, (0,): state[:, 1:] - 0.3})
    got = InitialTerm()(d, pts, StepContext(None, p)).item()
    assert got == pytest.approx((0.1**2 + 0.3**2) / 2, rel=1e-12)
    # an anchor wrongly compared with its own y0 would not vanish: the targets differ
    assert not torch.allclose(ini.targets["state"], ini.X[:, 1:])


def test_state_form_and_the_plain_problem_are_unchanged(paper):
    path, _ = paper
    plain = load_problem(path)
    assert "initial" not in plain.sets and len(plain.sets["test"]) == 10 * 1001
    assert plain.initial_points(plain.sets["train"].take(slice(0, 3))).targets == {}
    st = load_problem(path, variant="interpolate", form="state")
    assert st.sets["initial"].targets["state"].shape == (30, 2)
    assert st.sets["train"].targets["output"].shape == (30 * 750, 2)


def test_streaming_is_refused_in_one_line(paper):
    path, _ = paper
    with pytest.raises(ValueError, match=r'not streamed: set data\.stream = "never"'):
        load_problem(path, variant="interpolate", stream=StreamPolicy("always"))
    # too large for data.memory_mb under "auto" is refused too
    with pytest.raises(ValueError, match="not streamed"):
        load_problem(path, variant="interpolate", stream=StreamPolicy("auto", memory_mb=0.5))


def test_a_file_without_the_variant_is_refused(tmp_path):
    path = generate(
        GenerateRequest(system="pendulum", out=str(tmp_path / "s.h5"), n_trajectories=4, seed=1),
        progress=False,
    )
    with pytest.raises(DatasetError, match="no interpolate variant"):
        load_problem(path, variant="interpolate")


@pytest.mark.parametrize("mode", ["derl", "sob"])
def test_two_epochs_of_training_on_the_gap_data(paper, tmp_path, mode):
    path, _ = paper
    cfg = TrainConfig.from_dict(
        {
            "data": {"path": str(path), "variant": "interpolate"},
            "model": {"width": 16, "depth": 2, "dtype": "float64"},
            "objective": {"mode": mode},
            "train": {"epochs": 2, "batch_size": 1024, "lr": 2e-3, "progress": False},
        }
    )
    res = train(cfg, tmp_path / mode)
    assert res.problem.describe()["sizes"] == {
        "train": 22500,
        "val": 7500,
        "test": 10040,
        "initial": 30,
    }
    assert [h["epoch"] for h in res.history] == [1, 2]
    for h in res.history:
        assert "initial" in h["train"] and "jacobian" in h["train"]
        assert all(math.isfinite(v) for v in h["train"].values()), h
    assert res.history[-1]["train"]["loss"] < res.history[0]["train"]["loss"]
