"""The tools .ci/run uses on the Julia half, and the workflow for hosts with Julia (issue 18):
fatou (Julia formatter and linter, never runs Julia) is clean on julia/ and catches a badly
formatted or linted file; actionlint passes .github/workflows/julia.yml and catches a broken
copy; the workflow names files and settings that exist."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "julia.yml"


def _tool(name: str) -> str:
    """The tool installed beside this Python (the test extra), or on PATH; else skip."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.is_file() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[test]')")
    return found


def _run(*cmd, cwd=ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=120)


def test_fatou_is_clean_on_the_julia_package():
    fatou = _tool("fatou")
    fmt = _run(fatou, "format", "--check", "julia/")
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
    lint = _run(fatou, "lint", "julia/")
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_fatou_catches_bad_formatting_and_lint(tmp_path):
    fatou = _tool("fatou")
    bad = tmp_path / "bad.jl"
    bad.write_text("function f( x )\nreturn   maximum(abs.(x .- 1))\nend\n")
    assert _run(fatou, "format", "--check", str(bad), cwd=tmp_path).returncode != 0
    lint = _run(fatou, "lint", str(bad), cwd=tmp_path)
    assert lint.returncode != 0 and "eager-broadcast" in lint.stdout + lint.stderr


def test_actionlint_passes_the_workflow():
    actionlint = _tool("actionlint")
    res = _run(actionlint, str(WORKFLOW))
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("runs-on: ubuntu-latest", "run-on: ubuntu-latest"),  # unknown key
        ("${{ matrix.julia }}", "${{ matrix.juila }}"),  # undefined matrix property
        ("needs: pkg-test", "needs: pkg-tests"),  # unknown job
    ],
)
def test_actionlint_catches_a_broken_workflow(tmp_path, old, new):
    actionlint = _tool("actionlint")
    text = WORKFLOW.read_text()
    assert old in text
    broken = tmp_path / ".github" / "workflows" / "julia.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(text.replace(old, new, 1))
    res = _run(actionlint, str(broken), cwd=tmp_path)
    assert res.returncode != 0, res.stdout


def test_workflow_runs_what_the_repository_has():
    yaml = pytest.importorskip("yaml")
    flow = yaml.safe_load(WORKFLOW.read_text())
    jobs = flow["jobs"]
    assert set(jobs) == {"pkg-test", "conformance"}
    for job in jobs.values():
        assert job["strategy"]["matrix"]["julia"] == ["1.10", "1"]  # lower bound and latest
    runs = "\n".join(step.get("run", "") for job in jobs.values() for step in job["steps"])
    assert "--threads=4" in runs and "Pkg.test" in runs
    assert "DERL_EXPECT_THREADS" in (ROOT / "julia/DERLKernels/test/threads.jl").read_text()
    assert jobs["pkg-test"]["steps"][-1]["env"]["DERL_EXPECT_THREADS"] == "4"
    assert jobs["conformance"]["steps"][-1]["env"]["DERL_BACKEND"] == "julia"
    for path in ("julia/DERLKernels", "tests/test_backends.py", "tests/test_julia_boundary.py"):
        assert path in WORKFLOW.read_text() and (ROOT / path).exists(), path
