"""The typed options of ``evaluate`` (issue 16): the metrics follow the kind a system
declares (``metrics_kind``), not its name, and a misspelt option or a wrong type fails in
one line naming the key — from Python, from ``derl evaluate`` and from ``derl reproduce``
before any data or run folder exist."""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import pytest

from derlhybrid.cli import main
from derlhybrid.data.generate import GenerateRequest, generate
from derlhybrid.experiments.runner import ReproduceError, reproduce
from derlhybrid.learn.config import ConfigError, TrainConfig
from derlhybrid.learn.evaluate import EVALUATORS, evaluate
from derlhybrid.learn.evaluate_options import (
    OPTIONS,
    AllenCahnOptions,
    EvaluateOptions,
    FlowMapOptions,
    check_options,
)
from derlhybrid.learn.trainer import train
from derlhybrid.systems import SYSTEMS, FieldSystem, ODESystem, parameter, register


@numba.njit(cache=True)
def _oscillator_rhs(t, y, p, dy):
    dy[0] = y[1]
    dy[1] = -p[0] * y[0] - p[1] * y[1]


@register
@dataclass(frozen=True)
class _Oscillator(ODESystem):
    """A damped linear oscillator of the user's: it declares no metrics kind."""

    name = "test-eval-oscillator"
    state_names = ("x", "v")
    rhs_kernel = staticmethod(_oscillator_rhs)
    k: float = parameter(1.0, low=0.0, doc="stiffness")
    c: float = parameter(0.1, low=0.0, doc="damping")

    def sample_initial_states(self, rng, n):
        return rng.uniform(-1.0, 1.0, (n, 2))

    def vector_field(self, t, y, xp=np):
        return xp.stack([y[:, 1], -self.k * y[:, 0] - self.c * y[:, 1]], -1)


def _train(data, out, form="positions"):
    cfg = TrainConfig.from_dict(
        {
            "data": {"path": str(data), "form": form},
            "model": {"width": 8, "depth": 1, "dtype": "float64"},
            "objective": {"mode": "outl"},
            "train": {"epochs": 1, "batch_size": 256, "progress": False},
        }
    )
    train(cfg, out)
    return out / "checkpoint.pt"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("eval-options")
    files = {
        "allen-cahn": GenerateRequest(
            system="allen-cahn", out=str(d / "a.h5"), n_points=100, n_boundary=5, seed=1
        ),
        "pendulum": GenerateRequest(
            system="pendulum", out=str(d / "p.h5"), n_trajectories=6, n_times=11, t_end=1.0
        ),
        "oscillator": GenerateRequest(
            system=_Oscillator.name, out=str(d / "o.h5"), n_trajectories=6, n_times=11, t_end=1.0
        ),
    }
    out = {}
    for key, req in files.items():
        data = generate(req, progress=False)
        out[key] = (_train(data, d / key, "state" if key == "oscillator" else "positions"), data)
    return out


# -- the declaration -----------------------------------------------------------------------


def test_every_registered_system_declares_a_known_kind_or_none():
    kinds = {name: cls.metrics_kind for name, cls in SYSTEMS.items() if not name.startswith("test")}
    assert kinds == {
        "pendulum": "pendulum",
        "allen-cahn": "allen-cahn",
        "allen-cahn-exp": "allen-cahn",
        "allen-cahn-multi": "allen-cahn",
        "kovasznay": "kovasznay",
        "continuity": "continuity",
        "kdv": "grid-field",
        "euler-ball": None,
        "advection": None,  # the PDEBench systems (data/pdebench.py): split losses only
        "burgers": None,
        "diffusion-reaction": None,
    }
    assert set(EVALUATORS) == set(OPTIONS)
    assert _Oscillator.metrics_kind == "flow-map"  # every ODE system by default


def test_a_system_opts_into_an_existing_kind_or_gets_none():
    class Declared(FieldSystem):
        name = "test-declared"
        metrics_kind = "allen-cahn"

    class Undeclared(FieldSystem):
        name = "test-undeclared"

    class Unknown(FieldSystem):
        name = "test-unknown-kind"
        metrics_kind = "nope"

    opts = check_options(Declared, {"grid": 51})
    assert isinstance(opts, AllenCahnOptions) and opts.grid == 51
    assert check_options(Declared, None) == AllenCahnOptions(grid=201)
    assert type(check_options(Undeclared, {"variant": "v"})) is EvaluateOptions
    with pytest.raises(ConfigError, match=r"^evaluate\.grid: unknown option for test-undec"):
        check_options(Undeclared, {"grid": 3})
    with pytest.raises(ConfigError, match="unknown metrics_kind 'nope'; kinds are pendulum"):
        check_options(Unknown, {})


