"""Resume is exact: a run interrupted after a checkpoint and rerun ends with the weights,
optimizer state, scheduler state and random generators of an uninterrupted run, bit for
bit, for Adam under every schedule, for L-BFGS and for Adam then L-BFGS; a run extended
with more epochs equals a run of that length from the start where the schedule allows it,
and a cosine schedule, which does not, is refused with one line."""

from __future__ import annotations

import pytest
import torch

from derlhybrid.cli import main
from derlhybrid.data.generate import GenerateRequest, generate
from derlhybrid.learn.checkpoint import CheckpointError, load_checkpoint
from derlhybrid.learn.config import TrainConfig
from derlhybrid.learn.trainer import train

SCHEDULES = {
    "constant": {"kind": "constant"},
    "step": {"kind": "step", "step_size": 2, "gamma": 0.5},
    "exponential": {"kind": "exponential", "gamma": 0.7},
    "cosine": {"kind": "cosine", "min_lr": 1e-4},
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("resume-data")
    return generate(
        GenerateRequest(
            system="allen-cahn", out=str(d / "a.h5"), n_points=200, n_boundary=11, seed=2
        ),
        progress=False,
    )


def _cfg(data, epochs, **train_kw):
    train_kw = {
        "epochs": epochs,
        "batch_size": 32,
        "lr": 1e-2,
        "progress": False,
        "val_every": 0,
        **train_kw,
    }
    return TrainConfig.from_dict(
        {
            "data": {"path": str(data)},
            "model": {"width": 8, "depth": 2, "dtype": "float64"},
            "objective": {"mode": "derl"},
            "train": train_kw,
        }
    )


class _Killed(Exception):
    """Stands for a kill after the checkpoint of an epoch."""


def _interrupted(cfg, out, at: int) -> None:
    """Train as ``cfg`` says into ``out``, dying once epoch ``at`` is checkpointed."""

    def die(record, model):
        if record["epoch"] == at:
            raise _Killed

    with pytest.raises(_Killed):
        train(cfg, out, on_epoch=die)
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == at


def _same(a, b, where="checkpoint"):
    """Equal to the bit: tensors by ``torch.equal`` (and dtype), containers entry by entry,
    numbers by ``==``."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype, where
        assert torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            _same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, list | tuple):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    else:
        assert type(a) is type(b) and a == b, f"{where}: {a!r} != {b!r}"


def _assert_identical(straight, resumed, out_a, out_b):
    """Every parameter, the optimizer, scheduler and generator states and the losses of
    every epoch of two runs are the same to the bit."""
    pa, pb = dict(straight.model.named_parameters()), dict(resumed.model.named_parameters())
    assert pa.keys() == pb.keys()
    for name in pa:
        assert torch.equal(pa[name], pb[name]), f"parameter {name} differs"
    a, b = load_checkpoint(out_a / "checkpoint.pt"), load_checkpoint(out_b / "checkpoint.pt")
    for key in ("epoch", "model_state", "adam", "lbfgs", "scheduler", "rng"):
        _same(a[key], b[key], key)
    assert [h["train"] for h in a["history"]] == [h["train"] for h in b["history"]]


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_adam_resumes_exactly_under_every_schedule(data, tmp_path, schedule):
    cfg = _cfg(data, 5, schedule=SCHEDULES[schedule])
    straight = train(cfg, tmp_path / "straight")
    _interrupted(cfg, tmp_path / "killed", at=2)
    resumed = train(cfg, tmp_path / "killed")
    assert resumed.start_epoch == 2
    _assert_identical(straight, resumed, tmp_path / "straight", tmp_path / "killed")
    if schedule != "constant":  # the schedule did act: the learning rate moved
        lrs = load_checkpoint(tmp_path / "killed" / "checkpoint.pt")["scheduler"]["_last_lr"]
        assert lrs[0] != 1e-2


@pytest.mark.parametrize("schedule", ["constant", "step", "exponential"])
def test_adam_extends_exactly_when_the_schedule_ignores_the_total(data, tmp_path, schedule):
    # `derl train --epochs 5` on a finished 2-epoch run = a 5-epoch run from the start
    straight = train(_cfg(data, 5, schedule=SCHEDULES[schedule]), tmp_path / "straight")
    train(_cfg(data, 2, schedule=SCHEDULES[schedule]), tmp_path / "extended")
    extended = train(_cfg(data, 5, schedule=SCHEDULES[schedule]), tmp_path / "extended")
    assert extended.start_epoch == 2
    _assert_identical(straight, extended, tmp_path / "straight", tmp_path / "extended")


def test_extending_a_cosine_schedule_is_refused(data, tmp_path, capsys):
    # the cosine of a 2-epoch run is not the start of a 5-epoch run's: no extension can be
    # exact, so it is refused, naming the fix; the checkpoint is left as it was
    out = tmp_path / "cos"
    train(_cfg(data, 2, schedule=SCHEDULES["cosine"]), out)
    before = (out / "checkpoint.pt").read_bytes()
    with pytest.raises(CheckpointError, match=r"cosine schedule spans train\.epochs = 2"):
        train(_cfg(data, 5, schedule=SCHEDULES["cosine"]), out)
    # also a killed run resumed with another total
    _interrupted(_cfg(data, 5, schedule=SCHEDULES["cosine"]), tmp_path / "k", at=2)
    with pytest.raises(CheckpointError, match="cannot be continued to 4 epochs exactly"):
        train(_cfg(data, 4, schedule=SCHEDULES["cosine"]), tmp_path / "k")
    # through derl train --epochs: one line, exit 2
    toml = tmp_path / "cos.toml"
    toml.write_text(
        f'[data]\npath = "{data}"\n[model]\nwidth = 8\ndepth = 2\ndtype = "float64"\n'
        '[objective]\nmode = "derl"\n[train]\nepochs = 2\nbatch_size = 32\nlr = 1e-2\n'
        'val_every = 0\nschedule = { kind = "cosine", min_lr = 1e-4 }\n'
    )
    argv = ["train", str(toml), "--out", str(out), "--no-progress", "--epochs", "5"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "keep train.epochs = 2" in err and "another --out" in err
    assert (out / "checkpoint.pt").read_bytes() == before
    # the same total resumes (nothing to do here: the run is finished)
    assert main(argv[:-2]) == 0


@pytest.mark.parametrize("batch", ["full", "mini"])
def test_lbfgs_resumes_exactly(data, tmp_path, batch):
    cfg = _cfg(data, 4, optimizer="lbfgs", lbfgs={"lr": 0.5, "max_iter": 5, "batch": batch})
    straight = train(cfg, tmp_path / "straight")
    _interrupted(cfg, tmp_path / "killed", at=2)
    resumed = train(cfg, tmp_path / "killed")
    _assert_identical(straight, resumed, tmp_path / "straight", tmp_path / "killed")
    assert load_checkpoint(tmp_path / "killed" / "checkpoint.pt")["lbfgs"]["state"]


@pytest.mark.parametrize(("at", "phase"), [(1, "adam"), (2, "adam"), (3, "lbfgs")])
def test_adam_then_lbfgs_resumes_exactly(data, tmp_path, at, phase):
    # killed in the Adam phase, at its last epoch, and in the L-BFGS phase; the cosine of
    # the Adam phase spans adam_epochs
    cfg = _cfg(
        data,
        5,
        optimizer="adam+lbfgs",
        adam_epochs=2,
        schedule=SCHEDULES["cosine"],
        lbfgs={"lr": 0.5, "max_iter": 5},
    )
    straight = train(cfg, tmp_path / "straight")
    assert [h["phase"] for h in straight.history] == ["adam"] * 2 + ["lbfgs"] * 3
    _interrupted(cfg, tmp_path / "killed", at=at)
    assert load_checkpoint(tmp_path / "killed" / "checkpoint.pt")["history"][-1]["phase"] == phase
    resumed = train(cfg, tmp_path / "killed")
    _assert_identical(straight, resumed, tmp_path / "straight", tmp_path / "killed")


def test_adam_then_lbfgs_with_a_cosine_extends_exactly(data, tmp_path):
    # more epochs lengthen the L-BFGS phase only: the cosine spans adam_epochs, unchanged
    kw = {
        "optimizer": "adam+lbfgs",
        "adam_epochs": 2,
        "schedule": SCHEDULES["cosine"],
        "lbfgs": {"lr": 0.5, "max_iter": 5},
    }
    straight = train(_cfg(data, 5, **kw), tmp_path / "straight")
    train(_cfg(data, 3, **kw), tmp_path / "extended")
    extended = train(_cfg(data, 5, **kw), tmp_path / "extended")
    _assert_identical(straight, extended, tmp_path / "straight", tmp_path / "extended")


def test_a_killed_save_leaves_no_temporary_file_after_the_rerun(data, tmp_path):
    cfg = _cfg(data, 2)
    _interrupted(cfg, tmp_path / "run", at=1)
    stale = tmp_path / "run" / ".checkpoint.pt.x1y2z3.tmp"  # as a kill mid-save leaves it
    stale.write_bytes(b"half a checkpoint")
    train(cfg, tmp_path / "run")
    assert not stale.exists()
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "checkpoint.pt",
        "train.json",
    ]


def test_validation_never_changes_what_is_trained(tmp_path):
    # a Hessian-projection term draws random directions; validating used to draw them from
    # the training's generator, so val_every changed the trained weights of sob+hesl runs
    from derlhybrid.data.generate import GenerateRequest, generate
    from derlhybrid.learn.config import TrainConfig
    from derlhybrid.learn.trainer import train

    data = generate(
        GenerateRequest(system="allen-cahn", out=str(tmp_path / "a.h5"), n_points=80, seed=1),
        progress=False,
    )
    weights = []
    for val_every in (0, 1):
        cfg = TrainConfig.from_dict(
            {
                "data": {"path": str(data)},
                "model": {"width": 6, "depth": 1, "dtype": "float64"},
                "objective": {"mode": "sob+hesl"},
                "train": {"epochs": 3, "batch_size": 16, "val_every": val_every, "progress": False},
            }
        )
        res = train(cfg, tmp_path / f"v{val_every}")
        weights.append([p.detach().clone() for p in res.model.parameters()])
        if val_every:
            assert all("val" in h for h in res.history)
    for a, b in zip(*weights, strict=True):
        assert torch.equal(a, b)


def test_a_finished_run_called_again_keeps_the_commit_that_trained_it(data, tmp_path):
    """train.json names the code that trained the run; calling train on the finished run
    (derl reproduce evaluating it again) trains nothing and must not rename it, while a
    call that trains epochs (an extension) records its own code."""
    import json

    from derlhybrid._revision import source_revision

    out = tmp_path / "run"
    train(_cfg(data, 2), out, progress=False)
    summary = json.loads((out / "train.json").read_text())
    assert summary["source"] == source_revision()
    summary["source"] = {"commit": "0" * 40, "dirty": False}  # as if trained by other code
    (out / "train.json").write_text(json.dumps(summary))
    train(_cfg(data, 2), out, progress=False)  # finished: nothing to train
    again = json.loads((out / "train.json").read_text())
    assert again["source"] == {"commit": "0" * 40, "dirty": False}
    assert again["resumed_from_epoch"] == again["epochs"] == 2
    train(_cfg(data, 3), out, progress=False)  # one more epoch, by this code
    extended = json.loads((out / "train.json").read_text())
    assert extended["source"] == {
        **source_revision(),
        "resumed_from": {"commit": "0" * 40, "dirty": False},
    }
    train(_cfg(data, 4), out, progress=False)  # extended again by the same code: kept
    assert json.loads((out / "train.json").read_text())["source"] == extended["source"]


def test_a_run_whose_record_names_no_commit_is_not_credited_to_this_code(data, tmp_path):
    """A finished run whose train.json names no source (written before train.json recorded
    it) is evaluated again: train.json must not claim that this process's code trained it."""
    import json

    out = tmp_path / "run"
    train(_cfg(data, 2), out, progress=False)
    summary = json.loads((out / "train.json").read_text())
    del summary["source"]
    (out / "train.json").write_text(json.dumps(summary))
    train(_cfg(data, 2), out, progress=False)  # finished: nothing to train
    assert json.loads((out / "train.json").read_text())["source"]["commit"] is None


def test_a_run_stopped_before_its_end_still_names_the_code_that_trained_it(data, tmp_path):
    """A run stopped between checkpoints has no train.json yet (it is written at the end of
    a call): resumed, its record must come from the checkpoint — the same code that trained
    it is named as such (not 'not recorded'), and other code as ``resumed_from``."""
    import json

    from derlhybrid._revision import source_revision
    from derlhybrid.learn.checkpoint import load_checkpoint, save_checkpoint

    now = source_revision()
    out = tmp_path / "run"
    train(_cfg(data, 2, checkpoint_every=1), out, progress=False)
    assert load_checkpoint(out / "checkpoint.pt")["source"] == now
    (out / "train.json").unlink()  # stopped before the call's end: no train.json
    train(_cfg(data, 3, checkpoint_every=1), out, progress=False)  # resumed by this code
    assert json.loads((out / "train.json").read_text())["source"] == now

    # the checkpoint of a run trained so far by other code, stopped before its end
    other = {"commit": "1" * 40, "dirty": False}
    ckpt = load_checkpoint(out / "checkpoint.pt")
    ckpt["source"] = other
    save_checkpoint(out / "checkpoint.pt", ckpt)
    (out / "train.json").unlink()
    train(_cfg(data, 4, checkpoint_every=1), out, progress=False)
    resumed = json.loads((out / "train.json").read_text())["source"]
    assert resumed == {**now, "resumed_from": other}
    # and the checkpoint it wrote says the same, for the next resume
    assert load_checkpoint(out / "checkpoint.pt")["source"] == resumed
