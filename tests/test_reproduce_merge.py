"""derl reproduce --merge: one table from the runs of earlier calls (seeds trained in
separate sittings), equal to the table of one call that trained them all; refusals of rows
that the spec does not plan as they are."""

from __future__ import annotations

import json

import pytest

from derlhybrid.cli import main
from derlhybrid.experiments import reproduce
from derlhybrid.experiments.runner import merge

EXP = "noise-estimators-allen-cahn"


@pytest.fixture(scope="module")
def calls(tmp_path_factory):
    root = tmp_path_factory.mktemp("merge")
    kw = dict(scale="smoke", progress=False, figures=False)
    one = reproduce(EXP, seeds=[1], out=root / "one", **kw)
    two = reproduce(EXP, seeds=[2], out=root / "two", **kw)
    both = reproduce(EXP, seeds=[1, 2], out=root / "both", **kw)
    return root, one, two, both


def test_merged_seeds_give_the_table_of_one_call(calls):
    root, one, two, both = calls
    path = merge(EXP, [one, two], out=root / "merged")
    merged = json.loads(path.read_text())
    ref = json.loads(both.read_text())
    assert merged["table"] == ref["table"]  # the same runs, bit for bit: the same stats
    assert merged["checks"] == ref["checks"]
    assert {r["name"] for r in merged["runs"]} == {r["name"] for r in ref["runs"]}
    assert [m["runs"] for m in merged["merged_from"]] == [5, 5]
    # where each part ran is kept beside it (kernels differ between machines)
    assert [m["platform"] for m in merged["merged_from"]] == [
        json.loads(p.read_text())["platform"] for p in (one, two)
    ]
    assert merged["platform"] == json.loads(one.read_text())["platform"]
    assert merged["planned"] == 5 and merged["missing"] == []  # the spec's smoke seeds: [1]
    md = (root / "merged" / "results.md").read_text()
    assert "**Merged**" in md and str(one) in md
    # the metric-only figure needs no checkpoint: drawn from the rows
    png = root / "merged" / "figures" / "noise_estimators-all.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_runs_are_listed(calls):
    root, one, _, _ = calls
    part = json.loads(one.read_text())
    part["runs"] = [r for r in part["runs"] if r["mode"] != "sob"]
    cut = root / "cut.json"
    cut.write_text(json.dumps(part))
    merged = json.loads(merge(EXP, [cut], out=root / "cut", figures=False).read_text())
    assert sorted(merged["missing"]) == ["s0-forward-sob-s1", "s5e-2-savgol-sob-s1"]


def _edited(root, src, name, edit):
    part = json.loads(src.read_text())
    edit(part)
    path = root / name
    path.write_text(json.dumps(part))
    return path


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda p: p["runs"][0]["config"]["train"].update(lr=0.5), "another configuration"),
        (lambda p: p["runs"][0].update(name="s0-forward-pinn-s1"), "not planned"),
        (lambda p: p.update(experiment="pendulum"), "not 'noise-estimators-allen-cahn'"),
    ],
)
def test_rows_the_spec_does_not_plan_are_refused(calls, capsys, edit, message):
    root, one, _, _ = calls
    bad = _edited(root, one, "bad.json", edit)
    out = root / "refused"
    code = main(["reproduce", EXP, "--merge", str(bad), "--out", str(out), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not (out / "results.json").exists()


def test_a_run_in_two_files_is_refused(calls, capsys):
    root, one, _, _ = calls
    code = main(["reproduce", EXP, "--merge", str(one), str(one), "--out", str(root / "dup")])
    assert code == 2
    assert "in both" in capsys.readouterr().err


def test_baselines_are_planned_per_seed_and_merged(tmp_path, capsys):
    """The HNN baseline is planned once per seed of its group (runs/<name>-s<seed>); its
    rows from separate sittings merge like any run's, and one trained with another
    configuration than the spec gives it is refused."""
    from derlhybrid.experiments import load_spec
    from derlhybrid.experiments.plan import plan, plan_baselines

    spec = load_spec("pendulum")
    runs = plan(spec, "smoke", [30, 1])[1]
    planned = plan_baselines(spec, "smoke", runs)
    assert [b["name"] for b in planned] == [
        "damped-true-hnn-s30",
        "damped-true-hnn-s1",
        "conservative-true-hnn-s30",
        "conservative-true-hnn-s1",
    ]
    assert planned[1]["config"] == {"epochs": 1, "phase_grid": 30, "seed": 1}
    full = plan_baselines(spec, "full", plan(spec, "full")[1])
    assert {b["seed"] for b in full} == {30, 1, 2, 3, 4}

    def part(seed, value, config=None):
        row = {
            "name": f"damped-true-hnn-s{seed}",
            "group": "damped-true",
            "mode": "hnn",
            "label": "HNN",
            "seed": seed,
            "dataset": "damped",
            "config": config or {"epochs": 1, "phase_grid": 30, "seed": seed},
            "metrics": {"metrics": {"phase_space": {"l2": value, "mean": value / 5}}},
        }
        doc = {"experiment": "pendulum", "scale": "smoke", "runs": [row]}
        path = tmp_path / f"part-{seed}-{value}.json"
        path.write_text(json.dumps(doc))
        return path

    merged = json.loads(
        merge(
            "pendulum", [part(30, 0.4), part(1, 0.6)], out=tmp_path / "m", figures=False
        ).read_text()
    )
    (hnn,) = [t for t in merged["table"] if t["mode"] == "hnn"]
    assert hnn["seeds"] == [30, 1] and hnn["stats"]["phase_l2"]["mean"] == pytest.approx(0.5)
    assert "damped-true-hnn-s1" not in merged["missing"]
    assert "conservative-true-hnn-s30" in merged["missing"]  # planned, not given
    wrong = part(1, 0.6, {"epochs": 7, "phase_grid": 30, "seed": 1})
    assert main(["reproduce", "pendulum", "--merge", str(wrong), "--out", str(tmp_path / "w")]) == 2
    assert "trained with another configuration" in capsys.readouterr().err
