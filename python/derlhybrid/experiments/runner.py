"""The entry point of ``derl reproduce EXPERIMENT``: :func:`reproduce` (and the names other
code imports from here).

One call loads the spec (:mod:`.spec`), plans its datasets and runs at a scale and checks
them before any data exist (:mod:`.plan`), runs the plan under the output folder's lock
(:mod:`.execute`) and writes the results (:mod:`.report`; ``--merge``: :func:`merge`).
"""

from __future__ import annotations

import time
from pathlib import Path

from .._io import exclusive_lock
from .execute import DIVERGED_FACTOR, ENGINES, divergence, run_plan
from .plan import Run, check_evaluate, check_run_configs, check_seeds, plan
from .report import CHECK_KINDS, merge, paired_decision
from .spec import EXPERIMENTS, OPTIONAL_SCALES, SCALES, SPECS, ReproduceError, load_spec

__all__ = [
    "CHECK_KINDS",
    "DIVERGED_FACTOR",
    "ENGINES",
    "EXPERIMENTS",
    "OPTIONAL_SCALES",
    "SCALES",
    "SPECS",
    "ReproduceError",
    "Run",
    "divergence",
    "load_spec",
    "merge",
    "paired_decision",
    "plan",
    "reproduce",
]


def reproduce(
    name: str,
    *,
    scale: str = "full",
    seeds: list[int] | None = None,
    out=None,
    progress: bool = True,
    figures: bool = True,
    jobs: int = 1,
    groups: list[str] | None = None,
    engine: str = "local",
    address: str | None = None,
) -> Path:
    """Run experiment ``name`` at ``scale`` (``full``, ``reduced`` where the spec has a
    ``[scales.reduced]`` table, ``quick``, ``smoke``) into ``out`` (default
    ``reproduce/<name>``, or ``reproduce/<name>-<scale>``); returns the path of
    ``results.json``. ``jobs`` > 1 trains that many runs at once in separate processes (one
    intra-op thread each); ``groups`` runs only those groups of the scale.
    ``engine="ray"`` sends the runs (and the shared first stages of pipelines) as Ray tasks
    to the cluster at ``address`` (None: a local Ray instance;
    :mod:`derlhybrid.scale.ray_reproduce`), with the same results files."""
    from .. import learn  # noqa: F401 - fail early if torch is missing

    t_start = time.perf_counter()
    spec = load_spec(name)
    seeds = check_seeds(seeds)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ReproduceError(f"--jobs must be a positive integer, got {jobs!r}")
    if engine not in ENGINES:
        raise ReproduceError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine != "ray" and address is not None:
        raise ReproduceError("--address names a Ray cluster: use it with --engine ray")
    if engine == "ray" and jobs != 1:
        raise ReproduceError("--jobs is for --engine local; Ray runs as many runs as it has CPUs")
    if engine == "ray":
        from ..scale._ray import RayUnavailable, require

        try:
            require()
        except RayUnavailable as exc:
            raise ReproduceError(str(exc)) from None
    datasets, runs = plan(spec, scale, seeds, groups)  # plan validates scale and groups
    check_run_configs(runs)  # every run's training config, before any data exist
    check_evaluate(runs, datasets)  # and every group's evaluate table
    out = (
        Path(out)
        if out
        else Path("reproduce") / (spec["name"] + ("" if scale == "full" else f"-{scale}"))
    )
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ReproduceError(f"cannot write to {out} ({exc.strerror}); choose --out DIR") from None

    # one reproduce per folder at a time: a second one would share its runs and data
    with exclusive_lock(out, error=ReproduceError):
        ray = {"address": address} if engine == "ray" else None
        return run_plan(out, spec, scale, datasets, runs, progress, figures, jobs, t_start, ray)