@pytest.mark.parametrize(
    ("system", "options", "message"),
    [
        ("allen-cahn", {"gird": 51}, "evaluate.gird: unknown option for allen-cahn metrics "
         "(allowed: grid, variant)"),
        ("allen-cahn", {"grid": "51"}, "evaluate.grid: expected an integer, got '51'"),
        ("allen-cahn", {"grid": 51.0}, "evaluate.grid: expected an integer, got 51.0"),
        ("allen-cahn", {"grid": True}, "evaluate.grid: expected an integer, got True"),
        ("allen-cahn", {"grid": 1}, "evaluate.grid: input should be greater than or equal to 2"),
        ("pendulum", {"grid": 51}, "evaluate.grid: unknown option for pendulum metrics "
         "(allowed: phase_grid, split, variant)"),
        ("continuity", {"frame_stride": "10"}, "evaluate.frame_stride: expected an integer"),
        ("kdv", {"grid": 5}, "evaluate.grid: unknown option for grid-field metrics "
         "(allowed: variant)"),
        ("kovasznay", {"variant": 3}, "evaluate.variant: expected a string, got 3"),
        ("euler-ball", {"points": 3}, "evaluate.points: unknown option for euler-ball, which "
         "has no experiment metrics (allowed: variant)"),
    ],
)  # fmt: skip
def test_bad_options_fail_in_one_line_naming_the_key(system, options, message):
    with pytest.raises(ConfigError) as exc:
        check_options(SYSTEMS[system], options)
    assert str(exc.value).startswith(message) and "\n" not in str(exc.value)


def test_flow_map_options():
    opts = check_options(_Oscillator, {"phase_grid": 20, "phase_box": [[-1, 1], [-2.0, 2]]})
    assert isinstance(opts, FlowMapOptions) and opts.phase_box == [[-1.0, 1.0], [-2.0, 2.0]]
    assert check_options(_Oscillator, {}) == FlowMapOptions(phase_grid=100, phase_box=None)
    with pytest.raises(ConfigError, match=r"^evaluate\.phase_box\.0: list should have at most"):
        check_options(_Oscillator, {"phase_box": [[-1, 1, 2], [0, 1]]})
    with pytest.raises(ConfigError, match="allowed: phase_box, phase_grid, split, variant"):
        check_options(_Oscillator, {"phase_grd": 3})


# -- evaluate(), derl evaluate ---------------------------------------------------------------


def test_a_user_ode_system_gets_the_flow_map_metrics(runs):
    ckpt, data = runs["oscillator"]
    m = evaluate(ckpt, data, options={"phase_grid": 12})
    assert {"trajectory", "field", "consistency", "phase_space"} <= set(m["metrics"])
    box = evaluate(ckpt, data, options={"phase_grid": 12, "phase_box": [[-0.5, 0.5], [-1, 1]]})
    assert box["metrics"]["trajectory"] == m["metrics"]["trajectory"]
    assert box["metrics"]["phase_space"] != m["metrics"]["phase_space"]


@pytest.mark.parametrize("key", ["pendulum", "oscillator"])
def test_split_val_computes_the_metrics_on_the_validation_trajectories(runs, key):
    """``split = "val"``: the same metrics, computed independently here from the
    validation rows of the file through metrics.trajectory_errors (what a protocol change
    is judged on); the test metrics are unchanged and carry no split key."""
    import h5py

    from derlhybrid.learn import metrics as M
    from derlhybrid.learn.evaluate import make_predict
    from derlhybrid.learn.trainer import load_model

    ckpt, data = runs[key]
    test = evaluate(ckpt, data, options={"phase_grid": 0})
    val = evaluate(ckpt, data, options={"phase_grid": 0, "split": "val"})
    assert "split" not in test["metrics"] and val["metrics"]["split"] == "val"
    with h5py.File(data) as f:
        idx = np.sort(f["splits/val"][...])
        t, y0 = f["trajectories/t"][...], f["trajectories/initial_states"][idx]
        states = f["trajectories/states"][idx]
    assert len(idx) >= 1
    predict = make_predict(load_model(ckpt)[0])
    n, nt = len(y0), len(t)
    X = np.concatenate([np.tile(t, n)[:, None], np.repeat(y0, nt, 0)], 1)
    pred = predict(X, [()])[()].reshape(n, nt, -1)
    true = states[..., : pred.shape[-1]]
    expected = M.trajectory_errors(pred, true, t[1] - t[0])
    for stat in ("mean", "max"):
        assert val["metrics"]["trajectory"][stat] == pytest.approx(expected[stat], rel=1e-10)
    assert val["metrics"]["trajectory"]["mean"] != test["metrics"]["trajectory"]["mean"]
    with pytest.raises(
        ConfigError, match=r"^evaluate\.split: input should be 'test' or 'val', got 'valid'$"
    ):
        check_options(SYSTEMS["pendulum"], {"split": "valid"})


def test_evaluate_checks_its_options_before_loading_anything(runs, tmp_path):
    _, data = runs["allen-cahn"]
    missing = tmp_path / "no-such-checkpoint.pt"  # never opened: the options fail first
    with pytest.raises(ConfigError, match=r"^evaluate\.gird: unknown option for allen-cahn"):
        evaluate(missing, data, options={"gird": 51})
    with pytest.raises(ConfigError, match=r"^evaluate\.grid: expected an integer, got '51'$"):
        evaluate(missing, data, options={"grid": "51"})


