"""derlhybrid — learning and transferring physical models through their derivatives.

Importing this package starts no Julia, loads no data, prints nothing and imports neither
torch nor h5py: every name below but the stencils is loaded on first use. The curated API
(see ``docs/python-api.md``):

* systems — :class:`ODESystem`, :class:`FieldSystem`, :func:`parameter`, :func:`register`,
  :func:`get_system`;
* data — :func:`generate` with :class:`Trajectories`, :class:`Points` or :class:`Grid`
  (their derivative estimators: :class:`CubicForward`, :class:`Stencil`,
  :class:`SavitzkyGolay`, :class:`SmoothingSpline`, :class:`TrendFilter`,
  :class:`Spectral`), or a flat :class:`GenerateRequest`; :func:`open_dataset`;
* learning — :class:`TrainConfig` and its parts (:class:`DataConfig`,
  :class:`ObjectiveConfig`, :class:`TrainingConfig`; the optimizers :class:`Adam`,
  :class:`LBFGS`, :class:`AdamThenLBFGS` with :class:`Schedule`), :func:`train`,
  :func:`load_model`, :func:`evaluate`, the loss terms (:class:`Term` and its subclasses,
  :data:`TERMS`, :data:`MODES`), :class:`Objective`, :func:`build_objective`,
  :class:`RunExtras` (additions beyond the config: distillation, EWC, initial weights);
* transfer — :func:`label`, :class:`DistillSource`, :class:`Stage`, :class:`Pipeline`,
  :func:`run_pipeline`;
* experiments — :func:`reproduce`.

>>> import numpy as np
>>> from derlhybrid import derivative
>>> x = np.linspace(0, 2 * np.pi, 64, endpoint=False)
>>> du = derivative(np.sin(x), x[1] - x[0], accuracy=6)   # ≈ cos(x)
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version
from typing import TYPE_CHECKING, Any

from .kernels import available_backends as available_backends
from .kernels import derivative as derivative
from .kernels import fornberg_weights as fornberg_weights

try:
    __version__ = _version("derlhybrid")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

#: public name → the module that defines it (imported on first access: PEP 562)
_LAZY: dict[str, str] = {
    **dict.fromkeys(
        (
            "SYSTEMS",
            "FieldSystem",
            "ODESystem",
            "System",
            "get_system",
            "parameter",
            "register",
        ),
        ".systems",
    ),
    **dict.fromkeys(("GenerateRequest", "generate"), ".data.generate"),
    **dict.fromkeys(
        (
            "CubicForward",
            "Grid",
            "Points",
            "SavitzkyGolay",
            "SmoothingSpline",
            "Spectral",
            "Stencil",
            "Trajectories",
            "TrendFilter",
        ),
        ".data.sampling",
    ),
    **dict.fromkeys(("DatasetError", "open_dataset", "provenance"), ".data"),
    **dict.fromkeys(
        (
            "LBFGS",
            "MODES",
            "PARAMETERS",
            "TERMS",
            "Adam",
            "AdamThenLBFGS",
            "BoundaryTerm",
            "ConfigError",
            "DataConfig",
            "HessianProjectionTerm",
            "HessianTerm",
            "InitialTerm",
            "JacobianTerm",
            "MLPConfig",
            "Objective",
            "ObjectiveConfig",
            "OutputTerm",
            "PeriodicTerm",
            "PointSet",
            "Problem",
            "ResidualTerm",
            "RunExtras",
            "Schedule",
            "StepContext",
            "Term",
            "TrainConfig",
            "TrainResult",
            "TrainingConfig",
            "build_objective",
            "evaluate",
            "input_derivatives",
            "load_model",
            "load_problem",
            "make_predict",
            "train",
        ),
        ".learn",
    ),
    **dict.fromkeys(
        (
            "DistillSource",
            "EWCConfig",
            "LabelConfig",
            "Pipeline",
            "Stage",
            "label",
            "read_labels",
            "run_pipeline",
            "select_points",
        ),
        ".transfer",
    ),
    **dict.fromkeys(("EXPERIMENTS", "load_spec", "reproduce"), ".experiments"),
}

if TYPE_CHECKING:  # what type checkers and editors see; at run time __getattr__ loads them
    from .data import DatasetError as DatasetError
    from .data import open_dataset as open_dataset
    from .data import provenance as provenance
    from .data.generate import GenerateRequest as GenerateRequest
    from .data.generate import generate as generate
    from .data.sampling import CubicForward as CubicForward
    from .data.sampling import Grid as Grid
    from .data.sampling import Points as Points
    from .data.sampling import SavitzkyGolay as SavitzkyGolay
    from .data.sampling import SmoothingSpline as SmoothingSpline
    from .data.sampling import Spectral as Spectral
    from .data.sampling import Stencil as Stencil
    from .data.sampling import Trajectories as Trajectories
    from .data.sampling import TrendFilter as TrendFilter
    from .experiments import EXPERIMENTS as EXPERIMENTS
    from .experiments import load_spec as load_spec
    from .experiments import reproduce as reproduce
    from .learn import LBFGS as LBFGS
    from .learn import MODES as MODES
    from .learn import PARAMETERS as PARAMETERS
    from .learn import TERMS as TERMS
    from .learn import Adam as Adam
    from .learn import AdamThenLBFGS as AdamThenLBFGS
    from .learn import BoundaryTerm as BoundaryTerm
    from .learn import ConfigError as ConfigError
    from .learn import DataConfig as DataConfig
    from .learn import HessianProjectionTerm as HessianProjectionTerm
    from .learn import HessianTerm as HessianTerm
    from .learn import InitialTerm as InitialTerm
    from .learn import JacobianTerm as JacobianTerm
    from .learn import MLPConfig as MLPConfig
    from .learn import Objective as Objective
    from .learn import ObjectiveConfig as ObjectiveConfig
    from .learn import OutputTerm as OutputTerm
    from .learn import PeriodicTerm as PeriodicTerm
    from .learn import PointSet as PointSet
    from .learn import Problem as Problem
    from .learn import ResidualTerm as ResidualTerm
    from .learn import RunExtras as RunExtras
    from .learn import Schedule as Schedule
    from .learn import StepContext as StepContext
    from .learn import Term as Term
    from .learn import TrainConfig as TrainConfig
    from .learn import TrainingConfig as TrainingConfig
    from .learn import TrainResult as TrainResult
    from .learn import build_objective as build_objective
    from .learn import evaluate as evaluate
    from .learn import input_derivatives as input_derivatives
    from .learn import load_model as load_model
    from .learn import load_problem as load_problem
    from .learn import make_predict as make_predict
    from .learn import train as train
    from .systems import SYSTEMS as SYSTEMS
    from .systems import FieldSystem as FieldSystem
    from .systems import ODESystem as ODESystem
    from .systems import System as System
    from .systems import get_system as get_system
    from .systems import parameter as parameter
    from .systems import register as register
    from .transfer import DistillSource as DistillSource
    from .transfer import EWCConfig as EWCConfig
    from .transfer import LabelConfig as LabelConfig
    from .transfer import Pipeline as Pipeline
    from .transfer import Stage as Stage
    from .transfer import label as label
    from .transfer import read_labels as read_labels
    from .transfer import run_pipeline as run_pipeline
    from .transfer import select_points as select_points


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'derlhybrid' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


# a literal list (static checkers read it): the names above and those of _LAZY in sorted()
# order, as before (tests/test_python_api.py), not ruff's isort-style order
__all__ = [  # noqa: RUF022
    "Adam",
    "AdamThenLBFGS",
    "BoundaryTerm",
    "ConfigError",
    "CubicForward",
    "DataConfig",
    "DatasetError",
    "DistillSource",
    "EWCConfig",
    "EXPERIMENTS",
    "FieldSystem",
    "GenerateRequest",
    "Grid",
    "HessianProjectionTerm",
    "HessianTerm",
    "InitialTerm",
    "JacobianTerm",
    "LBFGS",
    "LabelConfig",
    "MLPConfig",
    "MODES",
    "ODESystem",
    "Objective",
    "ObjectiveConfig",
    "OutputTerm",
    "PARAMETERS",
    "PeriodicTerm",
    "Pipeline",
    "PointSet",
    "Points",
    "Problem",
    "ResidualTerm",
    "RunExtras",
    "SYSTEMS",
    "SavitzkyGolay",
    "Schedule",
    "SmoothingSpline",
    "Spectral",
    "Stage",
    "Stencil",
    "StepContext",
    "System",
    "TERMS",
    "Term",
    "TrainConfig",
    "TrainResult",
    "TrainingConfig",
    "Trajectories",
    "TrendFilter",
    "__version__",
    "available_backends",
    "build_objective",
    "derivative",
    "evaluate",
    "fornberg_weights",
    "generate",
    "get_system",
    "input_derivatives",
    "label",
    "load_model",
    "load_problem",
    "load_spec",
    "make_predict",
    "open_dataset",
    "parameter",
    "provenance",
    "read_labels",
    "register",
    "reproduce",
    "run_pipeline",
    "select_points",
    "train",
]
