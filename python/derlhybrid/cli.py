"""The ``derl`` command: a thin layer over the library.

User mistakes (bad options, unavailable backend) print one line ``derl: error: ...`` and
exit with code 2; nothing here holds logic of its own.
"""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .data.store import DatasetError
from .kernels import BackendUnavailable, available_backends


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse's own convention)
        self.exit(2, f"derl: error: {message} (see `derl --help`)\n")


def _cmd_info(args) -> int:
    import platform

    import numpy

    print(f"derlhybrid {__version__}")
    print(f"python {platform.python_version()}, numpy {numpy.__version__}")
    from .kernels import backends

    print(f"default backend: {backends.resolve(None)}  (DERL_BACKEND=auto|python|julia)")
    for st in available_backends():
        mark = "available" if st.available else "unavailable"
        print(f"  {st.name:<7} {mark:<12} {st.detail}")
    if args.systems:
        from .systems import SYSTEMS

        print("systems (derl generate SYSTEM --param NAME=VALUE):")
        for name, cls in sorted(SYSTEMS.items()):
            print(f"  {name:<18} {cls.kind:<7} {cls.description}")
            for spec in cls.parameter_specs():
                unit = f" {spec.unit}" if spec.unit else ""
                print(
                    f"      {spec.name} = {spec.default:g}{unit}  in {spec.describe_range()}"
                    f"  {spec.doc}"
                )
    return 0


def _cmd_demo(args) -> int:
    from .demo import stencil_demo

    stencil_demo(backend=args.backend, size=args.size, repeats=args.repeats)
    return 0


def _cmd_generate(args) -> int:
    from .cli_generate import request_from_args
    from .data.generate import generate

    req = request_from_args(args)
    ray_flags = ("address", "shards", "workers", "worker_cpus", "consolidate")
    given = {f: v for f in ray_flags if (v := getattr(args, f)) is not None and v is not False}
    if args.engine != "ray":
        if given:
            raise ValueError(f"--{next(iter(given)).replace('_', '-')} needs --engine ray")
        path = generate(req, progress=not args.no_progress)
    else:
        from .scale import RayEngine, generate_sharded

        engine = RayEngine(**given)
        path = generate_sharded(req, engine, progress=not args.no_progress)
    print(f"wrote {path}")
    return 0


def _cmd_sweep(args) -> int:
    from pathlib import Path

    from .scale import sweep

    out = (
        Path(args.out)
        if args.out
        else Path(args.config).with_name(Path(args.config).stem + "-sweep")
    )
    best = sweep(args.config, out, address=args.address, progress=not args.no_progress)
    print(
        f"best of the sweep: {best['metric']} = {best['value']:.4e} at epoch {best['epoch']} "
        f"({', '.join(f'{k} = {v:.4g}' for k, v in best['params'].items())})"
    )
    print(f"wrote {best['config']} (derl train {best['config']})")
    return 0


def _cmd_inspect(args) -> int:
    from .data.inspect import describe

    print(describe(args.file))
    return 0


def _cmd_train(args) -> int:
    from pathlib import Path

    from .learn.config import TrainConfig
    from .learn.trainer import train

    cfg = TrainConfig.from_toml(args.config)
    overrides = {k: getattr(args, k) for k in ("epochs", "device") if getattr(args, k)}
    if overrides:
        cfg = TrainConfig.from_dict(
            {**cfg.to_dict(), "train": {**cfg.to_dict()["train"], **overrides}}
        )
    out = Path(args.out) if args.out else Path(args.config).with_suffix("")
    # --no-progress turns the bar off; otherwise the config's train.progress decides
    progress = False if args.no_progress else None
    result = train(cfg, out, resume=not args.no_resume, progress=progress)
    final = result.history[-1] if result.history else None
    if result.start_epoch and result.start_epoch >= cfg.train.epochs:
        print(f"{out}: already trained for {result.start_epoch} epochs (raise train.epochs)")
    elif final is not None:
        losses = ", ".join(f"{k} {v:.3e}" for k, v in final["train"].items())
        print(f"epoch {final['epoch']}: {losses}")
    print(f"checkpoint {result.checkpoint}")
    return 0


