"""The researcher's Python API: ``import derlhybrid`` (cheap, complete), ``register`` in a
notebook, term objects in objectives, the flow-map metrics of any ODE system (the same as
the pendulum's), and the three examples of docs/python-api.md, run as written."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import derlhybrid
from derlhybrid.learn import load_checkpoint
from derlhybrid.learn import metrics as M
from derlhybrid.systems import SYSTEMS, Pendulum

ROOT = Path(__file__).resolve().parents[1]


def test_import_is_cheap_and_every_export_resolves():
    code = textwrap.dedent(
        """
        import sys
        import derlhybrid
        heavy = [m for m in ("torch", "h5py", "juliacall", "numba", "scipy") if m in sys.modules]
        assert not heavy, heavy
        missing = [n for n in derlhybrid.__all__ if getattr(derlhybrid, n, None) is None]
        assert not missing, missing
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = derlhybrid.nope
    from derlhybrid.data.generate import generate
    from derlhybrid.learn import train

    assert derlhybrid.generate is generate and derlhybrid.train is train
    assert {"Term", "evaluate", "reproduce", "Pipeline", "register"} <= set(dir(derlhybrid))
    # __all__ is a literal list (read by static checkers): every lazy name, sorted() order
    eager = ["__version__", "available_backends", "derivative", "fornberg_weights"]
    assert derlhybrid.__all__ == sorted([*eager, *derlhybrid._LAZY])


CELL = """
from dataclasses import dataclass
from derlhybrid.systems import ODESystem, register

@register
@dataclass(frozen=True)
class {cls}(ODESystem):
    name = "test-notebook-system"
    state_names = ("y",)
"""


def test_register_is_idempotent_for_a_rerun_cell_and_refuses_another_class():
    try:
        first, again = {"__name__": "notebook"}, {"__name__": "notebook"}
        exec(CELL.format(cls="Decay"), first)
        exec(CELL.format(cls="Decay"), again)  # the cell runs twice: a new class object
        assert SYSTEMS["test-notebook-system"] is again["Decay"]
        derlhybrid.register(again["Decay"])  # the same class twice
        with pytest.raises(ValueError) as exc:
            exec(CELL.format(cls="Other"), {"__name__": "notebook"})
        msg = str(exc.value)
        assert "\n" not in msg and "notebook.Decay" in msg and "notebook.Other" in msg
        assert SYSTEMS["test-notebook-system"] is again["Decay"]
        with pytest.raises(ValueError, match="'pendulum' is already registered"):
            exec(CELL.format(cls="P").replace("test-notebook-system", "pendulum"), first)
    finally:
        SYSTEMS.pop("test-notebook-system", None)


def test_build_objective_takes_term_objects_beside_names():
    import torch

    from derlhybrid.learn import PointSet, Problem, StepContext, Term, build_objective

    class Scaled(Term):  # mean 2|û|²
        name = "scaled"

        def __call__(self, d, batch, ctx):
            return 2 * d.value.square().mean()

    X = torch.linspace(-1, 1, 8, dtype=torch.float64)[:, None]
    problem = Problem(
        system=Pendulum(),
        inputs=("x",),
        outputs=("u",),
        derivative_inputs=(0,),
        sets={"train": PointSet(X, {"output": torch.zeros_like(X)})},
    )
    obj = build_objective(problem, terms=[Scaled(), (Scaled(), 3.0), {"term": "output"}])
    assert [(t.name, w) for t, w in obj.terms] == [
        ("scaled", 1.0),
        ("scaled", 3.0),
        ("output", 1.0),
    ]
    model = torch.nn.Linear(1, 1).double()
    ctx = StepContext(model, problem)
    total, parts = obj({"interior": problem.sets["train"]}, ctx)
    u2 = float(model(X).detach().square().mean())
    assert float(parts["output"]) == pytest.approx(u2, rel=1e-12)
    assert float(total.detach()) == pytest.approx(2 * u2 + 6 * u2 + u2, rel=1e-12)
    with pytest.raises(ValueError, match="unknown loss term 'nope'"):
        build_objective(problem, terms=[{"term": "nope"}])


# ---------------------------------------------------------------------------------------------
# evaluate_ode: the pendulum's metrics for any ODE system


def taylor_predictor(sys, form, offset=0.0):
    """ŷ = y0 + t f(y0) (+ ½ a t² for positions), with a constant ``offset`` on the value."""

    def predict(X, indices):
        t, th0, om0 = X[:, 0], X[:, 1], X[:, 2]
        a = -(sys.g / sys.l) * np.sin(th0) - (sys.b / sys.m) * om0
        if form == "positions":
            table = {
                (): (th0 + om0 * t + 0.5 * a * t**2 + offset)[:, None],
                (0,): (om0 + a * t)[:, None],
                (0, 0): a[:, None],
            }
        else:
            table = {
                (): np.stack([th0 + t * om0 + offset, om0 + t * a], 1),
                (0,): np.stack([om0, a], 1),
            }
        return {k: table[k] for k in [(), *indices]}

    return predict


