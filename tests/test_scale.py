"""Scale-out without a Ray cluster: sweep configs, the best-config TOML writer, shard
layout, one-line errors (also where Ray is not installed) and the Julia fork guard.
The Ray runs themselves are in test_ray.py."""

from __future__ import annotations

import os
import sys
import tomllib

import pytest

from derlhybrid.cli import main
from derlhybrid.learn.config import ConfigError, TrainConfig
from derlhybrid.scale.ray_generate import shard_rows
from derlhybrid.scale.sweep import SweepConfig, dump_toml

BASE = {
    "data": {"path": "/data/p.h5", "system": "pendulum"},
    "model": {"width": 8, "depth": 2},
    "objective": {"mode": "derl", "weights": {"sys": 1.0, "init": 1.0}},
    "train": {"epochs": 4, "lr": 1e-3, "lbfgs": {"lr": 0.5, "line_search": "strong_wolfe"}},
}
SPACE = {
    "objective.weights.sys": {"loguniform": [1e-3, 1e2]},
    "train.lr": {"choice": [1e-3, 5e-4, 1e-4]},
}


def _sweep(**sweep):
    return SweepConfig.from_dict({**BASE, "sweep": {"space": SPACE, **sweep}})


def test_shard_rows_partition_the_trajectories():
    for n, k in [(10, 1), (10, 3), (7, 7), (1001, 4)]:
        rows = shard_rows(n, k)
        assert rows[0][0] == 0 and rows[-1][1] == n and len(rows) == k
        assert all(a < b for a, b in rows)
        assert all(rows[i][1] == rows[i + 1][0] for i in range(k - 1))
        assert max(b - a for a, b in rows) - min(b - a for a, b in rows) <= 1


def test_sweep_config_sets_the_searched_keys():
    sw = _sweep(num_samples=3, asha={"max_t": 4, "grace_period": 2})
    cfg = sw.train_config({"objective.weights.sys": 7.5, "train.lr": 5e-4})
    assert cfg.objective.weights == {"sys": 7.5, "init": 1.0}
    assert cfg.train.lr == 5e-4 and cfg.train.epochs == 4
    assert BASE["objective"]["weights"]["sys"] == 1.0  # the base is not changed
    assert [d.key for d in sw.space] == ["objective.weights.sys", "train.lr"]


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        ({"space": {"train.lrr": {"choice": [1e-3]}}}, "unknown key 'lrr'"),
        ({"space": {"objective.weights.sys": {"loguniform": [0, 1]}}}, "0 < low"),
        ({"space": {"train.lr": {"normal": [0, 1]}}}, "must be one of"),
        ({"space": SPACE, "searcher": "grid"}, "unknown searcher"),
        ({"space": SPACE, "metric": "accuracy"}, "sweep.metric"),
        ({"space": SPACE, "num_samples": 0}, "num_samples"),
        ({"space": SPACE, "asha": {"grace_period": 9}}, "grace_period"),
        ({"space": SPACE, "asha": {"rungs": 2}}, "unknown key sweep.asha.rungs"),
        ({"space": SPACE, "trials": 2}, "unknown key sweep.trials"),
        ({"space": {}}, "space is empty"),
    ],
)
def test_bad_sweep_configs_are_refused_in_one_line(sweep, message):
    with pytest.raises(ConfigError, match=message) as err:
        SweepConfig.from_dict({**BASE, "sweep": sweep})
    assert "\n" not in str(err.value)


def test_best_config_toml_reads_back_as_the_same_training_config(tmp_path):
    tables = _sweep().tables({"objective.weights.sys": 0.0123456789, "train.lr": 1e-4})
    tables["objective"]["terms"] = [{"term": "output", "weight": 0.5}]
    tables["objective"]["mode"] = None  # None is left out (TOML has no null)
    text = dump_toml(tables)
    back = tomllib.loads(text)
    assert back["objective"]["weights"]["sys"] == 0.0123456789  # repr: exact round trip
    assert back["objective"]["terms"] == [{"term": "output", "weight": 0.5}]
    assert back["train"]["lbfgs"] == {"lr": 0.5, "line_search": "strong_wolfe"}
    assert "mode" not in back["objective"]
    (tmp_path / "best.toml").write_text(text)
    cfg = TrainConfig.from_toml(tmp_path / "best.toml")
    assert cfg.train.lr == 1e-4 and cfg.objective.terms == [{"term": "output", "weight": 0.5}]


