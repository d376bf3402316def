"""6th-order d/dx of a 4096x4096 float64 field: derlhybrid vs its peers, in one run.

Peers, measured here on the same array: ``numpy.copy`` (the memory-bandwidth yardstick: one
read and one write of the array, as the derivative must do), ``numpy.gradient`` (2nd order)
and ``findiff`` (accuracy 6). Best of ``--repeats`` runs each. The last line printed is one
JSON object with the headline figures.

    python bench/stencils.py [--size 4096] [--repeats 7] [--backend python]

Target (issue 2): ours <= 2x copy, >= 10x faster than findiff.
"""

from __future__ import annotations

import argparse
import json
import os
import platform

import numpy as np

from derlhybrid import __version__, derivative
from derlhybrid.timing import best_of


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--backend", default="python")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, seconds (what CI runs)")
    args = ap.parse_args()
    if args.smoke:  # the same code path on a 256² field
        args.size, args.repeats = 256, 1
    n = args.size
    h = 1.0 / n
    u = np.random.default_rng(0).standard_normal((n, n))
    out = np.empty_like(u)

    # correctness first: the thing timed is a 6th-order derivative
    x = np.arange(256) * 2 * np.pi / 256
    err = np.abs(derivative(np.sin(x), x[1], accuracy=6, backend=args.backend) - np.cos(x)).max()
    assert err < 1e-9, err

    derivative(u, h, accuracy=6, backend=args.backend)  # JIT compile / warm up
    ours = best_of(lambda: derivative(u, h, accuracy=6, backend=args.backend), args.repeats)
    ours_inplace = best_of(
        lambda: derivative(u, h, accuracy=6, out=out, backend=args.backend), args.repeats
    )
    ours_axis0 = best_of(
        lambda: derivative(u, h, axis=0, accuracy=6, backend=args.backend), args.repeats
    )
    copy = best_of(lambda: np.copy(u), args.repeats)
    copyto = best_of(lambda: np.copyto(out, u), args.repeats)
    gradient = best_of(lambda: np.gradient(u, h, axis=-1), args.repeats)
    try:
        import findiff

        d = findiff.Diff(1, h, acc=6)
        d(u)  # warm up
        findiff_s = best_of(lambda: d(u), max(3, args.repeats // 2))
        ref = d(u)
        ours_val = derivative(u, h, accuracy=6, boundary="one-sided", backend=args.backend)
        inner = np.s_[:, 3:-3]  # same central stencil away from the edges
        agree = float(np.abs(ref[inner] - ours_val[inner]).max() / np.abs(ref).max())
    except ImportError:
        findiff_s, agree = float("nan"), float("nan")

    rows = [
        ("derlhybrid (new output)", ours),
        ("derlhybrid (out= buffer)", ours_inplace),
        ("derlhybrid d/dy (axis 0)", ours_axis0),
        ("numpy.copy", copy),
        ("numpy.copyto (no alloc)", copyto),
        ("numpy.gradient (2nd order)", gradient),
        ("findiff acc=6", findiff_s),
    ]
    print(f"6th-order d/dx, {n}x{n} float64, backend={args.backend}, best of {args.repeats}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus")
    for name, t in rows:
        print(f"  {name:<28} {t * 1e3:9.1f} ms   {t / copy:6.2f} x copy")
    print(
        f"  ours vs findiff: {findiff_s / ours:.1f}x faster; vs numpy.gradient: "
        f"{gradient / ours:.1f}x; interior agreement with findiff {agree:.1e}"
    )
    print(
        json.dumps(
            {
                "bench": "stencils",
                "version": __version__,
                "size": n,
                "ours_s": ours,
                "ours_inplace_s": ours_inplace,
                "ours_axis0_s": ours_axis0,
                "copy_s": copy,
                "copyto_s": copyto,
                "gradient_s": gradient,
                "findiff_s": findiff_s,
                "ratio_copy": ours / copy,
                "ratio_inplace_copyto": ours_inplace / copyto,
                "speedup_findiff": findiff_s / ours,
                "speedup_gradient": gradient / ours,
            }
        )
    )


if __name__ == "__main__":
    main()
