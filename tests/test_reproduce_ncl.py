"""``derl reproduce ncl-ball`` (paper.md §9, kind = "ncl"): the smoke run end to end (rows,
finite table, the divergence-free claim, the slice figure), resume training nothing, the
other figures leaving NCL rows out, the full plan, bound checks and bad groups."""

from __future__ import annotations

import json
import logging
import math
import pickle
from pathlib import Path

import pytest

from derlhybrid.experiments import ReproduceError, load_spec, reproduce
from derlhybrid.experiments.ncl import NCLRun
from derlhybrid.experiments.report import check_claims, dotted_get
from derlhybrid.experiments.runner import plan

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("ncl-ball")
    path = reproduce("ncl-ball", scale="smoke", out=out, progress=False)
    return out, json.loads(path.read_text())


def test_smoke_end_to_end(smoke):
    out, result = smoke
    spec = load_spec("ncl-ball")
    _, runs = plan(spec, "smoke")
    assert [r["name"] for r in result["runs"]] == [r.name for r in runs]
    rows = {r["mode"]: r for r in result["runs"]}
    assert set(rows) == {"teacher", "forgetting", "output", "derivative", "hessian", "sob+hesl"}
    for r in result["runs"]:
        assert r["kind"] == "ncl" and Path(r["checkpoint"]).is_file(), r["name"]
        assert r["trained_this_call"] and not r["diverged"], r["name"]
        for c in spec["columns"]:
            v = dotted_get(r["metrics"], c["path"])
            assert isinstance(v, float) and math.isfinite(v), (r["name"], c["path"], v)
        # divergence-free by construction (float64): rounding level
        assert r["metrics"]["metrics"]["mass"]["max"] < 1e-12, r["name"]
        assert r["metrics"]["points"] == 500
    # the teacher against itself; students differ from it
    assert rows["teacher"]["metrics"]["metrics"]["output_error"]["max"] == 0.0
    assert rows["teacher"]["metrics"]["metrics"]["jacobian_error"]["max"] == 0.0
    for mode in ("forgetting", "output", "derivative"):
        assert rows[mode]["metrics"]["metrics"]["output_error"]["rms"] > 1e-6
    # one teacher, trained once under runs/_shared, its checkpoint the students' reference
    shared = list((out / "runs" / "_shared").iterdir())
    assert len(shared) == 1
    tckpt = shared[0] / "checkpoint.pt"
    assert rows["teacher"]["checkpoint"] == str(tckpt)
    assert {r["metrics"]["teacher_checkpoint"] for r in result["runs"]} == {str(tckpt)}
    assert json.loads((shared[0] / "train.json").read_text())["epochs"] == 3
    # labelled with the Hessian, as the hessian and sob+hesl modes need
    from derlhybrid.transfer.labels import read_labels

    assert read_labels(shared[0] / "labels" / "train.h5").orders == (0, 1, 2)
    # the table and the claims
    md = (out / "results.md").read_text()
    assert "## NCL teacher → NCL students" in md
    for c in spec["columns"]:
        assert c["title"] in md
    free = next(c for c in result["checks"] if c["column"] == "mass")
    assert free["holds"] and free["expected_at_smoke"] and free["values"][0] < 1e-10
    for c in result["checks"]:
        if c["expected_at_smoke"]:
            assert c["holds"], c
    # the slice figure
    pngs = sorted((out / "figures").glob("ncl_slices-*.png"))
    assert [p.name for p in pngs] == ["ncl_slices-ball.png"]
    assert pngs[0].read_bytes()[:8] == PNG


def test_rerun_trains_and_evaluates_nothing(smoke):
    out, result = smoke
    files = sorted((out / "runs").glob("**/checkpoint.pt")) + sorted(
        (out / "runs").glob("**/metrics.json")
    )
    files += sorted((out / "runs" / "_shared").glob("*/labels/*.h5"))
    assert len(files) == 6 + 6 + 2
    before = {p: p.stat().st_mtime_ns for p in files}
    again = json.loads(
        reproduce("ncl-ball", scale="smoke", out=out, progress=False, figures=False).read_text()
    )
    assert {p: p.stat().st_mtime_ns for p in files} == before
    assert not any(r["trained_this_call"] for r in again["runs"])
    assert again["table"] == result["table"]


def test_other_figures_leave_ncl_rows_out(smoke, tmp_path, caplog):
    """Only the NCL figure and the training-loss curves (every experiment's) draw NCL rows."""
    from derlhybrid.experiments.figures import FIGURES, RunInfo

    _, result = smoke
    infos = [RunInfo.from_row(r) for r in result["runs"]]
    with caplog.at_level(logging.WARNING, logger="derlhybrid.experiments.figures"):
        for name, fig in FIGURES.items():
            if name not in ("ncl_slices", "loss_curves"):
                assert fig(infos, tmp_path) == [], name
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert list(tmp_path.iterdir()) == []
    (png,) = FIGURES["loss_curves"](infos, tmp_path)  # one per group: the teacher, students
    assert png.name == "loss_curves-ball.png" and png.read_bytes()[:4] == b"\x89PNG"


