"""Generation throughput on Ray: `derl generate pendulum --engine ray` with 1 and 2 local
workers against the single-process path, in one run.

The same request each time (damped pendulum, ``--n-trajectories`` × ``--n-times``, DOP853
at rtol = atol = 1e-10, ``--compression none`` by default so the disk does not dominate),
timed end to end: solving, writing the shard files and stitching them, on a local Ray
instance started once beforehand (``ray.init`` reported on its own). Before each timed Ray
run a tiny run of the same shape starts the worker processes (a fresh Python importing
derlhybrid and loading the solver: the cost of a first run, reported as ``startup``); the
timed run then finds them warm, as every later command on a running cluster does. Peers
measured here:

* ``single_1thread``: :func:`derlhybrid.data.generate.generate` with one solver thread (what
  one Ray worker of one CPU does);
* ``single``: the same with the default threads (all cores, the ordinary ``derl generate``).

Every sharded file is checked to equal the single-process one (states and derivatives, bit
for bit). On a multi-core machine the 2-worker run should approach 2x ``single_1thread``;
``single`` uses the same cores through threads, so Ray pays off across machines, not
within one. The last line printed is one JSON object.

    python bench/generate_ray.py [--n-trajectories 40000] [--n-times 1001] [--t-end 10]
                                 [--shards 4] [--compression none]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numba
import numpy as np

from derlhybrid import __version__
from derlhybrid.data import open_dataset
from derlhybrid.data.generate import GenerateRequest, generate


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-trajectories", type=int, default=40_000)
    ap.add_argument("--n-times", type=int, default=1001)
    ap.add_argument("--t-end", type=float, default=10.0, help="longer: more solver work")
    ap.add_argument("--shards", type=int, default=4, help="shards of every Ray run")
    ap.add_argument("--compression", default="none", choices=["gzip", "lzf", "none"])
    ap.add_argument("--dir", default=None, help="where to write (default: a temporary folder)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, seconds (what CI runs)")
    args = ap.parse_args()
    if args.smoke:  # the same code path on 256 trajectories in 2 shards
        args.n_trajectories, args.n_times, args.shards = 256, 101, 2
    import ray

    from derlhybrid.scale import RayEngine, generate_sharded

    folder = Path(args.dir or tempfile.mkdtemp(prefix="derl-ray-"))
    n = args.n_trajectories
    base = dict(system="pendulum", n_trajectories=n, n_times=args.n_times, seed=1)
    base["t_end"] = args.t_end
    base["compression"] = args.compression

    def request(name):
        return GenerateRequest(out=str(folder / name), overwrite=True, **base)

    # compile / load the solver's lane driver once (cached on disk for the workers too)
    generate(GenerateRequest(**{**base, "n_trajectories": 64, "out": str(folder / "w.h5")}))
    (folder / "w.h5").unlink()
    cores = os.cpu_count() or 1
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    t_single1 = _timed(lambda: generate(request("single1.h5"), progress=False))
    numba.set_num_threads(threads)
    t_single = _timed(lambda: generate(request("single.h5"), progress=False))
    print(f"single process, 1 thread:   {n / t_single1:10.0f} traj/s ({t_single1:.2f} s)")
    print(f"single process, {threads} threads:  {n / t_single:10.0f} traj/s ({t_single:.2f} s)")

    t_init = _timed(
        lambda: ray.init(
            num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False
        )
    )
    print(f"ray.init (local, 2 CPUs):   {t_init:.2f} s (not counted below)")
    ray_s, fixed, same = {}, {}, {}
    try:
        for workers in (1, 2):
            name = f"ray{workers}.h5"
            shutil.rmtree(folder / f"{name}.shards", ignore_errors=True)
            engine = RayEngine(shards=args.shards, workers=workers)
            tiny = GenerateRequest(
                **{**base, "n_trajectories": 16 * args.shards, "out": str(folder / "tiny.h5")},
                overwrite=True,
            )
            shutil.rmtree(folder / "tiny.h5.shards", ignore_errors=True)
            # a first run starts the worker processes (import, load the solver); kept warm
            fixed[workers] = _timed(lambda e=engine, r=tiny: generate_sharded(r, e, progress=False))
            ray_s[workers] = _timed(
                lambda name=name, engine=engine: generate_sharded(
                    request(name), engine, progress=False
                )
            )
            with open_dataset(folder / name) as f, open_dataset(folder / "single.h5") as g:
                same[workers] = all(
                    np.array_equal(f[k][...], g[k][...])
                    for k in ("trajectories/states", "trajectories/derivatives")
                )
            print(
                f"ray, {workers} worker(s), {args.shards} shards: "
                f"{n / ray_s[workers]:10.0f} traj/s ({ray_s[workers]:.2f} s, warm workers; "
                f"their start-up took {fixed[workers]:.2f} s); identical to single: "
                f"{same[workers]}"
            )
    finally:
        ray.shutdown()
    print(
        f"scaling 1 -> 2 workers: {ray_s[1] / ray_s[2]:.2f}x; 2 workers vs single process "
        f"({threads} threads): {t_single / ray_s[2]:.2f}x, vs 1 thread: "
        f"{t_single1 / ray_s[2]:.2f}x; {cores} cores"
    )
    if not args.dir:
        shutil.rmtree(folder)
    print(json.dumps({
        "bench": "generate_ray", "trajectories": n, "n_times": args.n_times, "t_end": args.t_end,
        "shards": args.shards, "compression": args.compression, "cores": cores,
        "single_1thread_s": t_single1, "single_s": t_single, "single_threads": threads,
        "ray_init_s": t_init, "ray_1worker_s": ray_s[1], "ray_2workers_s": ray_s[2],
        "ray_startup_s": {"1": fixed[1], "2": fixed[2]},
        "traj_per_s": {"single_1thread": n / t_single1, "single": n / t_single,
                       "ray_1worker": n / ray_s[1], "ray_2workers": n / ray_s[2]},
        "scaling_1_to_2_workers": ray_s[1] / ray_s[2], "identical": all(same.values()),
        "python": platform.python_version(), "derlhybrid": __version__,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
