"""Euler in a ball: a Neural-Conservation-Law teacher distilled into students (paper.md §9).

    python examples/ncl-ball/run.py --out runs/ncl-ball                 # tiny: ~minutes on a CPU
    python examples/ncl-ball/run.py --out runs/ncl-ball --size small    # 10⁵ points, 128-wide
    python examples/ncl-ball/run.py --out runs/ncl-ball --size paper    # §9.3–9.5 (GPU, hours)

Steps (each resumable: the trainer continues a checkpoint, finished labels are kept):
teacher (momentum, ρDρ/Dt, no flux, initial data; Adam lr 1e-3, batch 1000) → field labels
of the teacher at its points (value, 5×4 Jacobian, 5×4×4 Hessian) → one student per mode
(batch 100, Adam, every weight 1: the tuned ones are not available) → metrics of §9.5 on
random points, written to ``<out>/metrics.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from derlhybrid.learn import train
from derlhybrid.transfer.euler_ball import (
    STUDENT_MODES,
    label_teacher,
    metric_points,
    ncl_metrics,
    orders_needed,
    student_config,
    student_problem,
    teacher_config,
    teacher_problem,
)
from derlhybrid.transfer.labels import read_labels

#: points (interior = initial = boundary), teacher epochs, student epochs, network, metric points
SIZES = {
    "tiny": dict(
        points=2_000, teacher_epochs=20, student_epochs=5, width=32, depth=2, metric=5_000
    ),
    "small": dict(
        points=100_000, teacher_epochs=1, student_epochs=1, width=128, depth=4, metric=20_000
    ),
    "paper": dict(
        points=10_000_000, teacher_epochs=1, student_epochs=1, width=128, depth=4, metric=100_000
    ),
}
DEFAULT_MODES = ("forgetting", "output", "derivative", "sobolev", "hessian", "der+hesl")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--size", choices=sorted(SIZES), default="tiny")
    ap.add_argument(
        "--modes", default=",".join(DEFAULT_MODES), help=f"of {', '.join(STUDENT_MODES)}"
    )
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=30)
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    size = SIZES[args.size]
    modes = [m for m in args.modes.split(",") if m]
    out = Path(args.out)
    model = {"width": size["width"], "depth": size["depth"]}
    common = {"device": args.device, "progress": not args.no_progress, "seed": args.seed}
    n = size["points"]

    t0 = time.perf_counter()
    problem = teacher_problem(n, n, n, seed=args.seed)
    teacher = train(
        teacher_config(epochs=size["teacher_epochs"], model=model, **common),
        out / "teacher",
        problem=problem,
    ).model
    order = max((orders_needed(m) for m in modes), default=0)
    labels = out / "labels"
    files = {name: labels / f"{name}.h5" for name in ("train", "initial")}
    if not all(p.exists() for p in files.values()):
        orders = {"train": tuple(range(max(order, 1) + 1)), "initial": (0,)}
        files = label_teacher(teacher, problem, labels, sets=orders, overwrite=True)
    X = metric_points(size["metric"], seed=args.seed + 1)
    results = {"size": args.size, "sizes": size, "teacher_seconds": time.perf_counter() - t0}
    own = ncl_metrics(teacher, teacher, X)
    results["teacher"] = {k: own[k] for k in ("momentum", "divergence", "mass")}
    print(
        f"{'teacher':>18}: momentum {own['momentum']['rms']:.3e}  "
        f"div {own['divergence']['rms']:.3e}  |ρ_t + ∇·m| max {own['mass']['max']:.1e}"
    )
    for mode in modes:
        sp = student_problem(
            read_labels(files["train"]),
            read_labels(files["initial"]),
            problem.sets["boundary"],
            min_order=orders_needed(mode),
        )
        cfg = student_config(mode, epochs=size["student_epochs"], model=model, **common)
        student = train(cfg, out / "students" / mode, problem=sp).model
        results[mode] = ncl_metrics(student.cpu(), teacher.cpu(), X)
        row = results[mode]
        print(
            f"{mode:>18}: output {row['output_error']['rms']:.3e}  "
            f"jacobian {row['jacobian_error']['rms']:.3e}  momentum {row['momentum']['rms']:.3e}  "
            f"div {row['divergence']['rms']:.3e}"
        )
    results["seconds"] = time.perf_counter() - t0
    (out / "metrics.json").write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
