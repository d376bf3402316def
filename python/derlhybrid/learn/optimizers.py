"""The optimizers of a training run, as objects: :class:`Adam` (with its learning-rate
:class:`Schedule`), :class:`LBFGS` and :class:`AdamThenLBFGS`.

They are what ``TrainingConfig(optimizer=...)`` takes from Python::

    TrainingConfig(epochs=200, optimizer=Adam(lr=5e-4, schedule=Schedule(kind="cosine")))
    TrainingConfig(epochs=100, optimizer=LBFGS(line_search="strong_wolfe"))
    TrainingConfig(epochs=300, optimizer=AdamThenLBFGS(adam_epochs=200, adam=Adam(lr=1e-3)))

A config file says the same with the keys of ``[train]`` (``optimizer = "adam"``, ``lr``,
``adam_epochs``, ``[train.schedule]``, ``[train.lbfgs]``); both build the same
:class:`~derlhybrid.learn.config.TrainingConfig`. Every object checks its values when it is
built (a wrong type or an impossible value: one-line ``ConfigError`` naming the key).

A schedule is one class with a ``kind`` (not one class per kind): its fields are the
``[train.schedule]`` table as it is recorded in every checkpoint and run hash.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from .._typecheck import check_built
from .errors import ConfigError

__all__ = ["LBFGS", "OPTIMIZERS", "SCHEDULES", "Adam", "AdamThenLBFGS", "Schedule"]

SCHEDULES = ("constant", "step", "exponential", "cosine")


def _error(message: str) -> Exception:
    return ConfigError(message)


def _check_types(obj, where: str) -> None:
    check_built(obj, where, ConfigError)


@dataclass(frozen=True)
class Schedule:
    """Learning-rate schedule of the Adam phase, stepped once per epoch: ``"constant"``,
    ``"step"`` (× ``gamma`` every ``step_size`` epochs), ``"exponential"`` (× ``gamma``
    every epoch) or ``"cosine"`` (to ``min_lr`` over the Adam epochs)."""

    kind: str = "constant"
    step_size: int = 1
    gamma: float = 1.0
    min_lr: float = 0.0

    def __post_init__(self):
        _check_types(self, "train.schedule")
        if self.kind not in SCHEDULES:
            raise _error(
                f"train.schedule.kind: unknown schedule {self.kind!r}; choose one of "
                f"{', '.join(SCHEDULES)}"
            )
        if self.step_size < 1 or not 0 < self.gamma <= 1:
            raise _error("train.schedule: step_size ≥ 1 and 0 < gamma ≤ 1 required")


@dataclass(frozen=True)
class LBFGS:
    """torch.optim.LBFGS settings; defaults are the paper's (Allen–Cahn seeded runs)."""

    name: ClassVar[str] = "lbfgs"
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
        _check_types(self, "train.lbfgs")
        if self.line_search not in (None, "strong_wolfe"):
            raise _error("train.lbfgs.line_search must be absent or 'strong_wolfe'")
        if self.batch not in ("mini", "full"):
            raise _error("train.lbfgs.batch must be 'mini' or 'full'")
        if not self.lr > 0 or self.max_iter < 1 or self.history_size < 1:
            raise _error("train.lbfgs: lr > 0, max_iter ≥ 1 and history_size ≥ 1 required")


@dataclass(frozen=True)
class Adam:
    """Adam (``torch.optim.Adam``, fused, default betas) at learning rate ``lr``, under
    ``schedule``."""

    name: ClassVar[str] = "adam"
    lr: float = 1e-3
    schedule: Schedule = field(default_factory=Schedule)

    def __post_init__(self):
        _check_types(self, "train.optimizer")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise _error(f"train.optimizer.lr must be a positive number, got {self.lr!r}")
        if not isinstance(self.schedule, Schedule):
            raise _error(
                f"train.optimizer.schedule must be a Schedule(kind=…), got {self.schedule!r}"
            )


@dataclass(frozen=True)
class AdamThenLBFGS:
    """Adam for the first ``adam_epochs`` epochs (its schedule spans those), L-BFGS for the
    rest of ``train.epochs``."""

    name: ClassVar[str] = "adam+lbfgs"
    adam_epochs: int
    adam: Adam = field(default_factory=Adam)
    lbfgs: LBFGS = field(default_factory=LBFGS)

    def __post_init__(self):
        _check_types(self, "train.optimizer")
        if self.adam_epochs < 0:
            raise _error(f"train.optimizer.adam_epochs must be ≥ 0, got {self.adam_epochs}")
        for name, cls in (("adam", Adam), ("lbfgs", LBFGS)):
            if not isinstance(getattr(self, name), cls):
                raise _error(
                    f"train.optimizer.{name} must be {cls.__name__}(…), got {getattr(self, name)!r}"
                )


#: the optimizers by the name ``[train] optimizer`` gives them
OPTIMIZERS: dict[str, type[Adam | LBFGS | AdamThenLBFGS]] = {
    cls.name: cls for cls in (Adam, LBFGS, AdamThenLBFGS)
}
