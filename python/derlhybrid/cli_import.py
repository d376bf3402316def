"""``derl import``'s options → the library's importers
(:func:`~derlhybrid.data.importing.import_trajectories`,
:func:`~derlhybrid.data.importing.import_pdebench`): the command line stays in the CLI
layer, the library takes typed arguments (:class:`~derlhybrid.data.importing.TrajectoryImport`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .data.importing import TrajectoryImport, detect_format, import_pdebench, import_trajectories


def import_from_args(args) -> Path:
    """``derl import``'s options → :func:`import_trajectories` or :func:`import_pdebench`."""
    from .systems import parse_params

    sources: Sequence[str] = args.sources
    fmt = args.format or detect_format(sources[0])
    params = parse_params(args.param)
    units = {}
    for item in args.units or ():
        k, sep, v = item.partition("=")
        if not sep or not k.strip():
            raise ValueError(f"--units expects COLUMN=UNIT, got {item!r}")
        units[k.strip()] = v.strip()
    derivatives = args.derivatives or "central:2"
    if fmt == "pdebench":
        if len(sources) != 1:
            raise ValueError("--format pdebench imports one file (one sample) at a time")
        return import_pdebench(
            sources[0],
            args.out,
            sample=args.sample,
            system=args.system,
            params=params,
            derivatives=derivatives,
            overwrite=args.overwrite,
        )
    if not args.system:
        raise ValueError(
            "--system is required for trajectories (e.g. --system pendulum): its state names "
            "are the columns"
        )
    return import_trajectories(
        TrajectoryImport(
            sources=tuple(sources),
            out=args.out,
            system=args.system,
            params=params,
            format=args.format,
            time=args.time,
            columns=tuple(c.strip() for c in args.columns.split(",")) if args.columns else None,
            states=args.states,
            trajectory=args.trajectory_column,
            units=units,
            derivatives=derivatives,
            seed=args.seed,
            split=tuple(args.split),
            overwrite=args.overwrite,
        )
    )
