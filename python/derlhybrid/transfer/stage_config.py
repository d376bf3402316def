"""Configuration of a multi-stage pipeline (paper.md §10): :class:`Stage` (data, selection,
training, initialisation, distillation sources, EWC, labels), :class:`Pipeline` (stages in
order, references checked) and their construction from TOML, validated at construction."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._tables import deep_merge as _merge
from .._tables import read_toml, refuse_unknown
from ..learn.config import ConfigError, DataConfig, TrainConfig
from .distill import DistillSource

__all__ = [
    "DISTILL_KEYS",
    "INITS",
    "SELECTION_KEYS",
    "STAGE_KEYS",
    "Box",
    "EWCConfig",
    "LabelConfig",
    "Pipeline",
    "Stage",
    "jsonable_box",
]

INITS = ("new", "extend")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

Box = Mapping[str, tuple[float, float]]


@dataclass(frozen=True)
class LabelConfig:
    """What a finished stage labels: the point sets ``sets`` of its problem (``train``,
    ``val``, ``test``, ``boundary``, ``initial``, or a distillation set ``distill:<stage>``
    — all of that source's points), concatenated; derivative ``orders``, with respect to
    ``inputs`` (default all). The true values and residual data the sets carry are kept
    where every set has them."""

    sets: tuple[str, ...] = ("train",)
    orders: tuple[int, ...] = (0, 1, 2)
    inputs: tuple[str, ...] | None = None
    batch_size: int = 4096

    def __post_init__(self):
        for name in ("sets", "orders"):
            v = getattr(self, name)
            if isinstance(v, str) or not isinstance(v, Sequence):
                raise ConfigError(f"label.{name} must be a list, got {v!r}")
            object.__setattr__(self, name, tuple(v))
        if not self.orders or any(o not in (0, 1, 2) for o in self.orders):
            raise ConfigError(f"label.orders must be a non-empty subset of 0, 1, 2: {self.orders}")
        if self.inputs is not None:
            object.__setattr__(self, "inputs", tuple(self.inputs))
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError("label.batch_size must be a positive integer")


@dataclass(frozen=True)
class EWCConfig:
    """EWC against the stage ``source``: penalty weight ``weight``, Fisher estimated from
    batches of ``batch_size`` of the source's training points."""

    source: str
    weight: float = 1.0
    batch_size: int = 1000

    def __post_init__(self):
        w = self.weight
        if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or w < 0:
            raise ConfigError(f"ewc.weight must be a number ≥ 0, got {w!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError("ewc.batch_size must be a positive integer")


@dataclass(frozen=True)
class Stage:
    """One stage: ``config`` (data file, model, objective, training — a
    :class:`~derlhybrid.learn.config.TrainConfig`), the points it learns on (``region``: a
    box {input: (lo, hi)} for the interior sets; ``boundary_region`` for the initial,
    boundary and periodic sets, default the region, ``{}`` for all of them;
    ``parameter_sets``: indices into the file's ``/parameters/values``), ``init`` (``new``:
    the seeded initialisation, ``extend``: the weights of ``init_from``, default the
    previous stage), distillation sources, optional EWC, and what it labels."""

    name: str
    config: TrainConfig
    region: Box | None = None
    boundary_region: Box | None = None
    parameter_sets: tuple[int, ...] | None = None
    init: str = "new"
    init_from: str | None = None
    distill: tuple[DistillSource, ...] = ()
    ewc: EWCConfig | None = None
    label: LabelConfig = field(default_factory=LabelConfig)

    def __post_init__(self):
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ConfigError(
                f"stage name {self.name!r} must be letters, digits, '_', '-' or '.' "
                "(it names the stage's folder)"
            )
        if self.init not in INITS:
            raise ConfigError(
                f"stage {self.name!r}: init must be one of {', '.join(INITS)}, got {self.init!r}"
            )
        if self.init_from is not None and self.init != "extend":
            raise ConfigError(f"stage {self.name!r}: init_from needs init = 'extend'")
        for key in ("region", "boundary_region"):
            box = getattr(self, key)
            if box is not None:
                object.__setattr__(self, key, _box(box, f"stage {self.name!r}: {key}"))
        if self.parameter_sets is not None:
            ps = self.parameter_sets
            if isinstance(ps, str | int) or not all(
                isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ps
            ):
                raise ConfigError(
                    f"stage {self.name!r}: parameter_sets must be a list of indices ≥ 0"
                )
            object.__setattr__(self, "parameter_sets", tuple(ps))
        object.__setattr__(self, "distill", tuple(self.distill))
        seen = set()
        for src in self.distill:
            if src.point_set in seen:
                raise ConfigError(
                    f"stage {self.name!r}: two distillation sources use {src.point_set!r}"
                )
            seen.add(src.point_set)

    def references(self) -> list[tuple[str, str]]:
        """(what, stage) for every earlier stage this one reads."""
        refs = [("distill source", s.source) for s in self.distill if s.source is not None]
        if self.init == "extend" and self.init_from is not None:
            refs.append(("init_from", self.init_from))
        if self.ewc is not None:
            refs.append(("ewc source", self.ewc.source))
        return refs

    def to_dict(self) -> dict[str, Any]:
        return json.loads(
            json.dumps(
                {
                    "name": self.name,
                    **self.config.to_dict(),
                    "region": jsonable_box(self.region),
                    "boundary_region": jsonable_box(self.boundary_region),
                    "parameter_sets": self.parameter_sets,
                    "init": self.init,
                    "init_from": self.init_from,
                    "distill": [dataclasses.asdict(s) for s in self.distill],
                    "ewc": None if self.ewc is None else dataclasses.asdict(self.ewc),
                    "label": dataclasses.asdict(self.label),
                },
                default=list,
            )
        )


def _box(box, where: str) -> dict[str, tuple[float, float]]:
    if not isinstance(box, Mapping):
        raise ConfigError(f"{where} must be a table {{ input = [lo, hi] }}, got {box!r}")
    out = {}
    for name, bounds in box.items():
        ok = (
            isinstance(bounds, Sequence)
            and not isinstance(bounds, str)
            and len(bounds) == 2
            and all(isinstance(b, int | float) and not isinstance(b, bool) for b in bounds)
        )
        if not ok or not bounds[0] <= bounds[1]:
            raise ConfigError(f"{where}.{name} must be [lo, hi] with lo ≤ hi, got {bounds!r}")
        out[str(name)] = (float(bounds[0]), float(bounds[1]))
    return out


def jsonable_box(box: Box | None) -> dict[str, list[float]] | None:
    """A box as JSON (bounds as lists); None stays None."""
    return None if box is None else {k: list(v) for k, v in box.items()}


STAGE_KEYS = (
    "name",
    "data",
    "model",
    "objective",
    "train",
    "init",
    "init_from",
    "distill",
    "ewc",
    "label",
)
SELECTION_KEYS = ("region", "boundary_region", "parameter_sets")
DISTILL_KEYS = tuple(f.name for f in dataclasses.fields(DistillSource))


def _unknown(values: Mapping, known, where: str) -> None:
    refuse_unknown(values, known, where, ConfigError)


def _table(v, where: str) -> dict:
    if not isinstance(v, Mapping):
        raise ConfigError(f"{where} must be a table, got {type(v).__name__}")
    return dict(v)


def _stage_from_dict(values: Mapping, index: int, base: Path | None) -> Stage:
    name = values.get("name")
    where = f"stage {name!r}" if name is not None else f"stages[{index}]"
    if name is None:
        raise ConfigError(f'{where}: name = "…" is required')
    _unknown(values, STAGE_KEYS, where)
    data = _table(values.get("data", {}), f"{where}: data")
    if "path" not in data:
        raise ConfigError(f'{where}: [data] path = "FILE" is required')
    data_keys = {f.name for f in dataclasses.fields(DataConfig)} | set(SELECTION_KEYS)
    _unknown(data, data_keys, f"{where}: data")
    selection = {k: data.pop(k) for k in SELECTION_KEYS if k in data}
    if data.get("stream", "never") != "never":
        raise ConfigError(f"{where}: data.stream: a stage holds its data in memory ('never')")
    if base is not None and not Path(data["path"]).is_absolute():
        data["path"] = str(base / data["path"])
    try:
        cfg = TrainConfig.from_dict(
            {
                "data": {**data, "stream": "never"},
                **{k: values[k] for k in ("model", "objective", "train") if k in values},
            },
            where=where,
        )
    except ConfigError as exc:
        msg = str(exc)
        raise ConfigError(msg if msg.startswith(where) else f"{where}: {msg}") from None
    sources = values.get("distill", [])
    if isinstance(sources, Mapping):
        sources = [sources]
    if not isinstance(sources, list):
        raise ConfigError(f"{where}: distill must be a list of tables ([[stages.distill]])")
    distill = []
    for k, s in enumerate(sources):
        s = _table(s, f"{where}: distill[{k}]")
        _unknown(s, DISTILL_KEYS, f"{where}: distill[{k}]")
        if "labels" in s and base is not None and not Path(s["labels"]).is_absolute():
            s["labels"] = str(base / s["labels"])
        if "mode" not in s:
            raise ConfigError(f'{where}: distill[{k}]: mode = "…" is required')
        if s["mode"] == "pinn" and "fraction" not in s:
            # paper.md §10: a continual (extend) student replays a random 20 % of the old
            # points; a fresh (new) one all of them — the reference's "PINN full"
            s["fraction"] = 1.0 if values.get("init", "new") == "new" else 0.2
        try:
            distill.append(DistillSource(**s))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc}") from None
    ewc = None
    if "ewc" in values:
        e = _table(values["ewc"], f"{where}: ewc")
        _unknown(e, ("source", "weight", "batch_size"), f"{where}: ewc")
        if "source" not in e:
            raise ConfigError(f'{where}: ewc: source = "STAGE" is required')
        try:
            ewc = EWCConfig(**e)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    lab = _table(values.get("label", {}), f"{where}: label")
    _unknown(lab, ("sets", "orders", "inputs", "batch_size"), f"{where}: label")
    try:
        return Stage(
            name=name,
            config=cfg,
            init=values.get("init", "new"),
            init_from=values.get("init_from"),
            distill=tuple(distill),
            ewc=ewc,
            label=LabelConfig(**lab),
            **selection,
        )
    except ConfigError as exc:
        msg = str(exc)
        raise ConfigError(msg if msg.startswith("stage ") else f"{where}: {msg}") from None


@dataclass(frozen=True)
class Pipeline:
    """Stages in order. Validated at construction: unique names, every reference
    (distillation source, ``init_from``, EWC source) to an *earlier* stage."""

    stages: tuple[Stage, ...]
    description: str = ""

    def __post_init__(self):
        if isinstance(self.stages, Stage) or not isinstance(self.stages, list | tuple):
            raise ConfigError(
                f"Pipeline(stages): a list of Stage objects, got {type(self.stages).__name__}"
            )
        object.__setattr__(self, "stages", tuple(self.stages))
        if not self.stages:
            raise ConfigError("the pipeline has no stages: add [[stages]] tables")
        for i, st in enumerate(self.stages):
            if not isinstance(st, Stage):
                raise ConfigError(f"stages[{i}] must be a Stage, got {st!r}")
        if not isinstance(self.description, str):
            raise ConfigError(f"description must be a string, got {self.description!r}")
        seen: list[str] = []
        for i, st in enumerate(self.stages):
            if st.name in seen:
                raise ConfigError(f"two stages are named {st.name!r}")
            for what, ref in st.references():
                if ref not in seen:
                    later = any(s.name == ref for s in self.stages[i + 1 :])
                    why = "a later stage" if later else "not a stage"
                    raise ConfigError(
                        f"stage {st.name!r}: {what} {ref!r} is {why}; earlier stages: "
                        f"{', '.join(seen) or 'none'}"
                    )
            if st.init == "extend" and st.init_from is None and not seen:
                raise ConfigError(
                    f"stage {st.name!r}: init = 'extend' needs an earlier stage to extend"
                )
            seen.append(st.name)

    def stage(self, name: str) -> Stage:
        for st in self.stages:
            if st.name == name:
                return st
        raise KeyError(name)

    def extends(self, st: Stage) -> str | None:
        """The stage whose weights ``st`` starts from (None for ``init = 'new'``)."""
        if st.init != "extend":
            return None
        if st.init_from is not None:
            return st.init_from
        return self.stages[[s.name for s in self.stages].index(st.name) - 1].name

    @classmethod
    def from_dict(cls, values: Mapping, where: str = "pipeline", base=None) -> Pipeline:
        """From a mapping as in the TOML file: ``[defaults]`` (merged under every stage,
        table by table), ``[[stages]]``, optional ``description``. Relative paths are
        taken from ``base``."""
        values = dict(values)
        _unknown(values, ("defaults", "stages", "description"), where)
        defaults = _table(values.get("defaults", {}), f"{where}: defaults")
        _unknown(defaults, [k for k in STAGE_KEYS if k != "name"], f"{where}: defaults")
        stages = values.get("stages")
        if not isinstance(stages, list) or not stages:
            raise ConfigError(f"{where}: no stages; add [[stages]] tables")
        base = None if base is None else Path(base)
        built = [
            _stage_from_dict(_merge(defaults, _table(s, f"{where}: stages[{i}]")), i, base)
            for i, s in enumerate(stages)
        ]
        return cls(tuple(built), str(values.get("description", "")))

    @classmethod
    def from_toml(cls, path) -> Pipeline:
        p = Path(path)
        values = read_toml(p, "pipeline config", ConfigError)
        return cls.from_dict(values, where=str(p), base=p.parent)
