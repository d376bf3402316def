"""Euler in a ball: a Neural-Conservation-Law teacher distilled into students (paper.md §9).

    python examples/ncl-ball/run.py --out runs/ncl-ball                  # quick: minutes on a CPU
    python examples/ncl-ball/run.py --out runs/ncl-ball --scale smoke    # seconds, machinery only
    python examples/ncl-ball/run.py --out runs/ncl-ball --scale full     # §9.3–9.5 (GPU, hours)

The study is the experiment ``ncl-ball`` of ``derl reproduce`` (spec:
``python/derlhybrid/experiments/specs/ncl-ball.toml``, runner:
``derlhybrid.experiments.ncl``); this script only runs it — the same as
``derl reproduce ncl-ball --quick --out runs/ncl-ball``. Steps (each resumable): the
``derl generate euler-ball`` points → teacher (momentum, ρDρ/Dt, no flux, initial data;
Adam lr 1e-3, batch 1000) → its field labels (value, 5×4 Jacobian, 5×4×4 Hessian) → one
student per mode (batch 100, Adam, every weight 1: the tuned ones are not available) →
the metrics of §9.5 per run (``runs/<run>/metrics.json``), ``results.md``/``results.json``
and the z = 0 slice figure. Modes and sizes of each scale are in the spec.
"""

from __future__ import annotations

import argparse
import json

from derlhybrid.experiments import reproduce


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--scale", choices=("smoke", "quick", "full"), default="quick")
    ap.add_argument("--seeds", type=int, nargs="+")
    ap.add_argument("--jobs", type=int, default=1, help="students trained at once")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    path = reproduce(
        "ncl-ball",
        scale=args.scale,
        seeds=args.seeds,
        out=args.out,
        progress=not args.no_progress,
        jobs=args.jobs,
    )
    print((path.parent / "results.md").read_text())
    return json.loads(path.read_text())


if __name__ == "__main__":
    main()
