"""The typed descriptions of generated data (Trajectories, Points, Grid and the empirical
derivative objects): checked on construction in one line naming the key; the same request,
key for key, as the flat GenerateRequest and `derl generate` build."""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest

from derlhybrid.cli import build_parser, main
from derlhybrid.cli_generate import request_from_args
from derlhybrid.data.estimators import ESTIMATORS, parse_estimator
from derlhybrid.data.generate import GenerateRequest, generate
from derlhybrid.data.sampling import (
    CubicForward,
    Grid,
    Points,
    SavitzkyGolay,
    SmoothingSpline,
    Spectral,
    Stencil,
    Trajectories,
    TrendFilter,
    data_kind,
)
from derlhybrid.experiments import EXPERIMENTS, load_spec
from derlhybrid.experiments.plan import plan
from derlhybrid.systems import SYSTEMS


def _error(fn, *args, **kw) -> str:
    with pytest.raises(ValueError) as exc:
        fn(*args, **kw)
    text = str(exc.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Trajectories(n=0), "Trajectories.n must be >= 1, got 0"),
        (lambda: Trajectories(n="20"), "Trajectories.n must be an integer, got '20' (a string)"),
        (lambda: Trajectories(allow_failures="false"), "Trajectories.allow_failures must be true"),
        (lambda: Trajectories(t_end=float("nan")), "Trajectories.t_end must be a positive"),
        (lambda: Trajectories(n_times=1), "Trajectories.n_times must be >= 2"),
        (lambda: Trajectories(seed=-1), "Trajectories.seed must be an integer in [0, 2**63)"),
        (lambda: Trajectories(rtol=0.0), "Trajectories.rtol must be a positive number"),
        (lambda: Trajectories(split=(0.5, 0.5, 0.5)), "Trajectories.split fractions"),
        (lambda: Trajectories(chunk=0), "Trajectories.chunk must be >= 1"),
        (lambda: Trajectories(empirical="forward:1"), "Trajectories.empirical must be a Stencil"),
        (lambda: Trajectories(noise=0.1), "Trajectories.noise needs an estimator"),
        (
            lambda: Trajectories(noise=0.1, empirical=CubicForward()),
            "Trajectories.noise needs an estimator",
        ),
        (lambda: Points(n_boundary=0), "Points.n_boundary must be >= 1"),
        (lambda: Points(n=2.5), "Points.n must be an integer"),
        (lambda: Points(empirical=CubicForward()), "Points.empirical must be a Stencil"),
        (lambda: Points(noise=-1.0), "Points.noise must be a non-negative number"),
        (lambda: Grid(n_times=1), "Grid.n_times must be >= 2"),
        (lambda: Grid(method=3), "Grid.method must be a string"),
        (lambda: Grid(empirical=SavitzkyGolay()), "Grid.empirical must be a Stencil or None"),
        (lambda: CubicForward(h=0.0), "CubicForward.h must be a positive number"),
        (lambda: CubicForward(h="1e-3"), "CubicForward.h must be a number"),
        (lambda: CubicForward(n_samples=0), "CubicForward.n_samples must be >= 1"),
        (lambda: SavitzkyGolay(window="31"), "savgol.window must be an integer"),
        (lambda: SmoothingSpline(s="x"), "spline.s must be a number"),
        (lambda: Stencil("central", 3), "central stencils have even accuracy"),
        (lambda: Stencil("forward", True), "stencil.accuracy must be an integer"),
    ],
)
def test_objects_refuse_bad_values_in_one_line_naming_the_key(make, message):
    assert message in _error(make)


