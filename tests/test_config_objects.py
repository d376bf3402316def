"""The training configuration as Python objects (issue 16): optimizers, schedules and loss
terms built directly, checked as they are built (one line naming the key), equal to the
dict/TOML form they stand for, and a loss term of the user's own class trained with,
recorded and guarded on resume."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

import derlhybrid as dh
from derlhybrid.data.generate import GenerateRequest, generate
from derlhybrid.learn.checkpoint import CheckpointError, load_checkpoint
from derlhybrid.learn.config import (
    ConfigError,
    LBFGSConfig,
    ObjectiveConfig,
    ScheduleConfig,
    TrainConfig,
    TrainingConfig,
)
from derlhybrid.learn.losses import Objective, build_objective

DATA = {"path": "x.h5"}


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (lambda: dh.Adam(lr="1e-3"), r"^train\.optimizer\.lr must be a number, got '1e-3'"),
        (lambda: dh.Adam(lr=-1), r"^train\.optimizer\.lr must be a positive number, got -1"),
        (lambda: dh.Adam(lr=float("inf")), r"^train\.optimizer\.lr must be a positive"),
        (lambda: dh.Adam(schedule={"kind": "cosine"}), r"^train\.optimizer\.schedule must"),
        (lambda: dh.Schedule(kind="cosin"), r"^train\.schedule\.kind: unknown schedule 'cosin'"),
        (lambda: dh.Schedule(step_size=1.5), r"^train\.schedule\.step_size must be an integer"),
        (lambda: dh.LBFGS(max_iter="3"), r"^train\.lbfgs\.max_iter must be an integer"),
        (lambda: dh.LBFGS(batch="half"), r"^train\.lbfgs\.batch must be 'mini' or 'full'"),
        (lambda: dh.AdamThenLBFGS(adam_epochs=-1), r"^train\.optimizer\.adam_epochs must be"),
        (lambda: dh.AdamThenLBFGS(adam_epochs=2, adam=3), r"^train\.optimizer\.adam must be"),
        (lambda: TrainingConfig(optimizer=3), r"^train\.optimizer: unknown optimizer 3"),
        (lambda: TrainingConfig(optimizer="sgd"), r"^train\.optimizer: unknown optimizer 'sgd'"),
        (
            lambda: TrainingConfig(optimizer=dh.Adam(), lr=0.1),
            r"^train\.lr: give it inside the optimizer object \(Adam",
        ),
        (
            lambda: TrainingConfig(epochs=5, optimizer=dh.AdamThenLBFGS(adam_epochs=10)),
            r"adam_epochs ≤ epochs",
        ),
        (
            lambda: TrainConfig(DATA, objective=[(dh.JacobianTerm(), "0.1")]),
            r"^objective\.terms\[0\]\.weight must be a number, got '0\.1'",
        ),
        (
            lambda: TrainConfig(DATA, objective=[("jacobian", "x")]),
            r"^objective\.terms\[0\]\.weight must be a number, got 'x'",
        ),
        (
            lambda: TrainConfig(DATA, objective=[(dh.OutputTerm(), 1.0), ("jacobian", True)]),
            r"^objective\.terms\[1\]\.weight must be a number, got True",
        ),
        (
            lambda: TrainConfig(DATA, objective=[(dh.OutputTerm(), float("nan"))]),
            r"^objective\.terms\[0\]\.weight must be a finite number",
        ),
        (
            lambda: TrainConfig(DATA, objective=[("jacobain", 1.0)]),
            r"^objective\.terms: unknown term 'jacobain'",
        ),
        (lambda: TrainConfig(DATA, objective=[3]), r"^objective\.terms\[0\] must be a"),
        (lambda: TrainConfig(DATA, objective=[(3, 1.0)]), r"^objective\.terms\[0\]: the term"),
        (lambda: TrainConfig(DATA, objective=3), r"^objective must be a table, a mode name"),
        (lambda: TrainConfig(DATA, objective="derll"), r"^objective\.mode: unknown mode"),
        (lambda: TrainConfig(DATA, train=3), r"must be a table"),
        (lambda: TrainConfig(DATA, model={"widht": 3}), r"^model: unknown key 'widht'"),
        (lambda: TrainConfig({"form": "state"}), r'path = "FILE" is required'),
        # the parts built directly from Python are checked as those read from TOML
        (lambda: TrainingConfig(seed="3"), r"^train\.seed must be an integer, got '3'"),
        (lambda: TrainingConfig(epochs=True), r"^train\.epochs must be an integer, got True"),
        (lambda: TrainingConfig(compile="no"), r"^train\.compile must be true or false"),
        (lambda: TrainingConfig(lbfgs={"batc": "mini"}), r"^train\.lbfgs: unknown key 'batc'"),
        (lambda: dh.DataConfig(path=3), r"^data\.path must be a string, got 3"),
        (lambda: dh.DataConfig(path="x.h5", memory_mb="1"), r"^data\.memory_mb must be a"),
        (lambda: dh.ObjectiveConfig(mode=3), r"^objective\.mode must be a string, got 3"),
        (lambda: dh.ObjectiveConfig(weights={"sys": "1"}), r"^objective\.weights must be"),
    ],
)
def test_objects_refuse_wrong_values_in_one_line_naming_the_key(build, words):
    with pytest.raises(ConfigError, match=words) as exc:
        build()
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ({"train": {"optimizer": 3}}, r"train\.optimizer: unknown optimizer 3"),
        ({"train": {"lr": "1e-3"}}, r"train\.lr must be a number, got '1e-3'"),
        ({"train": {"schedule": {"kind": "cosin"}}}, r"train\.schedule\.kind: unknown"),
        ({"train": {"schedule": {"kindd": "cosine"}}}, r"train\.schedule: unknown key 'kindd'"),
        ({"train": {"lbfgs": {"iters": 3}}}, r"train\.lbfgs: unknown key 'iters'"),
        ({"train": {"adam": {"lr": 1e-3}}}, r"train: unknown key 'adam'"),
        (
            {"objective": {"terms": [{"term": "output", "weight": "1"}]}},
            r"objective\.terms\[0\]\.weight must be a number, got '1'",
        ),
    ],
)
def test_tables_keep_their_keys_and_their_checks(table, words):
    with pytest.raises(ConfigError, match=words) as exc:
        TrainConfig.from_dict({"data": DATA, **table})
    assert "\n" not in str(exc.value)


def test_python_parts_are_the_tables_they_stand_for(tmp_path):
    """A pathlib.Path and an L-BFGS table given from Python build what TOML builds."""
    a = TrainingConfig(optimizer="lbfgs", lbfgs={"batch": "mini", "max_iter": 5})
    b = TrainConfig.from_dict(
        {
            **{"data": DATA},
            "train": {"optimizer": "lbfgs", "lbfgs": {"batch": "mini", "max_iter": 5}},
        }
    ).train
    assert a == b and isinstance(a.lbfgs, dh.LBFGS)
    assert dh.DataConfig(path=tmp_path / "x.h5").path == str(tmp_path / "x.h5")


def test_the_old_names_are_the_new_classes():
    assert LBFGSConfig is dh.LBFGS and ScheduleConfig is dh.Schedule
    assert TrainingConfig(lbfgs=LBFGSConfig(batch="mini")).lbfgs == dh.LBFGS(batch="mini")


TABLES = {
    "adam": (
        {"epochs": 200, "optimizer": "adam", "lr": 5e-4, "schedule": {"kind": "cosine"}},
        dict(epochs=200, optimizer=dh.Adam(lr=5e-4, schedule=dh.Schedule(kind="cosine"))),
    ),
    "lbfgs": (
        {"epochs": 50, "optimizer": "lbfgs", "lbfgs": {"line_search": "strong_wolfe"}},
        dict(epochs=50, optimizer=dh.LBFGS(line_search="strong_wolfe")),
    ),
    "adam+lbfgs": (
        {
            "epochs": 30,
            "optimizer": "adam+lbfgs",
            "adam_epochs": 20,
            "lr": 2e-3,
            "schedule": {"kind": "step", "step_size": 5, "gamma": 0.5},
            "lbfgs": {"batch": "mini", "max_iter": 5},
        },
        dict(
            epochs=30,
            optimizer=dh.AdamThenLBFGS(
                adam_epochs=20,
                adam=dh.Adam(lr=2e-3, schedule=dh.Schedule(kind="step", step_size=5, gamma=0.5)),
                lbfgs=dh.LBFGS(batch="mini", max_iter=5),
            ),
        ),
    ),
}


@pytest.mark.parametrize("name", list(TABLES))
def test_an_optimizer_object_is_its_table(name):
    table, kwargs = TABLES[name]
    from_table = TrainConfig.from_dict({"data": DATA, "train": table})
    from_objects = TrainConfig(DATA, train=TrainingConfig(**kwargs))
    assert from_objects == from_table
    assert json.dumps(from_objects.to_dict()) == json.dumps(from_table.to_dict())
    assert from_objects.train.optimizer == name  # the canonical (flat) form
    assert from_table.train.optimizer_object == kwargs["optimizer"]
    # the object round-trips through its table
    again = TrainingConfig(epochs=kwargs["epochs"], optimizer=from_table.train.optimizer_object)
    assert again == from_table.train


def test_an_objective_object_is_its_table():
    table = {
        "terms": [
            {"term": "output", "weight": 1.0},
            {"term": "jacobian", "weight": 0.1},
            {"term": "initial", "weight": 1.0},
            {"term": "hessian_projection", "weight": 2.0, "n_directions": 5},
        ]
    }
    from_table = TrainConfig.from_dict({"data": DATA, "objective": table})
    pairs = [
        (dh.OutputTerm(), 1.0),
        (dh.JacobianTerm(), 0.1),
        (dh.InitialTerm(), 1.0),
        (dh.HessianProjectionTerm(n_directions=5), 2.0),
    ]
    for objective in (
        Objective(pairs),
        pairs,
        [("output", 1.0), ("jacobian", 0.1), ("initial", 1.0), pairs[3]],
        ObjectiveConfig(terms=list(pairs)),
    ):
        cfg = TrainConfig(DATA, objective=objective)
        assert cfg == from_table
        assert json.dumps(cfg.to_dict()) == json.dumps(from_table.to_dict())
    # a mode name is the table {mode = NAME}; the default is DERL
    assert TrainConfig(DATA, objective="sob") == TrainConfig.from_dict(
        {"data": DATA, "objective": {"mode": "sob"}}
    )
    assert TrainConfig(DATA).objective == ObjectiveConfig(mode="derl")


@dataclass(frozen=True)
class Damped(dh.Term):
    """mean |û|² times a factor (a term of the user's own class)"""

    name: ClassVar[str] = "damped"
    factor: float = 1.0

    def __call__(self, d, batch, ctx):
        return self.factor * d.value.square().mean()


@dataclass(frozen=True)
class Other(dh.Term):
    name: ClassVar[str] = "other"

    def __call__(self, d, batch, ctx):
        return d.value.abs().mean()


def test_a_term_of_ones_own_class_is_kept_and_recorded():
    cfg = TrainConfig(DATA, objective=Objective([(dh.JacobianTerm(), 1.0), (Damped(0.5), 0.2)]))
    assert cfg.objective.terms[0] == {"term": "jacobian", "weight": 1.0}
    assert cfg.objective.terms[1] == (Damped(0.5), 0.2)
    record = cfg.to_dict()["objective"]["terms"][1]
    assert record == {
        "term": "damped",
        "weight": 0.2,
        "factor": 0.5,
        "class": f"{__name__}.Damped",
    }
    # this process defines the class: the record rebuilds the same config
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    # a class no process defines is refused in one line
    gone = {**record, "class": "somewhere.Else"}
    with pytest.raises(ConfigError, match=r"objective\.terms\[0\]: loss term 'damped' is of") as e:
        TrainConfig.from_dict({"data": DATA, "objective": {"terms": [gone]}})
    assert "\n" not in str(e.value)
    # a subclass of a built-in term is a class of its own too (not the built-in's table)

    @dataclass(frozen=True)
    class MyJacobian(dh.JacobianTerm):
        pass

    kept = TrainConfig(DATA, objective=[(MyJacobian(), 1.0)]).to_dict()["objective"]["terms"]
    assert kept[0]["class"].endswith("MyJacobian") and kept[0]["term"] == "jacobian"


@pytest.fixture(scope="module")
def pendulum(tmp_path_factory):
    d = tmp_path_factory.mktemp("objects-data")
    request = GenerateRequest(
        system="pendulum", out=str(d / "p.h5"), n_trajectories=6, n_times=21, t_end=1.0, seed=4
    )
    return generate(request, progress=False)


def _config(path, objective, epochs=2):
    return TrainConfig(
        data=dh.DataConfig(path=str(path)),
        model={"width": 8, "depth": 2, "dtype": "float64"},
        objective=objective,
        train=TrainingConfig(
            epochs=epochs, batch_size=32, seed=3, progress=False, optimizer=dh.Adam(lr=2e-3)
        ),
    )


def test_a_term_of_ones_own_class_in_the_config_trains_and_guards_the_resume(pendulum, tmp_path):
    objective = Objective([(dh.JacobianTerm(), 1.0), (Damped(0.5), 0.2)])
    run = dh.train(_config(pendulum, objective), tmp_path / "run")
    assert "damped" in run.history[-1]["train"]
    # the same as the term given through RunExtras (appended after the config's terms)
    extras = dh.RunExtras(terms=[(Damped(0.5), 0.2)])
    other = dh.train(_config(pendulum, [(dh.JacobianTerm(), 1.0)]), tmp_path / "x", extras=extras)
    for a, b in zip(run.model.parameters(), other.model.parameters(), strict=True):
        assert torch.equal(a, b)
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert ckpt["config"]["objective"]["terms"][1]["class"] == f"{__name__}.Damped"
    # a longer run with the same term resumes; another term or option is refused
    longer = dh.train(_config(pendulum, objective, epochs=3), tmp_path / "run")
    assert longer.start_epoch == 2
    for changed in (
        [(dh.JacobianTerm(), 1.0), (Other(), 0.2)],
        [(dh.JacobianTerm(), 1.0), (Damped(0.7), 0.2)],
    ):
        with pytest.raises(CheckpointError, match=r"objective\.terms differ"):
            dh.train(_config(pendulum, changed, epochs=4), tmp_path / "run")
    # evaluate rebuilds the objective from the checkpoint (the class is defined here)
    result = dh.evaluate(tmp_path / "run" / "checkpoint.pt", pendulum)
    assert "damped" in result["splits"]["test"]


def test_build_objective_reads_names_pairs_and_records(pendulum):
    problem = dh.load_problem(pendulum)
    record = TrainConfig(DATA, objective=[(Damped(2.0), 0.3)]).to_dict()["objective"]["terms"]
    obj = build_objective(problem, terms=[("jacobian", 0.5), "output", *record])
    assert [(t, w) for t, w in obj.terms] == [
        (dh.JacobianTerm(), 0.5),
        (dh.OutputTerm(), 1.0),
        (Damped(2.0), 0.3),
    ]
    with pytest.raises(ValueError, match="is neither a Term nor a term name"):
        build_objective(problem, terms=[(3, 1.0)])


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (lambda: dh.Pipeline(("a",)), r"^stages\[0\] must be a Stage, got 'a'$"),
        (lambda: dh.Pipeline(3), r"^Pipeline\(stages\): a list of Stage objects, got int$"),
        (lambda: dh.DistillSource("sobolev", labels="x.h5", weight="1"), r"weight must be"),
        (lambda: dh.LabelConfig(orders="1"), r"^label\.orders must be a list"),
    ],
)
def test_transfer_objects_refuse_wrong_values_in_one_line(build, words):
    with pytest.raises(ValueError, match=words) as exc:
        build()
    assert "\n" not in str(exc.value)
