"""``derl reproduce`` of the multi-stage experiments (paper.md §8, §10): every experiment end
to end at smoke size (metrics per phase and global, tables, figures), resume skipping
finished stages, the shared first stage, and the plans of the full protocol."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from derlhybrid.experiments import load_spec, reproduce
from derlhybrid.experiments.pipelines import _resolve_range
from derlhybrid.experiments.report import dotted_get
from derlhybrid.experiments.runner import plan

TRANSFER = ("kdv-distill", "kdv-transfer", "allen-cahn-transfer-space", "allen-cahn-transfer-param")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One smoke run per experiment (shared by the tests of this module)."""
    done = {}

    def get(name):
        if name not in done:
            out = tmp_path_factory.mktemp(name)
            path = reproduce(name, scale="smoke", out=out, progress=False)
            done[name] = (out, json.loads(path.read_text()))
        return done[name]

    return get


@pytest.mark.parametrize("name", TRANSFER)
def test_smoke_end_to_end_and_resume(name, smoke):
    spec = load_spec(name)
    out, result = smoke(name)
    _, runs = plan(spec, "smoke")
    assert [r["name"] for r in result["runs"]] == [r.name for r in runs]
    for r, run in zip(result["runs"], runs, strict=True):
        m = r["metrics"]["metrics"]
        # every stage evaluated on every phase region and globally
        assert m["stages_order"] == [s["name"] for s in run.stages]
        for stage in m["stages_order"]:
            assert set(m["stages"][stage]) == set(m["regions"])
        assert "global" in m["regions"]
        for c in spec["columns"]:
            v = dotted_get(r["metrics"], c["path"])
            assert isinstance(v, float) and math.isfinite(v), (r["name"], c["path"], v)
    # trained in this call (a first stage shared by several pipelines is linked into them)
    assert any(r["stages_trained_this_call"] for r in result["runs"])
    md = (out / "results.md").read_text()
    scale = spec.get("scales", {}).get("smoke", {})
    for g in {r.group for r in runs}:
        label = next(x["label"] for x in spec["groups"] if x["name"] == g)
        label = scale.get("patch", {}).get(g, {}).get("label", label)  # the scale's own label
        assert f"## {label}" in md
    for note in scale.get("notes", []):
        assert f"- Scale smoke: {note}" in md
    for fig in spec["figures"]:
        pngs = sorted((out / "figures").glob(f"{fig}-*.png"))
        assert len(pngs) == len({r.group for r in runs}), fig
        assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    # a rerun trains nothing and touches no checkpoint
    ckpts = sorted((out / "runs").glob("**/checkpoint.pt"))
    before = {p: p.stat().st_mtime_ns for p in ckpts}
    again = json.loads(
        reproduce(name, scale="smoke", out=out, progress=False, figures=False).read_text()
    )
    assert all(r["stages_trained_this_call"] == [] for r in again["runs"])
    assert {p: p.stat().st_mtime_ns for p in ckpts} == before
    assert again["table"] == result["table"]


def test_first_stage_is_trained_once_and_shared(smoke):
    out, result = smoke("allen-cahn-transfer-space")
    shared = list((out / "runs" / "_shared").iterdir())
    assert len(shared) == 1  # one seed, one first stage common to the phased pipelines
    phased = [r for r in result["runs"] if r["stages"][0] == "p0"]
    inodes = {(out / "runs" / r["name"] / "p0" / "checkpoint.pt").stat().st_ino for r in phased}
    assert len(phased) > 1 and len(inodes) == 1
    full = next(r for r in result["runs"] if r["mode"] == "pinn-full")
    assert full["stages"] == ["full"]


def test_parallel_jobs_give_the_serial_results(smoke, tmp_path):
    """--jobs 2 trains the pipelines in two spawned processes (one thread each) after the
    shared first stage: the same runs, stages and numbers as the serial run."""
    _, serial = smoke("allen-cahn-transfer-space")
    par = json.loads(
        reproduce(
            "allen-cahn-transfer-space",
            scale="smoke",
            out=tmp_path,
            progress=False,
            figures=False,
            jobs=2,
        ).read_text()
    )
    assert [r["name"] for r in par["runs"]] == [r["name"] for r in serial["runs"]]
    assert [r["stages"] for r in par["runs"]] == [r["stages"] for r in serial["runs"]]
    assert len(list((tmp_path / "runs" / "_shared").iterdir())) == 1
    for a, b in zip(par["table"], serial["table"], strict=True):
        assert a["mode"] == b["mode"]
        for key, st in b["stats"].items():  # one thread vs several: reduction order only
            assert a["stats"][key]["mean"] == pytest.approx(st["mean"], rel=1e-6), key


