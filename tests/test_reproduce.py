"""``derl reproduce``: every experiment end to end at smoke size, the spec machinery, bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from derlhybrid.cli import main
from derlhybrid.experiments import EXPERIMENTS, ReproduceError, load_spec, reproduce
from derlhybrid.experiments.report import dotted_get
from derlhybrid.experiments.runner import DIVERGED_FACTOR, divergence, plan


def test_every_experiment_of_the_paper_has_a_spec():
    assert set(EXPERIMENTS) >= {
        "pendulum",
        "allen-cahn",
        "allen-cahn-param",
        "continuity",
        "kovasznay",
    }


# the multi-stage experiments (kind = "stages") have their own end-to-end tests with resume
# and per-phase checks: tests/test_reproduce_transfer.py; the NCL study (kind = "ncl"):
# tests/test_reproduce_ncl.py
PIPELINES = (
    "kdv-distill",
    "kdv-transfer",
    "allen-cahn-transfer-space",
    "allen-cahn-transfer-param",
    "ncl-ball",
)


@pytest.mark.parametrize("name", [n for n in EXPERIMENTS if n not in PIPELINES])
def test_smoke_run_end_to_end(name, tmp_path):
    spec = load_spec(name)
    path = reproduce(name, scale="smoke", out=tmp_path, progress=False)
    result = json.loads(path.read_text())
    _, runs = plan(spec, "smoke")
    trained = [r for r in result["runs"] if r["mode"] != "hnn"]
    assert [r["name"] for r in trained] == [r.name for r in runs]
    for r in trained:
        assert Path(r["checkpoint"]).exists()
        for c in spec["columns"]:  # every metric of the table exists and is finite
            v = dotted_get(r["metrics"], c["path"])
            assert isinstance(v, float) and math.isfinite(v), (r["name"], c["path"], v)
    md = (tmp_path / "results.md").read_text()
    # where it ran: the kernels torch dispatched to, also in the results.md header
    capability = result["platform"]["torch_cpu_capability"]
    assert capability == torch.backends.cpu.get_cpu_capability()
    assert f"kernels {capability}" in md.splitlines()[2]
    for g in {r.group for r in runs}:
        label = next(x.get("label", g) for x in spec["groups"] if x["name"] == g)
        assert f"## {label}" in md
    smoke_groups = {r.group for r in runs}
    if any(p["group"] in smoke_groups for p in spec.get("paper", [])):
        assert "(paper " in md
    # figures: at least one readable PNG per figure kind
    for fig in spec.get("figures", []):
        pngs = list((tmp_path / "figures").glob(f"{fig}-*.png"))
        assert pngs, fig
        assert pngs[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the qualitative orderings the setting is enough to show
    for check in result["checks"]:
        if check["expected_at_smoke"]:
            assert check["holds"], check


def test_rerun_resumes_without_retraining(tmp_path):
    reproduce("allen-cahn", scale="smoke", out=tmp_path, progress=False, figures=False)
    ckpts = sorted((tmp_path / "runs").glob("*/checkpoint.pt"))
    before = {p: p.stat().st_mtime_ns for p in ckpts}
    first = json.loads((tmp_path / "results.json").read_text())
    # the data were generated in a spawned process that never imported torch (issue 16)
    assert first["data_generation"] == {"process": "spawned", "torch_imported": False}
    reproduce("allen-cahn", scale="smoke", out=tmp_path, progress=False, figures=False)
    assert {p: p.stat().st_mtime_ns for p in ckpts} == before
    second = json.loads((tmp_path / "results.json").read_text())
    assert second["table"] == first["table"]
    assert second["data_generation"]["process"] == "this (found)"  # only opened
    # one dataset file, reused
    assert len(list((tmp_path / "data").glob("*.h5"))) == 1


def test_scales_and_overrides():
    spec = load_spec("allen-cahn")
    datasets, full = plan(spec, "full")
    # every group at the three seeds [scales.full] records (issue 14), rand-lbfgs at its own
    assert len(full) == 3 * (8 + 8 + 5 + 4 * 3 + 4 * 2)
    seeds = {g: {r.seed for r in full if r.group == g} for g in {r.group for r in full}}
    assert seeds.pop("rand-lbfgs") == {30, 42, 2025}
    assert all(s == {30, 1, 2} for s in seeds.values())
    assert datasets["ac"] == {"system": "allen-cahn", "preset": "paper"}
    grid_pinn = next(r for r in full if r.name == "grid-adam-pinn-s30")
    assert grid_pinn.config["objective"]["weights"] == {"bc": 7.7816, "pde": 9.2973}
    assert grid_pinn.config["train"]["batch_size"] == 32
    assert grid_pinn.config["data"]["variant"] == "grid"
    assert {r.seed for r in full if r.group == "rand-lbfgs"} == {30, 42, 2025}
    _, quick = plan(spec, "quick")
    by = {r.name: r for r in quick}
    assert by["grid-adam-derl-s30"].config["train"]["epochs"] == 30  # a group patch wins
    assert by["noise-0.01-derl-s30"].config["train"]["epochs"] == 100
    assert {r.mode for r in quick} == {"derl", "outl", "pinn", "sob"}  # the scale's modes
    _, pend = plan(load_spec("pendulum"), "quick")
    assert {r.config["train"]["epochs"] for r in pend} == {15}  # the scale's table (not 200)
    assert {r.seed for r in quick if r.group == "rand-lbfgs"} == {30}
    _, seeded = plan(spec, "quick", seeds=[7, 8])
    assert {r.seed for r in seeded} == {7, 8}
    # a scale may run a subset of the modes
    _, cont = plan(load_spec("continuity"), "quick")
    assert sorted(r.mode for r in cont) == ["derl", "outl", "pinn"]
    assert {r.config["train"]["epochs"] for r in cont} == {20}


def test_spec_errors_are_one_line(tmp_path):
    bad = tmp_path / "x.toml"
    bad.write_text('name = "x"\nfoo = 1\n')
    with pytest.raises(ReproduceError, match="unknown key 'foo'"):
        load_spec(str(bad))
    bad.write_text('[datasets.a]\nsystem = "pendulum"\n[[groups]]\nname = "g"\ndataset = "b"\n')
    with pytest.raises(ReproduceError, match="unknown dataset 'b'"):
        load_spec(str(bad))
    with pytest.raises(ReproduceError, match="unknown experiment 'nope'"):
        load_spec("nope")
    bad.write_text(
        '[datasets.a]\nsystem = "pendulum"\n[[groups]]\nname = "g"\ndataset = "a"\n'
        '[groups.modes]\nderl = {}\n[scales.quick]\nmodes = ["sob"]\n'
    )
    with pytest.raises(ReproduceError, match=r"scales\.quick: unknown mode 'sob'"):
        load_spec(str(bad))
    bad.write_text(
        '[datasets.a]\nsystem = "pendulum"\n[[groups]]\nname = "g"\ndataset = "a"\n'
        "[groups.modes]\nderl = {}\n[scales.quick]\nby_init = {}\n"
    )
    with pytest.raises(ReproduceError, match=r"scales\.quick: unknown key 'by_init'"):
        load_spec(str(bad))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["reproduce", "nope"], "unknown experiment 'nope'"),
        (["reproduce"], "needs an EXPERIMENT"),
        (["reproduce", "allen-cahn", "--seeds", "-1"], "non-negative integers"),
        (["reproduce", "allen-cahn", "--jobs", "0"], "--jobs must be a positive integer"),
    ],
)
def test_cli_bad_input_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_cli_unwritable_out_exit_2(capsys):
    assert main(["reproduce", "allen-cahn", "--smoke", "--out", "/proc/derl-results"]) == 2
    err = capsys.readouterr().err
    assert "cannot write to /proc/derl-results" in err and err.count("\n") == 1


def test_cli_list(capsys):
    assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    for name in EXPERIMENTS:
        assert name in out


def test_divergence_rule():
    def info(final, best):
        return {"final": {"train": {"loss": final}}, "loss_best": best}

    assert divergence(info(0.5, 0.1)) is None  # noisy but not diverged
    assert divergence(info(DIVERGED_FACTOR * 0.1 * 0.99, 0.1)) is None
    assert "1e+15" in divergence(info(1e15, 0.1))  # the Kovasznay L-BFGS blow-up
    assert "nan" in divergence(info(math.nan, 0.1))
    assert divergence({}) is None  # an old train.json: nothing to judge


_DIVERGE_SPEC = """
name = "diverge"
[datasets.d]
system = "allen-cahn"
n_points = 200
[defaults]
model = { width = 8, depth = 2 }
train = { epochs = 4, optimizer = "adam", batch_size = 1000, condition_batch_size = 1000 }
evaluate = { grid = 21 }
[[groups]]
name = "g"
dataset = "d"
[groups.modes]
derl = { lr = 1e-3 }
outl = { lr = 50.0 }   # blows up but stays finite: the trainer's NaN guard does not stop it
sob = { lr = 1e38 }    # non-finite at epoch 2: the NaN guard stops it
[[columns]]
key = "u_l2"
title = "L2 u"
path = "metrics.u.l2"
[[checks]]
claim = "DERL below OUTL"
group = "g"
column = "u_l2"
lower = "derl"
than = "outl"
"""


def test_diverged_runs_are_flagged_not_fatal(tmp_path):
    spec = tmp_path / "diverge.toml"
    spec.write_text(_DIVERGE_SPEC)
    out = tmp_path / "out"
    result = json.loads(reproduce(str(spec), out=out, progress=False, figures=False).read_text())
    by = {r["mode"]: r for r in result["runs"]}
    assert by["derl"]["diverged"] is None
    assert "ended far above its best" in by["outl"]["diverged"]
    assert "stopped by the NaN guard: training diverged at epoch" in by["sob"]["diverged"]
    table = {t["mode"]: t for t in result["table"]}
    assert table["outl"]["diverged"] == [30] and table["derl"]["diverged"] == []
    (check,) = result["checks"]
    assert check["diverged"] == ["outl"]
    md = (out / "results.md").read_text()
    assert "| OUTL † |" in md and "| SOB † |" in md and "| DERL |" in md
    assert "† OUTL, seed 30: ended far above its best" in md and "(outl diverged †)" in md
    # a rerun does not retrain the run the NaN guard stopped
    marker = out / "runs" / "g-sob-s30" / "diverged.json"
    ckpt = out / "runs" / "g-sob-s30" / "checkpoint.pt"
    before = (marker.stat().st_mtime_ns, ckpt.stat().st_mtime_ns)
    again = json.loads(reproduce(str(spec), out=out, progress=False, figures=False).read_text())
    assert (marker.stat().st_mtime_ns, ckpt.stat().st_mtime_ns) == before
    assert {r["mode"]: r["diverged"] for r in again["runs"]}["sob"] == by["sob"]["diverged"]


def test_groups_restrict_the_plan(capsys):
    spec = load_spec("pendulum")
    datasets, runs = plan(spec, "full", groups=["conservative-interpolate"])
    assert {r.group for r in runs} == {"conservative-interpolate"}
    # five modes at the seeds the spec's [scales.full] records; quick keeps one seed
    assert sorted((r.mode, r.seed) for r in runs) == sorted(
        (m, s) for m in ("derl", "sob", "outl", "pinn", "outl+pinn") for s in (30, 1, 2, 3, 4)
    )
    assert {r.seed for r in plan(spec, "quick")[1]} == {30}
    assert all(r.config["train"]["schedule"] == {"kind": "cosine", "min_lr": 0.0} for r in runs)
    assert set(datasets) == {"conservative"}
    with pytest.raises(ReproduceError, match="no group 'nope' at scale quick"):
        plan(spec, "quick", groups=["nope"])
    assert main(["reproduce", "pendulum", "--quick", "--groups", "damped-empirical"]) == 2
    err = capsys.readouterr().err
    assert "no group 'damped-empirical' at scale quick" in err and err.count("\n") == 1


_HNN_SPEC = """
name = "hnn-seconds"
[datasets.p]
system = "pendulum"
n_trajectories = 6
n_times = 11
t_end = 1.0
[defaults]
model = { width = 4, depth = 1 }
train = { epochs = 1 }
evaluate = { phase_grid = 5 }
[[groups]]
name = "g"
dataset = "p"
[groups.modes]
outl = {}
[[baselines]]
kind = "hnn"
name = "g-hnn"
group = "g"
dataset = "p"
train = { epochs = 150, phase_grid = 5 }
"""


def test_a_baseline_evaluated_again_reports_the_time_it_trained(tmp_path):
    """An HNN row's "train s" is its epochs' time, also when a later call of the same
    reproduction finds it trained and only evaluates it again."""
    spec = tmp_path / "hnn.toml"
    spec.write_text(_HNN_SPEC)
    out = tmp_path / "out"
    kw = dict(out=out, progress=False, figures=False)
    first = json.loads(reproduce(str(spec), **kw).read_text())
    again = json.loads(reproduce(str(spec), **kw).read_text())
    (a,), (b,) = ([r for r in x["runs"] if r["mode"] == "hnn"] for x in (first, again))
    history = b["metrics"]["metrics"]["history"]
    assert a["name"] == b["name"] == "g-hnn-s30" and len(history) == 150
    assert b["train_seconds"] == a["train_seconds"] == round(sum(r["seconds"] for r in history), 2)
    assert a["train_seconds"] > 0  # 150 epochs take measurable time, even on fast cores
