"""Fault injection (issue 17): the package broken on purpose, as a user might break it.

* Property-based (Hypothesis) over the command line and the configuration files of
  ``generate``, ``train``, ``evaluate``, ``stages`` and ``reproduce``: whatever is given,
  the command returns 0 or exits 2 with one line (3: a run stopped by the NaN guard); no
  traceback; after an exit 2 nothing that existed changed and nothing was left that looks
  complete.
* ``kill -9`` at seeded random moments of training (L-BFGS, Adam with a schedule,
  Adam → L-BFGS), a multi-stage pipeline and a ``reproduce``, each followed by a rerun that
  must give bit-identical results (the ``kill -9`` tests of a single and a sharded
  generation, Adam training and a pipeline killed between stages live in test_generate.py,
  test_ray.py, test_train.py and test_transfer.py).

The examples per property are few (CI's budget); ``HYPOTHESIS_PROFILE=nightly`` runs
twenty times as many, new ones each night (README, "Development").
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from derlhybrid.cli import main
from derlhybrid.data.generate import GenerateRequest, generate
from derlhybrid.data.store import open_dataset

settings.register_profile(
    "ci",
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# nightly: many more examples, and new ones each night (not derandomized)
settings.register_profile(
    "nightly", parent=settings.get_profile("ci"), max_examples=240, derandomize=False
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

OUTCOMES = {0, 2, 3}  # done; bad input (one line); stopped by the NaN guard (one line)


def _run(argv: list[str]) -> tuple[int, str]:
    """``derl ARGV`` in this process: (exit code, stderr). An exception escaping ``main``
    (a traceback for the user) fails the test with Hypothesis's smallest example."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse's own errors
            rc = exc.code
    return rc, err.getvalue()


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): (
            hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        )
        for p in sorted(folder.rglob("*"))
    }


def _assert_outcome(argv, folder: Path) -> int:
    before = _snapshot(folder)
    rc, err = _run(argv)
    assert rc in OUTCOMES, (rc, err)
    assert "Traceback" not in err, err
    if rc != 0:
        lines = [ln for ln in err.splitlines() if ln.startswith("derl:")]
        assert len(lines) == 1 and err.strip() == lines[0], err
        if rc == 2:
            assert _snapshot(folder) == before, f"exit 2 changed files: {err}"
    return rc


# -- TOML values, as a user mistypes them ---------------------------------------------------

SCALARS = st.sampled_from(
    [True, False, -1, 0, 1, 3, 0.5, -2.5, 1e-3, float("nan"), float("inf"), "", "x", "3", "no"]
)
VALUES = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=3),
    st.dictionaries(st.sampled_from(["a", "b", "x"]), SCALARS, max_size=2),
)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(str(v), repr(v))
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"


