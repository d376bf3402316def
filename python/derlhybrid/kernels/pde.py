"""Ground-truth PDE solvers of the python backend, under one name: KdV and the 2-D
continuity equation (``paper.md`` §8.1 and §6). NumPy, SciPy and Numba only.

This module re-exports the public names of the modules that own them:

* :mod:`.spectral`: :func:`periodic_grid`, :func:`with_periodic_endpoint`,
  :func:`spectral_derivatives` (and the Numba real FFT behind the KdV solver);
* :mod:`.kdv`: :func:`solve_kdv` (Fourier pseudo-spectral, ETDRK4), :func:`kdv_soliton`,
  :data:`KDV_NU`;
* :mod:`.continuity`: :func:`solve_continuity` (method of lines or upwind finite volumes),
  :func:`four_gaussians`, :data:`PAPER_CENTRES`, :func:`rigid_rotation`,
  :func:`rotated_density`.

Methods, accuracy and measured numbers: ``docs/pde.md``.
"""

from __future__ import annotations

from .continuity import (
    PAPER_CENTRES,
    four_gaussians,
    rigid_rotation,
    rotated_density,
    solve_continuity,
)
from .kdv import KDV_NU, kdv_soliton, solve_kdv
from .spectral import periodic_grid, spectral_derivatives, with_periodic_endpoint

__all__ = [
    "KDV_NU",
    "PAPER_CENTRES",
    "four_gaussians",
    "kdv_soliton",
    "periodic_grid",
    "rigid_rotation",
    "rotated_density",
    "solve_continuity",
    "solve_kdv",
    "spectral_derivatives",
    "with_periodic_endpoint",
]