def _cmd_evaluate(args) -> int:
    import json

    from .learn.evaluate import evaluate
    from .learn.metrics import non_finite_paths, write_metrics

    # checked against the options of the data's metrics: a --grid for metrics without a
    # grid (the pendulum's) is refused in one line, not ignored
    given = {"grid": args.grid, "variant": args.variant or None, "split": args.split}
    options = {k: v for k, v in given.items() if v is not None}
    result = evaluate(args.checkpoint, args.data, options=options, device=args.device)
    bad = non_finite_paths(result)
    if args.out:
        print(f"wrote {write_metrics(args.out, result)}")
    else:
        print(json.dumps(result, indent=2, sort_keys=True))
    if bad:  # the data were checked when loaded: the network's outputs are not finite
        print(
            f"derl: warning: {len(bad)} value(s) are not finite (NaN or inf), e.g. {bad[0]}: "
            "the network's predictions are not finite there (a diverged run?); they are "
            "written as null and listed under non_finite",
            file=sys.stderr,
        )
    return 0


def _cmd_stages(args) -> int:
    from pathlib import Path

    from .transfer import Pipeline, run_pipeline

    pipeline = Pipeline.from_toml(args.config)
    out = Path(args.out) if args.out else Path(args.config).with_suffix("")
    progress = False if args.no_progress else None
    for r in run_pipeline(pipeline, out, progress=progress):
        prov = r.record.get("provenance", {})
        final = prov.get("final_train") or {}
        loss = f", loss {final['loss']:.3e}" if "loss" in final else ""
        state = "done before (skipped)" if r.skipped else f"trained {prov.get('epochs')} epochs"
        print(f"{r.name}: {state}{loss}; checkpoint {r.checkpoint}")
    return 0


def _cmd_reproduce(args) -> int:
    from .experiments import EXPERIMENTS, reproduce

    if args.list:
        from .experiments import load_spec

        for name in EXPERIMENTS:
            spec = load_spec(name)
            print(f"{name:20s} {spec.get('title', '')} ({spec.get('section', '')})")
        return 0
    if not args.experiment:
        raise ValueError(
            f"derl reproduce needs an EXPERIMENT: one of {', '.join(EXPERIMENTS)} (or --list)"
        )
    scale = next((s for s in ("reduced", "quick", "smoke") if getattr(args, s)), "full")
    if args.merge:
        from .experiments.runner import merge

        if args.seeds or args.groups or args.jobs != 1 or args.engine != "local":
            raise ValueError(
                "--merge only combines results.json files: no --seeds, --groups, --jobs, --engine"
            )
        path = merge(
            args.experiment,
            args.merge,
            out=args.out,
            figures=not args.no_figures,
            scale=None if scale == "full" else scale,
        )
        print((path.parent / "results.md").read_text())
        print(f"wrote {path} and {path.parent / 'results.md'} (merged, nothing trained)")
        return 0
    path = reproduce(
        args.experiment,
        scale=scale,
        seeds=args.seeds,
        out=args.out,
        progress=not args.no_progress,
        figures=not args.no_figures,
        jobs=args.jobs,
        groups=args.groups,
        engine=args.engine,
        address=args.address,
    )
    print((path.parent / "results.md").read_text())
    print(f"wrote {path}, {path.parent / 'results.md'} and {path.parent / 'figures'}/")
    return 0


