"""The configuration of a hyper-parameter sweep (``derl sweep CONFIG``): parsed and checked.

A sweep config is a ``derl train`` config (``[data] [model] [objective] [train]``, the base
of every trial) plus a ``[sweep]`` table: the search space over any keys of the base, the
number of trials, the metric, the searcher and the ASHA early stopping rule (see
:mod:`derlhybrid.scale.sweep`, which runs it on Ray Tune). :class:`SweepConfig` refuses an
unknown key, a bad value or a searched key the training config does not accept before any
trial starts; :class:`Dimension` is one searched key. Importing this module imports no Ray.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._tables import read_toml
from ..learn.config import ConfigError, TrainConfig

__all__ = [
    "ASHA_KEYS",
    "DISTRIBUTIONS",
    "SEARCHERS",
    "SECTIONS",
    "SWEEP_KEYS",
    "Dimension",
    "SweepConfig",
]

SEARCHERS = ("optuna", "hyperopt")
DISTRIBUTIONS = ("loguniform", "uniform", "choice", "randint")
SWEEP_KEYS = (
    "num_samples",
    "metric",
    "mode",
    "searcher",
    "seed",
    "max_concurrent",
    "cpus_per_trial",
    "scope",
    "asha",
    "space",
)
ASHA_KEYS = ("max_t", "grace_period", "reduction_factor")
SECTIONS = ("data", "model", "objective", "train")


@dataclass(frozen=True)
class Dimension:
    """One searched key: its path in the training config, a distribution and its
    arguments (``loguniform``/``uniform``: bounds; ``choice``: the values; ``randint``:
    ``[low, high)``)."""

    key: str
    kind: str
    args: tuple

    def __post_init__(self):
        where = f"sweep.space.{self.key!r}"
        if self.kind == "choice":
            if not self.args:
                raise ConfigError(f"{where}: choice needs at least one value")
            return
        if len(self.args) != 2 or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in self.args
        ):
            raise ConfigError(f"{where}: {self.kind} needs [low, high], got {list(self.args)}")
        lo, hi = self.args
        if not lo < hi:
            raise ConfigError(f"{where}: {self.kind} needs low < high, got {list(self.args)}")
        if self.kind == "loguniform" and lo <= 0:
            raise ConfigError(f"{where}: loguniform needs 0 < low, got {lo}")
        if self.kind == "randint" and not all(isinstance(v, int) for v in self.args):
            raise ConfigError(f"{where}: randint needs integer bounds")

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(self.key.split("."))

    def example(self):
        """A value of the space (to validate the key against the training config)."""
        return self.args[0]

    def tune(self):
        from ray import tune

        if self.kind == "choice":
            return tune.choice(list(self.args))
        return getattr(tune, self.kind)(*self.args)


@dataclass(frozen=True)
class SweepConfig:
    """A validated sweep: the base training config (as TOML tables, ``data.path``
    absolute), the search space, and how to search it."""

    base: dict[str, Any]
    space: tuple[Dimension, ...]
    num_samples: int = 10
    metric: str = "val_output"
    mode: str = "min"
    searcher: str = "optuna"
    seed: int = 30
    max_concurrent: int | None = None
    cpus_per_trial: float = 1.0
    #: "all": a trial's best epoch counts (the paper's minimum validation loss); "last": its
    #: final epoch
    scope: str = "all"
    max_t: int | None = None
    grace_period: int = 1
    reduction_factor: float = 4.0
    source: str = "sweep"

    def __post_init__(self):
        w = "sweep"
        if not isinstance(self.num_samples, int) or self.num_samples < 1:
            raise ConfigError(f"{w}.num_samples must be a positive integer")
        if self.mode not in ("min", "max"):
            raise ConfigError(f"{w}.mode must be 'min' or 'max', got {self.mode!r}")
        if self.searcher not in SEARCHERS:
            raise ConfigError(
                f"{w}.searcher: unknown searcher {self.searcher!r}; choose one of "
                f"{', '.join(SEARCHERS)}"
            )
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"{w}.seed must be a non-negative integer")
        if self.max_concurrent is not None and (
            not isinstance(self.max_concurrent, int) or self.max_concurrent < 1
        ):
            raise ConfigError(f"{w}.max_concurrent must be a positive integer")
        if not (isinstance(self.cpus_per_trial, int | float) and self.cpus_per_trial > 0):
            raise ConfigError(f"{w}.cpus_per_trial must be a positive number")
        if self.scope not in ("all", "last"):
            raise ConfigError(f"{w}.scope must be 'all' or 'last', got {self.scope!r}")
        if not re.fullmatch(r"(val|train)_[a-z_]+", self.metric):
            raise ConfigError(
                f"{w}.metric must be val_output (the validation output MSE), train_loss, or "
                f"val_<term> / train_<term> of a loss term, got {self.metric!r}"
            )
        if not self.space:
            raise ConfigError(f'{w}.space is empty: e.g. "train.lr" = {{ choice = [1e-3, 1e-4] }}')
        epochs = self.epochs
        if self.max_t is not None and (not isinstance(self.max_t, int) or self.max_t < 1):
            raise ConfigError(f"{w}.asha.max_t must be a positive integer")
        if not isinstance(self.grace_period, int) or not 1 <= self.grace_period <= (
            self.max_t or epochs
        ):
            raise ConfigError(f"{w}.asha.grace_period must be an integer in [1, max_t]")
        if not self.reduction_factor > 1:
            raise ConfigError(f"{w}.asha.reduction_factor must be > 1")
        for dim in self.space:  # every key must be one the training config accepts
            try:
                self.train_config({dim.key: dim.example()})
            except ConfigError as exc:
                raise ConfigError(f"sweep.space.{dim.key!r}: {exc}") from None

    @property
    def epochs(self) -> int:
        return int(self.base.get("train", {}).get("epochs", 100))

    def tables(self, params: dict[str, Any]) -> dict[str, Any]:
        """The base tables with ``params`` (dotted keys) set."""
        tables = copy.deepcopy(self.base)
        for key, value in params.items():
            *head, last = key.split(".")
            if head[0] not in SECTIONS:
                raise ConfigError(
                    f"a searched key must start with {', '.join(SECTIONS)}; got {key!r}"
                )
            node = tables
            for part in head:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise ConfigError(f"{key!r}: {part} is not a table")
            node[last] = value.item() if isinstance(value, np.generic) else value
        return tables

    def train_config(self, params: dict[str, Any]) -> TrainConfig:
        return TrainConfig.from_dict(self.tables(params), where=self.source)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["space"] = [[s.key, s.kind, list(s.args)] for s in self.space]
        return d

    @classmethod
    def from_toml(cls, path) -> SweepConfig:
        p = Path(path)
        values = read_toml(p, "sweep config", ConfigError)
        return cls.from_dict(values, source=str(p), folder=p.parent)

    @classmethod
    def from_dict(
        cls, values: dict[str, Any], *, source: str = "sweep", folder: str | os.PathLike = "."
    ) -> SweepConfig:
        values = dict(values)
        sweep = values.pop("sweep", None)
        if not isinstance(sweep, dict):
            raise ConfigError(f"{source}: a [sweep] table with a [sweep.space] is required")
        unknown = sorted(set(sweep) - set(SWEEP_KEYS))
        if unknown:
            raise ConfigError(
                f"{source}: unknown key sweep.{unknown[0]}; keys are {', '.join(SWEEP_KEYS)}"
            )
        asha = dict(sweep.pop("asha", {}))
        unknown = sorted(set(asha) - set(ASHA_KEYS))
        if unknown:
            raise ConfigError(
                f"{source}: unknown key sweep.asha.{unknown[0]}; keys are {', '.join(ASHA_KEYS)}"
            )
        space = []
        for key, spec in dict(sweep.pop("space", {})).items():
            if (
                not isinstance(spec, dict)
                or len(spec) != 1
                or next(iter(spec)) not in DISTRIBUTIONS
            ):
                raise ConfigError(
                    f"sweep.space.{key!r} must be one of {{ loguniform = [lo, hi] }}, "
                    "{ uniform = [lo, hi] }, { choice = [...] }, { randint = [lo, hi] }"
                )
            kind, args = next(iter(spec.items()))
            if not isinstance(args, list):
                raise ConfigError(f"sweep.space.{key!r}: {kind} takes a list")
            space.append(Dimension(key, kind, tuple(args)))
        data = values.get("data")
        if isinstance(data, dict) and isinstance(data.get("path"), str):
            path = Path(data["path"])
            if not path.is_absolute():  # relative to the config file, as for derl train
                values["data"] = {**data, "path": str((Path(folder) / path).resolve())}
        try:
            return cls(
                base=values,
                space=tuple(space),
                source=source,
                **{k: v for k, v in sweep.items()},
                **{k: v for k, v in asha.items()},
            )
        except TypeError as exc:
            raise ConfigError(f"[sweep]: {exc}") from None
