"""The ``reduced`` scale of ``derl reproduce``: a documented smaller protocol for an
experiment whose full protocol does not fit the machine (ncl-ball). Only specs with a
``[scales.reduced]`` table have it; asking it of another spec fails in one line before any
work; results.md shows its notes first. Nothing here trains (the reduced ncl-ball takes
hours)."""

from __future__ import annotations

import json
import tomllib

import pytest

from derlhybrid.cli import main
from derlhybrid.experiments.plan import plan
from derlhybrid.experiments.report import results_markdown
from derlhybrid.experiments.runner import OPTIONAL_SCALES, SCALES, ReproduceError, load_spec
from derlhybrid.experiments.spec_model import SpecError, validate_spec

MODES = [
    "teacher",
    "forgetting",
    "output",
    "derivative",
    "hessian",
    "der+hesl",
    "sobolev",
    "sobolev-reference",
    "sob+hesl",
]
BASE = '[datasets.a]\nsystem = "p"\n[[groups]]\nname = "g"\ndataset = "a"\n'


def test_scales():
    assert SCALES == ("full", "reduced", "quick", "smoke")
    assert OPTIONAL_SCALES == ("reduced",)


def test_ncl_ball_reduced_plan_has_the_documented_sizes():
    spec = load_spec("ncl-ball")
    datasets, runs = plan(spec, "reduced")
    assert datasets == {"ball": {"system": "euler-ball", "n_points": 100_000, "seed": 30}}
    assert [r.mode for r in runs] == MODES
    assert {r.seed for r in runs} == {30}
    net = {"width": 128, "depth": 4, "activation": "softplus", "beta": 25.0, "dtype": "float64"}
    for r in runs:
        assert r.evaluate == {"points": 100_000}
        assert {k: r.teacher["model"][k] for k in net} == net
        t = r.teacher["train"]
        assert (t["epochs"], t["batch_size"], t["lr"]) == (20, 1000, 1e-3)  # 2 000 steps
        if r.mode == "teacher":
            assert r.student is None
            continue
        assert r.student is not None
        assert {k: r.student["model"][k] for k in net} == net
        s = r.student["train"]
        assert (s["epochs"], s["batch_size"], s["lr"]) == (1, 100, 1e-3)  # 1 000 steps
    (sob_hesl,) = [r for r in runs if r.mode == "sob+hesl"]
    assert sob_hesl.student is not None
    (proj,) = [
        t for t in sob_hesl.student["objective"]["terms"] if t["term"] == "ncl_hessian_projection"
    ]
    assert (proj["n_directions"], proj["sigma"]) == (10, 0.01)


def test_ncl_ball_reduced_changes_only_the_documented_sizes():
    """Against the full protocol: the same runs and configurations but for the teacher's
    epochs (20 instead of 1 pass), SOB+HESL's K (10 instead of 100), the data's size."""
    spec = load_spec("ncl-ball")
    full_data, full = plan(spec, "full")
    red_data, reduced = plan(spec, "reduced")
    assert full_data["ball"]["n_points"] == 10_000_000
    assert {**red_data["ball"], "n_points": 10_000_000} == full_data["ball"]
    assert [r.name for r in reduced] == [r.name for r in full]
    for f, r in zip(full, reduced, strict=True):
        assert f.teacher["train"]["epochs"] == 1
        teacher = json.loads(json.dumps(r.teacher))
        teacher["train"]["epochs"] = 1
        assert teacher == f.teacher
        assert r.evaluate == f.evaluate
        if r.mode == "sob+hesl":
            assert r.student is not None and f.student is not None
            for term in r.student["objective"]["terms"]:
                if term["term"] == "ncl_hessian_projection":
                    assert term["n_directions"] == 10
                    term["n_directions"] = 100
        assert r.student == f.student


