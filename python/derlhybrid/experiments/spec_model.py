"""The typed tree of an experiment spec (``specs/<name>.toml``), checked at the edge.

pydantic v2 models in strict mode with ``extra="forbid"``: an unknown key or a value of the
wrong type anywhere in a spec fails in one line that names its path (``groups 'damped-true'
.modes.derl.lr: expected a number, got '1e-3'``) before anything is planned. They replace
the hand-written key sets the runner kept for the spec, its groups, modes, scales and
checks. The tables a spec passes on to other parsers (``model``, ``train``, ``objective``,
``data`` and ``evaluate`` tables, dataset requests, pipeline stages) stay free-form here
and are parsed by those (:class:`~derlhybrid.learn.config.TrainConfig`,
:class:`~derlhybrid.data.generate.GenerateRequest`, :class:`~derlhybrid.transfer.Pipeline`)
when the plan is checked, still before any data exist. :func:`validate_spec` returns the
spec as plain data (the runner works on dicts), so a spec's content and every run's
configuration and hash are what they were.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Tag, ValidationError
from pydantic_core import ErrorDetails

from .._typecheck import expected_type

__all__ = ["Spec", "SpecError", "validate_spec"]

Table = dict[str, Any]  # a table another parser reads (TrainConfig, GenerateRequest, …)


class SpecError(ValueError):
    """A spec that does not fit the tree (one line, naming the key's path)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# -- modes ------------------------------------------------------------------------------
class RunMode(_Model):
    """A loss mode of a plain group: the objective mode (default: the key), its weights and
    learning rate, and tables merged over the group's."""

    mode: str | None = None
    label: str | None = None
    weights: dict[str, float] | None = None
    lr: float | None = None
    model: Table | None = None
    objective: Table | None = None
    train: Table | None = None
    data: Table | None = None


class StageMode(_Model):
    """A mode of a ``kind = "stages"`` group (experiments/pipelines.py)."""

    label: str | None = None
    distill: str | None = None
    weight: float | None = None
    fraction: float | None = None
    batch_size: int | None = None
    hessian_projection: Table | None = None
    inits: list[str] | None = None
    ewc: Table | None = None
    phases: list[str] | None = None
    single: Table | None = None
    stage: Table | None = None
    stages: dict[str, Table] | None = None


class NCLMode(_Model):
    """A mode of a ``kind = "ncl"`` group (experiments/ncl.py)."""

    mode: str | None = None
    label: str | None = None
    weights: dict[str, float] | None = None
    train: Table | None = None
    model: Table | None = None
    hessian_projection: Table | None = None


# -- groups -----------------------------------------------------------------------------
class _Group(_Model):
    name: str
    dataset: str
    label: str | None = None
    modes_from: str | None = None
    seeds: list[int] | None = None
    model: Table | None = None
    train: Table | None = None
    evaluate: Table | None = None


class RunsGroup(_Group):
    kind: Literal["runs"] = "runs"
    variant: str | None = None
    objective: Table | None = None
    data: Table | None = None
    modes: dict[str, RunMode] | None = None


class Phase(_Model):
    name: str
    label: str | None = None
    region: dict[str, list[float]] | None = None
    boundary_region: dict[str, list[float]] | None = None
    parameter_sets: list[int] | None = None
    parameter_range: Table | None = None
    edges: list[dict[str, list[float]]] | None = None
    edge_points: int | None = None
    label_previous: bool | None = None
    stage: Table | None = None


class StagesGroup(_Group):
    kind: Literal["stages"]
    variant: str | None = None
    objective: Table | None = None
    data: Table | None = None
    phases: list[Phase]
    stage: Table | None = None
    by_init: dict[str, Table] | None = None
    distill_inputs: list[str] | None = None
    reference: str | None = None
    unseen: bool | None = None
    merge_sets: list[str] | None = None
    modes: dict[str, StageMode] | None = None


class NCLGroup(_Group):
    kind: Literal["ncl"]
    teacher: Table | None = None
    student: Table | None = None
    modes: dict[str, NCLMode] | None = None


def _kind(v: Any) -> str:
    kind = v.get("kind", "runs") if isinstance(v, dict) else getattr(v, "kind", "runs")
    return kind if kind in ("runs", "stages", "ncl") else "runs"  # "runs" then refuses it


Group = Annotated[
    Annotated[RunsGroup, Tag("runs")]
    | Annotated[StagesGroup, Tag("stages")]
    | Annotated[NCLGroup, Tag("ncl")],
    Discriminator(_kind),
]


# -- results ------------------------------------------------------------------------------
class Column(_Model):
    key: str
    title: str
    path: str


class PaperValue(_Model):
    group: str
    mode: str
    column: str
    value: float


class Check(_Model):
    """A claim: ``lower`` below ``than`` on ``column`` in ``group``, or ``lower`` (a mode or
    ``"*"``) below the bound ``below``."""

    claim: str
    kind: Literal["paper", "study", "sanity"] = "paper"
    group: str
    column: str
    lower: str | None = None
    than: str | None = None
    below: float | None = None
    smoke: bool = False


class Baseline(_Model):
    name: str
    kind: str
    group: str
    dataset: str
    train: Table | None = None
    reduced: Table | None = None
    quick: Table | None = None
    smoke: Table | None = None


class Defaults(_Model):
    data: Table | None = None
    model: Table | None = None
    objective: Table | None = None
    train: Table | None = None
    evaluate: Table | None = None


class Scale(_Model):
    datasets: dict[str, Table] | None = None
    data: Table | None = None
    model: Table | None = None
    objective: Table | None = None
    train: Table | None = None
    evaluate: Table | None = None
    groups: list[str] | None = None
    modes: list[str] | None = None
    seeds: list[int] | None = None
    patch: dict[str, Table] | None = None
    notes: list[str] | None = None


class Spec(_Model):
    name: str | None = None
    title: str | None = None
    section: str | None = None
    notes: list[str] | None = None
    figures: list[str] | None = None
    datasets: dict[str, Table] = {}
    defaults: Defaults | None = None
    groups: list[Group] = []
    scales: dict[Literal["full", "reduced", "quick", "smoke"], Scale] | None = None
    columns: list[Column] | None = None
    paper: list[PaperValue] | None = None
    checks: list[Check] | None = None
    baselines: list[Baseline] | None = None


def _where(loc: tuple, raw: dict) -> str:
    """``groups 'name'.modes.derl.lr`` from a pydantic location: list items named by their
    ``name`` where they have one, the discriminated union's tag after a group dropped."""
    parts: list[str] = []
    node: Any = raw
    i = 0
    while i < len(loc):
        item = loc[i]
        if isinstance(item, int):
            ok = isinstance(node, list) and 0 <= item < len(node)
            entry = node[item] if ok else None
            name = entry.get("name") if isinstance(entry, dict) else None
            label = f" {name!r}" if name is not None else f"[{item}]"
            if parts:
                parts[-1] += label
            else:
                parts.append(label.strip())
            node = entry
            if parts[-1].startswith("groups") and i + 1 < len(loc):
                if loc[i + 1] in ("runs", "stages", "ncl"):
                    i += 1
        else:
            parts.append(str(item))
            node = node.get(item) if isinstance(node, dict) else None
        i += 1
    return ".".join(parts)


def _message(err: ErrorDetails) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"unknown key {err['loc'][-1]!r}"
    if kind == "missing":
        return f"{err['loc'][-1]!r} is required"
    expected = expected_type(err)
    if expected is not None:
        return expected
    if kind == "literal_error":
        return f"{err['msg'][0].lower()}{err['msg'][1:]}, got {err['input']!r}"
    return f"{err['msg']} (got {err['input']!r})"


def validate_spec(raw: dict, where: str) -> dict:
    """``raw`` (a spec as TOML gives it) checked against :class:`Spec`; returns ``raw``
    (plain data, unchanged) or raises :class:`SpecError` naming the first bad key."""
    try:
        Spec.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = err["loc"]
        if err["type"] == "extra_forbidden":  # name the table, then the key
            path, msg = _where(loc[:-1], raw), _message(err)
            if loc[:1] == ("groups",) and len(loc) == 4 and loc[2] == "runs":
                for other, model in (("ncl", NCLGroup), ("stages", StagesGroup)):
                    if loc[3] in set(model.model_fields) - set(RunsGroup.model_fields):
                        msg = f"{loc[3]!r} needs kind = {other!r}"
                        break
        elif err["type"] == "missing":  # name the table, then the key
            path, msg = _where(loc[:-1], raw), _message(err)
        elif loc and loc[-1] == "[key]":  # a key of a table with fixed key names
            path = _where(loc[:-2], raw)
            msg = f"unknown key {err['input']!r}: {_message(err).split(',')[0]}, …"
            if loc[:1] == ("scales",):
                msg = f"unknown scale {err['input']!r}; scales are full, reduced, quick and smoke"
        elif err["type"] == "literal_error" and loc[-1:] == ("kind",) and loc[:1] == ("groups",):
            path = _where(loc[:-1], raw)
            msg = f"kind must be 'runs', 'stages' or 'ncl', got {err['input']!r}"
        else:
            path, msg = _where(loc, raw), _message(err)
        raise SpecError(f"{where}: {path + ': ' if path else ''}{msg}") from None
    return raw
