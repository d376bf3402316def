"""Derivative distillation and multi-stage training (derlhybrid.transfer): teacher labels
equal autograd derivatives and are written atomically; a student distilled through the
teacher's derivatives plus boundary data reproduces the teacher (paper.md §2,
"Distillation"); EWC's Fisher and penalty match a hand computation; a pipeline killed
after a stage resumes without retraining it; bad pipelines are one-line errors."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from derlhybrid.cli import main
from derlhybrid.data.generate import GenerateRequest, generate
from derlhybrid.learn import MLP, MLPConfig, PointSet, Problem, TrainConfig, input_derivatives
from derlhybrid.learn.checkpoint import load_checkpoint, save_checkpoint
from derlhybrid.learn.losses import StepContext, build_objective
from derlhybrid.learn.problems import load_problem
from derlhybrid.learn.trainer import load_model
from derlhybrid.systems import AllenCahn
from derlhybrid.transfer import (
    DistillSource,
    EWCTerm,
    LabelConfig,
    Pipeline,
    Stage,
    distillation,
    label,
    parameter_vector,
    read_labels,
    run_pipeline,
    select_points,
    stage_problem,
    task_fisher,
)
from derlhybrid.transfer import labels as label_module


def _sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _teacher(seed=3, width=8, depth=2) -> MLP:
    """A small float64 tanh MLP with enough curvature on [−1, 0]² to be worth learning."""
    torch.manual_seed(seed)
    model = MLP(MLPConfig(n_in=2, n_out=1, width=width, depth=depth, dtype="float64"))
    with torch.no_grad():
        model.layers[0].weight.mul_(2.5)
        model.layers[-1].weight.mul_(2.0)
    return model


@pytest.fixture(scope="module")
def allen(tmp_path_factory):
    d = tmp_path_factory.mktemp("transfer-data")
    return generate(
        GenerateRequest(
            system="allen-cahn", out=str(d / "a.h5"), n_points=120, n_boundary=6, seed=2
        ),
        progress=False,
    )


# -- labels ------------------------------------------------------------------------------


def test_labels_equal_autograd_derivatives_and_carry_provenance(tmp_path):
    teacher = _teacher()
    ckpt = tmp_path / "teacher.pt"
    save_checkpoint(
        ckpt,
        {
            "model_config": teacher.config.to_dict(),
            "model_state": teacher.state_dict(),
            "system": AllenCahn().describe(),
            "problem": {"inputs": ["x", "y"], "outputs": ["u"]},
            "epoch": 7,
        },
    )
    X = torch.as_tensor(np.random.default_rng(1).uniform(-1, 1, (23, 2)))
    true = {"output": torch.randn(23, 1, dtype=torch.float64)}
    forcing = torch.randn(23, dtype=torch.float64)
    out = label(
        ckpt, PointSet(X, {**true, "forcing": forcing}), out=tmp_path / "l.h5", batch_size=5
    )
    lab = read_labels(out)
    f = teacher
    for n in range(len(X)):  # per point, by torch.autograd.functional (not the engine)
        x = X[n]
        u = f(x[None])[0]
        J = torch.autograd.functional.jacobian(lambda z: f(z[None])[0], x)
        H = torch.autograd.functional.hessian(lambda z: f(z[None])[0, 0], x)
        assert torch.allclose(lab.points.targets["output"][n], u, rtol=0, atol=1e-10)
        assert torch.allclose(lab.points.targets["jacobian"][n], J, rtol=0, atol=1e-10)
        assert torch.allclose(lab.points.targets["hessian"][n, 0], H, rtol=0, atol=1e-10)
    assert torch.equal(lab.points.X, X)
    assert torch.equal(lab.true["output"], true["output"])
    assert torch.equal(lab.points.targets["forcing"], forcing)  # the residual's data
    p = lab.provenance
    assert p["role"] == "distillation" and p["complete"] is True
    assert p["format"] == "derlhybrid-dataset" and p["layout"] == "points"
    assert p["teacher"]["sha256"] == _sha(ckpt)
    assert p["teacher"]["checkpoint"] == str(ckpt.resolve()) and p["teacher"]["epoch"] == 7
    assert p["teacher"]["model_config"] == teacher.config.to_dict()
    assert p["system"] == "allen-cahn" and p["system_parameters"] == {"lam": 0.01}
    assert p["orders"] == [0, 1, 2] and p["derivative_inputs"] == ["x", "y"]
    assert p["created"] and p["package_version"] and p["config_hash"]
    # derivatives with respect to a subset of the inputs, first order only
    sub = read_labels(
        label(f, X, out=tmp_path / "y.h5", orders=(1,), inputs=("y",), system="allen-cahn")
    )
    assert set(sub.points.targets) == {"jacobian"} and sub.derivative_inputs == ("y",)
    assert torch.allclose(
        sub.points.targets["jacobian"][:, :, 0],
        lab.points.targets["jacobian"][:, :, 1],
        rtol=0,
        atol=1e-14,
    )


def test_labels_are_written_atomically(tmp_path, monkeypatch):
    teacher, X = _teacher(), torch.zeros(10, 2, dtype=torch.float64)
    out = tmp_path / "l.h5"
    calls = []
    real = label_module.input_derivatives

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # mid-file: only the temporary name exists
            assert not out.exists() and len(list(tmp_path.glob("l.h5.*.writing"))) == 1
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(label_module, "input_derivatives", interrupted)
    with pytest.raises(KeyboardInterrupt):
        label(teacher, X, out=out, batch_size=4, system="allen-cahn")
    assert not out.exists() and not list(tmp_path.iterdir())  # no partial file left
    monkeypatch.setattr(label_module, "input_derivatives", real)
    label(teacher, X, out=out, batch_size=4, system="allen-cahn")
    with h5py.File(out) as f:
        assert bool(f.attrs["complete"]) and f["points/hessian"].shape == (10, 1, 2, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.h5"]


# -- the distillation guarantee ------------------------------------------------------------


def test_derivative_distillation_with_boundary_data_reproduces_the_teacher(tmp_path):
    # paper.md §2: matching ∇û_T on a connected region plus the values on part of its
    # boundary pins the function: the student (same architecture, fresh weights) becomes
    # the teacher on the region; without the derivatives (forgetting) it does not, and
    # output-only distillation gets the values but not the derivatives as well
    teacher = _teacher()
    rng = np.random.default_rng(0)
    X = torch.as_tensor(rng.uniform(-1, 0, (200, 2)))
    s = torch.linspace(-1, 0, 21, dtype=torch.float64)
    edge = torch.stack([torch.full_like(s, -1.0), s], 1)  # one edge, x = −1
    with torch.no_grad():
        u_edge = teacher(edge)
    labels = label(teacher, X, out=tmp_path / "teacher.h5", system="allen-cahn")
    cfg = TrainConfig.from_dict(
        {
            "data": {"path": str(labels)},
            "model": {"width": 8, "depth": 2, "dtype": "float64"},
            "objective": {"terms": [{"term": "boundary"}]},
            "train": {
                "epochs": 20,
                "batch_size": 200,
                "optimizer": "lbfgs",
                "lbfgs": {"lr": 1.0, "max_iter": 50, "line_search": "strong_wolfe"},
                "seed": 7,
                "progress": False,
            },
        }
    )
    system = AllenCahn()
    held_out = torch.as_tensor(rng.uniform(-1, 0, (500, 2)))
    with torch.no_grad():
        ref = input_derivatives(teacher, held_out, [(0,), (1,)])
    errors = {}
    for mode in ("derivative", "output", "forgetting"):
        problem = Problem(
            system=system,
            inputs=("x", "y"),
            outputs=("u",),
            derivative_inputs=(0, 1),
            sets={"train": PointSet(X), "boundary": PointSet(edge, {"output": u_edge})},
        )
        stage = Stage(
            mode,
            cfg,
            distill=(DistillSource(mode, labels=str(labels)),),
            label=LabelConfig(sets=()),
        )
        (res,) = run_pipeline(Pipeline((stage,)), tmp_path / mode, problems={mode: problem})
        student = load_model(res.checkpoint)[0]
        with torch.no_grad():
            d = input_derivatives(student, held_out, [(0,), (1,)])
        jac, jac_ref = d.jacobian((0, 1)), ref.jacobian((0, 1))
        errors[mode] = (
            float((d.value - ref.value).norm() / ref.value.norm()),
            float((jac - jac_ref).norm() / jac_ref.norm()),
        )
    u_err, j_err = errors["derivative"]
    assert u_err < 5e-3 and j_err < 3e-2, errors  # the teacher, reproduced
    assert errors["forgetting"][0] > max(3e-2, 10 * u_err), errors
    assert errors["forgetting"][1] > 0.3, errors
    assert errors["output"][1] > 3 * j_err, errors


def test_distillation_modes_are_the_existing_terms_on_the_old_points(tmp_path, allen):
    teacher = _teacher()
    problem = load_problem(allen)
    pts = problem.sets["train"]
    full = read_labels(label(teacher, pts, out=tmp_path / "full.h5", system="allen-cahn"))
    expect = {
        "output": ["output"],
        "derivative": ["jacobian"],
        "sobolev": ["output", "jacobian"],
        "hessian": ["hessian"],
        "der+hesl": ["jacobian", "hessian"],
        "sob+hesl": ["output", "jacobian", "hessian_projection"],
        "pinn": ["residual"],
        "forgetting": [],
    }
    for mode, names in expect.items():
        dist = distillation(problem, full, DistillSource(mode, labels="full.h5", weight=0.5))
        assert [t.term.name for t, _ in dist.terms] == names
        assert all(w == 0.5 for _, w in dist.terms)
        prefix = "replay:full" if mode == "pinn" else "distill:full"
        assert all(t.name == f"{prefix}:{n}" for (t, _), n in zip(dist.terms, names, strict=True))
    replay = distillation(problem, full, DistillSource("pinn", labels="f.h5"), seed=3)
    assert len(replay.points) == round(0.2 * len(pts)) and set(replay.points.targets) == {"forcing"}
    again = distillation(problem, full, DistillSource("pinn", labels="f.h5"), seed=3)
    assert torch.equal(replay.points.X, again.points.X)  # seeded
    # derivatives restricted to y: the targets are the y column of the teacher's
    only_y = distillation(problem, full, DistillSource("der+hesl", labels="f.h5", inputs=["y"]))
    assert only_y.terms[0][0].inputs == (1,)
    jac, hes = full.points.targets["jacobian"], full.points.targets["hessian"]
    assert torch.equal(only_y.points.targets["jacobian"], jac[:, :, [1]])
    assert torch.equal(only_y.points.targets["hessian"], hes[:, :, [1]][:, :, :, [1]])
    # the term really differentiates with respect to y only: zero on the teacher itself
    only_y.add_to(problem)
    ctx = StepContext(teacher, problem)
    term = only_y.terms[0][0]
    d = input_derivatives(teacher, only_y.points.X, term.needs(problem))
    assert term(d, only_y.points, ctx).item() < 1e-28
    first = read_labels(
        label(teacher, pts, out=tmp_path / "o1.h5", orders=(0, 1), system="allen-cahn")
    )
    with pytest.raises(ValueError, match="needs order-2 labels"):
        distillation(problem, first, DistillSource("hessian", labels="o1.h5"))
    no_forcing = read_labels(label(teacher, pts.X, out=tmp_path / "nf.h5", system="allen-cahn"))
    with pytest.raises(ValueError, match="residual replay needs 'forcing'"):
        distillation(problem, no_forcing, DistillSource("pinn", labels="nf.h5"))


def test_extend_starts_from_the_previous_stage(allen, tmp_path):
    base = {"model": {"width": 8, "depth": 1, "dtype": "float64"}, "objective": {"mode": "derl"}}
    cfg = {**base, "data": {"path": str(allen)}, "train": {"epochs": 2, "progress": False}}
    tiny = {**cfg, "train": {"epochs": 1, "lr": 1e-12, "progress": False}}
    stages = (
        Stage("a", TrainConfig.from_dict(cfg)),
        Stage("b", TrainConfig.from_dict(tiny), init="extend"),
        Stage("c", TrainConfig.from_dict(tiny)),  # new: the seeded initialisation
    )
    res = run_pipeline(Pipeline(stages), tmp_path / "run", progress=False)
    a, b, c = (parameter_vector(load_model(r.checkpoint)[0]).detach() for r in res)
    assert torch.allclose(a, b, rtol=0, atol=1e-9) and not torch.allclose(a, c, atol=1e-3)


# -- EWC ----------------------------------------------------------------------------------


def test_ewc_fisher_and_penalty_match_a_hand_computation():
    # û(x) = Σ_j w_j tanh(a_j x + c_j) + b (the y column of W1 is zero: y = 0 here)
    torch.manual_seed(0)
    model = MLP(MLPConfig(n_in=2, n_out=1, width=2, depth=1, dtype="float64"))
    with torch.no_grad():  # a 1-input network inside a 2-input system: the y weights are 0
        model.layers[0].weight[:, 1] = 0.0
    rng = np.random.default_rng(4)
    x = rng.uniform(-1, 1, 6)
    u = rng.normal(size=6)
    X = torch.as_tensor(np.stack([x, np.zeros(6)], 1))
    problem = Problem(
        system=AllenCahn(),
        inputs=("x", "y"),
        outputs=("u",),
        derivative_inputs=(0, 1),
        sets={
            "train": PointSet(X, {"output": torch.as_tensor(u[:, None])}),
            "boundary": PointSet(X[:2], {"output": torch.zeros(2, 1, dtype=torch.float64)}),
        },
    )
    # the system loss is 2·mean(û − u)² (the boundary term is not part of it)
    objective = build_objective(problem, "outl", {"sys": 2.0, "bc": 5.0})
    fisher = task_fisher(model, objective, problem, batch_size=3)

    W1 = model.layers[0].weight.detach().numpy()
    a, c = W1[:, 0], model.layers[0].bias.detach().numpy()
    w, b = model.layers[1].weight.detach().numpy()[0], model.layers[1].bias.item()
    squares = []
    for sl in (slice(0, 3), slice(3, 6)):
        xb, ub = x[sl], u[sl]
        h = np.tanh(np.outer(xb, a) + c)  # (3, 2)
        r = h @ w + b - ub
        k = 2.0 * 2.0 / len(xb)  # weight 2, d/dû of the mean square
        gW1 = np.zeros((2, 2))  # ∂/∂W1, rows j = hidden units, columns (x, y); y is 0
        gW1[:, 0] = [k * (r * w[j] * (1 - h[:, j] ** 2) * xb).sum() for j in (0, 1)]
        gc = k * (r[:, None] * w * (1 - h**2)).sum(0)  # ∂/∂c_j
        gw = k * (r[:, None] * h).sum(0)  # ∂/∂w_j
        gb = k * r.sum()  # ∂/∂b
        g = np.concatenate([gW1.ravel(), gc, gw, [gb]])  # the order of model.parameters()
        squares.append(g**2)
    expected = np.mean(squares, axis=0)
    np.testing.assert_allclose(fisher.numpy(), expected, rtol=1e-12, atol=1e-15)

    star = parameter_vector(model).detach().clone()
    term = EWCTerm(fisher=fisher, theta_star=star)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    theta = parameter_vector(model).detach().numpy()
    ctx = StepContext(model, problem)
    value = term(None, None, ctx)
    penalty = np.mean(expected * (theta - star.numpy()) ** 2)
    assert abs(value.item() - penalty) < 1e-15
    value.backward()  # ∂/∂θ_i = 2 F_i (θ_i − θ*_i) / P
    grad = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).numpy()
    np.testing.assert_allclose(
        grad, 2 * expected * (theta - star.numpy()) / theta.size, rtol=1e-12, atol=1e-18
    )


# -- selections -----------------------------------------------------------------------------


def test_region_selects_interior_and_boundary_points(allen):
    p = load_problem(allen)
    lower = select_points(p, region={"y": (-1.0, 0.0)})
    for name in ("train", "val", "test"):
        X = p.sets[name].X
        assert len(lower.sets[name]) == int((X[:, 1] <= 0).sum()) > 0
        assert bool((lower.sets[name].X[:, 1] <= 0).all())
    Xb = p.sets["boundary"].X
    assert len(lower.sets["boundary"]) == int((Xb[:, 1] <= 0).sum())
    every_edge = select_points(p, region={"y": (-1.0, 0.0)}, boundary_region={})
    assert len(every_edge.sets["boundary"]) == len(Xb)
    with pytest.raises(ValueError, match="unknown input 'z'"):
        select_points(p, region={"z": (0.0, 1.0)})
    with pytest.raises(ValueError, match="no training points"):
        select_points(p, region={"x": (5.0, 6.0)})


def test_parameter_sets_select_the_rows_of_those_sets(tmp_path):
    path = generate(
        GenerateRequest(
            system="allen-cahn-multi",
            out=str(tmp_path / "m.h5"),
            n_points=15,
            n_parameter_sets=5,
            n_boundary=3,
            seed=1,
        ),
        progress=False,
    )
    with h5py.File(path) as f:
        values, train_sets = f["parameters/values"][...], f["parameters/train"][...]
    chosen = (int(train_sets[0]), int(train_sets[-1]))
    cfg = TrainConfig.from_dict({"data": {"path": str(path)}, "objective": {"mode": "derl"}})
    p = stage_problem(Stage("s", cfg, parameter_sets=chosen))
    for name, rows in (("train", 15 * 2), ("boundary", 4 * 3 * 2)):
        P = p.sets[name].X[:, 2:].numpy()
        assert len(P) == rows
        assert all(any(np.allclose(r, values[k]) for k in chosen) for r in P)
    assert "val" not in p.sets  # no chosen set is a validation set: the split is dropped
    with pytest.raises(ValueError, match="parameter set 9 does not exist"):
        stage_problem(Stage("s", cfg, parameter_sets=(9,)))


# -- pipelines --------------------------------------------------------------------------------


PIPELINE = """
[defaults]
model = {{ width = 8, depth = 1, dtype = "float64" }}
train = {{ epochs = 3, batch_size = 32, lr = 1e-3, seed = 5, progress = false }}

