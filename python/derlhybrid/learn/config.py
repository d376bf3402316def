"""Training configuration: TOML in, validated frozen dataclasses out.

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

Unknown tables or keys, wrong types and impossible values are refused with one line naming
the key and what is allowed, before any data is read (style rule 6).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._tables import read_toml, refuse_unknown
from .._typecheck import check_fields
from .losses import MODES, TERMS, WEIGHT_GROUPS
from .models import MLPConfig

__all__ = ["DataConfig", "LBFGSConfig", "ScheduleConfig", "TrainConfig", "TrainingConfig"]

OPTIMIZERS = ("adam", "lbfgs", "adam+lbfgs")
SCHEDULES = ("constant", "step", "exponential", "cosine")
DEVICES = ("auto", "cpu", "cuda")


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the key and the fix."""


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
        if self.form not in ("positions", "state"):
            raise ConfigError(f"data.form must be 'positions' or 'state', got {self.form!r}")
        if self.stream not in ("auto", "always", "never"):
            raise ConfigError(f"data.stream must be auto, always or never, got {self.stream!r}")
        for name in ("memory_mb", "block_mb"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and v > 0):
                raise ConfigError(f"data.{name} must be a positive number, got {v!r}")


@dataclass(frozen=True)
class ObjectiveConfig:
    mode: str | None = None
    weights: dict[str, float] = field(default_factory=dict)
    terms: list[dict[str, Any]] = field(default_factory=list)
    hessian_projection: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
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
        for t in self.terms:
            if not isinstance(t, dict) or t.get("term") not in TERMS:
                name = t.get("term") if isinstance(t, dict) else t
                raise ConfigError(
                    f"objective.terms: unknown term {name!r}; choose one of {', '.join(TERMS)}"
                )
        if self.mode is None and not self.terms:
            raise ConfigError('objective: give a mode (e.g. mode = "derl") or a list of terms')


@dataclass(frozen=True)
class LBFGSConfig:
    """torch.optim.LBFGS settings; defaults are the paper's (Allen–Cahn seeded runs)."""

    lr: float = 0.1
    max_iter: int = 20
    max_eval: int | None = None
    history_size: int = 100
    tolerance_grad: float = 1e-7
    tolerance_change: float = 1e-9
    line_search: str | None = None
    #: "mini": one L-BFGS step per mini-batch (paper §4.3); "full": one per epoch on the
    #: whole training set (paper §5.3, §7.2)
    batch: str = "full"

    def __post_init__(self):
        if self.line_search not in (None, "strong_wolfe"):
            raise ConfigError("train.lbfgs.line_search must be absent or 'strong_wolfe'")
        if self.batch not in ("mini", "full"):
            raise ConfigError("train.lbfgs.batch must be 'mini' or 'full'")
        if not self.lr > 0 or self.max_iter < 1 or self.history_size < 1:
            raise ConfigError("train.lbfgs: lr > 0, max_iter ≥ 1 and history_size ≥ 1 required")


@dataclass(frozen=True)
class ScheduleConfig:
    """Learning-rate schedule of the Adam phase, stepped once per epoch."""

    kind: str = "constant"
    step_size: int = 1
    gamma: float = 1.0
    min_lr: float = 0.0

    def __post_init__(self):
        if self.kind not in SCHEDULES:
            raise ConfigError(
                f"train.schedule.kind: unknown schedule {self.kind!r}; choose one of "
                f"{', '.join(SCHEDULES)}"
            )
        if self.step_size < 1 or not 0 < self.gamma <= 1:
            raise ConfigError("train.schedule: step_size ≥ 1 and 0 < gamma ≤ 1 required")


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = 100
    batch_size: int = 64
    #: batch size of the initial/boundary/periodic sets, drawn cyclically (default: batch_size)
    condition_batch_size: int | None = None
    optimizer: str = "adam"
    lr: float = 1e-3
    #: with "adam+lbfgs": Adam for this many epochs, L-BFGS for the rest
    adam_epochs: int | None = None
    lbfgs: LBFGSConfig = field(default_factory=LBFGSConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
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
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"train.optimizer: unknown optimizer {self.optimizer!r}; choose one of "
                f"{', '.join(OPTIMIZERS)}"
            )
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


@dataclass(frozen=True)
class TrainConfig:
    data: DataConfig
    model: dict[str, Any] = field(default_factory=dict)
    objective: ObjectiveConfig = field(default_factory=lambda: ObjectiveConfig(mode="derl"))
    train: TrainingConfig = field(default_factory=TrainingConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

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
        data = _build(DataConfig, values["data"], "data")
        model = dict(values.get("model", {}))
        allowed = {f.name for f in dataclasses.fields(MLPConfig)} - {"n_in", "n_out"}
        _no_unknown(model, allowed, "model")
        check_fields(MLPConfig, model, "model", ConfigError)
        try:  # validate now (sizes come from the data later)
            MLPConfig(n_in=1, n_out=1, **model)
        except (TypeError, ValueError) as exc:
            raise ConfigError(str(exc)) from None
        objective = _build(ObjectiveConfig, values.get("objective", {"mode": "derl"}), "objective")
        train_values = dict(values.get("train", {}))
        for sub, sub_cls in (("lbfgs", LBFGSConfig), ("schedule", ScheduleConfig)):
            if sub in train_values:
                train_values[sub] = _build(sub_cls, train_values[sub], f"train.{sub}")
        train = _build(TrainingConfig, train_values, "train")
        return cls(data=data, model=model, objective=objective, train=train)

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
