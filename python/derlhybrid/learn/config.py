"""Training configuration: TOML or Python objects in, validated frozen dataclasses out.

A config has four tables; every key is optional except ``data.path``::

    [data]
    path = "pendulum.h5"      # a file `derl generate` wrote
    variant = "empirical"     # optional: /variants/<name> targets, or empirical derivatives
    form = "positions"        # flow maps of second-order ODEs: "positions" (paper) | "state"

    [model]                   # MLPConfig: width, depth, activation, dtype, omega0
    width = 50
    depth = 4

    [objective]
    mode = "derl"             # a row of derlhybrid.learn.losses.MODES, or…
    weights = { sys = 71.17, init = 2.29 }
    # terms = [{ term = "output", weight = 1.0 }, …]   # …an explicit composition
    # hessian_projection = { n_directions = 100, sigma = 0.01, method = "finite-difference" }

    [train]
    epochs = 200
    batch_size = 64
    optimizer = "adam"        # "adam" | "lbfgs" | "adam+lbfgs"
    lr = 5e-4
    seed = 30

From Python the same configuration is built from objects, checked as they are built::

    TrainConfig(
        data=DataConfig(path="pendulum.h5"),
        model={"width": 50, "depth": 4},
        objective=Objective([(JacobianTerm(), 71.17), (InitialTerm(), 2.29)]),
        train=TrainingConfig(epochs=200, optimizer=Adam(lr=5e-4), seed=30),
    )

``objective`` takes an :class:`ObjectiveConfig`, a mode name (``"derl"``), a
:class:`~derlhybrid.learn.losses.Objective` or a list of ``(term, weight)`` pairs (a term
object, a term of your own class included, or a term name); ``train.optimizer`` takes
``"adam"``, ``"lbfgs"``, ``"adam+lbfgs"`` or an :mod:`~derlhybrid.learn.optimizers` object.
Both forms end as one canonical object (the TOML form): the built-in terms as their
``{"term": name, "weight": w, ...}`` tables, the optimizer as the flat ``[train]`` keys, so
``to_dict()`` (what checkpoints record and run hashes read) does not depend on the form.

Unknown tables or keys, wrong types and impossible values are refused with one line naming
the key and what is allowed, before any data is read (style rule 6).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._tables import read_toml, refuse_unknown
from .._typecheck import check_built, check_fields
from .errors import ConfigError
from .losses import MODES, TERMS, WEIGHT_GROUPS, Objective, Term, term_from_record, term_record
from .models import MLPConfig
from .optimizers import LBFGS, OPTIMIZERS, Adam, AdamThenLBFGS, Schedule

__all__ = [
    "LBFGS",
    "Adam",
    "AdamThenLBFGS",
    "ConfigError",
    "DataConfig",
    "LBFGSConfig",
    "ObjectiveConfig",
    "Schedule",
    "ScheduleConfig",
    "TrainConfig",
    "TrainingConfig",
]

DEVICES = ("auto", "cpu", "cuda")

#: the names these settings had before they were objects of their own (still accepted)
LBFGSConfig = LBFGS
ScheduleConfig = Schedule

#: what ``TrainingConfig(optimizer=...)`` takes besides a name
Optimizer = Adam | LBFGS | AdamThenLBFGS


@dataclass(frozen=True)
class DataConfig:
    path: str
    #: the system the file must hold (optional; refuses data of another system)
    system: str | None = None
    variant: str | None = None
    form: str = "positions"
    #: "auto": read the training split block by block from the file when it is larger than
    #: memory_mb (bounded memory); "always" / "never" force it
    stream: str = "auto"
    memory_mb: float = 2048.0
    block_mb: float = 64.0

    def __post_init__(self):
        if isinstance(self.path, os.PathLike):  # a pathlib.Path from Python: recorded as text
            object.__setattr__(self, "path", os.fspath(self.path))
        _check_own_types(self, "data")
        if self.form not in ("positions", "state"):
            raise ConfigError(f"data.form must be 'positions' or 'state', got {self.form!r}")
        if self.stream not in ("auto", "always", "never"):
            raise ConfigError(f"data.stream must be auto, always or never, got {self.stream!r}")
        for name in ("memory_mb", "block_mb"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and v > 0):
                raise ConfigError(f"data.{name} must be a positive number, got {v!r}")


@dataclass(frozen=True)
class _Weight:  # what check_fields reads for a term's weight
    weight: float


@dataclass(frozen=True)
class ObjectiveConfig:
    """A mode with its weight groups, or an explicit list of terms, or both.

    An entry of ``terms`` is a ``{"term": name, "weight": w, ...options}`` table (a term of
    :data:`~derlhybrid.learn.losses.TERMS`), or, from Python, a term object, a
    ``(term, weight)`` pair or a ``(name, weight)`` pair. A built-in term is kept as its
    table (only the options that differ from the defaults); a term of your own class is
    kept as the object and recorded by ``to_dict`` as its description plus ``"class":
    "module.QualName"`` (:func:`~derlhybrid.learn.losses.term_record`), so that a resume
    with another term is refused. Such a record is rebuilt only where this process defines
    that class: a config file cannot bring the code of a term (a one-line ``ConfigError``
    says so)."""

    mode: str | None = None
    weights: dict[str, float] = field(default_factory=dict)
    terms: list[dict[str, Any] | tuple[Term, float]] = field(default_factory=list)
    hessian_projection: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        _check_own_types(self, "objective", skip=("terms",))  # terms: checked one by one
        if self.mode is not None and self.mode.lower() not in MODES:
            raise ConfigError(
                f"objective.mode: unknown mode {self.mode!r}; choose one of {', '.join(MODES)}"
            )
        for k, v in self.weights.items():
            if k not in WEIGHT_GROUPS:
                raise ConfigError(
                    f"objective.weights: unknown weight {k!r}; weights are "
                    f"{', '.join(WEIGHT_GROUPS)}"
                )
            if not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
                raise ConfigError(f"objective.weights.{k} must be a number ≥ 0, got {v!r}")
        entries = [_term_entry(t, f"objective.terms[{i}]") for i, t in enumerate(self.terms)]
        object.__setattr__(self, "terms", entries)
        if self.mode is None and not self.terms:
            raise ConfigError('objective: give a mode (e.g. mode = "derl") or a list of terms')

    def to_dict(self) -> dict[str, Any]:
        """The TOML form (a term of your own class as its record)."""
        return copy.deepcopy(
            {
                "mode": self.mode,
                "weights": self.weights,
                "terms": [t if isinstance(t, dict) else term_record(*t) for t in self.terms],
                "hessian_projection": self.hessian_projection,
            }
        )


def _unknown_term(name) -> ConfigError:
    return ConfigError(f"objective.terms: unknown term {name!r}; choose one of {', '.join(TERMS)}")


def _weight(weight, where: str):
    check_fields(_Weight, {"weight": weight}, where, ConfigError)
    if not math.isfinite(weight):
        raise ConfigError(f"{where}.weight must be a finite number, got {weight!r}")
    return weight


def _term_entry(entry, where: str) -> dict[str, Any] | tuple[Term, float]:
    """One entry of ``objective.terms`` in its canonical form (see :class:`ObjectiveConfig`)."""
    if isinstance(entry, Mapping):
        if "class" in entry:  # a term of the user's own class, as to_dict records it
            try:
                term, weight = term_from_record(entry)
            except ValueError as exc:
                raise ConfigError(f"{where}: {exc}") from None
            return (term, _weight(weight, where))
        if entry.get("term") not in TERMS:
            raise _unknown_term(entry.get("term"))
        if "weight" in entry:
            _weight(entry["weight"], where)
        return dict(entry)
    if isinstance(entry, Term):
        term, weight = entry, 1.0
    elif isinstance(entry, tuple | list) and len(entry) == 2:
        term, weight = entry
    else:
        raise ConfigError(
            f"{where} must be a {{term = NAME, weight = W}} table or a (term, weight) pair, "
            f"got {entry!r}"
        )
    _weight(weight, where)
    if isinstance(term, str):
        if term not in TERMS:
            raise _unknown_term(term)
        return {"term": term, "weight": weight}
    if not isinstance(term, Term):
        raise ConfigError(f"{where}: the term must be a Term object or a term name, got {term!r}")
    if type(term) is not TERMS.get(term.name) or not dataclasses.is_dataclass(term):
        return (term, weight)  # a class of the user's own: kept as the object
    options = {
        f.name: getattr(term, f.name)
        for f in dataclasses.fields(term)
        if f.init and getattr(term, f.name) != f.default
    }
    return {"term": term.name, "weight": weight, **options}


def _objective(value, where: str = "objective") -> ObjectiveConfig:
    """``TrainConfig(objective=...)``: an ObjectiveConfig, a table, a mode name, an
    :class:`Objective` or a list of terms."""
    if isinstance(value, ObjectiveConfig):
        return value
    if isinstance(value, str):
        return ObjectiveConfig(mode=value)
    if isinstance(value, Objective):
        return ObjectiveConfig(terms=list(value.terms))
    if isinstance(value, list | tuple):
        return ObjectiveConfig(terms=list(value))
    if isinstance(value, Mapping):
        return _build(ObjectiveConfig, dict(value), where)
    raise ConfigError(
        f"{where} must be a table, a mode name, an Objective or a list of (term, weight) "
        f"pairs, got {value!r}"
    )


def _optimizer_name(value) -> None:
    if not isinstance(value, str | Optimizer) or (
        isinstance(value, str) and value not in OPTIMIZERS
    ):
        raise ConfigError(
            f"train.optimizer: unknown optimizer {value!r}; choose one of "
            f"{', '.join(OPTIMIZERS)}, or an optimizer object (Adam, LBFGS, AdamThenLBFGS)"
        )


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = 100
    batch_size: int = 64
    #: batch size of the initial/boundary/periodic sets, drawn cyclically (default: batch_size)
    condition_batch_size: int | None = None
    #: a name (the TOML form, with the keys below) or an optimizer object (Adam(...),
    #: LBFGS(...), AdamThenLBFGS(...)); always the name once built (:attr:`optimizer_object`)
    optimizer: str | Optimizer = "adam"
    lr: float = 1e-3
    #: with "adam+lbfgs": Adam for this many epochs, L-BFGS for the rest
    adam_epochs: int | None = None
    lbfgs: LBFGS = field(default_factory=LBFGS)
    schedule: Schedule = field(default_factory=Schedule)
    seed: int = 30
    engine: str = "auto"
    device: str = "auto"
    #: intra-op CPU threads while training: 0 = auto (one thread when a batch is small —
    #: batch_size × width ≤ 2¹⁸ — where extra threads only add synchronisation, and torch's
    #: default otherwise)
    threads: int = 0
    #: compile the loss (network, input derivatives, terms) and its gradient with
    #: ``torch.compile``: ~1.5x faster steps for small networks, after a one-off compile of
    #: ~30 s (and one more for the last, shorter batch of an epoch); needs a C++ compiler
    compile: bool = False
    #: checkpoint every this many epochs (and at the end)
    checkpoint_every: int = 1
    #: evaluate the validation set every this many epochs (0: never)
    val_every: int = 1
    progress: bool = True

    def __post_init__(self):
        _optimizer_name(self.optimizer)
        _check_own_types(self, "train", skip=("optimizer",))  # optimizer: by _optimizer_name
        for name, cls in (("lbfgs", LBFGS), ("schedule", Schedule)):  # a table from Python
            value = getattr(self, name)
            if isinstance(value, dict):
                object.__setattr__(self, name, _build(cls, value, f"train.{name}"))
        if not isinstance(self.optimizer, str):
            self._flatten(self.optimizer)
        for name in ("epochs", "batch_size", "checkpoint_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"train.{name} must be a positive integer, got {v!r}")
        if self.condition_batch_size is not None and self.condition_batch_size < 1:
            raise ConfigError("train.condition_batch_size must be a positive integer")
        if not (isinstance(self.lr, int | float) and self.lr > 0):
            raise ConfigError(f"train.lr must be a positive number, got {self.lr!r}")
        if self.optimizer == "adam+lbfgs" and not (
            self.adam_epochs is not None and 0 <= self.adam_epochs <= self.epochs
        ):
            raise ConfigError("train.optimizer = 'adam+lbfgs' needs 0 ≤ adam_epochs ≤ epochs")
        if self.engine not in ("auto", "forward", "autograd"):
            raise ConfigError("train.engine must be 'auto', 'forward' or 'autograd'")
        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise ConfigError(
                f"train.device must be auto, cpu, cuda or cuda:N, got {self.device!r}"
            )
        if not isinstance(self.threads, int) or self.threads < 0:
            raise ConfigError(f"train.threads must be an integer ≥ 0, got {self.threads!r}")
        if not isinstance(self.compile, bool):
            raise ConfigError(f"train.compile must be true or false, got {self.compile!r}")
        if self.val_every < 0:
            raise ConfigError("train.val_every must be ≥ 0")

    def _flatten(self, opt: Optimizer) -> None:
        """An optimizer object as the flat keys of the TOML form (the canonical one)."""
        keys = ("lr", "adam_epochs", "lbfgs", "schedule")
        defaults = {f.name: f.default for f in dataclasses.fields(self) if f.name in keys}
        defaults.update(lbfgs=LBFGS(), schedule=Schedule())
        beside = [k for k in keys if getattr(self, k) != defaults[k]]
        if beside:
            raise ConfigError(
                f"train.{beside[0]}: give it inside the optimizer object "
                f"({type(opt).__name__}(…)), not beside it"
            )
        flat: dict[str, Any] = {"optimizer": opt.name}
        if isinstance(opt, AdamThenLBFGS):
            flat.update(adam_epochs=opt.adam_epochs, lbfgs=opt.lbfgs)
            opt = opt.adam
        if isinstance(opt, Adam):
            flat.update(lr=opt.lr, schedule=opt.schedule)
        else:
            flat.update(lbfgs=opt)
        for k, v in flat.items():
            object.__setattr__(self, k, v)

    @property
    def optimizer_object(self) -> Optimizer:
        """The optimizer as an object: ``Adam(lr, schedule)``, the ``LBFGS`` settings, or
        ``AdamThenLBFGS(adam_epochs, Adam(...), LBFGS(...))``."""
        adam = Adam(lr=self.lr, schedule=self.schedule)
        if self.optimizer == "adam":
            return adam
        if self.optimizer == "lbfgs":
            return self.lbfgs
        assert self.adam_epochs is not None  # adam+lbfgs: checked when built
        return AdamThenLBFGS(adam_epochs=self.adam_epochs, adam=adam, lbfgs=self.lbfgs)


@dataclass(frozen=True, init=False)
class TrainConfig:
    """The whole configuration of a training run (see the module's docstring). Each part
    may be given as its object or as its table (a dict with the TOML keys)."""

    data: DataConfig
    model: dict[str, Any] = field(default_factory=dict)
    objective: ObjectiveConfig = field(default_factory=lambda: ObjectiveConfig(mode="derl"))
    train: TrainingConfig = field(default_factory=TrainingConfig)

    def __init__(
        self,
        data: DataConfig | Mapping[str, Any],
        model: Mapping[str, Any] | None = None,
        objective: ObjectiveConfig | Objective | Sequence[Any] | str | Mapping[str, Any] = "derl",
        train: TrainingConfig | Mapping[str, Any] | None = None,
    ):
        if not isinstance(data, DataConfig):
            if not isinstance(data, Mapping) or "path" not in data:
                raise ConfigError('[data] path = "FILE" is required')
            data = _build(DataConfig, dict(data), "data")
        model = dict(model or {})
        allowed = {f.name for f in dataclasses.fields(MLPConfig)} - {"n_in", "n_out"}
        _no_unknown(model, allowed, "model")
        check_fields(MLPConfig, model, "model", ConfigError)
        try:  # validate now (sizes come from the data later)
            MLPConfig(n_in=1, n_out=1, **model)
        except (TypeError, ValueError) as exc:
            raise ConfigError(str(exc)) from None
        objective = _objective(objective)
        if train is None:
            train = TrainingConfig()
        elif not isinstance(train, TrainingConfig):
            train = _training(train)
        for name, value in (("data", data), ("model", model), ("objective", objective)):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "train", train)

    def to_dict(self) -> dict[str, Any]:
        return {
            "data": dataclasses.asdict(self.data),
            "model": copy.deepcopy(self.model),
            "objective": self.objective.to_dict(),
            "train": dataclasses.asdict(self.train),
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "config") -> TrainConfig:
        values = dict(values)
        _no_unknown(values, {f.name for f in dataclasses.fields(cls)}, where)
        for name in ("data", "model", "objective", "train"):
            if name in values and not isinstance(
                values[name], dict | DataConfig | ObjectiveConfig | TrainingConfig
            ):
                raise ConfigError(f"{where}: [{name}] must be a table, got {values[name]!r}")
        if "data" not in values or "path" not in values["data"]:
            raise ConfigError(f'{where}: [data] path = "FILE" is required')
        return cls(
            data=values["data"],
            model=values.get("model", {}),
            objective=values.get("objective", {"mode": "derl"}),
            train=values.get("train", {}),
        )

    @classmethod
    def from_toml(cls, path) -> TrainConfig:
        p = Path(path)
        values = read_toml(p, "config", ConfigError)
        cfg = cls.from_dict(values, where=str(p))
        data_path = Path(cfg.data.path)
        if not data_path.is_absolute():  # relative to the config file
            cfg = dataclasses.replace(
                cfg, data=dataclasses.replace(cfg.data, path=str(p.parent / data_path))
            )
        return cfg


def _training(values) -> TrainingConfig:
    """The ``[train]`` table as a :class:`TrainingConfig`."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"[train] must be a table, got {type(values).__name__}")
    values = dict(values)
    if "optimizer" in values:  # before the type check: its words name the choices
        _optimizer_name(values["optimizer"])
    return _build(TrainingConfig, values, "train")  # builds [train.lbfgs], [train.schedule]


def _check_own_types(obj, where: str, skip: tuple[str, ...] = ()) -> None:
    """A part built directly from Python is checked as one read from TOML: a value of the
    wrong type (``TrainingConfig(seed="3")``) fails in one line naming ``where.key``."""
    check_built(obj, where, ConfigError, skip)


def _no_unknown(values: dict, known: set[str], where: str) -> None:
    refuse_unknown(values, known, where, ConfigError)


def _build(cls, values, where: str):
    if isinstance(values, cls):
        return values
    if not isinstance(values, dict):
        raise ConfigError(f"[{where}] must be a table, got {type(values).__name__}")
    _no_unknown(values, {f.name for f in dataclasses.fields(cls)}, where)
    check_fields(cls, values, where, ConfigError)  # types first: "3" is not 3, "no" not false
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"[{where}]: {exc}") from None
