"""The trainer's Adam step without the optimizer's Python bookkeeping
(``TrainingRun.adam_step``) is bit for bit ``torch.optim.Adam(fused=True).step()``."""

from __future__ import annotations

import pytest
import torch

from derlhybrid.data.generate import GenerateRequest, generate
from derlhybrid.learn.config import TrainConfig
from derlhybrid.learn.problems import load_problem
from derlhybrid.learn.training_run import RunExtras, TrainingRun


@pytest.fixture(scope="module")
def pendulum_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("adam") / "p.h5"
    generate(
        GenerateRequest(system="pendulum", out=str(out), n_trajectories=4, n_times=41),
        progress=False,
    )
    return out


def _run(path, schedule):
    cfg = TrainConfig.from_dict(
        {
            "data": {"path": str(path)},
            "model": {"width": 8, "depth": 2},
            "objective": {"mode": "derl"},
            "train": {"batch_size": 16, "lr": 3e-3, "schedule": schedule, "epochs": 4},
        }
    )
    return TrainingRun(cfg, load_problem(path), torch.device("cpu"), RunExtras())


def test_fast_adam_step_equals_optimizer_step(pendulum_file, monkeypatch):
    schedule = {"kind": "step", "step_size": 1, "gamma": 0.5}  # the lr changes every epoch
    fast = _run(pendulum_file, schedule)
    slow = _run(pendulum_file, schedule)
    monkeypatch.setattr(slow, "adam_step", lambda opt: opt.step())
    for epoch in range(3):
        a, b = fast.run_epoch(epoch), slow.run_epoch(epoch)
        assert a == b
    assert torch.equal(fast.flat, slow.flat)
    sa, sb = fast.adam.state_dict(), slow.adam.state_dict()
    for k in ("exp_avg", "exp_avg_sq", "step"):
        assert torch.equal(sa["state"][0][k], sb["state"][0][k])
    assert sa["param_groups"] == sb["param_groups"]
