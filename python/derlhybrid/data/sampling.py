"""What data a generation samples, as typed, frozen objects checked on construction.

* :class:`Trajectories` — an ensemble of ODE trajectories (systems of kind ``ode``);
* :class:`Points` — points of a closed-form field (Allen–Cahn, Kovasznay, …) or the
  collocation sets of the Euler ball;
* :class:`Grid` — a PDE solved on a space–time grid (KdV, continuity).

Empirical (finite-difference or estimated) derivatives stored beside the exact ones:

* :class:`~derlhybrid.data.estimators.Stencil` ``(scheme, accuracy)`` — forward, central or
  backward differences of the given accuracy on the saved samples (their step is the
  sampling step: ``t_end / (n_times - 1)`` along time, the grid step in space);
* :class:`CubicForward` ``(h, n_samples)`` — the paper's pendulum ``emp`` data: a cubic
  interpolant of each trajectory and forward differences of step ``h`` at random times;
* the estimators of :mod:`derlhybrid.data.estimators` (:class:`SavitzkyGolay`,
  :class:`SmoothingSpline`, :class:`TrendFilter`, :class:`Spectral`) — derivatives of
  noisy samples (``noise`` = σ of the measurement noise).

``GenerateRequest.of(system, data, out=...)`` turns them into the flat
:class:`~derlhybrid.data.request.GenerateRequest` that is recorded in the file — the same
request, key for key, as ``derl generate`` builds from the same choices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._typecheck import check_built
from .checks import check_at_least, check_noise, check_positive, check_seed, check_split
from .estimators import (
    Estimator,
    SavitzkyGolay,
    SmoothingSpline,
    Spectral,
    Stencil,
    TrendFilter,
)

__all__ = [
    "CubicForward",
    "Grid",
    "Points",
    "SavitzkyGolay",
    "SmoothingSpline",
    "Spectral",
    "Stencil",
    "Trajectories",
    "TrendFilter",
    "data_fields",
]


@dataclass(frozen=True)
class CubicForward:
    """The paper's empirical derivatives of trajectories (paper.md §3.2): per trajectory a
    cubic interpolant of the saved states, ``n_samples`` random times in ``[0, t_end − h)``
    (None: ``n_times − 1``) and the forward difference ``(y(τ + h) − y(τ)) / h``."""

    h: float = 1e-3
    n_samples: int | None = None

    def __post_init__(self):
        _check(self, "CubicForward")
        check_positive("CubicForward.h", self.h)
        check_at_least("CubicForward.n_samples", self.n_samples, 1)


#: what ``empirical`` of each kind of data takes
_EMPIRICAL_OF_TRAJECTORIES = (Stencil, CubicForward, Estimator)
_EMPIRICAL_OF_POINTS = (Stencil, Estimator)  # the measured grid variant of a preset
_EMPIRICAL_OF_GRID = (Stencil,)


def _check(obj, where: str) -> None:
    """Types of every field but ``empirical`` (checked by :func:`_check_empirical`)."""
    check_built(obj, where, skip=("empirical",))


def _check_empirical(where: str, value, allowed: tuple[type, ...]) -> None:
    if value is None or isinstance(value, allowed):
        return
    names = {
        Stencil: "a Stencil",
        CubicForward: "a CubicForward",
        Estimator: "an estimator (SavitzkyGolay, SmoothingSpline, TrendFilter, Spectral)",
    }
    wanted = ", ".join(names[c] for c in allowed)
    raise ValueError(f"{where}.empirical must be {wanted} or None, got {value!r}")


def _empirical_fields(empirical) -> dict[str, Any]:
    """The request keys of an empirical-derivative object (``empirical``, ``fd_step``,
    ``n_empirical_samples``)."""
    if empirical is None:
        return {}
    if isinstance(empirical, CubicForward):
        return {
            "empirical": "cubic-forward",
            "fd_step": empirical.h,
            "n_empirical_samples": empirical.n_samples,
        }
    return {"empirical": empirical.option()}


@dataclass(frozen=True)
class Trajectories:
    """An ensemble of ``n`` trajectories of an ODE system (None: 1000) saved at ``n_times``
    equally spaced times on ``[0, t_end]`` (None: 1001 times, the system's own ``t_end``,
    else 10), from initial states drawn with ``seed`` (None: 0, or the preset's seed);
    solved to ``rtol``/``atol``; split into train/val/test fractions of trajectories.
    ``chunk``: trajectories per solve chunk (None: about 32 MB of states); ``allow_failures``
    keeps failed trajectories as NaN rows with their status instead of stopping."""

    n: int | None = None
    t_end: float | None = None
    n_times: int | None = None
    seed: int | None = None
    rtol: float = 1e-10
    atol: float = 1e-10
    empirical: Stencil | CubicForward | Estimator | None = None
    noise: float = 0.0
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)
    chunk: int | None = None
    allow_failures: bool = False

    def __post_init__(self):
        w = "Trajectories"
        _check(self, w)
        _check_empirical(w, self.empirical, _EMPIRICAL_OF_TRAJECTORIES)
        if isinstance(self.split, list):
            object.__setattr__(self, "split", tuple(self.split))
        check_at_least(f"{w}.n", self.n, 1)
        if self.t_end is not None:
            check_positive(f"{w}.t_end", self.t_end)
        check_at_least(f"{w}.n_times", self.n_times, 2)
        check_seed(f"{w}.seed", self.seed)
        check_positive(f"{w}.rtol", self.rtol)
        check_positive(f"{w}.atol", self.atol)
        check_noise(f"{w}.noise", self.noise)
        if self.noise and not isinstance(self.empirical, Stencil | Estimator):
            raise ValueError(
                f"{w}.noise needs an estimator of the noisy samples as empirical (e.g. "
                "SavitzkyGolay() or Stencil('forward', 1)), not "
                f"{'None' if self.empirical is None else 'CubicForward'}"
            )
        check_split(f"{w}.split", self.split)
        check_at_least(f"{w}.chunk", self.chunk, 1)

    def request_fields(self) -> dict[str, Any]:
        """The keys of :class:`~derlhybrid.data.request.GenerateRequest` this sets."""
        return {
            "n_trajectories": self.n,
            "t_end": self.t_end,
            "n_times": self.n_times,
            "seed": self.seed,
            "rtol": self.rtol,
            "atol": self.atol,
            "noise": self.noise,
            "split": self.split,
            "chunk_trajectories": self.chunk,
            "allow_failures": self.allow_failures,
            **_empirical_fields(self.empirical),
        }


@dataclass(frozen=True)
class Points:
    """``n`` points of a field system with a closed form, uniform in its coordinate box
    (None: 1000; the Euler ball: 100 000 per set), drawn with ``seed`` (None: 0, or the
    preset's seed); a parametric family samples ``n_parameter_sets`` parameter sets (None:
    10) at the same points; ``n_boundary`` boundary points per edge (None: 101); split
    into train/val/test fractions of points (of parameter sets for a family).
    ``noise``/``empirical``: the measured variant of a preset with a grid variant (noisy
    samples of the grid and their gradient by a stencil or an estimator)."""

    n: int | None = None
    n_parameter_sets: int | None = None
    n_boundary: int | None = None
    seed: int | None = None
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)
    empirical: Stencil | Estimator | None = None
    noise: float = 0.0

    def __post_init__(self):
        w = "Points"
        _check(self, w)
        _check_empirical(w, self.empirical, _EMPIRICAL_OF_POINTS)
        if isinstance(self.split, list):
            object.__setattr__(self, "split", tuple(self.split))
        check_at_least(f"{w}.n", self.n, 1)
        check_at_least(f"{w}.n_parameter_sets", self.n_parameter_sets, 1)
        check_at_least(f"{w}.n_boundary", self.n_boundary, 1)
        check_seed(f"{w}.seed", self.seed)
        check_noise(f"{w}.noise", self.noise)
        check_split(f"{w}.split", self.split)

    def request_fields(self) -> dict[str, Any]:
        return {
            "n_points": self.n,
            "n_parameter_sets": self.n_parameter_sets,
            "n_boundary": self.n_boundary,
            "seed": self.seed,
            "split": self.split,
            "noise": self.noise,
            **_empirical_fields(self.empirical),
        }


@dataclass(frozen=True)
class Grid:
    """A PDE solved on a space–time grid: ``n_points`` grid points per spatial axis and
    ``n_times`` saved frames (None: the system's own, e.g. KdV 400 periodic points × 201
    frames, continuity 301² × 1001), by the system's solver ``method`` (None: its default;
    continuity ``mol`` | ``upwind-fv``, KdV ``etdrk4``) to ``rtol``; ``seed`` (None: 0)
    for what a preset samples from the solution; ``empirical``: a :class:`Stencil` along
    every grid axis."""

    n_points: int | None = None
    n_times: int | None = None
    method: str | None = None
    rtol: float = 1e-10
    seed: int | None = None
    empirical: Stencil | None = None

    def __post_init__(self):
        w = "Grid"
        _check(self, w)
        _check_empirical(w, self.empirical, _EMPIRICAL_OF_GRID)
        check_at_least(f"{w}.n_points", self.n_points, 1)
        check_at_least(f"{w}.n_times", self.n_times, 2)
        check_positive(f"{w}.rtol", self.rtol)
        check_seed(f"{w}.seed", self.seed)

    def request_fields(self) -> dict[str, Any]:
        return {
            "n_points": self.n_points,
            "n_times": self.n_times,
            "method": self.method,
            "rtol": self.rtol,
            "seed": self.seed,
            **_empirical_fields(self.empirical),
        }


def data_kind(system_cls) -> type[Trajectories] | type[Points] | type[Grid]:
    """Which object describes the data of a system class (by its kind and the
    ``data_layout`` it declares, never by its name)."""
    from ..systems import ODESystem

    if isinstance(system_cls, type) and issubclass(system_cls, ODESystem):
        return Trajectories
    if getattr(system_cls, "data_layout", None) == "grid":
        return Grid
    return Points


def data_fields(system: str, data) -> dict[str, Any]:
    """The request keys of ``data`` for ``system`` (a one-line error when ``data`` is not
    the kind of data that system generates, e.g. ``Points`` for the pendulum)."""
    from ..systems import SYSTEMS

    if data is None:
        return {}
    if not isinstance(data, Trajectories | Points | Grid):
        raise ValueError(
            f"the data of a request must be Trajectories, Points or Grid, got {data!r}"
        )
    cls = SYSTEMS.get(system)
    if cls is not None:  # an unknown name is refused later, with the list of systems
        want = data_kind(cls)
        if not isinstance(data, want):
            raise ValueError(
                f"{system} data are described by {want.__name__}(...), "
                f"not {type(data).__name__}(...)"
            )
    return data.request_fields()