def _add_generate(sub) -> None:
    g = sub.add_parser(
        "generate",
        help="generate a dataset (HDF5) for a system",
        description="Generate ground truth for SYSTEM into an HDF5 file (atomic, resumable: "
        "rerun the same command after an interruption).",
    )
    g.add_argument("system", nargs="?", help="system name (`derl info --systems` lists them)")
    g.add_argument("--config", help="TOML file with the same keys as the options")
    g.add_argument("--out", help="output file (.h5)")
    g.add_argument("--preset", choices=["paper"], help="the paper's dataset for this system")
    g.add_argument("--n-trajectories", type=int)
    g.add_argument("--seed", type=int)
    g.add_argument("--t-end", type=float)
    g.add_argument("--n-times", type=int)
    g.add_argument("--rtol", type=float)
    g.add_argument("--atol", type=float)
    g.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="system parameter (repeatable), e.g. --param b=0",
    )
    g.add_argument("--backend", help="auto | python | julia")
    g.add_argument("--dtype", choices=["float64", "float32"])
    g.add_argument("--compression", choices=["gzip", "lzf", "none"])
    g.add_argument(
        "--empirical",
        metavar="SCHEME",
        help="also store empirical derivatives: central:N, forward:N, backward:N "
        "(stencil of accuracy N on the saved data), cubic-forward (the paper's), or an "
        "estimator of noisy samples: savgol, spline, trend (docs/your-data.md)",
    )
    g.add_argument(
        "--noise",
        type=float,
        metavar="SIGMA",
        help="Gaussian measurement noise of std SIGMA on the sampled states (trajectories) "
        "or grid values (pointwise presets' measured variant) that --empirical estimates from",
    )
    g.add_argument(
        "--method",
        help="PDE solver: continuity mol (default) | upwind-fv (the "
        "paper's finite volumes); kdv etdrk4",
    )
    g.add_argument("--fd-step", type=float, help="step h of cubic-forward (default 1e-3)")
    g.add_argument(
        "--n-points",
        type=int,
        help="points of a pointwise file (default 1000), or grid points per axis of "
        "a PDE (kdv 400 periodic, continuity 301)",
    )
    g.add_argument(
        "--n-parameter-sets", type=int, help="parameter sets of a parametric family (default 10)"
    )
    g.add_argument("--n-boundary", type=int, help="boundary points per edge (default 101)")
    g.add_argument("--overwrite", action="store_true", help="replace an existing file")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="ray: shards on a Ray cluster, stitched into one file (docs/scale-out.md)",
    )
    g.add_argument("--address", help="Ray cluster address (default: a local Ray instance)")
    g.add_argument("--shards", type=int, help="shard files (default: one per worker)")
    g.add_argument(
        "--workers", type=int, help="shards solved at once (default: CPUs / --worker-cpus)"
    )
    g.add_argument("--worker-cpus", type=int, help="CPUs and solver threads per worker (1)")
    g.add_argument(
        "--consolidate",
        action="store_true",
        help="copy the shards into one self-contained file (default: virtual datasets)",
    )
    g.set_defaults(func=_cmd_generate)


def _cmd_import(args) -> int:
    from .cli_import import import_from_args

    path = import_from_args(args)
    print(f"wrote {path}")
    return 0