[[stages]]
name = "lower"
data = {{ path = "{data}", region = {{ y = [-1, 0] }} }}
objective = {{ mode = "derl" }}

[[stages]]
name = "upper"
init = "extend"
data = {{ path = "{data}", region = {{ y = [0, 1] }} }}
objective = {{ mode = "pinn" }}
train = {{ epochs = {epochs}, batch_size = 64 }}
label = {{ sets = ["train", "distill:lower"] }}
[[stages.distill]]
source = "lower"
mode = "derivative"
inputs = ["x", "y"]
[[stages.distill]]
source = "lower"
mode = "pinn"
fraction = 0.5
[stages.ewc]
source = "lower"
weight = 0.1
"""

_KILL_AFTER_LOWER = """
import os, signal, sys
from derlhybrid.transfer import Pipeline, run_pipeline
def hook(result):
    if result.name == "lower":
        os.kill(os.getpid(), signal.SIGKILL)
run_pipeline(Pipeline.from_toml(sys.argv[1]), sys.argv[2], progress=False, after_stage=hook)
"""


def test_pipeline_killed_after_a_stage_resumes_at_the_next(allen, tmp_path, capsys):
    cfg = tmp_path / "pipe.toml"
    cfg.write_text(PIPELINE.format(data=allen, epochs=250))
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # 1. SIGKILL right after stage 1 finished
    proc = subprocess.run(
        [sys.executable, "-c", _KILL_AFTER_LOWER, str(cfg), str(out)], env=env, timeout=300
    )
    assert proc.returncode == -signal.SIGKILL
    lower = json.loads((out / "lower" / "stage.json").read_text())
    assert lower["status"] == "done" and not (out / "upper").exists()
    ckpt1 = out / "lower" / "checkpoint.pt"
    sha1, mtime1 = _sha(ckpt1), ckpt1.stat().st_mtime_ns
    assert lower["provenance"]["checkpoint_sha256"] == sha1
    labels1 = read_labels(out / "lower" / "labels.h5")
    assert labels1.provenance["teacher"]["sha256"] == sha1 and "forcing" in labels1.points.targets
    # 2. SIGKILL in the middle of stage 2 (after its first checkpoint)
    cmd = [sys.executable, "-m", "derlhybrid.cli", "stages", str(cfg), "--out", str(out)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt2 = out / "upper" / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while not ckpt2.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(ckpt2)["epoch"]
    assert 1 <= killed_at < 250, "stage 2 finished before it could be killed"
    assert json.loads((out / "upper" / "stage.json").read_text())["status"] == "running"
    # 3. rerun: stage 1 untouched, stage 2 resumed from its checkpoint and finished
    assert main(["stages", str(cfg), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "lower: done before (skipped)" in printed and "upper: trained 250 epochs" in printed
    assert _sha(ckpt1) == sha1 and ckpt1.stat().st_mtime_ns == mtime1
    upper = json.loads((out / "upper" / "stage.json").read_text())
    assert upper["status"] == "done" and upper["upstream"] == {"lower": sha1}
    summary = json.loads((out / "upper" / "train.json").read_text())
    assert summary["resumed_from_epoch"] >= killed_at and summary["epochs"] == 250
    ck = load_checkpoint(ckpt2)
    names = {t["term"] for t in ck["objective"]}
    assert {"residual", "distill:lower:jacobian", "replay:lower:residual", "ewc"} <= names
    lower_model = load_model(ckpt1)[0]
    assert torch.equal(ck["ewc"]["theta_star"], parameter_vector(lower_model).detach())
    assert ck["ewc"]["fisher"].shape == ck["ewc"]["theta_star"].shape
    assert bool((ck["ewc"]["fisher"] > 0).any())
    n_lower = len(labels1)
    replay = next(d for d in upper["provenance"]["distill"] if d["mode"] == "pinn")
    assert replay["n_points"] == round(0.5 * n_lower)
    labels2 = read_labels(out / "upper" / "labels.h5")  # the upper half and the lower points
    assert labels2.provenance["teacher"]["sha256"] == _sha(ckpt2)
    n_upper = len(stage_problem(Pipeline.from_toml(cfg).stage("upper")).sets["train"])
    assert len(labels2) == n_upper + n_lower
    assert torch.equal(labels2.points.X[n_upper:], labels1.points.X)
    assert torch.equal(labels2.true["output"][n_upper:], labels1.true["output"])  # the truth
    assert "forcing" in labels2.points.targets
    # 4. a finished stage with another configuration is refused, not retrained
    cfg.write_text(PIPELINE.format(data=allen, epochs=250).replace("lr = 1e-3", "lr = 2e-3"))
    assert main(["stages", str(cfg), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "another configuration (config.train.lr differ)" in err and err.count("\n") == 1


def test_example_pipeline_is_valid():
    path = Path(__file__).parent.parent / "examples" / "stages" / "allen-cahn-space.toml"
    pipe = Pipeline.from_toml(path)
    assert [s.name for s in pipe.stages] == ["lower-left", "lower-right", "upper"]
    assert pipe.extends(pipe.stages[2]) == "lower-right"
    assert pipe.stages[1].label.sets == ("train", "distill:lower-left")
    assert pipe.stages[0].config.data.path.endswith("allen-cahn-paper.h5")


def test_replay_fraction_follows_the_students_init(allen):
    """paper.md §10: replay a random 20 % of the old points when extending, all of them
    with a fresh student (the reference's "PINN full"); an explicit fraction wins."""

    def fractions(init, extra=None):
        replay = {"source": "a", "mode": "pinn", **(extra or {})}
        pipe = Pipeline.from_dict(
            {
                "stages": [
                    {"name": "a", "data": {"path": str(allen)}},
                    {"name": "b", "data": {"path": str(allen)}, "init": init, "distill": [replay]},
                ]
            }
        )
        return [d.fraction for d in pipe.stages[1].distill]

    assert fractions("extend") == [0.2]
    assert fractions("new") == [1.0]
    assert fractions("new", {"fraction": 0.3}) == [0.3]


STAGE_A = '[[stages]]\nname = "a"\ndata = { path = "X" }\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[[stages]]\nname = "a"\ndata = { path = "X" }\ntrian = { epochs = 1 }\n',
            "unknown key 'trian'",
        ),
        (
            '[[stages]]\nname = "a"\ndata = { path = "X" }\n[stages.train]\nepoch = 1\n',
            "unknown key 'epoch'",
        ),
        (
            STAGE_A + '[[stages.distill]]\nsource = "b"\nmode = "derivative"\n',
            "distill source 'b' is not a stage",
        ),
        (
            STAGE_A
            + '[[stages.distill]]\nsource = "b"\nmode = "derivative"\n'
            + STAGE_A.replace('"a"', '"b"'),
            "'b' is a later stage",
        ),
        (
            STAGE_A + '[[stages.distill]]\nsource = "a"\nmode = "sobolv"\n',
            "unknown mode 'sobolv'",
        ),
        (
            '[[stages]]\nname = "a"\ndata = { path = "X" }\ninit = "extend"\n',
            "needs an earlier stage",
        ),
        ('[[stages]]\nname = "a"\ndata = { path = "/nonexistent.h5" }\n', "does not exist"),
        ("[defaults]\n", "no stages"),
        (None, "cannot read pipeline config"),
    ],
)
def test_cli_bad_pipeline_is_one_line_exit_2(tmp_path, capsys, text, message):
    cfg = tmp_path / "p.toml"
    if text is not None:
        cfg.write_text(text)
    assert main(["stages", str(cfg), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
