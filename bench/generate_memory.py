"""Peak memory of a large streamed generation: `derl generate pendulum` with 200 000
trajectories × 1001 times (3.2 GB of states, as much again of derivatives).

Runs the real command in a child process and reads its peak resident set size from the
kernel (``getrusage(RUSAGE_CHILDREN).ru_maxrss``). The target of issue 3 is a peak under
1.5 GB whatever the size of the request. The last line printed is one JSON object.

    python bench/generate_memory.py [--n-trajectories 200000] [--compression none] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-trajectories", type=int, default=200_000)
    ap.add_argument("--n-times", type=int, default=1001)
    ap.add_argument("--compression", default="none", choices=["gzip", "lzf", "none"])
    ap.add_argument("--dir", default=None, help="where to write (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the file")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, seconds (what CI runs)")
    args = ap.parse_args()
    if args.smoke:  # the same code path on 200 trajectories
        args.n_trajectories, args.n_times = 200, 101
    folder = Path(args.dir or tempfile.mkdtemp(prefix="derl-mem-"))
    out = folder / "pendulum-large.h5"
    cmd = [sys.executable, "-m", "derlhybrid.cli", "generate", "pendulum", "--out", str(out),
           "--n-trajectories", str(args.n_trajectories), "--n-times", str(args.n_times),
           "--compression", args.compression, "--overwrite"]  # fmt: skip
    print("running:", " ".join(cmd[2:]), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    seconds = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # kB on Linux
    size_gb = out.stat().st_size / 1e9
    raw_gb = args.n_trajectories * args.n_times * 2 * 8 * 2 / 1e9
    print(
        f"peak RSS {peak_mb:.0f} MB for {args.n_trajectories} trajectories x {args.n_times} "
        f"times ({raw_gb:.1f} GB of states + derivatives, file {size_gb:.2f} GB) in "
        f"{seconds:.0f} s ({args.n_trajectories / seconds:.0f} trajectories/s end to end)"
    )
    if not args.keep:
        out.unlink()
        if not args.dir:
            os.rmdir(folder)
    print(json.dumps({"bench": "generate_memory", "trajectories": args.n_trajectories,
                      "n_times": args.n_times, "compression": args.compression,
                      "peak_rss_mb": peak_mb, "seconds": seconds, "file_gb": size_gb,
                      "raw_gb": raw_gb}))  # fmt: skip


if __name__ == "__main__":
    main()