def test_objects_and_requests_are_frozen():
    t = Trajectories(n=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.n = 4  # type: ignore[misc]
    req = GenerateRequest(system="pendulum", out="x.h5")
    with pytest.raises(dataclasses.FrozenInstanceError):
        req.seed = 4  # type: ignore[misc]


def test_each_system_takes_its_own_kind_of_data():
    assert data_kind(SYSTEMS["pendulum"]) is Trajectories
    assert data_kind(SYSTEMS["allen-cahn"]) is Points
    assert data_kind(SYSTEMS["euler-ball"]) is Points
    assert data_kind(SYSTEMS["kdv"]) is Grid and data_kind(SYSTEMS["continuity"]) is Grid
    msg = _error(GenerateRequest.of, "pendulum", Points(n=3), out="x.h5")
    assert msg == "pendulum data are described by Trajectories(...), not Points(...)"
    assert "Grid(...)" in _error(GenerateRequest.of, "kdv", Trajectories(), out="x.h5")
    assert "unknown system 'warp'" in _error(generate, "warp", Trajectories(), out="x.h5")


def test_the_library_names_keys_not_flags():
    msgs = [
        _error(GenerateRequest, system="pendulum", out="x.h5", dtype="float16"),
        _error(GenerateRequest, system="pendulum", out="x.h5", n_trajectories=0),
        _error(GenerateRequest, system="pendulum", out="x.h5", rtol=0.0),
        _error(GenerateRequest, system="pendulum", out="x.h5", fd_step=-1.0),
        _error(GenerateRequest, system="pendulum", out="x.h5", seed=2**64),
        _error(GenerateRequest, system="pendulum", out=""),
    ]
    assert msgs[0] == "dtype must be float32 or float64, got 'float16'"
    assert msgs[1] == "n_trajectories must be >= 1, got 0"
    assert all("--" not in m for m in msgs), msgs


# -- object form == flat form ----------------------------------------------------------------

OUT = "d.h5"
CASES = [
    (
        "pendulum",
        Trajectories(n=40, t_end=4.0, n_times=41, seed=0, empirical=Stencil("forward", 1)),
        dict(n_trajectories=40, t_end=4.0, n_times=41, seed=0, empirical="forward:1"),
    ),
    (
        "pendulum",
        Trajectories(n=8, empirical=CubicForward(h=1e-2, n_samples=100), chunk=3),
        dict(
            n_trajectories=8,
            empirical="cubic-forward",
            fd_step=1e-2,
            n_empirical_samples=100,
            chunk_trajectories=3,
        ),
    ),
    (
        "pendulum",
        Trajectories(empirical=SavitzkyGolay(), noise=0.01, split=(0.8, 0.1, 0.1)),
        dict(empirical="savgol", noise=0.01, split=(0.8, 0.1, 0.1)),
    ),
    (
        "pendulum",
        Trajectories(empirical=SmoothingSpline(s=0.5), noise=1e-3, allow_failures=True),
        dict(empirical="spline:s=0.5", noise=1e-3, allow_failures=True),
    ),
    ("pendulum", Trajectories(empirical=TrendFilter()), dict(empirical="trend")),
    (
        "pendulum",
        Trajectories(rtol=1e-8, atol=1e-9, empirical=Stencil("central", 4)),
        dict(rtol=1e-8, atol=1e-9, empirical="central:4"),
    ),
    ("allen-cahn", Points(n=50, n_boundary=5, seed=2), dict(n_points=50, n_boundary=5, seed=2)),
    ("allen-cahn-exp", Points(n=50, n_parameter_sets=4), dict(n_points=50, n_parameter_sets=4)),
    ("euler-ball", Points(n=100, seed=4), dict(n_points=100, seed=4)),
    (
        "kdv",
        Grid(n_points=16, n_times=5, method="etdrk4", empirical=Stencil("central", 2)),
        dict(n_points=16, n_times=5, method="etdrk4", empirical="central:2"),
    ),
    ("continuity", Grid(method="upwind-fv", seed=3), dict(method="upwind-fv", seed=3)),
    ("pendulum", None, {}),
]


@pytest.mark.parametrize(("system", "data", "flat"), CASES)
def test_the_object_form_is_the_flat_request(system, data, flat):
    common = dict(params={"b": 0.25} if system == "pendulum" else {}, dtype="float32")
    obj = GenerateRequest.of(system, data, out=OUT, **common)
    ref = GenerateRequest(system=system, out=OUT, **common, **flat)
    assert obj == ref
    assert obj.as_config() == ref.as_config()


def test_estimators_record_their_shortest_text():
    for est in (
        SavitzkyGolay(),
        SavitzkyGolay(window=31, degree=2),
        SmoothingSpline(s=0.5),
        TrendFilter(gamma=10.0, order=3),
        Spectral(cutoff=0.5),
        Stencil("backward", 3),
    ):
        assert parse_estimator(est.option()) == est
    assert SavitzkyGolay().option() == "savgol"
    assert SavitzkyGolay(window=31).option() == "savgol:window=31"
    assert Stencil("central", 2).option() == "central:2"


def _object_form(req: GenerateRequest):
    """The typed description of a flat request (the inverse of GenerateRequest.of)."""
    kind = data_kind(SYSTEMS[req.system])
    emp = None
    if req.empirical == "cubic-forward":
        emp = CubicForward(h=req.fd_step, n_samples=req.n_empirical_samples)
    elif req.empirical is not None:
        emp = parse_estimator(req.empirical)
        assert emp.option() == req.empirical, "a spec writes an estimator in a longer form"
    if kind is Trajectories:
        return Trajectories(
            n=req.n_trajectories,
            t_end=req.t_end,
            n_times=req.n_times,
            seed=req.seed,
            rtol=req.rtol,
            atol=req.atol,
            empirical=emp,
            noise=req.noise,
            split=req.split,
            chunk=req.chunk_trajectories,
            allow_failures=req.allow_failures,
        )
    if kind is Points:
        assert not isinstance(emp, CubicForward)
        return Points(
            n=req.n_points,
            n_parameter_sets=req.n_parameter_sets,
            n_boundary=req.n_boundary,
            seed=req.seed,
            split=req.split,
            empirical=emp,
            noise=req.noise,
        )
    assert emp is None or isinstance(emp, Stencil)
    return Grid(
        n_points=req.n_points,
        n_times=req.n_times,
        method=req.method,
        rtol=req.rtol,
        seed=req.seed,
        empirical=emp,
    )


def test_every_dataset_of_the_paper_specs_has_the_same_object_form():
    n = 0
    for name in EXPERIMENTS:
        spec = load_spec(name)
        for scale in ("full", "quick", "smoke"):
            datasets, _ = plan(spec, scale)
            for request in datasets.values():
                flat = GenerateRequest(out=OUT, **request)
                keep = ("params", "preset", "backend", "dtype", "compression")
                common = {k: getattr(flat, k) for k in keep}
                obj = GenerateRequest.of(flat.system, _object_form(flat), out=OUT, **common)
                assert obj.as_config() == flat.as_config(), (name, scale, request)
                n += 1
    assert n > 30
    assert {"savgol", "spline", "trend"} <= set(ESTIMATORS)


def test_both_calls_write_the_same_file(tmp_path):
    data = Trajectories(n=4, t_end=1.0, n_times=11, seed=1, empirical=CubicForward(n_samples=5))
    a = generate("pendulum", data, out=tmp_path / "a.h5", params={"b": 0.1}, progress=False)
    req = GenerateRequest(
        system="pendulum",
        out=str(tmp_path / "b.h5"),
        params={"b": 0.1},
        n_trajectories=4,
        t_end=1.0,
        n_times=11,
        seed=1,
        empirical="cubic-forward",
        n_empirical_samples=5,
    )
    b = generate(req, progress=False)
    with h5py.File(a) as f, h5py.File(b) as g:
        assert f.attrs["config"] == g.attrs["config"]
        names: list[str] = []
        f.visit(lambda k: names.append(k) if isinstance(f[k], h5py.Dataset) else None)
        assert "empirical/derivatives" in names
        for k in names:
            np.testing.assert_array_equal(f[k][...], g[k][...])
    with pytest.raises(TypeError):
        generate(req, data)


# -- the command line ------------------------------------------------------------------------


def test_the_command_line_builds_the_flat_request(tmp_path):
    argv = ["generate", "pendulum", "--out", "p.h5", "--n-trajectories", "8", "--seed", "2"]
    argv += ["--empirical", "cubic-forward", "--fd-step", "0.01", "--param", "b=0"]
    req = request_from_args(build_parser().parse_args(argv))
    data = Trajectories(n=8, seed=2, empirical=CubicForward(h=0.01))
    assert req == GenerateRequest.of("pendulum", data, out="p.h5", params={"b": "0"})


def _exit_2(capsys, argv) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("derl: error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('overwrite = "false"', "generate.overwrite must be true or false, got 'false'"),
        ('allow_failures = "false"', "generate.allow_failures must be true or false"),
        ('n_trajectories = "20"', "generate.n_trajectories must be an integer, got '20'"),
        ("n_trajectories = 0", "n_trajectories must be >= 1, got 0"),
        ('dtype = "float16"', "dtype must be float32 or float64"),
    ],
)
def test_a_bad_config_value_fails_in_one_line_before_anything_is_written(
    tmp_path, capsys, line, message
):
    cfg = tmp_path / "gen.toml"
    cfg.write_text(f'system = "pendulum"\nout = "{tmp_path / "p.h5"}"\n{line}\n')
    err = _exit_2(capsys, ["generate", "--config", str(cfg), "--no-progress"])
    assert message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gen.toml"]


def test_a_bad_option_fails_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = _exit_2(capsys, ["generate", "pendulum", "--out", "p.h5", "--n-trajectories", "0"])
    assert "n_trajectories must be >= 1, got 0" in err
    preset = ["generate", "pendulum", "--out", "p.h5", "--preset", "paper", "--n-times", "7"]
    err = _exit_2(capsys, preset)
    assert "preset 'paper' fixes n_times=1001" in err
    assert list(tmp_path.iterdir()) == []


def test_the_paper_presets_of_legacy_rng_systems_are_a_class_variable():
    from derlhybrid.data.presets import PAPER

    legacy = {name for name in PAPER if SYSTEMS[name].legacy_rng}
    assert legacy == {"pendulum", "allen-cahn", "allen-cahn-exp", "allen-cahn-multi"}
