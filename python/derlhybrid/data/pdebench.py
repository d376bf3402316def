"""PDEBench's 1-D files (``derl import --format pdebench``) and their systems.

PDEBench (Takamoto et al., 2022) writes its 1-D advection, Burgers and diffusion–reaction
data (``Data_Merge.py`` of its generator) as one HDF5 file with

* ``tensor`` (n_samples, n_t, n_x), float32: the field u of every sample;
* ``x-coordinate`` (n_x,): the cell centres of a periodic interval (``xe[:-1] + dx/2``);
* ``t-coordinate`` (n_t + 1,): ``arange(n_t + 1) · dt_save`` — one entry more than the
  frames (the generator's ``it_tot + 1``); readers drop the last one;
* root attributes ``beta`` (advection), ``Nu`` (Burgers), ``Nu`` and ``rho``
  (diffusion–reaction).

:func:`import_pdebench` turns one sample into a ``grid`` dataset file of ours, with
derivatives u_t, u_x estimated by :mod:`derlhybrid.data.estimators`. The three systems
below carry the PDE residual (PINN terms) and the periodic interval the importer reads
from the coordinates; they are registered here rather than in ``derlhybrid.systems``
because the Julia kernels mirror that package's systems, and these have no Julia solver.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..systems.base import FieldSystem, parameter
from ..systems.registry import register


@dataclass(frozen=True)
class _Periodic1D(FieldSystem):
    kind = "pde"
    inputs = ("t", "x")
    outputs = ("u",)
    periodic_inputs = ("x",)

    x_min: float = parameter(0.0, doc="left end of the periodic interval")
    x_max: float = parameter(1.0, doc="right end of the periodic interval")
    t_end: float = parameter(2.0, low=0.0, low_open=True, doc="final time T")

    def validate(self) -> None:
        if not self.x_max > self.x_min:
            raise ValueError(f"{self.name}: x_max ({self.x_max}) must exceed x_min ({self.x_min})")

    def domain(self):
        return {"t": (0.0, self.t_end), "x": (self.x_min, self.x_max)}


@register
@dataclass(frozen=True)
class Advection1D(_Periodic1D):
    """u_t + β u_x = 0, periodic (PDEBench ``1D_Advection_Sols_beta*.hdf5``)."""

    name = "advection"
    description = "advection u_t + β u_x = 0, periodic (PDEBench 1-D)"
    beta: float = parameter(1.0, doc="advection speed β")
    residual_needs = (("t",), ("x",))

    def pde_residual(self, d, X, aux, xp=np):
        return d("t") + self.beta * d("x")


@register
@dataclass(frozen=True)
class Burgers1D(_Periodic1D):
    """u_t + (u²/2)_x = (ν/π) u_xx, periodic on [−1, 1] (PDEBench ``1D_Burgers_Sols_Nu*``)."""

    name = "burgers"
    description = "Burgers u_t + u u_x = (ν/π) u_xx, periodic (PDEBench 1-D)"
    x_min: float = parameter(-1.0, doc="left end of the periodic interval")
    nu: float = parameter(0.01, low=0.0, doc="viscosity ν (the diffusion is ν/π)")
    residual_needs = (("t",), ("x",), ("x", "x"))

    def pde_residual(self, d, X, aux, xp=np):
        return d("t") + d() * d("x") - self.nu / math.pi * d("x", "x")


@register
@dataclass(frozen=True)
class DiffusionReaction1D(_Periodic1D):
    """u_t = ν u_xx + ρ u (1 − u), periodic (PDEBench ``ReacDiff_Nu*_Rho*``)."""

    name = "diffusion-reaction"
    description = "diffusion-reaction u_t = ν u_xx + ρ u(1 − u), periodic (PDEBench 1-D)"
    t_end: float = parameter(1.0, low=0.0, low_open=True, doc="final time T")
    nu: float = parameter(0.5, low=0.0, doc="diffusion coefficient ν")
    rho: float = parameter(1.0, doc="reaction rate ρ")
    residual_needs = (("t",), ("x", "x"))

    def pde_residual(self, d, X, aux, xp=np):
        u = d()
        return d("t") - self.nu * d("x", "x") - self.rho * u * (1 - u)
