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