def _toml(tables: dict) -> str:
    """A TOML document from {table: {key: value}} (table "" = the root)."""
    out = []
    for table, body in sorted(tables.items(), key=lambda kv: kv[0] != ""):
        if table:
            out.append(f"[{table}]")
        out += [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in body.items()]
    return "\n".join(out) + "\n"


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("faults")
    pend = generate(
        GenerateRequest(
            system="pendulum", out=str(d / "p.h5"), n_trajectories=6, n_times=11, t_end=1.0
        ),
        progress=False,
    )
    allen = generate(
        GenerateRequest(system="allen-cahn", out=str(d / "a.h5"), n_points=60, n_boundary=5),
        progress=False,
    )
    cfg = d / "t.toml"
    cfg.write_text(_toml(TRAIN_BASE | {"data": {"path": str(pend), "form": "state"}}))
    assert main(["train", str(cfg), "--out", str(d / "run")]) == 0
    ckpt = d / "run" / "checkpoint.pt"
    garbage = d / "garbage.bin"
    garbage.write_bytes(os.urandom(4096))
    half_h5, half_pt = d / "half.h5", d / "half.pt"
    half_h5.write_bytes(pend.read_bytes()[: pend.stat().st_size // 2])
    half_pt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    return {
        "pendulum": pend,
        "allen": allen,
        "checkpoint": ckpt,
        "garbage": garbage,
        "half_h5": half_h5,
        "half_pt": half_pt,
        "missing": d / "missing.h5",
    }


@contextlib.contextmanager
def _scratch():
    with tempfile.TemporaryDirectory(prefix="derl-fault-") as t:
        folder = Path(t)
        (folder / "keep.txt").write_text("a user's file that no failed command may touch")
        yield folder


# -- generate -------------------------------------------------------------------------------

GEN_OPTIONS = {
    "--n-trajectories": ["1", "3", "0", "-2", "x", str(2**64)],
    "--n-times": ["2", "5", "1", "2.5"],
    "--t-end": ["0.5", "0", "-1", "nan", "inf", "1e400"],
    "--seed": ["0", "7", "-1", str(2**64), "1.5"],
    "--rtol": ["1e-8", "0", "-1", "nan"],
    "--n-points": ["4", "16", "3", "0"],
    "--param": ["b=0", "b=-5", "zeta=1", "b", "=1", "nu=0.01"],
    "--backend": ["python", "auto", "julia", "fortran"],
    "--dtype": ["float32", "float16"],
    "--empirical": ["forward:2", "central:4", "central:3", "cubic-forward", "spline", "forward:0"],
    "--compression": ["lzf", "none", "zstd"],
    "--method": ["etdrk4", "mol", "spectral"],
    "--preset": ["paper", "nope"],
}


@given(
    system=st.sampled_from(["pendulum", "allen-cahn", "kdv", "warp", ""]),
    options=st.dictionaries(st.sampled_from(sorted(GEN_OPTIONS)), st.integers(0, 5), max_size=4),
    existing=st.booleans(),
    overwrite=st.booleans(),
)
def test_generate_command_line(system, options, existing, overwrite):
    with _scratch() as folder:
        out = folder / "d.h5"
        if existing:
            out.write_bytes(b"an older file")
        argv = ["generate", system, "--out", str(out), "--no-progress"]
        for opt, i in options.items():
            argv += [opt, GEN_OPTIONS[opt][i % len(GEN_OPTIONS[opt])]]
        if system == "kdv" and "--n-points" not in options:
            argv += ["--n-points", "16", "--n-times", "3"]  # seconds, not minutes
        if overwrite:
            argv.append("--overwrite")
        rc = _assert_outcome(argv, folder)
        if rc == 0:
            with open_dataset(out):
                pass
        leftovers = [p.name for p in folder.iterdir() if p.name not in ("keep.txt", "d.h5")]
        assert leftovers == [], leftovers  # no .partial, .lock or .writing after any outcome


GEN_KEYS = [f for f in GenerateRequest.__dataclass_fields__ if f not in ("out", "system")]


@given(
    changes=st.dictionaries(st.sampled_from([*GEN_KEYS, "bogus"]), VALUES, min_size=1, max_size=3)
)
def test_generate_config_file(changes):
    with _scratch() as folder:
        base = {"system": "pendulum", "out": str(folder / "d.h5"), "n_trajectories": 3}
        base |= {"n_times": 5, "t_end": 0.5}
        for k in ("t_end", "n_times", "n_trajectories", "rtol", "atol", "fd_step"):
            v = changes.get(k)
            if isinstance(v, int | float) and not isinstance(v, bool) and abs(v) > 5:
                changes[k] = 1  # keep a valid-looking request small (inf is still refused)
        cfg = folder / "gen.toml"
        cfg.write_text(_toml({"": base | changes}))
        _assert_outcome(["generate", "--config", str(cfg), "--no-progress"], folder)


# -- train ----------------------------------------------------------------------------------

TRAIN_BASE = {
    "model": {"width": 4, "depth": 1, "dtype": "float64"},
    "objective": {"mode": "derl"},
    "train": {"epochs": 2, "batch_size": 16, "progress": False},
}
TRAIN_KEYS = {
    "data": ["path", "form", "variant", "stream", "system", "bogus"],
    "model": ["width", "depth", "activation", "dtype", "omega0", "bogus"],
    "objective": ["mode", "weights", "terms", "bogus"],
    "train": [
        "epochs",
        "batch_size",
        "optimizer",
        "lr",
        "adam_epochs",
        "seed",
        "engine",
        "device",
        "threads",
        "compile",
        "val_every",
        "condition_batch_size",
        "schedule",
        "lbfgs",
        "progress",
        "bogus",
    ],
    "train.schedule": ["kind", "step_size", "gamma", "min_lr"],
    "train.lbfgs": ["lr", "max_iter", "history_size", "line_search", "batch"],
    "bogus": ["x"],
}


@given(
    changes=st.lists(
        st.sampled_from(sorted(TRAIN_KEYS)).flatmap(
            lambda t: st.tuples(st.just(t), st.sampled_from(TRAIN_KEYS[t]), VALUES)
        ),
        min_size=1,
        max_size=3,
    )
)
def test_train_config_file(files, changes):
    with _scratch() as folder:
        tables = {k: dict(v) for k, v in TRAIN_BASE.items()}
        tables["data"] = {"path": str(files["pendulum"]), "form": "state"}
        for table, key, value in changes:
            tables.setdefault(table, {})[key] = value
        cfg = folder / "t.toml"
        cfg.write_text(_toml(tables))
        rc = _assert_outcome(["train", str(cfg), "--out", str(folder / "run")], folder)
        if rc == 0:
            assert (folder / "run" / "checkpoint.pt").is_file()


# -- evaluate -------------------------------------------------------------------------------


@given(
    ckpt=st.sampled_from(["checkpoint", "missing", "garbage", "half_pt", "pendulum"]),
    data=st.sampled_from(["pendulum", "allen", "missing", "garbage", "half_h5", "checkpoint"]),
    grid=st.sampled_from([None, "-1", "0", "5", "x"]),
    variant=st.sampled_from([None, "nope", "empirical", "interpolate"]),
    out=st.sampled_from([None, "m.json", "/sys/m.json", "no/such/folder/m.json"]),
)
def test_evaluate_command_line(files, ckpt, data, grid, variant, out):
    with _scratch() as folder:
        argv = ["evaluate", str(files[ckpt]), str(files[data])]
        if grid is not None:
            argv += ["--grid", grid]
        if variant is not None:
            argv += ["--variant", variant]
        if out is not None:
            argv += ["--out", out if out.startswith("/") else str(folder / out)]
        rc = _assert_outcome(argv, folder)
        if rc == 0 and out == "m.json":
            assert "splits" in json.loads((folder / out).read_text())


# -- stages ---------------------------------------------------------------------------------

STAGES = """
[defaults]
model = {{ width = 4, depth = 1, dtype = "float64" }}
train = {{ epochs = 2, batch_size = 32, seed = 5, progress = false }}

[[stages]]
name = "lower"
data = {{ path = "{data}", region = {{ y = [-1, 0] }} }}
objective = {{ mode = "derl" }}

[[stages]]
name = "upper"
init = "extend"
data = {{ path = "{data}", region = {{ y = [0, 1] }} }}
objective = {{ mode = "pinn" }}
[[stages.distill]]
source = "lower"
mode = "derivative"
"""

STAGE_KEYS = [
    ("defaults", "train"),
    ("defaults", "model"),
    ("stage", "name"),
    ("stage", "init"),
    ("stage", "objective"),
    ("stage", "data"),
    ("stage", "train"),
    ("stage", "label"),
    ("stage", "ewc"),
    ("stage", "bogus"),
    ("distill", "source"),
    ("distill", "mode"),
    ("distill", "fraction"),
    ("distill", "weight"),
    ("distill", "bogus"),
]


@given(
    change=st.tuples(st.sampled_from(STAGE_KEYS), VALUES),
    stage=st.integers(0, 1),
)
def test_stages_config_file(files, change, stage):
    import tomllib

    (where, key), value = change
    doc = tomllib.loads(STAGES.format(data=files["allen"]))
    if where == "defaults":
        doc["defaults"][key] = value
    elif where == "stage":
        doc["stages"][stage][key] = value
    else:
        doc["stages"][1]["distill"][0][key] = value
    with _scratch() as folder:
        cfg = folder / "pipe.toml"
        cfg.write_text(_toml_document(doc))
        rc = _assert_outcome(["stages", str(cfg), "--out", str(folder / "run")], folder)
        if rc == 2:
            assert not (folder / "run").exists()


def _toml_document(doc: dict) -> str:
    """The pipeline document as TOML: [defaults] and [[stages]] with [[stages.distill]]."""
    lines = ["[defaults]"] + [f"{k} = {_toml_value(v)}" for k, v in doc["defaults"].items()]
    for s in doc["stages"]:
        lines.append("[[stages]]")
        lines += [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in s.items() if k != "distill"]
        for d in s.get("distill", []):
            lines.append("[[stages.distill]]")
            lines += [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in d.items()]
    return "\n".join(lines) + "\n"


# -- reproduce ------------------------------------------------------------------------------


@given(
    experiment=st.sampled_from(["pendulum", "allen-cahn", "nope", ""]),
    seeds=st.lists(st.sampled_from(["30", "-1", "x", str(2**64), "1.5"]), max_size=3),
    groups=st.lists(st.sampled_from(["nope", "damped-true", "rand"]), max_size=2),
    jobs=st.sampled_from([None, "0", "-1", "x", "1"]),
    mistake=st.sampled_from(["experiment", "seeds", "groups", "jobs"]),
)
def test_reproduce_command_line_refuses_before_any_work(experiment, seeds, groups, jobs, mistake):
    # every example holds at least one mistake (a valid one would run an experiment)
    if mistake == "experiment":
        experiment = "nope"
    elif mistake == "seeds":
        seeds = [*seeds, "-1"]
    elif mistake == "groups":
        groups = [*groups, "nope"]
    else:
        jobs = "0"
    with _scratch() as folder:
        out = folder / "rep"
        argv = ["reproduce", *([experiment] if experiment else []), "--smoke", "--out", str(out)]
        argv += ["--no-progress", "--no-figures"]
        if seeds:
            argv += ["--seeds", *seeds]
        if groups:
            argv += ["--groups", *groups]
        if jobs is not None:
            argv += ["--jobs", jobs]
        rc = _assert_outcome(argv, folder)
        assert rc == 2 and not out.exists()


# -- kill -9 at random moments, then the same command again ---------------------------------

KILL_TRAIN = {  # each about a second of training, checkpointed every epoch
    "lbfgs": {"optimizer": "lbfgs", "epochs": 80, "lbfgs": {"lr": 0.5, "max_iter": 5}},
    "adam-step": {"epochs": 300, "schedule": {"kind": "step", "step_size": 20, "gamma": 0.8}},
    "adam+lbfgs": {
        "optimizer": "adam+lbfgs",
        "epochs": 200,
        "adam_epochs": 150,
        "lbfgs": {"lr": 0.5, "max_iter": 4},
    },
}


def _stamp(paths) -> dict:
    return {p: p.stat().st_mtime_ns for p in paths if p.exists()}


def _kill_at_random(cmd: list[str], watch, rng: random.Random, timeout=180) -> bool:
    """Start ``cmd``; once it has written something new among ``watch()`` (a checkpoint:
    work has begun, in this very process), wait a seeded random delay, then SIGKILL.
    Returns whether the kill landed before the command finished."""
    before = _stamp(watch())
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while _stamp(watch()) == before and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(rng.uniform(0.0, 0.3))
    proc.send_signal(signal.SIGKILL)
    return proc.wait() == -signal.SIGKILL


def _derl(*args) -> list[str]:
    return [
        sys.executable,
        "-c",
        "import sys; from derlhybrid.cli import main; sys.exit(main(sys.argv[1:]))",
        *args,
    ]


def _params(ckpt: Path) -> list[torch.Tensor]:
    from derlhybrid.learn.trainer import load_model

    return [p.detach() for p in load_model(ckpt)[0].parameters()]


@pytest.mark.parametrize("kind", sorted(KILL_TRAIN))
def test_train_killed_at_a_random_moment_resumes_bit_identically(files, tmp_path, kind):
    tables = {k: dict(v) for k, v in TRAIN_BASE.items()}
    tables["data"] = {"path": str(files["allen"])}
    tables["model"] = {"width": 8, "depth": 2, "dtype": "float64"}
    tables["train"] = {**tables["train"], "batch_size": 8, **KILL_TRAIN[kind]}
    for sub in ("schedule", "lbfgs"):
        if sub in tables["train"]:
            tables[f"train.{sub}"] = tables["train"].pop(sub)
    cfg = tmp_path / "t.toml"
    cfg.write_text(_toml(tables))
    assert main(["train", str(cfg), "--out", str(tmp_path / "ref")]) == 0
    rng = random.Random(f"kill-{kind}")
    out = tmp_path / "run"
    kills = 0
    for _ in range(3):  # up to three kills at random moments, each resumed by the next try
        watch = lambda: [out / "checkpoint.pt"]  # noqa: E731
        kills += _kill_at_random(_derl("train", str(cfg), "--out", str(out)), watch, rng)
    assert kills >= 1, "every run finished before it could be killed"
    assert main(["train", str(cfg), "--out", str(out)]) == 0
    for a, b in zip(
        _params(tmp_path / "ref" / "checkpoint.pt"), _params(out / "checkpoint.pt"), strict=True
    ):
        assert torch.equal(a, b)
    from derlhybrid.learn.checkpoint import load_checkpoint

    hist = load_checkpoint(out / "checkpoint.pt")["history"]
    ref = load_checkpoint(tmp_path / "ref" / "checkpoint.pt")["history"]
    assert [h["train"] for h in hist] == [h["train"] for h in ref]


def test_stages_killed_at_a_random_moment_resume_bit_identically(files, tmp_path):
    text = STAGES.format(data=files["allen"]).replace("epochs = 2", "epochs = 60")
    cfg = tmp_path / "pipe.toml"
    cfg.write_text(text)
    assert main(["stages", str(cfg), "--out", str(tmp_path / "ref"), "--no-progress"]) == 0
    out = tmp_path / "run"
    rng = random.Random("kill-stages")
    kills = 0
    for _ in range(3):
        kills += _kill_at_random(
            _derl("stages", str(cfg), "--out", str(out), "--no-progress"),
            lambda: sorted(out.glob("*/checkpoint.pt")),
            rng,
        )
    assert kills >= 1
    assert main(["stages", str(cfg), "--out", str(out), "--no-progress"]) == 0
    for stage in ("lower", "upper"):
        for a, b in zip(
            _params(tmp_path / "ref" / stage / "checkpoint.pt"),
            _params(out / stage / "checkpoint.pt"),
            strict=True,
        ):
            assert torch.equal(a, b)
    with (
        h5py.File(tmp_path / "ref" / "lower" / "labels.h5") as f,
        h5py.File(out / "lower" / "labels.h5") as g,
    ):
        for k in ("points/inputs", "points/jacobian"):
            assert (f[k][...] == g[k][...]).all()


VARYING = {"checkpoint", "data", "seconds", "training_seconds"}  # paths and wall times


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in VARYING}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def test_reproduce_killed_at_a_random_moment_resumes_to_the_same_results(tmp_path):
    args = ["reproduce", "pendulum", "--smoke", "--no-figures", "--no-progress"]
    args += ["--groups", "damped-true"]
    ref, out = tmp_path / "ref", tmp_path / "run"
    assert main([*args, "--out", str(ref)]) == 0
    rng = random.Random("kill-reproduce")
    kills = 0
    for _ in range(3):
        kills += _kill_at_random(
            _derl(*args, "--out", str(out)), lambda: sorted(out.glob("runs/*/checkpoint.pt")), rng
        )
    assert kills >= 1
    assert main([*args, "--out", str(out)]) == 0

    def rows(folder):
        data = json.loads((folder / "results.json").read_text())
        return sorted(  # every run's metrics, less the folder's paths and the timings
            (json.dumps(_strip(r["metrics"]), sort_keys=True), r["mode"], r["seed"])
            for r in data["runs"]
        )

    assert rows(out) == rows(ref)
    for ckpt in sorted(ref.glob("runs/*/checkpoint.pt")):
        mine = out / ckpt.relative_to(ref)
        for a, b in zip(_params(ckpt), _params(mine), strict=True):
            assert torch.equal(a, b)
    shutil.rmtree(ref)
