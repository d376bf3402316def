"""The trainer and the ``derl train`` / ``derl evaluate`` commands: learning happens,
resume is exact (also after SIGKILL), divergence stops cleanly, bad input is one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from derlhybrid.cli import main
from derlhybrid.data.generate import GenerateRequest, generate
from derlhybrid.learn.checkpoint import load_checkpoint, save_checkpoint
from derlhybrid.learn.config import ConfigError, TrainConfig
from derlhybrid.learn.trainer import TrainingDiverged, load_model, train


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("train-data")
    return {
        "pendulum": generate(
            GenerateRequest(
                system="pendulum",
                out=str(d / "p.h5"),
                n_trajectories=10,
                n_times=41,
                t_end=2.0,
                seed=2,
            ),
            progress=False,
        ),
        "allen-cahn": generate(
            GenerateRequest(
                system="allen-cahn", out=str(d / "a.h5"), n_points=400, n_boundary=11, seed=2
            ),
            progress=False,
        ),
        "kovasznay": generate(
            GenerateRequest(system="kovasznay", out=str(d / "k.h5"), n_points=200, seed=2),
            progress=False,
        ),
    }


def _cfg(path, mode="derl", **train_kw):
    train_kw = {"epochs": 3, "batch_size": 32, "lr": 2e-3, "progress": False, **train_kw}
    return TrainConfig.from_dict(
        {
            "data": {"path": str(path)},
            "model": {"width": 16, "depth": 2, "dtype": "float64"},
            "objective": {"mode": mode},
            "train": train_kw,
        }
    )


def _weights(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def test_lbfgs_fits_allen_cahn_through_its_derivatives(data, tmp_path):
    # DERL: only ∇u in the interior and u = 0 on the boundary; the function is pinned by
    # the boundary data (paper.md §2) and the output error must become small too
    cfg = _cfg(data["allen-cahn"], "derl", epochs=40, optimizer="lbfgs", lbfgs={"lr": 1.0})
    res = train(cfg, tmp_path / "run")
    first, last = res.history[0]["train"], res.history[-1]["train"]
    assert last["jacobian"] < 0.02 * first["jacobian"]
    from derlhybrid.learn.evaluate import evaluate

    m = evaluate(tmp_path / "run" / "checkpoint.pt", data["allen-cahn"], options={"grid": 41})
    assert m["metrics"]["u"]["rel_l2"] < 0.2, m["metrics"]["u"]


def test_resume_is_bit_identical(data, tmp_path):
    straight = train(_cfg(data["pendulum"], epochs=4), tmp_path / "a")
    train(_cfg(data["pendulum"], epochs=2), tmp_path / "b")
    resumed = train(_cfg(data["pendulum"], epochs=4), tmp_path / "b")
    assert resumed.start_epoch == 2
    assert torch.equal(_weights(straight.model), _weights(resumed.model))
    assert straight.history[-1]["train"] == resumed.history[-1]["train"]
    # a finished run is not retrained
    again = train(_cfg(data["pendulum"], epochs=4), tmp_path / "b")
    assert again.start_epoch == 4 and torch.equal(_weights(again.model), _weights(straight.model))


def test_resume_refuses_another_configuration(data, tmp_path):
    train(_cfg(data["pendulum"], epochs=1), tmp_path / "r")
    with pytest.raises(ValueError, match=r"another configuration \(train\.lr differ"):
        train(_cfg(data["pendulum"], epochs=2, lr=1e-3), tmp_path / "r")


def test_adam_then_lbfgs(data, tmp_path):
    cfg = _cfg(data["allen-cahn"], "outl", epochs=4, optimizer="adam+lbfgs", adam_epochs=2)
    res = train(cfg, tmp_path / "al")
    assert [h["phase"] for h in res.history] == ["adam", "adam", "lbfgs", "lbfgs"]
    ckpt = load_checkpoint(tmp_path / "al" / "checkpoint.pt")
    assert ckpt["lbfgs"] is not None and ckpt["adam"] is not None


def test_divergence_stops_with_one_line_and_keeps_the_last_good_checkpoint(data, tmp_path):
    out = tmp_path / "nan"
    train(_cfg(data["pendulum"], epochs=1), out)
    good = _weights(load_model(out / "checkpoint.pt")[0])
    cfg = TrainConfig.from_dict(
        {**_cfg(data["pendulum"], epochs=3).to_dict(), "objective": {"mode": "derl"}}
    )
    # poison the weights the run resumes from: the loss is NaN at the next epoch
    ckpt = load_checkpoint(out / "checkpoint.pt")
    ckpt["model_state"] = {k: v * float("nan") for k, v in ckpt["model_state"].items()}
    poisoned = tmp_path / "nan2"
    save_checkpoint(poisoned / "checkpoint.pt", ckpt)
    with pytest.raises(
        TrainingDiverged,
        match=r"diverged at epoch 2: loss term .* is nan; the last good checkpoint \(epoch 1\)",
    ):
        train(cfg, poisoned)
    # the poisoned checkpoint was not overwritten by a NaN epoch; the healthy run is intact
    assert torch.equal(_weights(load_model(out / "checkpoint.pt")[0]), good)
    assert load_checkpoint(poisoned / "checkpoint.pt")["epoch"] == 1


def test_checkpoint_rebuilds_the_model(data, tmp_path):
    res = train(_cfg(data["kovasznay"], "sob", epochs=1), tmp_path / "k")
    model, ckpt = load_model(tmp_path / "k" / "checkpoint.pt")
    x = torch.rand(5, 2, dtype=torch.float64)
    torch.testing.assert_close(model(x), res.model(x))
    assert ckpt["system"]["system"] == "kovasznay"
    assert ckpt["problem"]["source"]["config_hash"]
    assert ckpt["model_config"] == {
        "n_in": 2,
        "n_out": 3,
        "width": 16,
        "depth": 2,
        "activation": "tanh",
        "dtype": "float64",
        "omega0": 1.0,
    }


def _write(tmp_path, text, name="c.toml"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_cli_train_and_evaluate(data, tmp_path, capsys):
    cfg = _write(
        tmp_path,
        f'[data]\npath = "{data["allen-cahn"]}"\n[model]\nwidth = 8\ndepth = 2\n'
        '[objective]\nmode = "sob"\nweights = { sys = 1.0, bc = 2.0 }\n'
        "[train]\nepochs = 2\nbatch_size = 100\n",
    )
    assert main(["train", cfg, "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    out = tmp_path / "m.json"
    assert (
        main(
            [
                "evaluate",
                str(tmp_path / "run/checkpoint.pt"),
                str(data["allen-cahn"]),
                "--grid",
                "21",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    m = json.loads(out.read_text())
    assert set(m["splits"]) >= {"train", "val", "test"}
    assert {"u", "forcing", "gradient"} <= set(m["metrics"])
    assert m["epochs"] == 2


@pytest.mark.parametrize(
    ("setting", "flag", "shown"),
    [("false", [], False), ("true", ["--no-progress"], False), ("true", [], True)],
)
def test_cli_train_honours_train_progress(data, tmp_path, capfd, setting, flag, shown):
    # train.progress = false in the config silences the bar; --no-progress overrides true
    cfg = _write(
        tmp_path,
        f'[data]\npath = "{data["allen-cahn"]}"\n[model]\nwidth = 4\ndepth = 1\n'
        f'[objective]\nmode = "derl"\n[train]\nepochs = 2\nbatch_size = 100\n'
        f"progress = {setting}\n",
    )
    assert main(["train", cfg, "--out", str(tmp_path / "run"), *flag]) == 0
    out, err = capfd.readouterr()
    bar = "epoch/s" in err or "s/epoch" in err or "2/2" in err
    assert bar == shown, err
    assert out.startswith("epoch 2: ")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[data]\npath = "X"\n[trian]\nepochs = 1\n', "unknown key 'trian'"),
        ('[data]\npath = "X"\n[objective]\nmode = "derl2"\n', "unknown mode 'derl2'"),
        ('[data]\npath = "X"\n[train]\noptimizer = "sgd"\n', "unknown optimizer 'sgd'"),
        ('[data]\npath = "X"\n[model]\nactivation = "relu"\n', "unknown activation 'relu'"),
        ('[data]\npath = "X"\n[objective]\nweights = { sys = -1 }\n', "must be a number ≥ 0"),
        ("[data]\n", "path = "),
        ('[data]\npath = "/nonexistent.h5"\n', "does not exist"),
    ],
)
def test_cli_bad_config_is_one_line_exit_2(tmp_path, capsys, text, message):
    assert main(["train", _write(tmp_path, text), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_cli_evaluate_refuses_other_systems_and_versions(data, tmp_path, capsys):
    train(_cfg(data["allen-cahn"], "outl", epochs=1), tmp_path / "a")
    ck = str(tmp_path / "a" / "checkpoint.pt")
    assert main(["evaluate", ck, str(data["kovasznay"])]) == 2
    assert "holds 'kovasznay' data but the network was trained on 'allen-cahn'" in (
        capsys.readouterr().err
    )
    old = load_checkpoint(ck)
    old["version"] = 0
    torch.save(old, tmp_path / "old.pt")
    assert main(["evaluate", str(tmp_path / "old.pt"), str(data["allen-cahn"])]) == 2
    assert "version-0 checkpoint" in capsys.readouterr().err
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert main(["evaluate", str(tmp_path / "junk.pt"), str(data["allen-cahn"])]) == 2
    assert "not a readable checkpoint" in capsys.readouterr().err


def test_compiled_loss_trains_like_the_eager_one(data, tmp_path):
    # train.compile: torch.compile of the loss and its gradient (one graph per batch shape;
    # 10 trajectories x 41 times = 410 rows in batches of 32: a short last batch). Same
    # initialisation, batches and updates: the weights agree to float64 rounding, and a
    # compiled run resumes an eager one (compilation is not part of the configuration).
    eager = train(_cfg(data["pendulum"], epochs=2), tmp_path / "e")
    compiled = train(_cfg(data["pendulum"], epochs=2, compile=True), tmp_path / "c")
    torch.testing.assert_close(_weights(compiled.model), _weights(eager.model), rtol=0, atol=1e-12)
    for a, b in zip(eager.history, compiled.history, strict=True):
        assert a["train"]["loss"] == pytest.approx(b["train"]["loss"], rel=1e-12)
    resumed = train(_cfg(data["pendulum"], epochs=3, compile=True), tmp_path / "e")
    assert resumed.start_epoch == 2


def test_config_validation_in_python():
    with pytest.raises(ConfigError, match=r"train\.compile must be true or false"):
        TrainConfig.from_dict({"data": {"path": "x"}, "train": {"compile": "yes"}})
    with pytest.raises(ConfigError, match="adam_epochs"):
        TrainConfig.from_dict({"data": {"path": "x"}, "train": {"optimizer": "adam+lbfgs"}})
    with pytest.raises(ConfigError, match=r"train\.lbfgs\.batch"):
        TrainConfig.from_dict({"data": {"path": "x"}, "train": {"lbfgs": {"batch": "half"}}})


def test_sigkill_mid_run_resumes_to_the_same_weights(data, tmp_path):
    text = (
        f'[data]\npath = "{data["pendulum"]}"\n[model]\nwidth = 16\ndepth = 2\n'
        'dtype = "float64"\n[objective]\nmode = "derl"\n'
        "[train]\nepochs = 30\nbatch_size = 16\nlr = 1e-3\n"
    )
    cfg = _write(tmp_path, text)
    ref_out, out = tmp_path / "ref", tmp_path / "killed"
    assert main(["train", cfg, "--out", str(ref_out), "--no-progress"]) == 0
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "derlhybrid.cli", "train", cfg, "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = out / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while not ckpt.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    epoch = load_checkpoint(ckpt)["epoch"]
    assert 1 <= epoch < 30, "the run finished before it could be killed"
    assert main(["train", cfg, "--out", str(out), "--no-progress"]) == 0
    a, b = load_model(ref_out / "checkpoint.pt")[0], load_model(ckpt)[0]
    assert torch.equal(_weights(a), _weights(b))
    assert not list(Path(out).glob("*.tmp"))


def test_streamed_epoch_visits_every_row_once(data):
    from derlhybrid.learn.problems import StreamingSet, StreamPolicy, load_problem

    mem = load_problem(data["pendulum"])
    st = load_problem(
        data["pendulum"], stream=StreamPolicy("always", block_mb=41 * 11 * 8 * 2 / 2**20)
    )
    train = st.sets["train"]
    assert isinstance(train, StreamingSet) and train.n_blocks == 3  # 6 trajectories, 2/block
    rows = torch.cat([b.X for b in train.batches(7, torch.Generator().manual_seed(1))])
    assert len(rows) == len(mem.sets["train"]) == len(train)
    key = lambda X: sorted(map(tuple, X.tolist()))  # noqa: E731
    assert key(rows) == key(mem.sets["train"].X)


def test_streamed_training_resumes_exactly(data, tmp_path):
    kw = {"epochs": 2}
    d = {"path": str(data["pendulum"]), "stream": "always", "block_mb": 0.01}

    def cfg(epochs):
        c = _cfg(data["pendulum"], **{**kw, "epochs": epochs}).to_dict()
        return TrainConfig.from_dict({**c, "data": d})

    straight = train(cfg(2), tmp_path / "s1")
    train(cfg(1), tmp_path / "s2")
    resumed = train(cfg(2), tmp_path / "s2")
    assert torch.equal(_weights(straight.model), _weights(resumed.model))


def test_streaming_bounds_memory(tmp_path):
    # peak memory of one training epoch on files of 1000 and 3000 trajectories × 1001 times
    # (0.6 M and 1.8 M training rows): streamed in 8 MB blocks it does not grow with the
    # file; loaded, it grows with the data
    script = (
        "import sys\n"
        "from derlhybrid.learn import TrainConfig, train\n"
        "cfg = TrainConfig.from_dict({'data': {'path': sys.argv[1], 'stream': sys.argv[2],"
        " 'block_mb': 8}, 'model': {'width': 8, 'depth': 1}, 'objective': {'mode': 'derl'},"
        " 'train': {'epochs': 1, 'batch_size': 2000, 'val_every': 0, 'progress': False}})\n"
        "train(cfg, sys.argv[3])\n"
        "hwm = [ln for ln in open('/proc/self/status') if ln.startswith('VmHWM')][0]\n"
        "print(int(hwm.split()[1]) // 1024)\n"
    )
    # VmHWM, not ru_maxrss: ru_maxrss survives exec and would count this test's own peak
    rss = {}
    for n in (1000, 3000):
        path = generate(
            GenerateRequest(
                system="pendulum",
                out=str(tmp_path / f"{n}.h5"),
                n_trajectories=n,
                seed=4,
                compression="none",
            ),
            progress=False,
        )
        for mode in ("always", "never"):
            out = subprocess.run(
                [sys.executable, "-c", script, str(path), mode, str(tmp_path / f"{mode}{n}")],
                capture_output=True,
                text=True,
                check=True,
            )
            rss[mode, n] = int(out.stdout.split()[-1])
    assert abs(rss["always", 3000] - rss["always", 1000]) < 25, rss
    assert rss["never", 3000] - rss["never", 1000] > 60, rss


def test_data_of_another_system_is_refused(data, tmp_path, capsys):
    cfg = _write(
        tmp_path, f'[data]\npath = "{data["kovasznay"]}"\nsystem = "allen-cahn"\n', "k.toml"
    )
    assert main(["train", cfg, "--no-progress"]) == 2
    assert "holds 'kovasznay' data, but the config says" in capsys.readouterr().err
    # resuming a run directory with data of another shape
    train(_cfg(data["allen-cahn"], "outl", epochs=1), tmp_path / "run")
    with pytest.raises(ValueError, match="holds a network of allen-cahn"):
        train(_cfg(data["kovasznay"], "outl", epochs=2), tmp_path / "run")


@pytest.mark.parametrize(
    "name", sorted(p.name for p in (Path(__file__).parent.parent / "examples").glob("*.toml"))
)
def test_example_configs_are_valid(name):
    cfg = TrainConfig.from_toml(Path(__file__).parent.parent / "examples" / name)
    assert cfg.data.path.endswith(".h5")


def test_flat_parameters_train_like_separate_ones():
    # every parameter a view of one buffer (one optimizer kernel per step): the same Adam
    # trajectory as torch's Adam over the separate parameters
    from derlhybrid.learn.training_run import flat_parameters

    torch.manual_seed(0)
    ref = torch.nn.Sequential(torch.nn.Linear(3, 7), torch.nn.Tanh(), torch.nn.Linear(7, 2))
    ref = ref.double()
    ours = torch.nn.Sequential(torch.nn.Linear(3, 7), torch.nn.Tanh(), torch.nn.Linear(7, 2))
    ours = ours.double()
    ours.load_state_dict(ref.state_dict())
    flat = flat_parameters(ours)
    opt_ref = torch.optim.Adam(ref.parameters(), lr=3e-3)
    opt = torch.optim.Adam([flat], lr=3e-3, fused=True)
    for k in range(7):
        x = torch.randn(16, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(k))
        opt_ref.zero_grad()
        (ref(x) ** 2).mean().backward()
        opt_ref.step()
        flat.grad.zero_()
        (ours(x) ** 2).mean().backward()
        opt.step()
    for a, b in zip(ref.parameters(), ours.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_trains_like_the_cpu(data, tmp_path):
    # the same run on the GPU: float64 weights agree with the CPU run to rounding, the
    # checkpoint loads on the CPU, and the forward engine agrees with autograd on the device
    cpu = train(_cfg(data["pendulum"], epochs=2, device="cpu"), tmp_path / "cpu")
    gpu = train(_cfg(data["pendulum"], epochs=2, device="cuda"), tmp_path / "gpu")
    assert next(gpu.model.parameters()).is_cuda
    torch.testing.assert_close(_weights(gpu.model).cpu(), _weights(cpu.model), rtol=0, atol=1e-9)
    model, _ = load_model(tmp_path / "gpu" / "checkpoint.pt")
    torch.testing.assert_close(_weights(model), _weights(cpu.model), rtol=0, atol=1e-9)
    from derlhybrid.learn.derivatives import input_derivatives

    x = torch.rand(33, 3, dtype=torch.float64, device="cuda")
    f = input_derivatives(gpu.model, x, [(0, 0), (1, 2)], engine="forward")
    a = input_derivatives(gpu.model, x, [(0, 0), (1, 2)], engine="autograd")
    for k in a.keys():
        torch.testing.assert_close(f[k], a[k], rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    "system,mode,batch",
    [
        ("pendulum", "derl", 32),  # first order
        ("allen-cahn", "derl", 32),
        ("allen-cahn", "pinn", 32),  # second order (the Laplacian): the Taylor path
        ("allen-cahn", "pinn", 300),  # interior and boundary sets in one ragged pass
        ("kovasznay", "pinn", 32),  # second order, three outputs
    ],
)
def test_hand_written_backward_trains_like_the_autograd_engine(data, tmp_path, system, mode, batch):
    # the default engine takes derivatives of tanh networks through learn/fused.py (its
    # own backward pass); engine = "autograd" differentiates nested autograd graphs.
    # Same batches and updates: float64 weights agree to rounding after three epochs.
    fast = train(_cfg(data[system], mode, batch_size=batch), tmp_path / "f")
    ref = train(_cfg(data[system], mode, batch_size=batch, engine="autograd"), tmp_path / "a")
    torch.testing.assert_close(_weights(fast.model), _weights(ref.model), rtol=0, atol=1e-10)
    for a, b in zip(fast.history, ref.history, strict=True):
        assert a["train"]["loss"] == pytest.approx(b["train"]["loss"], rel=1e-10)
