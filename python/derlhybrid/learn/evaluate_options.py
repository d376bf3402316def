"""The options of :func:`~derlhybrid.learn.evaluate.evaluate`, typed per kind of metrics and
checked at the edge.

A system declares the kind of experiment metrics its data support in its class variable
``metrics_kind`` (:class:`~derlhybrid.systems.base.System`): ``"pendulum"``,
``"flow-map"`` (every ODE system by default: :func:`metrics.evaluate_ode`),
``"allen-cahn"``, ``"kovasznay"``, ``"continuity"`` or ``"grid-field"``; ``None`` (a field
system that declares none) gets the split losses only. Each kind reads the options of its
model below, pydantic v2 in strict mode with ``extra="forbid"``: a misspelt key
(``gird = 51``) or a value of the wrong type fails in one line that names its path and the
allowed keys (``evaluate.gird: unknown option for allen-cahn metrics (allowed: grid,
variant)``) instead of falling back to the default. ``evaluate()`` checks them before it
loads the network or the data, ``derl reproduce`` while it plans (before any data exist).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from .._typecheck import expected_type
from ..systems.base import System
from .config import ConfigError

__all__ = [
    "OPTIONS",
    "AllenCahnOptions",
    "ContinuityOptions",
    "EvaluateOptions",
    "FlowMapOptions",
    "GridFieldOptions",
    "KovasznayOptions",
    "PendulumOptions",
    "TrajectoryOptions",
    "check_options",
    "metrics_kind",
    "validate_options",
]


class EvaluateOptions(BaseModel):
    """The options every kind takes (and all a system without metrics takes):
    ``variant``, the ``/variants/<name>`` of the file the split losses are computed on."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    variant: str | None = None


class TrajectoryOptions(EvaluateOptions):
    """The options of the metrics on held-out trajectories: ``split``, the trajectories
    they are computed on — ``"test"`` (the protocol's), or ``"val"``, the validation
    trajectories a protocol change is judged on before any test metric is looked at."""

    split: Literal["test", "val"] = "test"


class PendulumOptions(TrajectoryOptions):
    """:func:`metrics.evaluate_pendulum`: ``phase_grid`` G, the G×G phase-space grid
    (0 or None: no phase-space metric)."""

    phase_grid: int | None = Field(250, ge=0)


#: (lo, hi) of one state
_Interval = Annotated[list[float], Field(min_length=2, max_length=2)]


class FlowMapOptions(TrajectoryOptions):
    """:func:`metrics.evaluate_ode` (any ODE system): ``phase_grid`` (two-state systems),
    over ``phase_box`` ([lo, hi] per state; None: the box of the file's initial states)."""

    phase_grid: int | None = Field(100, ge=0)
    phase_box: list[_Interval] | None = None


class AllenCahnOptions(EvaluateOptions):
    """:func:`metrics.evaluate_allen_cahn`: ``grid`` points per axis of the box."""

    grid: int = Field(201, ge=2)


class KovasznayOptions(EvaluateOptions):
    """:func:`metrics.evaluate_kovasznay`: ``grid`` points per axis of the box."""

    grid: int = Field(200, ge=2)


class ContinuityOptions(EvaluateOptions):
    """:func:`metrics.evaluate_continuity`: every ``frame_stride``-th frame of the grid."""

    frame_stride: int = Field(10, ge=1)


class GridFieldOptions(EvaluateOptions):
    """:func:`metrics.evaluate_field` on the data file's grid (KdV): no options of its own."""


#: the options of each kind of metrics (``System.metrics_kind``)
OPTIONS: dict[str, type[EvaluateOptions]] = {
    "pendulum": PendulumOptions,
    "flow-map": FlowMapOptions,
    "allen-cahn": AllenCahnOptions,
    "kovasznay": KovasznayOptions,
    "continuity": ContinuityOptions,
    "grid-field": GridFieldOptions,
}


def metrics_kind(system: System | type[System]) -> str | None:
    """The kind of metrics ``system`` (an instance or a class) declares, checked against
    :data:`OPTIONS` (one-line :class:`ConfigError` for an unknown kind)."""
    kind = getattr(system, "metrics_kind", None)
    if kind is not None and kind not in OPTIONS:
        raise ConfigError(
            f"{system.name}: unknown metrics_kind {kind!r}; kinds are {', '.join(OPTIONS)}"
        )
    return kind


def _message(err: ErrorDetails, where: str, what: str, allowed) -> str:
    path = ".".join([where, *map(str, err["loc"])])
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"{path}: unknown option for {what} (allowed: {', '.join(sorted(allowed))})"
    expected = expected_type(err)
    if expected is not None:
        return f"{path}: {expected}"
    msg = err["msg"]
    return f"{path}: {msg[0].lower()}{msg[1:]}, got {err['input']!r}"


def validate_options(
    model: type[BaseModel], options: Mapping[str, Any] | None, *, where: str, what: str
) -> Any:
    """``options`` parsed by ``model``, or a one-line :class:`ConfigError` naming the first
    bad key as ``<where>.<key>`` (``what``: whose options they are, for the message)."""
    if options is not None and not isinstance(options, Mapping):
        raise ConfigError(f"{where}: expected a table of options, got {options!r}")
    try:
        return model.model_validate(dict(options or {}))
    except ValidationError as exc:
        raise ConfigError(_message(exc.errors()[0], where, what, model.model_fields)) from None


def check_options(
    system: System | type[System], options: Mapping[str, Any] | None, *, where="evaluate"
) -> EvaluateOptions:
    """The options of ``system``'s kind of metrics, validated (:class:`ConfigError`)."""
    kind = metrics_kind(system)
    if kind is None:
        what = f"{system.name}, which has no experiment metrics"
        return validate_options(EvaluateOptions, options, where=where, what=what)
    return validate_options(OPTIONS[kind], options, where=where, what=f"{kind} metrics")
