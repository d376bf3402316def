"""Transfer: derivative distillation and multi-stage incremental training (paper.md §1
"Distillation", §8–10).

* :func:`label` — a trained network labels points with û, ∇û, Hû into a distillation
  dataset (HDF5, the project's dataset contract); :func:`read_labels` reads it back.
* :class:`DistillSource` / :func:`distillation` — the loss terms of
  :mod:`derlhybrid.learn.losses` with the teacher's labels as targets, on the old points
  (modes :data:`DISTILL_MODES`: output, derivative, sobolev, hessian, der+hesl, sob+hesl,
  pinn replay, forgetting).
* :func:`task_fisher`, :class:`EWCTerm` — elastic weight consolidation.
* :class:`Pipeline` of :class:`Stage`\\ s (:mod:`.stage_config`), :func:`select_points`
  (:mod:`.selection`), :func:`run_pipeline` (:mod:`.stage_runner`) — incremental training
  as data (``derl stages CONFIG``), resumable stage by stage; :mod:`.stages` re-exports
  all three.

>>> from derlhybrid.transfer import Pipeline, run_pipeline
>>> pipe = Pipeline.from_toml("allen-transfer.toml")     # doctest: +SKIP
>>> results = run_pipeline(pipe, "runs/allen-transfer")  # doctest: +SKIP

Importing this package imports torch but reads no data and starts no Julia.
"""

from __future__ import annotations

from .distill import DISTILL_MODES as DISTILL_MODES
from .distill import Distillation as Distillation
from .distill import DistillationTerm as DistillationTerm
from .distill import DistillSource as DistillSource
from .distill import distillation as distillation
from .ewc import EWCTerm as EWCTerm
from .ewc import fisher_diagonal as fisher_diagonal
from .ewc import parameter_vector as parameter_vector
from .ewc import system_loss as system_loss
from .ewc import task_fisher as task_fisher
from .labels import Labels as Labels
from .labels import label as label
from .labels import read_labels as read_labels
from .selection import select_points as select_points
from .selection import stage_problem as stage_problem
from .stage_config import EWCConfig as EWCConfig
from .stage_config import LabelConfig as LabelConfig
from .stage_config import Pipeline as Pipeline
from .stage_config import Stage as Stage
from .stage_runner import StageResult as StageResult
from .stage_runner import run_pipeline as run_pipeline

__all__ = [
    "DISTILL_MODES",
    "DistillSource",
    "Distillation",
    "DistillationTerm",
    "EWCConfig",
    "EWCTerm",
    "LabelConfig",
    "Labels",
    "Pipeline",
    "Stage",
    "StageResult",
    "distillation",
    "fisher_diagonal",
    "label",
    "parameter_vector",
    "read_labels",
    "run_pipeline",
    "select_points",
    "stage_problem",
    "system_loss",
    "task_fisher",
]
