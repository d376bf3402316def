"""The plan of a ``derl reproduce`` call: the datasets (key → generation request) and the
runs (:class:`Run`, :class:`~.pipelines.PipelineRun`, :class:`~.ncl.NCLRun`) of a spec at a
scale, with their training configurations (:func:`plan`); where each dataset lives (the
hash of its request in the file name, :func:`dataset_path`); and the checks of every run's
configuration and ``evaluate`` table before any data exist.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._tables import deep_merge as _merge
from . import ncl as _ncl
from .ncl import NCLRun
from .pipelines import PipelineRun, plan_group
from .spec import OPTIONAL_SCALES, SCALES, ReproduceError


@dataclass
class Run:
    name: str
    group: str
    mode: str
    label: str
    seed: int
    dataset: str
    variant: str | None
    config: dict[str, Any]  # TrainConfig.from_dict input, data.path filled in later
    evaluate: dict[str, Any] = field(default_factory=dict)


def _label(mode: str) -> str:
    return {"outl+pinn": "OUTL+PINN", "der+hesl": "DER+HESL", "sob+hesl": "SOB+HESL"}.get(
        mode, mode.upper()
    )


def plan(
    spec: dict,
    scale: str = "full",
    seeds: list[int] | None = None,
    groups: list[str] | None = None,
):
    """The datasets (key → generation request dict) and runs of ``spec`` at ``scale``;
    ``groups`` restricts them to those groups of the scale."""
    if scale not in SCALES:
        raise ReproduceError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
    if scale in OPTIONAL_SCALES and scale not in spec.get("scales", {}):
        raise ReproduceError(
            f"{spec['name']} has no {scale} scale (its spec has no [scales.{scale}] table): "
            f"run it at full, --quick or --smoke, or add [scales.{scale}] to the spec"
        )
    sc = spec.get("scales", {}).get(scale, {})
    wanted = sc.get("groups") or [g["name"] for g in spec["groups"]]
    if groups:
        for gname in groups:
            if gname not in wanted:
                raise ReproduceError(
                    f"--groups: {spec['name']} has no group {gname!r} at scale {scale}; "
                    f"choose from {', '.join(wanted)}"
                )
        wanted = [g for g in wanted if g in groups]
    # precedence, lowest first: defaults, the scale's tables, the group, the scale's patch of
    # the group, the mode
    defaults = _merge(
        spec.get("defaults", {}),
        {k: sc[k] for k in ("data", "model", "objective", "train", "evaluate") if k in sc},
    )
    datasets: dict[str, dict] = {}
    runs: list[Run] = []
    for g0 in spec["groups"]:
        if g0["name"] not in wanted:
            continue
        g = _merge(g0, sc.get("patch", {}).get(g0["name"], {}))
        key = g["dataset"]
        datasets[key] = dict(sc.get("datasets", {}).get(key) or spec["datasets"][key])
        variant = g.get("variant") or None
        group_seeds = seeds or g.get("seeds") or sc.get("seeds") or [30]
        if g.get("kind") == "stages":
            runs += plan_group(g, defaults, group_seeds, sc.get("modes"))
            continue
        if g.get("kind") == "ncl":
            runs += _ncl.plan_group(g, defaults, group_seeds, sc.get("modes"), ReproduceError)
            continue
        for mode_key, mv in g["modes"].items():
            if "modes" in sc and mode_key not in sc["modes"]:
                continue
            mode = mv.get("mode", mode_key)
            for seed in group_seeds:
                cfg: dict[str, Any] = {
                    "data": _merge(defaults.get("data", {}), g.get("data", {})),
                    "model": _merge(defaults.get("model", {}), g.get("model", {})),
                    "objective": _merge(defaults.get("objective", {}), g.get("objective", {})),
                    "train": _merge(defaults.get("train", {}), g.get("train", {})),
                }
                for part in ("data", "model", "objective", "train"):
                    cfg[part] = _merge(cfg[part], mv.get(part, {}))
                cfg["objective"]["mode"] = mode
                if "weights" in mv:
                    cfg["objective"]["weights"] = dict(mv["weights"])
                if "lr" in mv:
                    cfg["train"]["lr"] = mv["lr"]
                cfg["train"]["seed"] = int(seed)
                cfg["train"]["progress"] = False
                if variant:
                    cfg["data"]["variant"] = variant
                ev = _merge(defaults.get("evaluate", {}), g.get("evaluate", {}))
                runs.append(
                    Run(
                        name=f"{g['name']}-{mode_key.replace('+', '_')}-s{seed}",
                        group=g["name"],
                        mode=mode,
                        label=mv.get("label", _label(mode)),
                        seed=int(seed),
                        dataset=key,
                        variant=variant,
                        config=cfg,
                        evaluate=ev,
                    )
                )
    return datasets, runs


def plan_baselines(spec: dict, scale: str, runs) -> list[dict]:
    """The spec's baselines (the HNN) at ``scale``, one per seed of its group's ``runs`` (in
    plan order): ``{name: <name>-s<seed>, kind, group, dataset, seed, config}`` — what
    ``derl reproduce`` trains and what ``--merge`` accepts as planned."""
    group_seeds: dict[str, list[int]] = {}
    for r in runs:
        seeds = group_seeds.setdefault(r.group, [])
        if r.seed not in seeds:
            seeds.append(r.seed)
    out = []
    for b in spec.get("baselines", []):
        if scale not in b.get("scales", list(SCALES)) or b.get("group") not in group_seeds:
            continue
        for seed in group_seeds[b["group"]]:
            config = {**b.get("train", {}), **b.get(scale, {}), "seed": int(seed)}
            out.append(
                {
                    "name": f"{b['name']}-s{seed}",
                    "kind": b.get("kind"),
                    "group": b["group"],
                    "dataset": b["dataset"],
                    "seed": int(seed),
                    "config": config,
                }
            )
    return out


def check_seeds(seeds) -> list[int] | None:
    """``--seeds`` as a list of ints, or ``None`` (none given: each group's own)."""
    if seeds is None:
        return None
    out = []
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int | np.integer) or s < 0:
            raise ReproduceError(f"--seeds takes non-negative integers, got {s!r}")
        out.append(int(s))
    return out or None


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:10]