def test_loss_curves_follow_every_stage(smoke):
    from derlhybrid.experiments.figures import RunInfo, _stage_losses

    out, result = smoke("kdv-transfer")
    for r in result["runs"]:
        stages = _stage_losses(RunInfo.from_row(r))
        assert [s for s, _ in stages] == r["stages"]
        for stage, loss in stages:  # one total loss per epoch, as train.json records it
            info = json.loads((out / "runs" / r["name"] / stage / "train.json").read_text())
            assert len(loss) == info["epochs"]
            assert loss[-1] == pytest.approx(info["final"]["train"]["loss"], rel=1e-12)


def test_loss_curves_per_term_follow_every_stage(smoke):
    """The per-term curves across the stages: at each stage's last epoch every term is the
    value its train.json records (a distillation term under its kind, whichever stage it
    distils), nan where the stage does not train it; the later stages start where the
    earlier ones' epochs end."""
    from derlhybrid.experiments.figures import RunInfo
    from derlhybrid.experiments.figures.transfer import stage_term_stats, term_key

    out, result = smoke("kdv-transfer")
    row = next(r for r in result["runs"] if r["mode"] == "derl-extend")
    terms, starts, n_runs = stage_term_stats([RunInfo.from_row(row)])
    assert n_runs == 1 and next(iter(terms)) == "loss"
    end = 0
    ends = []
    for stage in row["stages"]:
        info = json.loads((out / "runs" / row["name"] / stage / "train.json").read_text())
        end += info["epochs"]
        ends.append(end)
        final = {term_key(k): v for k, v in info["final"]["train"].items()}
        for term, (mean, _std, count) in terms.items():
            if term in final:
                assert mean[end - 1] == pytest.approx(final[term], rel=1e-12), (stage, term)
                assert count[end - 1] == 1
            else:
                assert np.isnan(mean[end - 1]), (stage, term)
    assert starts == [e + 1 for e in ends[:-1]]
    # p1 distils p0's labels and p2 p1's: one curve, absent from the first phase only
    jac = terms["distill:jacobian"][0]
    assert np.isnan(jac[: ends[0]]).all() and np.isfinite(jac[ends[0] :]).all()
    assert term_key("distill:p1:jacobian") == term_key("distill:p0:jacobian")
    assert term_key("replay:p1:residual") == "replay:residual"
    assert term_key("initial") == "initial"


def test_distillation_teacher_is_the_reference(smoke):
    _, result = smoke("kdv-distill")
    rows = {r["mode"]: r["metrics"]["metrics"] for r in result["runs"]}
    teacher = rows["teacher"]["final"]["global"]
    assert teacher["jacobian"]["l2"] == 0.0 and teacher["hessian"]["l2"] == 0.0
    for mode in ("derl", "outl"):
        assert rows[mode]["stages_order"] == ["teacher", "student"]
        # the student's teacher stage is the teacher run's (same numbers)
        assert rows[mode]["stages"]["teacher"]["global"] == teacher
        assert rows[mode]["final"]["global"]["jacobian"]["l2"] > 0


