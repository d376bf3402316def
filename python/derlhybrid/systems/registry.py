"""One registry from CLI names to system classes (strings live only at the edge)."""

from __future__ import annotations

from .base import System

SYSTEMS: dict[str, type[System]] = {}


def _where(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register(cls: type[System]) -> type[System]:
    """Class decorator: make a system available by its ``name`` (CLI, configs).

    Idempotent for the same class: registering it again, or a new definition of it (the
    same module and qualified name, as when a notebook cell runs twice), keeps one entry,
    the latest definition. Another class under a name already taken is refused."""
    old = SYSTEMS.get(cls.name)
    if old is not None and old is not cls and _where(old) != _where(cls):
        raise ValueError(
            f"a system named {cls.name!r} is already registered ({_where(old)}); "
            f"give {_where(cls)} another name"
        )
    SYSTEMS[cls.name] = cls
    return cls


def parse_params(items) -> dict[str, str]:
    """``["b=0", "g=9.8"]`` → ``{"b": "0", "g": "9.8"}`` (values checked by the system)."""
    out = {}
    for item in items or ():
        name, sep, value = str(item).partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ValueError(f"a parameter is given as NAME=VALUE, got {item!r}")
        out[name.strip()] = value.strip()
    return out


def get_system(name: str, params: dict | None = None) -> System:
    """Build a registered system with parameter overrides (one-line errors)."""
    if name not in SYSTEMS:
        raise ValueError(f"unknown system {name!r}; choose one of: {', '.join(sorted(SYSTEMS))}")
    cls = SYSTEMS[name]
    params = dict(params or {})
    known = {s.name: s for s in cls.parameter_specs()}
    unknown = sorted(set(params) - set(known))
    if unknown:
        listing = ", ".join(f"{k} (default {s.default:g})" for k, s in known.items()) or "none"
        raise ValueError(f"{name}: unknown parameter {unknown[0]!r}; parameters: {listing}")
    return cls(**{k: known[k].check(name, v) for k, v in params.items()})
