"""What the full ``ncl-ball`` protocol costs, measured on each device asked for.

``specs/ncl-ball.toml`` at scale ``full`` (paper.md §9): a raw MLP 4 → 4×128 softplus(β = 25)
→ 5 in float64; the teacher takes 10⁴ Adam steps of batch 1000 interior + 1000 initial +
1000 sphere points (third raw derivatives); its 10⁷ interior points are labelled with the
field's value, 5 × 4 Jacobian and 5 × 4 × 4 Hessian (fourth raw derivatives) and its 10⁷
initial points with the value; then eight students take 10⁵ Adam steps of batch 100 each
(SOB+HESL with K = 100 Hessian projections).

This bench runs the package's own trainer (``TrainingRun``, as ``derl reproduce`` does) on a
few steps of each at those sizes, on a smaller point set (``--points``; the step's cost does
not depend on the set's size), and extrapolates:

* ``teacher_step_s`` × 10⁴;
* ``label_s_per_point`` × 10⁷ (interior, orders 0–2) + the initial set's (order 0);
* each student mode's ``step_s`` × 10⁵;
* ``full_protocol_h``: their sum, one seed.

Devices: ``cpu`` (the trainer's own thread choice) and, where torch sees a GPU, ``cuda``;
the CPU in the same run is the peer of the GPU (``cuda_speedup`` = CPU time / CUDA time per
phase). A phase that fails on a device is recorded with its error and the others go on.

    python bench/ncl_cost.py [--devices cpu cuda] [--steps 20] [--points 20000] [--smoke]

``--smoke``: a 2×8 network on 300 points, 2 steps — the same code path in seconds (CI).
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

from derlhybrid import __version__
from derlhybrid.learn.training_run import RunExtras, TrainingRun, build_model
from derlhybrid.transfer.euler_ball import (
    STUDENT_MODES,
    label_teacher,
    student_config,
    student_problem,
    teacher_config,
    teacher_problem,
)
from derlhybrid.transfer.labels import read_labels

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train import _steps  # the trainer's step loop as bench/train.py times it

#: the full protocol's counts (specs/ncl-ball.toml, scale full)
TEACHER_STEPS = 10_000
STUDENT_STEPS = 100_000
LABEL_POINTS = 10_000_000
FULL = {"model": {"width": 128, "depth": 4}, "teacher_batch": 1000, "student_batch": 100, "k": 100}
SMOKE = {"model": {"width": 8, "depth": 2}, "teacher_batch": 100, "student_batch": 50, "k": 2}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_steps(run: TrainingRun, steps: int, device: torch.device) -> float:
    """Seconds per Adam step of ``run`` (best of two passes of ``steps`` steps, after one
    warm-up step): ``bench/train.py``'s step loop, synchronised on a GPU."""
    warm, go = _steps(run, 1), _steps(run, steps)
    warm()
    _sync(device)
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        go()
        _sync(device)
        best = min(best, (time.perf_counter() - t0) / steps)
    return best


def _phase(out: dict, key: str, fn, errors: dict) -> None:
    """Run one measured phase; a failure is recorded in ``errors`` and the bench goes on."""
    try:
        out[key] = fn()
    except Exception as exc:  # a bench records what failed and goes on
        out[key] = None
        errors[key] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()