def test_full_plans_follow_the_paper():
    _, runs = plan(load_spec("kdv-distill"), "full")
    by = {r.mode: r for r in runs}
    assert set(by) == {"teacher", "derl", "outl", "der+hesl", "hesl", "sob", "sob+hesl"}
    teacher = by["teacher"].stages[0]
    assert teacher["objective"]["weights"] == {"pde": 0.15237, "init": 6.6076, "bc": 0.0076557}
    assert teacher["model"] == {"width": 50, "depth": 9}
    for r in runs:
        assert r.stages[0] == teacher  # one teacher for every student
    st = by["derl"].stages[1]
    assert st["init"] == "new" and st["train"]["lr"] == 1e-4
    assert st["distill"] == [{"source": "teacher", "mode": "derivative", "weight": 3.915}]
    assert st["objective"]["weights"] == {"pde": 0.0, "init": 4.6174, "bc": 0.0071801}

    _, runs = plan(load_spec("kdv-transfer"), "full")
    by = {r.mode: r for r in runs}
    assert len(runs) == 3 * 2 + 4
    assert [s["data"]["region"] for s in by["derl-new"].stages] == [
        {"t": [0.0, 0.35]},
        {"t": [0.35, 0.7]},
        {"t": [0.7, 1.0]},
    ]
    assert [s["init"] for s in by["derl-extend"].stages] == ["new", "extend", "extend"]
    assert by["replay"].stages[2]["distill"][0] == {
        "source": "p1",
        "mode": "pinn",
        "weight": 1.0,
        "fraction": 0.2,
    }
    assert "distill" not in by["no-dist"].stages[1]
    assert by["ewc"].stages[2]["ewc"]["source"] == "p1"
    assert len(by["pinn-full"].stages) == 1
    assert by["pinn-full"].stages[0]["objective"]["weights"]["bc"] == 1.0

    _, runs = plan(load_spec("allen-cahn-transfer-space"), "full")
    by = {r.mode: r for r in runs}
    assert by["derl-new"].stages[1]["label"]["sets"] == ["train", "distill:p0"]
    assert by["replay"].stages[1]["label"]["sets"] == ["train", "replay:p0"]

    _, runs = plan(load_spec("allen-cahn-transfer-param"), "full")
    ext = next(r for r in runs if r.name == "range-derl-extend-s30")
    assert ext.stages[1]["train"]["optimizer"] == "lbfgs"
    assert ext.stages[1]["train"]["epochs"] == 100
    assert ext.stages[1]["distill"][0]["inputs"] == ["x", "y"]
    new = next(r for r in runs if r.name == "range-derl-new-s30")
    assert new.stages[1]["train"]["optimizer"] == "adam+lbfgs"


def test_range_split_of_the_paper_preset_is_disjoint_ten_and_ten():
    values = np.random.RandomState(30).uniform(0, 1, (20, 2))  # the preset's 20 draws
    spec = load_spec("allen-cahn-transfer-param")
    rng = next(g for g in spec["groups"] if g["name"] == "range")["phases"]
    idx = [_resolve_range(p["parameter_range"], values, np.arange(20), ["L1", "L2"]) for p in rng]
    assert [len(i) for i in idx] == [10, 10] and not set(idx[0]) & set(idx[1])
    assert values[idx[0], 0].max() < values[idx[1], 0].min()


@pytest.mark.parametrize(
    "group, message",
    [
        ('phases = [{ name = "a", bogus = 1 }]\nmodes = { m = {} }', "unknown key 'bogus'"),
        ("phases = []\nmodes = { m = {} }", "needs phases"),
        ('phases = [{ name = "a" }]\nmodes = { m = { phases = ["b"] } }', "unknown phase 'b'"),
        ('phases = [{ name = "a" }]\nmodes = { m = { inits = ["old"] } }', "init must be"),
    ],
)
def test_bad_stages_groups_are_refused(tmp_path, group, message):
    from derlhybrid.experiments import ReproduceError

    path = tmp_path / "bad.toml"
    path.write_text(
        '[datasets.d]\nsystem = "allen-cahn"\n\n[[groups]]\nname = "g"\nkind = "stages"\n'
        f'dataset = "d"\n{group}\n'
    )
    with pytest.raises(ReproduceError, match=message):
        load_spec(str(path))


def test_region_offsets_tool_recomputes_the_stored_errors(smoke, tmp_path):
    """tools/region_offsets.py re-evaluates every pipeline's final network: its u error on p1
    equals the one results.json holds, and removing the constant never raises it."""
    import subprocess
    import sys
    from pathlib import Path

    tool = Path(__file__).resolve().parents[1] / "tools" / "region_offsets.py"
    out, result = smoke("allen-cahn-transfer-param")
    js = tmp_path / "offsets.json"
    png = tmp_path / "offsets.png"
    cmd = [sys.executable, str(tool), str(out / "results.json"), "--grid", "15", "--json", str(js)]
    p = subprocess.run([*cmd, "--figure", str(png)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = json.loads(js.read_text())["rows"]
    assert {r["run"] for r in rows} == {r["name"] for r in result["runs"]}
    for r in rows:
        assert 0 <= r["u_centred_rel_l2"] <= r["u_rel_l2"] * (1 + 1e-12), r
    # the wrong grid gives other errors than the stored ones: refused
    bad = subprocess.run([*cmd[:3], "--grid", "17"], capture_output=True, text=True, timeout=600)
    assert bad.returncode == 1 and "recomputed" in bad.stderr
    missing = subprocess.run(
        [*cmd[:2], str(tmp_path / "nope.json")], capture_output=True, text=True
    )
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
