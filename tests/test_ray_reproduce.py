"""``derl reproduce --engine ray``: the runs as Ray tasks on a local cluster of two worker
CPUs give the same tables and numbers as ``--jobs 1``; a rerun resumes; a task whose worker
dies is retried."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip(
    "ray", reason='Ray is an optional extra: pip install "derlhybrid[ray]" to run these'
)

from derlhybrid.experiments import reproduce  # noqa: E402
from derlhybrid.experiments.runner import ReproduceError  # noqa: E402
from derlhybrid.scale.ray_reproduce import run_tasks  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _numbers(path: Path) -> dict:
    res = json.loads(path.read_text().replace(str(path.parent), "OUT"))
    runs = {r["name"]: r["metrics"] for r in res["runs"]}
    return {"table": res["table"], "checks": res["checks"], "metrics": runs}


@pytest.mark.parametrize("name", ["kdv-transfer", "allen-cahn"])
def test_ray_equals_jobs_1(local_ray, tmp_path, name):
    kw = {"scale": "smoke", "progress": False, "figures": False}
    one = reproduce(name, out=tmp_path / "jobs1", **kw)
    on_ray = reproduce(name, out=tmp_path / "ray", engine="ray", **kw)
    assert _numbers(on_ray) == _numbers(one)

    # the markdown tables too, up to the times (the last column: train s) and folders
    def md(p):
        text = re.sub(r"\d+(\.\d+)? ?s in this call", "T", p.with_name("results.md").read_text())
        return re.sub(r"\| [0-9.]+ \|$", "| T |", text, flags=re.M).replace(str(p.parent), "")

    md = [md(p) for p in (one, on_ray)]
    assert md[0] == md[1]


def test_rerun_after_a_killed_driver_resumes(local_ray, tmp_path):
    kw = {"scale": "smoke", "progress": False, "figures": False, "engine": "ray"}
    first = reproduce("allen-cahn", out=tmp_path, **kw)
    before = _numbers(first)
    runs = sorted((tmp_path / "runs").iterdir())
    # as a driver killed mid-way leaves it: no results, one run without its metrics
    first.unlink()
    (runs[0] / "metrics.json").unlink()
    stamps = {r.name: (r / "checkpoint.pt").stat().st_mtime_ns for r in runs}
    again = reproduce("allen-cahn", out=tmp_path, **kw)
    assert _numbers(again) == before
    # no run retrained: every checkpoint is the one written before
    assert {r.name: (r / "checkpoint.pt").stat().st_mtime_ns for r in runs} == stamps
    assert (runs[0] / "metrics.json").exists()


def _dies_once(marker: str, value: int) -> int:
    if not os.path.exists(marker):
        Path(marker).write_text("")
        os._exit(1)  # the worker process dies, as a killed or lost node's would
    return value * 2


def test_a_dead_worker_is_retried(local_ray, tmp_path):
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    marker = str(tmp_path / "died")
    calls = [(f"task {i}", _dies_once, (marker, i)) for i in range(3)]
    assert run_tasks(calls) == [0, 2, 4]
    assert os.path.exists(marker)


def _fails(value):
    raise ValueError(f"bad value {value}")


def test_a_failing_task_raises_in_the_driver(local_ray):
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with pytest.raises(ValueError, match="bad value 3"):
        run_tasks([("t", _fails, (3,))])


def test_engine_options_are_checked(tmp_path):
    with pytest.raises(ReproduceError, match="--address names a Ray cluster"):
        reproduce("allen-cahn", scale="smoke", out=tmp_path, address="auto")
    with pytest.raises(ReproduceError, match="--engine must be one of"):
        reproduce("allen-cahn", scale="smoke", out=tmp_path, engine="dask")
    with pytest.raises(ReproduceError, match="--jobs is for --engine local"):
        reproduce("allen-cahn", scale="smoke", out=tmp_path, engine="ray", jobs=2)