def _add_import(sub) -> None:
    im = sub.add_parser(
        "import",
        help="your own data (CSV, .npy/.npz, HDF5, PDEBench) into a dataset file",
        description="Import measured trajectories (CSV, .npy, .npz, HDF5 of any layout) or one "
        "sample of a PDEBench 1-D file into a dataset file `derl train` reads, with estimated "
        "derivatives and provenance (docs/your-data.md).",
    )
    im.add_argument("sources", nargs="+", help="source file(s): one, or one per trajectory")
    im.add_argument("--out", required=True, help="dataset file to write (.h5)")
    im.add_argument("--format", help="csv, npy, npz, hdf5 or pdebench (default: from the file)")
    im.add_argument("--system", help="registered system (trajectories: e.g. pendulum)")
    im.add_argument("--param", action="append", metavar="NAME=VALUE", help="system parameter")
    im.add_argument("--time", default="t", help="time column / key (.npy: index; default t)")
    im.add_argument("--columns", help="state columns/keys in the system's state order, a,b")
    im.add_argument("--states", help="one array key holding every state column (last axis)")
    im.add_argument("--trajectory-column", help="CSV column telling trajectories apart")
    im.add_argument("--units", nargs="+", metavar="COLUMN=UNIT", help="units (recorded)")
    im.add_argument(
        "--derivatives",
        metavar="METHOD",
        help="forward:N, central:N, backward:N, savgol, spline, trend (with parameters, e.g. "
        "savgol:window=31; default central:2)",
    )
    im.add_argument("--sample", type=int, default=0, help="PDEBench sample index (default 0)")
    im.add_argument("--seed", type=int, default=0, help="seed of the trajectory split")
    im.add_argument(
        "--split", type=float, nargs=3, default=(0.6, 0.2, 0.2), help="train val test fractions"
    )
    im.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    im.set_defaults(func=_cmd_import)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="derl", description="Learning physical systems through derivatives.")
    p.add_argument("--version", action="version", version=f"derlhybrid {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    info = sub.add_parser("info", help="version, backends and why any is unavailable")
    info.add_argument("--systems", action="store_true", help="also list systems and parameters")
    info.set_defaults(func=_cmd_info)

    demo = sub.add_parser(
        "demo", help="stencil demo: convergence table and a timed 6th-order derivative"
    )
    demo.add_argument("--backend", default=None, help="auto | python | julia")
    demo.add_argument("--size", type=int, default=2048, help="side of the timed square field")
    demo.add_argument("--repeats", type=int, default=5, help="timing repetitions (best taken)")
    demo.set_defaults(func=_cmd_demo)

    _add_generate(sub)
    _add_import(sub)
    ins = sub.add_parser("inspect", help="schema, sizes and provenance of a dataset file")
    ins.add_argument("file")
    ins.set_defaults(func=_cmd_inspect)

    tr = sub.add_parser("train", help="train a network as a TOML config says (resumable)")
    tr.add_argument("config", help="TOML file: [data] [model] [objective] [train]")
    tr.add_argument("--out", help="run directory (default: the config's name without .toml)")
    tr.add_argument("--epochs", type=int, help="override train.epochs (e.g. to extend a run)")
    tr.add_argument("--device", help="override train.device (cpu, cuda, cuda:N)")
    tr.add_argument("--no-resume", action="store_true", help="refuse an existing checkpoint")
    tr.add_argument("--no-progress", action="store_true", help="no progress bar")
    tr.set_defaults(func=_cmd_train)

    ev = sub.add_parser("evaluate", help="the paper's metrics of a checkpoint on a dataset")
    ev.add_argument("checkpoint")
    ev.add_argument("data", help="dataset file of the same system")
    ev.add_argument("--out", help="write the metrics to this JSON file (default: print)")
    ev.add_argument(
        "--grid", type=int, help="evaluation grid side (Allen–Cahn, Kovasznay; others: an error)"
    )
    ev.add_argument("--variant", help="evaluate on /variants/<name> of the file")
    ev.add_argument(
        "--split",
        help="trajectory metrics (ODE systems) on the 'test' trajectories (default) or on "
        "the 'val' ones, where a change of protocol is judged",
    )
    ev.add_argument("--device", default="cpu")
    ev.set_defaults(func=_cmd_evaluate)

    st = sub.add_parser(
        "stages",
        help="multi-stage training with distillation, as a TOML pipeline says (resumable)",
        description="Train the stages of a pipeline in order (each: data selection, "
        "objective, init new/extend, distillation sources, optional EWC), label each "
        "stage's points for the later ones; rerun to resume.",
    )
    st.add_argument("config", help="TOML file: [defaults] and [[stages]] tables")
    st.add_argument("--out", help="output folder (default: the config's name without .toml)")
    st.add_argument("--no-progress", action="store_true", help="no progress lines or bars")
    st.set_defaults(func=_cmd_stages)

    sw = sub.add_parser(
        "sweep",
        help="hyper-parameter search on Ray Tune; writes the best config (resumable)",
        description="Search loss weights and learning rate as CONFIG's [sweep] table says "
        "(Optuna or HyperOpt with ASHA); rerun to resume; OUT/best.toml is ready for "
        "`derl train`.",
    )
    sw.add_argument("config", help="TOML file: a training config plus a [sweep] table")
    sw.add_argument("--engine", choices=["ray"], default="ray", help="ray (Ray Tune)")
    sw.add_argument("--address", help="Ray cluster address (default: a local Ray instance)")
    sw.add_argument("--out", help="output folder (default: CONFIG's name + -sweep)")
    sw.add_argument("--no-progress", action="store_true", help="no Tune progress table")
    sw.set_defaults(func=_cmd_sweep)

    rp = sub.add_parser(
        "reproduce",
        help="run one of the paper's experiments end to end: data, training, metrics, figures",
    )
    rp.add_argument("experiment", nargs="?", help="experiment name (see --list)")
    size = rp.add_mutually_exclusive_group()
    size.add_argument(
        "--reduced",
        action="store_true",
        help="a documented smaller protocol for an experiment whose full protocol does not "
        "fit the machine (only specs with a [scales.reduced] table, e.g. ncl-ball; its notes "
        "say which sizes differ and why)",
    )
    size.add_argument(
        "--quick", action="store_true", help="a few minutes on 2 cores: fewer epochs and groups"
    )
    size.add_argument("--smoke", action="store_true", help="seconds: what the test suite runs")
    rp.add_argument("--seeds", type=int, nargs="+", help="training seeds (replace the spec's)")
    rp.add_argument("--out", help="output folder (default reproduce/EXPERIMENT[-SCALE])")
    rp.add_argument("--groups", nargs="+", help="run only these groups (default: all)")
    rp.add_argument("--jobs", type=int, default=1, help="runs trained at once (processes)")
    rp.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="ray: every run a Ray task (resumable run folders; --out on a shared file system)",
    )
    rp.add_argument("--address", help="Ray cluster address (default: a local Ray instance)")
    rp.add_argument(
        "--merge",
        nargs="+",
        metavar="RESULTS_JSON",
        help="combine the runs of earlier calls' results.json files (e.g. seeds trained in "
        "separate sittings) into one table; trains nothing (docs/reproduce.md)",
    )
    rp.add_argument("--list", action="store_true", help="list the experiments")
    rp.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    rp.add_argument("--no-progress", action="store_true", help="no progress bars")
    rp.set_defaults(func=_cmd_reproduce)
    return p


def _os_error(exc: OSError) -> str:
    """One line for an operating-system or HDF5 error: what failed, on which file."""
    if isinstance(exc, PermissionError):
        what = f"permission denied: {exc.filename}" if exc.filename else str(exc)
        return f"{what} (check the folder's permissions, or choose another --out)"
    if exc.strerror and exc.filename:
        return f"{exc.filename}: {exc.strerror}"
    # h5py's errors carry no file name, e.g. "Can't read data (wrong B-tree signature)"
    text = " ".join(str(exc).split())
    return f"{text} (a damaged or unreadable file? regenerate it, or check the disk)"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, BackendUnavailable, DatasetError) as exc:
        print(f"derl: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # disk full, permissions, a damaged HDF5 file (h5py raises OSError)
        if isinstance(exc, BrokenPipeError):  # e.g. `derl inspect f.h5 | head`
            sys.stderr.close()
            return 0
        print(f"derl: error: {_os_error(exc)}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        from .learn.trainer import TrainingDiverged

        if not isinstance(exc, TrainingDiverged):
            raise
        print(f"derl: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt as exc:
        print(f"derl: interrupted{f': {exc}' if str(exc) else ''}", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
