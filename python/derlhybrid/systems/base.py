"""What every system is: declared parameters (validated at construction) + pure functions.

A system is a frozen dataclass whose fields are its physical parameters. Each field is
declared with :func:`parameter` (default, bounds, unit, one-line doc); construction
validates every value and raises one clear ``ValueError``. Subclasses add pure functions of
the parameters: vector field or PDE residual, samplers, and the exact solution and its
derivatives where known (style rule 4: a problem carries its own ground truth).

Defining your own system::

    from dataclasses import dataclass
    import numba, numpy as np
    from derlhybrid.systems import ODESystem, parameter, register

    @numba.njit(cache=True)
    def _decay_rhs(t, y, p, dy):
        dy[0] = -p[0] * y[0]

    @register
    @dataclass(frozen=True)
    class Decay(ODESystem):
        name = "decay"
        state_names = ("y",)
        k: float = parameter(1.0, low=0.0, doc="decay rate", unit="1/s")
        rhs_kernel = staticmethod(_decay_rhs)

        def sample_initial_states(self, rng, n):
            return rng.uniform(0.5, 1.5, (n, 1))

After ``register`` the system is available to ``derl generate decay --param k=2``. Its
metrics (``derl evaluate``) follow the class variable ``metrics_kind``: ``"flow-map"`` for
every ODE system unless it declares another kind (:mod:`derlhybrid.learn.evaluate_options`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np


def parameter(
    default: float,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
    doc: str = "",
    unit: str = "",
):
    """Declare a system parameter: a dataclass field with bounds and documentation."""
    meta = {
        "low": low,
        "high": high,
        "low_open": low_open,
        "high_open": high_open,
        "doc": doc,
        "unit": unit,
    }
    return dataclasses.field(default=default, metadata={"parameter": meta})


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    default: float
    low: float
    high: float
    low_open: bool
    high_open: bool
    doc: str
    unit: str

    def describe_range(self) -> str:
        lo = ("(" if self.low_open or math.isinf(self.low) else "[") + f"{self.low:g}"
        hi = f"{self.high:g}" + (")" if self.high_open or math.isinf(self.high) else "]")
        return f"{lo}, {hi}"

    def check(self, system: str, value) -> float:
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"{system}: parameter {self.name} must be a number, got {value!r}"
            ) from None
        ok = math.isfinite(v) and (v > self.low if self.low_open else v >= self.low)
        ok = ok and (v < self.high if self.high_open else v <= self.high)
        if not ok:
            raise ValueError(
                f"{system}: parameter {self.name}={value!r} is outside its range "
                f"{self.describe_range()} ({self.doc})"
            )
        return v


@dataclass(frozen=True)
class System:
    """Base of every system. Subclasses are frozen dataclasses of ``parameter`` fields."""

    name: ClassVar[str] = "system"
    kind: ClassVar[str] = "abstract"  # "ode" | "pde" | "steady"
    description: ClassVar[str] = ""
    #: the kind of experiment metrics its data support (``derl evaluate`` and ``derl
    #: reproduce`` pick the metrics and their options by it, not by the name):
    #: ``"pendulum"``, ``"flow-map"`` (the default of ODE systems), ``"allen-cahn"``,
    #: ``"kovasznay"``, ``"continuity"`` or ``"grid-field"`` (the field of a grid file
    #: against the network, KdV); None: the split losses only
    #: (:mod:`derlhybrid.learn.evaluate_options` lists each kind's options)
    metrics_kind: ClassVar[str | None] = None
    #: the ``paper`` preset draws its data with numpy's legacy ``RandomState`` (as the
    #: paper's reference code), which takes seeds below 2**32
    legacy_rng: ClassVar[bool] = False

    def __post_init__(self):
        for spec in self.parameter_specs():
            object.__setattr__(self, spec.name, spec.check(self.name, getattr(self, spec.name)))
        self.validate()

    def validate(self) -> None:
        """Cross-parameter checks of a subclass (raise ``ValueError``)."""

    @classmethod
    def parameter_specs(cls) -> tuple[ParameterSpec, ...]:
        specs = []
        for f in dataclasses.fields(cls):
            meta = f.metadata.get("parameter")
            if meta is not None:
                if f.default is dataclasses.MISSING:  # parameter() always sets one
                    raise TypeError(f"{cls.__name__}.{f.name}: a parameter needs a default")
                specs.append(ParameterSpec(name=f.name, default=f.default, **meta))
        return tuple(specs)

    def params(self) -> dict[str, float]:
        """Parameter values by name (what provenance records)."""
        return {s.name: getattr(self, s.name) for s in self.parameter_specs()}

    def param_vector(self) -> np.ndarray:
        """Parameters in declaration order, float64 (what compiled kernels receive)."""
        return np.array(list(self.params().values()), dtype=np.float64)

    def replace(self, **changes: Any) -> System:
        return dataclasses.replace(self, **changes)

    def describe(self) -> dict[str, Any]:
        return {"system": self.name, "kind": self.kind, "parameters": self.params()}


@dataclass(frozen=True)
class ODESystem(System):
    """An ODE y' = f(t, y; p). Subclasses set ``state_names`` and ``rhs_kernel``.

    ``rhs_kernel(t, y, p, dy)`` is a Numba-compiled function of one state (1-D arrays)
    writing ``dy`` in place, with ``p = self.param_vector()``; the ensemble integrator
    compiles it into its loop. ``rhs`` evaluates the same field on NumPy arrays of states
    ``(..., n_state)``.

    ``rhs_lanes_kernel(t, y, p, dy)`` (optional) is the same field on lanes: many points at
    once, one per column (``t`` of shape ``(L,)``, ``y``, ``dy`` ``(n_state, L)``, ``p``
    ``(n_par, L)``; see ``derlhybrid.kernels.ode_lanes``). Given, dataset generation
    integrates 16 trajectories per thread in lockstep over SIMD lanes (the pendulum: ~2.5x
    faster); systems without one use the scalar path. Define both kernels at module level
    (not in a closure or ``__main__``) so that their compiled drivers are cached on disk.
    """

    kind: ClassVar[str] = "ode"
    metrics_kind: ClassVar[str | None] = "flow-map"
    state_names: ClassVar[tuple[str, ...]] = ()
    rhs_kernel: ClassVar[Any] = None
    rhs_lanes_kernel: ClassVar[Any] = None

    @property
    def n_state(self) -> int:
        return len(self.state_names)

    def rhs(self, t, y) -> np.ndarray:
        """Vector field on states of shape (..., n_state) (loops over the kernel)."""
        y = np.asarray(y, dtype=np.float64)
        flat = y.reshape(-1, self.n_state)
        out = np.empty_like(flat)
        p = self.param_vector()
        tt = np.broadcast_to(np.asarray(t, dtype=np.float64), flat.shape[:1])
        for i in range(flat.shape[0]):
            self.rhs_kernel(tt[i], flat[i], p, out[i])
        return out.reshape(y.shape)

    def sample_initial_states(
        self, rng: np.random.Generator | np.random.RandomState, n: int
    ) -> np.ndarray:
        raise NotImplementedError(f"{self.name} does not define initial-state sampling")

    #: second-order (mechanical) form: the state is (q, v) with q' = v; a flow-map network
    #: may then output the positions q alone, its velocity being ∂q̂/∂t (the paper's pendulum)
    second_order: ClassVar[bool] = False
    #: a damped mechanical system of one degree of freedom, state (q, v), with parameters
    #: ``m`` (mass) and ``b`` (linear damping): m v' = −∂V/∂q − b v, the separable
    #: Hamiltonian H = p²/2m + V(q) of p = m v with the damping force −b v added — what the
    #: HNN baseline (:mod:`derlhybrid.learn.hnn`) models (the pendulum)
    damped_hamiltonian_1dof: ClassVar[bool] = False

    def vector_field(self, t, y, xp=np):
        """f(t, y) on states ``(N, n_state)`` of any array namespace ``xp`` (NumPy or torch:
        what a PINN residual of a flow-map network calls). Returns ``(N, n_state)``."""
        raise NotImplementedError(f"{self.name} defines no array-namespace vector field")


@dataclass(frozen=True)
class GridPlan:
    """How a grid system (``data_layout = "grid"``) generates its ground truth: what
    :meth:`FieldSystem.grid_plan` returns and ``derl generate`` follows. The generator owns
    the rest (windows in time, resume, empirical derivatives, the HDF5 layout).

    ``solve(t, start)`` computes one window of saved times ``t`` (a slice of
    ``linspace(0, t_end, n_times)``) and returns the field, shape ``(len(t), *grid)``, and
    a dict ``{name: array of the same shape}`` for every name of ``derivatives``. ``start``
    is the field at ``t[0]`` (the previous window's last frame) for a ``marching`` plan,
    and ``None`` on the first window (start from the initial condition) and for a plan
    that is not marching (a closed form evaluates every window on its own)."""

    #: the spatial axes, in the order of the field's dimensions after time
    axes: dict[str, np.ndarray]
    n_times: int
    t_end: float
    #: name of the stored field (``/fields/<field>``)
    field: str
    #: generator provenance: the method, and how the derivatives are computed
    method: str
    derivative_method: str
    derivatives: tuple[str, ...]
    periodic: bool
    #: the backend the solve runs on (``"python"`` for a closed form)
    backend: str
    solve: Callable[[np.ndarray, np.ndarray | None], tuple[np.ndarray, dict[str, np.ndarray]]]
    marching: bool = True

    @property
    def inputs(self) -> tuple[str, ...]:
        return ("t", *self.axes)


@dataclass(frozen=True)
class FieldSystem(System):
    """A PDE (``kind="pde"``, time is the first input) or steady problem (``"steady"``)
    whose solution is a field u(inputs) with named inputs and outputs.

    Arrays of points are ``(N, n_in)`` in the order of ``inputs``; results are
    ``exact: (N, n_out)``, ``jacobian: (N, n_out, n_in)``, ``hessian: (N, n_out, n_in,
    n_in)``. Systems without a closed form raise ``NotImplementedError`` (their ground truth
    comes from a solver).
    """

    inputs: ClassVar[tuple[str, ...]] = ()
    outputs: ClassVar[tuple[str, ...]] = ()
    #: inputs that are PDE parameters (a parametric family), not coordinates; derivatives
    #: are taken with respect to the coordinates only
    parameter_inputs: ClassVar[tuple[str, ...]] = ()
    periodic_inputs: ClassVar[tuple[str, ...]] = ()
    has_exact: ClassVar[bool] = False
    #: how ``derl generate`` stores the ground truth: ``"points"`` (the closed form at
    #: sampled points), ``"grid"`` (a solver's fields on a space–time grid, planned by
    #: :meth:`grid_plan`) or ``"ball"``
    #: (the NCL setting's samplers); the generator dispatches on it, not on the name
    data_layout: ClassVar[str] = "points"

    def domain(self) -> dict[str, tuple[float, float]]:
        """Bounds of every input (a box; ``euler-ball`` restricts it further)."""
        raise NotImplementedError

    def grid_plan(
        self,
        *,
        method: str | None,
        n_points: int | None,
        n_times: int | None,
        backend: str,
        rtol: float,
    ) -> GridPlan:
        """The ground truth of a ``data_layout = "grid"`` system, given the request's
        ``method`` (None: the default), grid size per axis ``n_points``, ``n_times``
        (None: the system's defaults), the resolved ``backend`` and the solver tolerance.
        Validates them (one-line ``ValueError``); solves nothing yet."""
        raise NotImplementedError(f"{self.name} defines no grid generation (grid_plan)")

    def exact(self, X) -> np.ndarray:
        raise NotImplementedError(f"{self.name} has no closed-form solution")

    def jacobian(self, X) -> np.ndarray:
        raise NotImplementedError(f"{self.name} has no closed-form derivatives")

    def hessian(self, X) -> np.ndarray:
        raise NotImplementedError(f"{self.name} has no closed-form second derivatives")

    @property
    def coordinates(self) -> tuple[str, ...]:
        return tuple(i for i in self.inputs if i not in self.parameter_inputs)

    def forcing(self, X) -> np.ndarray:
        raise NotImplementedError(f"{self.name} has no forcing term")

    #: derivatives the PDE residual needs, as tuples of input names (the value is implied)
    residual_needs: ClassVar[tuple[tuple[str, ...], ...]] = ()
    #: one name per residual component
    residual_names: ClassVar[tuple[str, ...]] = ("residual",)
    #: per-point data the residual reads from ``aux`` (e.g. a manufactured ``forcing``)
    residual_aux: ClassVar[tuple[str, ...]] = ()

    def pde_residual(self, d, X, aux, xp=np):
        """The PDE residual N[u] at points ``X`` (N, n_in), in any array namespace ``xp``.

        ``d(*names)`` returns the derivative of every output with respect to the named
        inputs, ``(N, n_out)`` (``d()`` is the value); ``aux`` maps the names in
        ``residual_aux`` to per-point arrays ``(N,)``. Returns ``(N, len(residual_names))``.
        The same code serves the NumPy checks (exact solution → zero residual) and torch
        training (the PINN loss).
        """
        raise NotImplementedError(f"{self.name} defines no PDE residual")

    def boundary_points(self, n_per_edge: int) -> np.ndarray:
        """Equispaced points on the edges of the coordinate box (2-D steady problems):
        ``n_per_edge`` per edge, corners repeated as in the reference code, (4n, 2)."""
        (x0, x1), (y0, y1) = (self.domain()[c] for c in self.coordinates[:2])
        sx, sy = np.linspace(x0, x1, n_per_edge), np.linspace(y0, y1, n_per_edge)
        return np.concatenate(
            [
                np.stack([sx, np.full_like(sx, y0)], 1),
                np.stack([sx, np.full_like(sx, y1)], 1),
                np.stack([np.full_like(sy, x0), sy], 1),
                np.stack([np.full_like(sy, x1), sy], 1),
            ]
        )

    def sample_uniform(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` points uniform in the domain box, (n, n_in)."""
        lo, hi = np.array(list(self.domain().values()), dtype=np.float64).T
        return lo + (hi - lo) * rng.random((n, lo.size))

    def _points(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.inputs):
            raise ValueError(
                f"{self.name}: points must have shape (N, {len(self.inputs)}) with columns "
                f"{self.inputs}, got {X.shape}"
            )
        return X
