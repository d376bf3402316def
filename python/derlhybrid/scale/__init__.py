"""Scale-out on Ray: sharded dataset generation and hyper-parameter sweeps.

Ray is an optional extra (``pip install "derlhybrid[ray]"``); importing this package imports
no Ray (the functions do, and say how to install it when it is missing). Nothing of the
single-process paths depends on it.

* :func:`generate_sharded` — ``derl generate ... --engine ray``: each task writes one
  deterministic shard file, the driver stitches them with HDF5 virtual datasets; the result
  equals the single-process file bit for bit (``docs/scale-out.md``).
* :func:`sweep` — ``derl sweep CONFIG``: Ray Tune search (Optuna or HyperOpt with ASHA) over
  loss weights and learning rate; writes the best configuration as a ``derl train`` config.
"""

from __future__ import annotations

from ._ray import RayUnavailable as RayUnavailable
from .ray_generate import RayEngine as RayEngine
from .ray_generate import generate_shard as generate_shard
from .ray_generate import generate_sharded as generate_sharded
from .sweep import sweep as sweep
from .sweep_config import SweepConfig as SweepConfig

__all__ = [
    "RayEngine",
    "RayUnavailable",
    "SweepConfig",
    "generate_shard",
    "generate_sharded",
    "sweep",
]
