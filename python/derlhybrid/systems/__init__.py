"""The physics: small declarative systems that carry their own ground truth.

>>> from derlhybrid.systems import get_system
>>> sys = get_system("pendulum", {"b": "0"})    # the conservative pendulum
>>> sys.params()
{'b': 0.0, 'g': 9.81, 'l': 10.0, 'm': 1.0}

See :mod:`derlhybrid.systems.base` for how to define and register your own.
"""

from __future__ import annotations

from .allen_cahn import AllenCahn, AllenCahnExp, AllenCahnMulti
from .base import FieldSystem, GridPlan, ODESystem, ParameterSpec, System, parameter
from .flows import EulerBall, Kovasznay
from .pendulum import Pendulum
from .registry import SYSTEMS, get_system, parse_params, register
from .transport import Continuity, KdV

for _cls in (
    Pendulum,
    Continuity,
    KdV,
    AllenCahn,
    AllenCahnExp,
    AllenCahnMulti,
    Kovasznay,
    EulerBall,
):
    register(_cls)

__all__ = [
    "SYSTEMS",
    "AllenCahn",
    "AllenCahnExp",
    "AllenCahnMulti",
    "Continuity",
    "EulerBall",
    "FieldSystem",
    "GridPlan",
    "KdV",
    "Kovasznay",
    "ODESystem",
    "ParameterSpec",
    "Pendulum",
    "System",
    "get_system",
    "parameter",
    "parse_params",
    "register",
]