def _write_sweep(tmp_path, space='"train.lr" = { choice = [1e-3] }'):
    p = tmp_path / "s.toml"
    p.write_text(
        '[data]\npath = "p.h5"\n[objective]\nmode = "derl"\n[train]\nepochs = 2\n'
        f"[sweep]\nnum_samples = 2\n[sweep.space]\n{space}\n"
    )
    return p


def test_cli_without_ray_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    for name in [m for m in sys.modules if m == "ray" or m.startswith("ray.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    out = str(tmp_path / "p.h5")
    assert main(["generate", "pendulum", "--out", out, "--engine", "ray"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and 'pip install "derlhybrid[ray]"' in err
    assert not os.listdir(tmp_path)  # nothing written
    assert main(["sweep", str(_write_sweep(tmp_path))]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and 'pip install "derlhybrid[ray]"' in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["generate", "pendulum", "--shards", "2"], "--shards needs --engine ray"),
        (["generate", "pendulum", "--consolidate"], "--consolidate needs --engine ray"),
        (["generate", "kdv", "--engine", "ray"], "shards ODE trajectory ensembles"),
        (["generate", "pendulum", "--engine", "ray", "--preset", "paper"], "does not run a preset"),
        (["generate", "pendulum", "--engine", "ray", "--shards", "0"], "shards must be"),
        (
            ["generate", "pendulum", "--engine", "ray", "--n-trajectories", "5", "--shards", "6"],
            "--shards 6 exceeds the 5 trajectories",
        ),
    ],
)
def test_generate_engine_errors_exit_2(argv, message, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path / "x.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.count("\n") == 0
    assert not os.listdir(tmp_path)


def test_cli_sweep_bad_config_exit_2(tmp_path, capsys):
    assert main(["sweep", str(_write_sweep(tmp_path, '"train.lrr" = { choice = [1] }'))]) == 2
    err = capsys.readouterr().err.strip()
    assert "train.lrr" in err and err.count("\n") == 0
    assert main(["sweep", str(tmp_path / "missing.toml")]) == 2
    assert "cannot read sweep config" in capsys.readouterr().err


def test_julia_is_never_used_after_a_fork(monkeypatch):
    """A process that inherited a started Julia (a fork) is refused, not crashed: each
    worker process must start its own (Ray workers are spawned, never forked)."""
    from derlhybrid.kernels import BackendUnavailable, _julia, _julia_state

    monkeypatch.setattr(_julia_state, "module", object())  # as if started by the parent
    monkeypatch.setattr(_julia_state, "pid", os.getpid() + 1)
    with pytest.raises(BackendUnavailable, match="before a fork"):
        _julia.load()
    sentinel = object()
    monkeypatch.setattr(_julia_state, "module", sentinel)  # started in this very process
    monkeypatch.setattr(_julia_state, "pid", os.getpid())
    assert _julia.load() is sentinel


def test_example_sweep_is_the_papers_pendulum_search():
    from pathlib import Path

    path = Path(__file__).parent.parent / "examples" / "sweeps" / "pendulum-derl.toml"
    sw = SweepConfig.from_toml(path)
    assert sw.num_samples == 200 and sw.max_t == 200 and sw.grace_period == 100
    space = {d.key: (d.kind, d.args) for d in sw.space}
    assert space["objective.weights.sys"] == ("loguniform", (1e-3, 1e2))
    assert space["train.lr"] == ("choice", (1e-3, 5e-4, 2e-4))
    assert sw.train_config({}).train.epochs == 200