def dataset_path(out: Path, key: str, request: dict) -> Path:
    """Where the dataset ``key`` of a plan lives: its request's hash in the name."""
    return out / "data" / f"{key}-{_hash(request)}.h5"


def check_run_configs(runs) -> None:
    """Parse every run's training configuration now, with a stand-in data path, so that a
    typo in a spec (``train.epocs``) fails in one line before any data are generated or any
    run trains: single runs whole, each pipeline's stage tables as :class:`Pipeline` reads
    them (a parameter range, resolved from the data when the pipeline runs, stands in as
    parameter set 0). NCL runs were parsed when they were planned."""
    from ..learn.config import ConfigError, TrainConfig
    from ..transfer.stages import Pipeline

    stand_in = "<the run's data>"
    for run in runs:
        try:
            if isinstance(run, Run):
                TrainConfig.from_dict(_merge(run.config, {"data": {"path": stand_in}}))
            elif isinstance(run, PipelineRun):
                stages = copy.deepcopy(run.stages)
                for st in stages:
                    data = st.setdefault("data", {})
                    data["path"] = stand_in
                    if data.pop("parameter_range", None) is not None:
                        data["parameter_sets"] = [0]
                Pipeline.from_dict({"stages": stages})
        except ConfigError as exc:
            raise ReproduceError(f"run {run.name}: {exc}") from None


def check_evaluate(runs, datasets: dict) -> None:
    """Check every group's ``evaluate`` table against the options of the metrics of its
    dataset's system (:mod:`derlhybrid.learn.evaluate_options`; a stages group's: those of
    its region metrics), so that ``gird = 51`` fails in one line before any data are
    generated. NCL groups' tables were checked when they were planned."""
    from ..learn.evaluate_options import check_options
    from ..systems import SYSTEMS
    from ..transfer.regions import check_region_options

    seen: set[str] = set()
    for run in runs:
        if isinstance(run, NCLRun) or run.group in seen:
            continue
        seen.add(run.group)
        cls = SYSTEMS.get(str(datasets[run.dataset].get("system")))
        if cls is None:  # generating the dataset refuses an unknown system
            continue
        try:
            if isinstance(run, PipelineRun):
                check_region_options(cls, run.evaluate)
            else:
                opts = dict(run.evaluate)
                if run.variant:  # as run_one passes them
                    opts.setdefault("variant", run.variant)
                check_options(cls, opts)
        except ValueError as exc:
            raise ReproduceError(f"group {run.group!r}: {exc}") from None