def test_evaluate_reads_the_typed_options(runs):
    ckpt, data = runs["allen-cahn"]
    a = evaluate(ckpt, data, options={"grid": 21})
    b = evaluate(ckpt, data, options={"grid": 31})
    assert a["metrics"]["u"]["l2"] != b["metrics"]["u"]["l2"]
    assert a == evaluate(ckpt, data, options={"grid": 21, "variant": None})


@pytest.mark.parametrize(
    ("system", "flags", "message"),
    [
        ("pendulum", ["--grid", "51"], "derl: error: evaluate.grid: unknown option for "
         "pendulum metrics (allowed: phase_grid, split, variant)"),
        ("allen-cahn", ["--grid", "1"], "derl: error: evaluate.grid: input should be greater "
         "than or equal to 2, got 1"),
        ("pendulum", ["--split", "valid"], "derl: error: evaluate.split: input should be "
         "'test' or 'val', got 'valid'"),
        ("allen-cahn", ["--split", "val"], "derl: error: evaluate.split: unknown option for "
         "allen-cahn metrics (allowed: grid, variant)"),
    ],
)  # fmt: skip
def test_derl_evaluate_refuses_a_grid_its_metrics_do_not_take(runs, capsys, system, flags, message):
    ckpt, data = runs[system]
    assert main(["evaluate", str(ckpt), str(data), *flags]) == 2
    err = capsys.readouterr().err
    assert err.strip() == message, err
    assert "Traceback" not in err


def test_derl_evaluate_on_the_validation_split(runs, capsys, tmp_path):
    ckpt, data = runs["pendulum"]
    out = tmp_path / "val.json"
    assert main(["evaluate", str(ckpt), str(data), "--split", "val", "--out", str(out)]) == 0
    import json

    written = json.loads(out.read_text())["metrics"]
    assert written["split"] == "val"
    val = evaluate(ckpt, data, options={"split": "val"})["metrics"]
    assert written["trajectory"]["mean"] == val["trajectory"]["mean"]


def test_derl_evaluate_with_a_grid(runs, capsys):
    ckpt, data = runs["allen-cahn"]
    assert main(["evaluate", str(ckpt), str(data), "--grid", "21"]) == 0
    assert '"metrics"' in capsys.readouterr().out


# -- derl reproduce ----------------------------------------------------------------------------

_SPEC = """
name = "bad-evaluate"
[datasets.d]
system = "{system}"
n_points = 50
n_boundary = 5
[defaults]
model = {{ width = 4, depth = 1 }}
train = {{ epochs = 1 }}
objective = {{ mode = "derl" }}
evaluate = {{ {evaluate} }}
[[groups]]
name = "g"
dataset = "d"
[groups.modes]
derl = {{}}
"""


@pytest.mark.parametrize(
    ("system", "evaluate_table", "message"),
    [
        ("allen-cahn", "gird = 51", "group 'g': evaluate.gird: unknown option for allen-cahn "
         "metrics (allowed: grid, variant)"),
        ("allen-cahn", 'grid = "51"', "group 'g': evaluate.grid: expected an integer, got '51'"),
        ("kovasznay", "frame_stride = 3", "group 'g': evaluate.frame_stride: unknown option for "
         "kovasznay metrics (allowed: grid, variant)"),
    ],
)  # fmt: skip
def test_derl_reproduce_checks_evaluate_before_any_data(
    tmp_path, capsys, system, evaluate_table, message
):
    spec = tmp_path / "bad.toml"
    spec.write_text(_SPEC.format(system=system, evaluate=evaluate_table))
    out = tmp_path / "out"
    assert main(["reproduce", str(spec), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"derl: error: {message}", err
    assert not out.exists()
    with pytest.raises(ReproduceError, match=r"evaluate\.(gird|grid|frame_stride): "):
        reproduce(str(spec), out=out, progress=False, figures=False)
    assert not out.exists()


def test_derl_reproduce_checks_stage_groups_region_options(tmp_path, capsys):
    text = (
        _SPEC.format(system="allen-cahn", evaluate="grid = 21, frame_stride = 2")
        .replace('[groups.modes]\nderl = {}', "")
        .replace('dataset = "d"\n', 'dataset = "d"\nkind = "stages"\n'
                 'phases = [{ name = "p0", region = { x = [-1.0, 0.0] } }]\n'
                 "modes = { derl = {} }\n")
    )  # fmt: skip
    spec = tmp_path / "bad.toml"
    spec.write_text(text)
    out = tmp_path / "out"
    assert main(["reproduce", str(spec), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        "derl: error: group 'g': evaluate.frame_stride: unknown option for allen-cahn region "
        "metrics (allowed: grid)"
    ), err
    assert not out.exists()