@pytest.mark.parametrize("form", ["positions", "state"])
def test_evaluate_ode_is_the_pendulum_metric(form):
    """Through the vector field alone, the generic metrics equal the pendulum's own."""
    sys = Pendulum()
    rng = np.random.default_rng(0)
    t = np.linspace(0.0, 2.0, 21)
    y0 = rng.uniform(-0.7, 0.7, (4, 2))
    states = sys.rhs(0.0, rng.normal(size=(4, 21, 2)))  # any reference values will do
    predict = taylor_predictor(sys, form, offset=0.01)
    ref = M.evaluate_pendulum(predict, sys, t, y0, states, form=form, phase_grid=30)
    box = ((-math.pi / 2, math.pi / 2), (-1.5, 1.5))
    got = M.evaluate_ode(predict, sys, t, y0, states, form=form, phase_grid=30, phase_box=box)
    for key in ("trajectory", "field", "consistency"):
        for stat in ("mean", "std", "max", "per_trajectory"):
            assert got[key][stat] == pytest.approx(ref[key][stat], rel=1e-12, abs=1e-15), key
    assert got["cumulative"]["T"] == ref["cumulative"]["T"]
    assert got["cumulative"]["mae"] == pytest.approx(ref["cumulative"]["mae"], rel=1e-12)
    for stat in ("cell", "max", "mean", "std", "rmse", "l2", "rel_l2"):
        assert got["phase_space"][stat] == pytest.approx(ref["phase_space"][stat], rel=1e-12)


def test_evaluate_ode_of_a_first_order_system_closed_form():
    """y' = −k y with ŷ = y0 e^{−kt} (1 + c): trajectory error c|y0| sqrt(Σ e^{−2kt} Δt),
    field error on the true states k c |y|, and a zero ODE residual (ŷ solves the ODE)."""
    from derlhybrid.systems.base import ODESystem

    class Decay(ODESystem):
        name = "decay-for-metrics"  # not registered
        state_names = ("y",)
        k = 0.5

        def vector_field(self, t, y, xp=np):
            return -self.k * y

    sys, c = Decay(), 0.1
    t = np.linspace(0.0, 3.0, 31)
    y0 = np.array([[1.0], [-2.0]])
    states = y0[:, None, :] * np.exp(-sys.k * t)[None, :, None]

    def predict(X, indices):
        u = X[:, 1:] * np.exp(-sys.k * X[:, :1]) * (1 + c)
        return {a: {(): u, (0,): -sys.k * u}[a] for a in [(), *indices]}

    r = M.evaluate_ode(predict, sys, t, y0, states, phase_box=None)
    dt, decay = t[1] - t[0], np.exp(-sys.k * t)
    expect = [c * abs(v) * math.sqrt(np.sum(decay**2) * dt) for v in y0[:, 0]]
    assert r["trajectory"]["per_trajectory"] == pytest.approx(expect, rel=1e-12)
    assert r["field"]["per_trajectory"] == pytest.approx([sys.k * e for e in expect], rel=1e-12)
    assert r["consistency"]["max"] <= 1e-15
    assert "phase_space" not in r  # one state
    assert r["cumulative"]["mae"][0] == pytest.approx(c * 1.5)  # mean of c|y0| at t = 0


# ---------------------------------------------------------------------------------------------
# docs/python-api.md


def test_python_api_examples_run(tmp_path, monkeypatch):
    text = (ROOT / "docs" / "python-api.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 3
    class_lines = blocks[0].split("@dh.register")[1].strip().splitlines()
    assert len([line for line in class_lines if line.strip()]) <= 15  # the system's definition
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "python_api_example"}
    try:
        for block in blocks:
            exec(compile(block, "docs/python-api.md", "exec", dont_inherit=True), namespace)
    finally:
        SYSTEMS.pop("lotka-volterra", None)
    metrics = namespace["metrics"]
    assert {"trajectory", "field", "consistency", "cumulative", "phase_space"} <= set(metrics)
    # (a)'s objects are the dict form the example used before them: the same config
    before = derlhybrid.TrainConfig.from_dict(
        {
            "data": {"path": str(namespace["data"]), "form": "state"},
            "model": {"width": 32, "depth": 3},
            "objective": {
                "terms": [
                    {"term": "output", "weight": 1.0},
                    {"term": "jacobian", "weight": 0.1},
                    {"term": "initial", "weight": 1.0},
                    {"term": "residual", "weight": 0.01},
                ]
            },
            "train": {"epochs": 60, "batch_size": 64, "lr": 3e-3, "seed": 0, "progress": False},
        }
    )
    assert namespace["config"].to_dict() == before.to_dict()
    # (b)'s own term is recorded in the checkpoint's config, with its class
    ckpt = load_checkpoint(namespace["with_invariant"].checkpoint)
    assert ckpt["config"]["objective"]["terms"][-1] == {
        "term": "invariant",
        "weight": 0.1,
        "class": "python_api_example.Invariant",
    }
    assert namespace["student_metrics"]["trajectory"]["mean"] < 1.0
    assert (tmp_path / "runs" / "distill" / "student" / "checkpoint.pt").exists()
