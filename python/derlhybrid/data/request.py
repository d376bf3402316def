"""What ``derl generate`` asks for: :class:`GenerateRequest`, its checks (one-line errors)
and its construction from command-line options and a TOML ``--config``."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._typecheck import check_fields
from .empirical import parse_scheme

DTYPES = {"float64": np.float64, "float32": np.float32}


@dataclass
class GenerateRequest:
    """Everything a generation needs; validated by :meth:`validate` (one-line errors)."""

    system: str
    out: str
    params: dict[str, Any] = field(default_factory=dict)
    n_trajectories: int | None = None
    n_points: int | None = None
    n_parameter_sets: int | None = None
    n_boundary: int | None = None
    seed: int | None = None  # None: 0, or the preset's own seed (30 for most of the paper's)
    t_end: float | None = None
    n_times: int | None = None
    rtol: float = 1e-10
    atol: float = 1e-10
    backend: str | None = None
    dtype: str = "float64"
    overwrite: bool = False
    compression: str = "gzip"
    chunk_trajectories: int | None = None
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)
    allow_failures: bool = False
    preset: str | None = None
    empirical: str | None = None
    method: str | None = None
    fd_step: float = 1e-3
    n_empirical_samples: int | None = None
    #: measurement noise: σ of Gaussian noise on the sampled states that the empirical set
    #: (``empirical`` = a stencil or an estimator of data.estimators) is estimated from
    noise: float = 0.0

    def validate(self) -> None:
        _check_types(self)
        if self.dtype not in DTYPES:
            raise ValueError(f"--dtype must be float32 or float64, got {self.dtype!r}")
        for name in ("rtol", "atol"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise ValueError(f"--{name} must be a positive number, got {v!r}")
        if self.n_trajectories is not None and self.n_trajectories < 1:
            raise ValueError(f"--n-trajectories must be >= 1, got {self.n_trajectories}")
        for name in ("n_points", "n_parameter_sets", "n_boundary"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {v!r}")
        if self.n_times is not None and self.n_times < 2:
            raise ValueError(f"--n-times must be >= 2, got {self.n_times}")
        if self.t_end is not None and not (math.isfinite(self.t_end) and self.t_end > 0):
            raise ValueError(f"--t-end must be a positive number, got {self.t_end!r}")
        if self.chunk_trajectories is not None and self.chunk_trajectories < 1:
            raise ValueError("chunk_trajectories must be >= 1")
        if len(self.split) != 3 or min(self.split) < 0 or abs(sum(self.split) - 1) > 1e-9:
            raise ValueError(f"split fractions must be 3 non-negatives summing to 1: {self.split}")
        if self.seed is not None and not 0 <= self.seed < 2**63:
            raise ValueError(f"--seed must be an integer in [0, 2**63), got {self.seed}")
        if self.empirical is not None:
            empirical_method(self.empirical)
        if not (isinstance(self.noise, int | float) and 0 <= self.noise < math.inf):
            raise ValueError(f"noise must be a non-negative number, got {self.noise!r}")
        if self.noise and (self.empirical is None or self.empirical == "cubic-forward"):
            raise ValueError(
                "noise needs an empirical estimator of the noisy samples (e.g. "
                "empirical = 'savgol' or 'forward:1'), not cubic-forward"
            )
        if not (isinstance(self.fd_step, int | float) and 0 < self.fd_step < math.inf):
            raise ValueError(f"--fd-step must be a positive number, got {self.fd_step!r}")
        if not str(self.out):
            raise ValueError("--out FILE is required")

    def as_config(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("overwrite")
        d.pop("out")
        if not d["noise"]:  # absent when off: config hashes of earlier requests unchanged
            d.pop("noise")
        d["split"] = list(self.split)
        return d


def empirical_method(text: str):
    """A stencil/cubic-forward scheme ``(scheme, accuracy)`` or an estimator object of
    :mod:`derlhybrid.data.estimators` (savgol, spline, trend…)."""
    from .estimators import ESTIMATORS, parse_estimator

    if str(text).partition(":")[0] in ESTIMATORS:
        return parse_estimator(text)
    return parse_scheme(text)


def _check_types(req: GenerateRequest) -> None:
    """Refuse a value of the wrong type before anything is done with it (a TOML string
    ``"false"`` is not false: it is truthy; ``"20"`` is not 20)."""
    values = {f.name: getattr(req, f.name) for f in dataclasses.fields(req)}
    check_fields(GenerateRequest, values, "generate")


def request_from_cli(args) -> GenerateRequest:
    """Build a request from ``derl generate`` options and/or a TOML ``--config`` file."""
    from ..systems import parse_params

    values: dict[str, Any] = {}
    if args.config:
        from .._tables import read_toml

        values = read_toml(args.config, "--config", ValueError)
        known = {f.name for f in dataclasses.fields(GenerateRequest)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"--config {args.config}: unknown key {unknown[0]!r}; "
                f"keys: {', '.join(sorted(known))}"
            )
        if not isinstance(values.get("params", {}), dict):
            raise ValueError(
                f"--config {args.config}: params must be a table ([params] name = value), "
                f"got {values['params']!r}"
            )
        values["params"] = {k: str(v) for k, v in values.get("params", {}).items()}
    for f in dataclasses.fields(GenerateRequest):  # every option the command line has
        v = getattr(args, f.name, None)
        if v is not None and f.name not in ("params", "overwrite"):
            values[f.name] = v
    if args.param:
        values["params"] = {**values.get("params", {}), **parse_params(args.param)}
    if args.overwrite:
        values["overwrite"] = True
    if not values.get("system"):
        raise ValueError("give a SYSTEM (e.g. `derl generate pendulum --out p.h5`) or --config")
    if not values.get("out"):
        raise ValueError("--out FILE is required")
    if isinstance(values.get("split"), list):
        values["split"] = tuple(values["split"])
    return GenerateRequest(**values)