def test_the_reduced_notes_say_which_sizes_and_why():
    notes = " ".join(load_spec("ncl-ball")["scales"]["reduced"]["notes"])
    for needle in ("10.4 h", "32.5 s", "1 000 h", "15 minutes", "K = 10", "not settled"):
        assert needle in notes
    assert "estimate" in notes


def test_a_spec_without_the_reduced_scale_refuses_it():
    spec = load_spec("allen-cahn")
    with pytest.raises(ReproduceError, match=r"no reduced scale.*\[scales\.reduced\]"):
        plan(spec, "reduced")


def test_cli_reduced_without_the_table_exits_2_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["reproduce", "allen-cahn", "--reduced", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("derl: error: allen-cahn has no reduced scale")
    assert "[scales.reduced]" in err and "--quick" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_cli_reduced_is_exclusive_with_quick_and_smoke(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["reproduce", "ncl-ball", "--reduced", "--quick"])
    assert exc.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_the_spec_model_accepts_reduced_and_refuses_an_unknown_scale():
    raw = tomllib.loads(BASE + '[scales.reduced]\nnotes = ["why"]\ntrain = { epochs = 2 }')
    assert validate_spec(raw, "x.toml") is raw
    with pytest.raises(SpecError) as exc:
        validate_spec(tomllib.loads("[scales.huge]\ntrain = {}"), "x.toml")
    msg = str(exc.value)
    assert msg == "x.toml: scales: unknown scale 'huge'; scales are full, reduced, quick and smoke"


def test_a_reduced_scale_needs_notes(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        BASE + "[groups.modes]\nderl = { lr = 1e-3 }\n[scales.reduced]\ntrain = { epochs = 2 }\n"
    )
    with pytest.raises(ReproduceError, match=r"scales\.reduced needs notes"):
        load_spec(str(bad))


def test_results_md_shows_the_reduced_notes_first():
    spec = load_spec("ncl-ball")
    meta = {"version": "x", "torch": "t", "machine": "m", "cpus": 2, "seconds": 1.0}
    text = results_markdown(spec, "reduced", [], [], [], meta)
    assert "`derl reproduce ncl-ball --reduced`" in text and "scale **reduced**" in text
    head = text.index("> **Scale reduced: not the paper's protocol**")
    for note in spec["scales"]["reduced"]["notes"]:
        assert f"> {note}" in text
        assert text.index(note) < text.index(spec["notes"][0])  # before the spec's notes
    assert head < text.index(spec["notes"][0])
    assert "Scale reduced:" not in text.replace("**Scale reduced:", "")  # not twice
    quick = results_markdown(spec, "quick", [], [], [], meta)  # unchanged for quick
    assert "not the paper's protocol" not in quick
    assert f"- Scale quick: {spec['scales']['quick']['notes'][0]}" in quick


def test_merge_with_reduced(tmp_path, capsys):
    """``--merge --reduced`` plans at scale reduced and refuses other scales' files; the
    merged results record the scale and its notes (no run: nothing trained here)."""
    part = tmp_path / "part.json"
    part.write_text(json.dumps({"experiment": "ncl-ball", "scale": "reduced", "runs": []}))
    out = tmp_path / "merged"
    argv = ["reproduce", "ncl-ball", "--reduced", "--no-figures", "--out", str(out)]
    assert main([*argv, "--merge", str(part)]) == 0
    capsys.readouterr()
    res = json.loads((out / "results.json").read_text())
    assert res["scale"] == "reduced"
    assert res["scale_notes"] == load_spec("ncl-ball")["scales"]["reduced"]["notes"]
    assert res["planned"] == len(MODES) and len(res["missing"]) == len(MODES)
    assert "not the paper's protocol" in (out / "results.md").read_text()
    quick = tmp_path / "quick.json"
    quick.write_text(json.dumps({"experiment": "ncl-ball", "scale": "quick", "runs": []}))
    assert main([*argv, "--merge", str(quick)]) == 2
    err = capsys.readouterr().err
    assert "not reduced" in err and err.count("\n") == 1
