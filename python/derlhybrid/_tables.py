"""Configuration tables shared by every TOML reader of the package (training configs,
pipelines, sweeps, experiment specs, generation configs): one deep merge, one TOML loader
and one refusal of unknown keys."""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Mapping
from pathlib import Path


def deep_merge(base: Mapping, over: Mapping) -> dict:
    """``over`` on top of ``base``: tables merge key by key, everything else (lists too)
    replaces; neither argument is modified."""
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def read_toml(path: Path, what: str, error: type[Exception]) -> dict:
    """The tables of TOML file ``path``; an unreadable or invalid file raises ``error`` with
    one line naming ``what`` it should have been (e.g. ``"pipeline config"``)."""
    try:
        with Path(path).open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{what} {path} is not valid TOML: {exc}") from None


def refuse_unknown(values: Mapping, known, where: str, error: type[Exception]) -> None:
    """Raise ``error`` naming the first key of ``values`` that is not in ``known`` (and the
    keys that are), in one line."""
    bad = sorted(set(values) - set(known))
    if bad:
        raise error(f"{where}: unknown key {bad[0]!r}; keys are {', '.join(sorted(known))}")
