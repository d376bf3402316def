"""Which generator writes a system's data: :func:`generate_for` dispatches on the kind of
system and the ``data_layout`` it declares, never on its name."""

from __future__ import annotations

from pathlib import Path

from ..systems import FieldSystem, ODESystem
from .grid import generate_grid
from .points import PointDesign, generate_ball, generate_points
from .request import GenerateRequest
from .trajectories import generate_trajectories


def generate_for(
    req: GenerateRequest,
    system,
    *,
    progress: bool = True,
    design: PointDesign | None = None,
    finalize=None,
) -> Path:
    """Dispatch on the kind of system (what :func:`~derlhybrid.data.generate.generate` and
    the presets call). ``finalize(writer)`` adds datasets before the file is completed."""
    if isinstance(system, ODESystem):
        return generate_trajectories(req, system, progress, finalize)
    layout = getattr(system, "data_layout", None)  # declared by the system, not its name
    if isinstance(system, FieldSystem) and layout == "grid":
        return generate_grid(req, system, progress, finalize)
    if isinstance(system, FieldSystem) and layout == "points" and system.has_exact:
        return generate_points(req, system, design, finalize)
    if isinstance(system, FieldSystem) and layout == "ball":
        return generate_ball(req, system)
    raise ValueError(f"generation of {req.system!r} data is not available yet")
