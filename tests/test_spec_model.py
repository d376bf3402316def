"""The typed tree of experiment specs (experiments/spec_model.py, pydantic strict with
extra = "forbid"): every shipped spec fits it; an unknown key or a wrong type anywhere
fails in one line naming its path; the spec comes back unchanged."""

from __future__ import annotations

import copy
import tomllib

import pytest

from derlhybrid.experiments.runner import EXPERIMENTS, SPECS, ReproduceError, load_spec
from derlhybrid.experiments.spec_model import SpecError, validate_spec

BASE = '[datasets.a]\nsystem = "p"\n[[groups]]\nname = "g"\ndataset = "a"\n'


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_shipped_spec_fits_and_comes_back_unchanged(name):
    raw = tomllib.loads((SPECS / f"{name}.toml").read_text())
    before = copy.deepcopy(raw)
    assert validate_spec(raw, name) is raw and raw == before


@pytest.mark.parametrize(
    "text,message",
    [
        ("foo = 1", "x.toml: unknown key 'foo'"),
        (
            BASE + '[groups.modes]\nderl = { lr = "1e-3" }',
            "x.toml: groups 'g'.modes.derl.lr: expected a number, got '1e-3'",
        ),
        (
            BASE + "[groups.modes]\nderl = { lrr = 1e-3 }",
            "groups 'g'.modes.derl: unknown key 'lrr'",
        ),
        (BASE + 'seeds = [1, "2"]', "groups 'g'.seeds[1]: expected an integer, got '2'"),
        (BASE + 'kind = "bogus"', "groups 'g': kind must be 'runs', 'stages' or 'ncl'"),
        (BASE + "teacher = {}", "groups 'g': 'teacher' needs kind = 'ncl'"),
        (BASE + "phases = []", "groups 'g': 'phases' needs kind = 'stages'"),
        (
            BASE + 'kind = "stages"\nphases = [{ name = "p0", edge_points = 1.5 }]',
            "groups 'g'.phases 'p0'.edge_points: expected an integer, got 1.5",
        ),
        ("[scales.huge]\ntrain = {}", "scales: unknown scale 'huge'"),
        ("[scales.quick]\nby_init = {}", "scales.quick: unknown key 'by_init'"),
        ('[[columns]]\nkey = "k"\ntitle = 3\npath = "p"', "columns[0].title: expected a string"),
        ('[[checks]]\nclaim = "c"\ngroup = "g"', "checks[0]: 'column' is required"),
        ('figures = "pendulum_phase"', "figures: expected a list"),
    ],
)
def test_a_bad_key_or_type_is_one_line_naming_its_path(text, message):
    with pytest.raises(SpecError) as exc:
        validate_spec(tomllib.loads(text), "x.toml")
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_load_spec_refuses_before_planning(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(BASE + '[groups.modes]\nderl = { weights = { sys = "big" } }\n')
    with pytest.raises(ReproduceError, match=r"groups 'g'\.modes\.derl\.weights\.sys"):
        load_spec(str(bad))
