"""Learning through derivatives: models, the input-derivative engine, loss terms, trainer,
metrics (paper.md §1, §3–8).

>>> from derlhybrid.learn import TrainConfig, train
>>> cfg = TrainConfig.from_toml("pendulum.toml")      # doctest: +SKIP
>>> cfg = TrainConfig(                                # the same from objects
...     data=DataConfig(path="pendulum.h5"),
...     objective=Objective([(JacobianTerm(), 71.17), (InitialTerm(), 2.29)]),
...     train=TrainingConfig(epochs=200, optimizer=Adam(lr=5e-4)),
... )                                                 # doctest: +SKIP
>>> result = train(cfg, "runs/pendulum")              # doctest: +SKIP

Importing this package imports torch but reads no data and starts no Julia.
"""

from __future__ import annotations

from .checkpoint import CheckpointError as CheckpointError
from .checkpoint import load_checkpoint as load_checkpoint
from .config import ConfigError as ConfigError
from .config import DataConfig as DataConfig
from .config import ObjectiveConfig as ObjectiveConfig
from .config import TrainConfig as TrainConfig
from .config import TrainingConfig as TrainingConfig
from .derivatives import Derivatives as Derivatives
from .derivatives import input_derivatives as input_derivatives
from .evaluate import evaluate as evaluate
from .evaluate import make_predict as make_predict
from .hnn import HNN as HNN
from .hnn import hnn_field as hnn_field
from .hnn import train_hnn as train_hnn
from .losses import MODES as MODES
from .losses import PARAMETERS as PARAMETERS
from .losses import TERMS as TERMS
from .losses import BoundaryTerm as BoundaryTerm
from .losses import HessianProjectionTerm as HessianProjectionTerm
from .losses import HessianTerm as HessianTerm
from .losses import InitialTerm as InitialTerm
from .losses import JacobianTerm as JacobianTerm
from .losses import Objective as Objective
from .losses import OutputTerm as OutputTerm
from .losses import PeriodicTerm as PeriodicTerm
from .losses import ResidualTerm as ResidualTerm
from .losses import StepContext as StepContext
from .losses import Term as Term
from .losses import build_objective as build_objective
from .models import MLP as MLP
from .models import MLPConfig as MLPConfig
from .ncl import BallNCL as BallNCL
from .ncl import ncl_derivatives as ncl_derivatives
from .optimizers import LBFGS as LBFGS
from .optimizers import Adam as Adam
from .optimizers import AdamThenLBFGS as AdamThenLBFGS
from .optimizers import Schedule as Schedule
from .problems import PointSet as PointSet
from .problems import Problem as Problem
from .problems import load_problem as load_problem
from .trainer import TrainingDiverged as TrainingDiverged
from .trainer import TrainResult as TrainResult
from .trainer import load_model as load_model
from .trainer import train as train
from .training_run import RunExtras as RunExtras

__all__ = [
    "HNN",
    "LBFGS",
    "MLP",
    "MODES",
    "PARAMETERS",
    "TERMS",
    "Adam",
    "AdamThenLBFGS",
    "BallNCL",
    "BoundaryTerm",
    "CheckpointError",
    "ConfigError",
    "DataConfig",
    "Derivatives",
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
    "TrainingDiverged",
    "build_objective",
    "evaluate",
    "hnn_field",
    "input_derivatives",
    "load_checkpoint",
    "load_model",
    "load_problem",
    "make_predict",
    "ncl_derivatives",
    "train",
    "train_hnn",
]
