"""What a generation asks for: :class:`GenerateRequest`, the flat, frozen, canonical form
that is recorded in the dataset file (:meth:`GenerateRequest.as_config`), checked on
construction (one-line errors naming the key).

Python users describe the data with the typed objects of :mod:`.sampling`
(``GenerateRequest.of("pendulum", Trajectories(n=40, ...), out=...)``); ``derl generate``
builds the same request from its options and TOML ``--config`` (:mod:`derlhybrid.cli_generate`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._typecheck import check_built
from .checks import check_at_least, check_noise, check_positive, check_seed, check_split
from .empirical import parse_scheme
from .sampling import Grid, Points, Trajectories, data_fields

DTYPES = {"float64": np.float64, "float32": np.float32}


@dataclass(frozen=True)
class GenerateRequest:
    """Everything a generation needs, one key per field (the keys of ``derl generate
    --config``); checked on construction (:meth:`validate`, one-line ``ValueError``)."""

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

    def __post_init__(self):
        if isinstance(self.split, list):  # a TOML/JSON list: the same fractions
            object.__setattr__(self, "split", tuple(self.split))
        self.validate()

    @classmethod
    def of(
        cls,
        system: str,
        data: Trajectories | Points | Grid | None = None,
        /,
        *,
        out: str | os.PathLike[str],
        params: dict[str, Any] | None = None,
        preset: str | None = None,
        backend: str | None = None,
        dtype: str = "float64",
        compression: str = "gzip",
        overwrite: bool = False,
    ) -> GenerateRequest:
        """The request of ``system``'s data described by ``data`` — a
        :class:`~derlhybrid.data.sampling.Trajectories` (ODE systems), a
        :class:`~derlhybrid.data.sampling.Points` (closed-form fields, the Euler ball) or a
        :class:`~derlhybrid.data.sampling.Grid` (PDEs solved on a grid); ``None``: the
        defaults, or what ``preset`` fixes. The same request, key for key, as the flat
        ``GenerateRequest(...)`` and ``derl generate`` build."""
        if not isinstance(out, str | os.PathLike):
            raise ValueError(f"out must be a file path, got {out!r}")
        values = data_fields(system, data)
        return cls(
            system=system,
            out=os.fspath(out),
            params=dict(params or {}),
            preset=preset,
            backend=backend,
            dtype=dtype,
            compression=compression,
            overwrite=overwrite,
            **values,
        )

    def validate(self) -> None:
        """Refuse a value of the wrong type or out of range (one line naming the key)."""
        _check_types(self)
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}")
        for name in ("rtol", "atol"):
            check_positive(name, getattr(self, name))
        check_at_least("n_trajectories", self.n_trajectories, 1)
        for name in ("n_points", "n_parameter_sets", "n_boundary"):
            check_at_least(name, getattr(self, name), 1)
        check_at_least("n_times", self.n_times, 2)
        if self.t_end is not None:
            check_positive("t_end", self.t_end)
        check_at_least("chunk_trajectories", self.chunk_trajectories, 1)
        check_split("split", self.split)
        check_seed("seed", self.seed)
        if self.empirical is not None:
            empirical_method(self.empirical)
        check_noise("noise", self.noise)
        if self.noise and (self.empirical is None or self.empirical == "cubic-forward"):
            raise ValueError(
                "noise needs an empirical estimator of the noisy samples (e.g. "
                "empirical = 'savgol' or 'forward:1'), not cubic-forward"
            )
        check_positive("fd_step", self.fd_step)
        check_at_least("n_empirical_samples", self.n_empirical_samples, 1)
        if not str(self.out):
            raise ValueError("out must name the file to write")

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
    check_built(req, "generate")
