"""Multi-stage (incremental) training as data (paper.md §10), in three modules re-exported
here: :mod:`.stage_config` (:class:`Stage`, :class:`Pipeline` and their validation),
:mod:`.selection` (:func:`select_points`, :func:`stage_problem`) and :mod:`.stage_runner`
(:func:`run_pipeline`: stage by stage, checkpoints, resume)."""

from __future__ import annotations

from .selection import INTERIOR_SETS as INTERIOR_SETS
from .selection import select_points as select_points
from .selection import stage_problem as stage_problem
from .stage_config import DISTILL_KEYS as DISTILL_KEYS
from .stage_config import INITS as INITS
from .stage_config import SELECTION_KEYS as SELECTION_KEYS
from .stage_config import STAGE_KEYS as STAGE_KEYS
from .stage_config import Box as Box
from .stage_config import EWCConfig as EWCConfig
from .stage_config import LabelConfig as LabelConfig
from .stage_config import Pipeline as Pipeline
from .stage_config import Stage as Stage
from .stage_runner import LABELS as LABELS
from .stage_runner import STAGE_JSON as STAGE_JSON
from .stage_runner import StageResult as StageResult
from .stage_runner import run_pipeline as run_pipeline

__all__ = [
    "INITS",
    "EWCConfig",
    "LabelConfig",
    "Pipeline",
    "Stage",
    "StageResult",
    "run_pipeline",
    "select_points",
    "stage_problem",
]