def test_full_plan_follows_the_paper():
    spec = load_spec("ncl-ball")
    datasets, runs = plan(spec, "full")
    assert datasets["ball"] == {"system": "euler-ball", "n_points": 10_000_000, "seed": 30}
    by = {r.mode: r for r in runs}
    assert set(by) == {
        "teacher",
        "forgetting",
        "output",
        "derivative",
        "hessian",
        "der+hesl",
        "sobolev",
        "sobolev-reference",
        "sob+hesl",
    }
    t = by["teacher"].teacher
    assert (t["train"]["epochs"], t["train"]["batch_size"], t["train"]["lr"]) == (1, 1000, 1e-3)
    assert {x["term"]: x["weight"] for x in t["objective"]["terms"]} == {
        "ncl_momentum": 0.1,
        "ncl_divergence": 0.1,
        "ncl_boundary": 0.1,
        "ncl_initial": 30.0,
    }
    assert t["model"]["width"] == 128 and t["model"]["depth"] == 4 and t["model"]["beta"] == 25
    for r in runs:
        assert r.orders == 2 and r.evaluate["points"] == 100_000
        if r.mode != "teacher":
            assert r.student["train"]["batch_size"] == 100
            assert r.student["train"]["optimizer"] == "adam"
    ref = {x["term"]: x["weight"] for x in by["sobolev-reference"].student["objective"]["terms"]}
    assert ref == {"ncl_jacobian": 2.0, "ncl_initial": 1.0, "ncl_boundary": 1.0}
    sob = {x["term"] for x in by["sobolev"].student["objective"]["terms"]}
    assert {"ncl_output", "ncl_jacobian"} <= sob
    # the rows are picklable (--jobs N sends them to worker processes)
    assert pickle.loads(pickle.dumps(by["sob+hesl"])) == by["sob+hesl"]
    assert isinstance(by["teacher"], NCLRun) and by["teacher"].student is None
    assert by["forgetting"].student_mode == "forgetting"
    # labels hold only the orders the scale's modes read
    spec["scales"]["quick"]["modes"] = ["teacher", "output", "derivative"]
    _, quick = plan(spec, "quick")
    assert {r.orders for r in quick} == {1} and len(quick) == 3
    spec["scales"]["quick"]["modes"] = ["teacher", "forgetting", "output"]
    assert {r.orders for r in plan(spec, "quick")[1]} == {0}


def test_bound_checks():
    spec = {
        "checks": [
            {"claim": "all", "group": "g", "column": "c", "lower": "*", "below": 1e-3},
            {"claim": "one", "group": "g", "column": "c", "lower": "a", "below": 1e-3},
            {"claim": "pair", "group": "g", "column": "c", "lower": "a", "than": "b"},
        ]
    }

    def row(mode, v):
        stats = {"c": {"mean": v, "std": None, "n": 1}}
        return {"group": "g", "mode": mode, "diverged": [], "stats": stats}

    table = [row("a", 1e-4), row("b", 2e-3)]
    got = {c["claim"]: (c["holds"], c["values"]) for c in check_claims(spec, table, "smoke")}
    assert got == {
        "all": (False, [2e-3, 1e-3]),
        "one": (True, [1e-4, 1e-3]),
        "pair": (True, [1e-4, 2e-3]),
    }


_BASE = '[datasets.b]\nsystem = "euler-ball"\n\n[[groups]]\nname = "g"\ndataset = "b"\n'


@pytest.mark.parametrize(
    "group, message",
    [
        ('kind = "ncl"\nbogus = 1\nmodes = { output = {} }', "unknown key 'bogus'"),
        (
            'kind = "ncl"\nteacher = { lr = 1 }\nmodes = { output = {} }',
            "teacher: unknown key 'lr'",
        ),
        (
            'kind = "ncl"\nteacher = { weights = { pde = 1 } }\nmodes = { output = {} }',
            "teacher.weights: unknown key 'pde'",
        ),
        (
            'kind = "ncl"\nstudent = { train = { epoch = 1 } }\nmodes = { output = {} }',
            "student.train: unknown key 'epoch'",
        ),
        ('kind = "ncl"\nmodes = { outl = {} }', "unknown NCL mode 'outl'"),
        ('kind = "ncl"\nmodes = { output = { distill = "x" } }', "unknown key 'distill'"),
        ('kind = "ncl"\nmodes = { teacher = { weights = {} } }', "unknown key 'weights'"),
        ('kind = "ncl"\nevaluate = { grid = 3 }\nmodes = { output = {} }', "unknown key 'grid'"),
        ('kind = "ncl"\nvariant = "grid"\nmodes = { output = {} }', "unknown key 'variant'"),
        ("teacher = {}\nmodes = { derl = {} }", "'teacher' needs kind = 'ncl'"),
    ],
)
def test_bad_ncl_groups_are_refused_in_one_line(tmp_path, group, message):
    path = tmp_path / "bad.toml"
    path.write_text(_BASE + group + "\n")
    with pytest.raises(ReproduceError, match=message) as exc:
        load_spec(str(path))
    assert "\n" not in str(exc.value)


def test_a_changed_teacher_retrains_its_students(smoke, tmp_path):
    import shutil

    from derlhybrid.experiments.runner import SPECS

    out0, _ = smoke
    out = tmp_path / "out"
    shutil.copytree(out0, out)
    text = (SPECS / "ncl-ball.toml").read_text()
    old = "patch.ball.teacher.train = { epochs = 3, batch_size = 100 }"
    assert old in text
    spec = tmp_path / "ncl-ball.toml"
    spec.write_text(text.replace(old, old.replace("epochs = 3", "epochs = 4")))
    again = json.loads(
        reproduce(str(spec), scale="smoke", out=out, progress=False, figures=False).read_text()
    )
    assert len(list((out / "runs" / "_shared").iterdir())) == 2  # the old teacher is kept
    assert all(r["trained_this_call"] for r in again["runs"])
    new_teacher = Path(again["runs"][0]["checkpoint"])
    assert json.loads((new_teacher.parent / "train.json").read_text())["epochs"] == 4
    for r in again["runs"][1:]:
        assert r["metrics"]["teacher_checkpoint"] == str(new_teacher)
        link = json.loads((Path(r["checkpoint"]).parent / "teacher.json").read_text())
        assert link["teacher"] == new_teacher.parent.name