def measure(device_name: str, size: dict, points: int, steps: int, modes, work: Path) -> dict:
    device = torch.device(device_name)
    res: dict = {"device": device_name, "errors": {}}
    if device.type == "cuda":
        res["gpu"] = torch.cuda.get_device_name(device)
    model = {**size["model"], "dtype": "float64"}
    problem = teacher_problem(points, points, points, seed=30)
    tcfg = teacher_config(batch_size=size["teacher_batch"], model=model, device=device_name)
    run = TrainingRun(tcfg, problem, device, RunExtras())
    res["threads"] = torch.get_num_threads()
    print(f"[{device_name}] teacher: {steps} steps of batch {size['teacher_batch']}", flush=True)
    _phase(res, "teacher_step_s", lambda: _time_steps(run, steps, device), res["errors"])

    teacher = build_model(problem, tcfg.model, 30).to(device)
    label_dir = work / f"labels-{device_name.replace(':', '')}"

    def labels() -> float:
        t0 = time.perf_counter()
        label_teacher(
            teacher, problem, label_dir, sets={"train": (0, 1, 2), "initial": (0,)}, batch_size=1024
        )
        _sync(device)
        return (time.perf_counter() - t0) / points

    print(f"[{device_name}] labels: {points} interior (orders 0-2) + {points} initial", flush=True)
    _phase(res, "label_s_per_point", labels, res["errors"])
    res["students_step_s"] = {}
    if res["label_s_per_point"] is None:
        return res
    for mode in modes:
        proj = {"n_directions": size["k"], "sigma": 0.01} if mode == "sob+hesl" else None
        scfg = student_config(
            mode,
            batch_size=size["student_batch"],
            model=model,
            hessian_projection=proj,
            device=device_name,
        )
        print(f"[{device_name}] student {mode}: {steps} steps", flush=True)

        def one(scfg=scfg) -> float:
            # a fresh problem per run: a run keeps only the targets its terms read
            sp = student_problem(
                read_labels(label_dir / "train.h5"),
                read_labels(label_dir / "initial.h5"),
                problem.sets["boundary"],
            )
            return _time_steps(TrainingRun(scfg, sp, device, RunExtras()), steps, device)

        _phase(res["students_step_s"], mode, one, res["errors"])
    return res


def extrapolate(res: dict) -> dict:
    """Hours of the full protocol (one seed) from the measured per-step and per-point costs."""
    out: dict = {}
    if res.get("teacher_step_s") is not None:
        out["teacher_h"] = res["teacher_step_s"] * TEACHER_STEPS / 3600
    if res.get("label_s_per_point") is not None:
        # the initial set's labels (value only) are cheaper; the interior rate bounds them
        out["labels_h_at_most"] = res["label_s_per_point"] * LABEL_POINTS / 3600
    st = {k: v for k, v in res.get("students_step_s", {}).items() if v is not None}
    out["students_h"] = {k: v * STUDENT_STEPS / 3600 for k, v in st.items()}
    if len(out) == 3 and out["students_h"]:
        out["full_protocol_h"] = (
            out["teacher_h"] + out["labels_h_at_most"] + sum(out["students_h"].values())
        )
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="What the full ncl-ball protocol costs, measured.")
    ap.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda if seen")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--points", type=int, default=20_000)
    ap.add_argument("--modes", nargs="+", default=[m for m in STUDENT_MODES if m != "forgetting"])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, seconds (CI)")
    a = ap.parse_args(argv)
    size = SMOKE if a.smoke else FULL
    points, steps = (300, 2) if a.smoke else (a.points, a.steps)
    devices = a.devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    summary: dict = {
        "bench": "ncl_cost",
        "derlhybrid": __version__,
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "smoke": a.smoke,
        "sizes": {**size, "points": points, "steps": steps},
        "devices": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name in devices:
            res = measure(name, size, points, steps, a.modes, Path(tmp))
            res["extrapolated"] = extrapolate(res)
            summary["devices"][name] = res
            print(json.dumps({name: res}), flush=True)
    cpu, gpu = summary["devices"].get("cpu"), summary["devices"].get("cuda")
    if cpu and gpu:
        ce, ge = cpu["extrapolated"], gpu["extrapolated"]
        summary["cuda_speedup"] = {
            k: ce[k] / ge[k] for k in ("teacher_h", "labels_h_at_most") if ce.get(k) and ge.get(k)
        }
        summary["cuda_speedup"]["students"] = {
            m: ce["students_h"][m] / ge["students_h"][m]
            for m in ce["students_h"]
            if m in ge["students_h"]
        }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
