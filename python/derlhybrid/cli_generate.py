"""``derl generate``'s options and TOML ``--config`` → the library's
:class:`~derlhybrid.data.request.GenerateRequest` (the keys of the config file are its
fields; an option given on the command line wins over the file)."""

from __future__ import annotations

import dataclasses
from typing import Any

from .data.request import GenerateRequest


def request_from_args(args) -> GenerateRequest:
    """Build the request of ``derl generate`` from its parsed options and/or a TOML
    ``--config`` file (one-line ``ValueError`` for an unknown key or a bad value)."""
    from .systems import parse_params

    values: dict[str, Any] = {}
    if args.config:
        from ._tables import read_toml

        values = read_toml(args.config, "--config", ValueError)
        known = {f.name for f in dataclasses.fields(GenerateRequest)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"--config {args.config}: unknown key {unknown[0]!r}; "
                f"keys: {', '.join(sorted(known))}"
            )
        if not isinstance(values.get("params", {}), dict):
            raise ValueError(
                f"--config {args.config}: params must be a table ([params] name = value), "
                f"got {values['params']!r}"
            )
        values["params"] = {k: str(v) for k, v in values.get("params", {}).items()}
    for f in dataclasses.fields(GenerateRequest):  # every option the command line has
        v = getattr(args, f.name, None)
        if v is not None and f.name not in ("params", "overwrite"):
            values[f.name] = v
    if args.param:
        values["params"] = {**values.get("params", {}), **parse_params(args.param)}
    if args.overwrite:
        values["overwrite"] = True
    if not values.get("system"):
        raise ValueError("give a SYSTEM (e.g. `derl generate pendulum --out p.h5`) or --config")
    if not values.get("out"):
        raise ValueError("--out FILE is required")
    if isinstance(values.get("split"), list):
        values["split"] = tuple(values["split"])
    return GenerateRequest(**values)
