"""Derivative estimators for measured (noisy, possibly irregularly sampled) data.

One option at the edge (``--derivatives METHOD`` of ``derl import``, ``empirical`` of
``derl generate``) resolves through :data:`ESTIMATORS` into a frozen estimator object:

=====================  =========================================================================
``forward:N``          our finite-difference stencils (:func:`derlhybrid.derivative`): forward,
``central:N``          central or backward placement, accuracy N, one-sided at the ends (periodic
``backward:N``         axes wrap); uniform or non-uniform coordinates. No smoothing.
``savgol``             Savitzky–Golay (SciPy ``savgol_filter``, ``deriv=1``; uniform samples):
                       local least-squares polynomial of ``degree`` (3) over ``window`` points.
                       Default window: **generalised cross-validation** (GCV) of the smoother,
                       per series, over odd windows ``degree+2 … min(n, 201)``.
``spline``             smoothing spline (PyNumDiff ``splinediff``, FITPACK ``make_splrep``; any
                       sampling): the residual budget is ``s · N σ̂²`` with ``σ̂`` the library's
                       robust noise estimate (MAD of second differences); ``s = 1`` is the
                       library's own data-driven default.
``spectral``           Fourier differentiation (NumPy FFT; periodic uniform samples only):
                       low-passed at ``cutoff`` × Nyquist; default: noise-floor truncation
                       (modes above the last one with power > ``floor``·n·σ̂² dropped).
``trend``              trend filtering (PyNumDiff ``tvrdiff``, a CVXPY convex program; uniform
                       samples): ℓ1 penalty ``gamma`` on the total variation of the ``order``-th
                       derivative (default 2: piecewise-linear derivative). Default ``gamma``:
                       the **discrepancy principle** (residual RMS closest to the robust noise
                       estimate σ̂) over 0.1 … 1000, chosen on the first two series of the array
                       and used for all of them.
=====================  =========================================================================

Parameters follow a colon, comma-separated: ``savgol:window=31,degree=3``,
``spline:s=0.5``, ``trend:gamma=10,order=3``. Every estimator reports what it did
(:meth:`Estimator.describe` plus the data-driven choices it made) for the provenance of the
file it fills. The smoothers need the optional extra ``pip install derlhybrid[estimators]``
(PyNumDiff and CVXPY); the stencils need nothing.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .._typecheck import check_built
from ..kernels import derivative as _stencil_derivative

__all__ = [
    "ESTIMATORS",
    "Estimator",
    "SavitzkyGolay",
    "SmoothingSpline",
    "Spectral",
    "Stencil",
    "TrendFilter",
    "estimate",
    "estimate_along",
    "noise_scale",
    "parse_estimator",
]

_INSTALL = "pip install 'derlhybrid[estimators]'"


def _require(module: str, what: str):
    import importlib

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pynumdiff warns when CVXPY is absent
            return importlib.import_module(module)
    except ImportError:
        raise ValueError(f"derivative estimator {what} needs {module}: {_INSTALL}") from None


def noise_scale(x: np.ndarray) -> float:
    """Robust estimate of the standard deviation of white noise on a smooth series (the
    median absolute deviation of second differences over √6, as PyNumDiff estimates it)."""
    d2 = np.diff(np.asarray(x, dtype=np.float64), 2)
    if d2.size == 0:
        return 0.0
    return float(np.median(np.abs(d2 - np.median(d2))) / 0.6744897501960817 / np.sqrt(6))


def _uniform(t: np.ndarray) -> float | None:
    """The step of uniform times (steps equal within 1e-4 relative: float32 coordinates
    such as PDEBench's count as uniform), else None."""
    dt = np.diff(t)
    h = float(np.mean(dt))
    return h if np.all(np.abs(dt - h) <= 1e-4 * max(abs(h), 1e-300)) else None


@dataclass(frozen=True)
class Estimator:
    """Base of every estimator: ``derivatives(t, Y)`` → (dY/dt, choices) for series ``Y``
    (n_series, n) sampled at the strictly increasing times ``t`` (n,)."""

    name: ClassVar[str] = ""
    smoothing: ClassVar[bool] = True
    uniform_only: ClassVar[bool] = False

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, **dataclasses.asdict(self)}

    def spec(self) -> str:
        args = ",".join(f"{k}={v}" for k, v in dataclasses.asdict(self).items() if v is not None)
        return f"{self.name}:{args}" if args else self.name

    def option(self) -> str:
        """The shortest text :func:`parse_estimator` reads back as this estimator (defaults
        left out): ``SavitzkyGolay()`` → ``"savgol"``, ``SmoothingSpline(s=0.5)`` →
        ``"spline:s=0.5"``; what a generation request records (its ``empirical`` key)."""
        default = type(self)()
        args = ",".join(
            f"{f.name}={getattr(self, f.name)}"
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != getattr(default, f.name)
        )
        return f"{self.name}:{args}" if args else self.name

    def _check_types(self) -> None:
        """A value of the wrong type refused in one line naming it (``savgol.window``)."""
        check_built(self, self.name)

    def derivatives(
        self, t: np.ndarray, Y: np.ndarray, *, periodic: bool = False, period: float | None = None
    ) -> tuple[np.ndarray, dict]:
        raise NotImplementedError


@dataclass(frozen=True)
class Stencil(Estimator):
    """Finite differences of :func:`derlhybrid.derivative` (no smoothing)."""

    scheme: str = "forward"
    accuracy: int = 1
    name: ClassVar[str] = "stencil"
    smoothing: ClassVar[bool] = False

    def __post_init__(self):
        self._check_types()
        if self.scheme not in ("forward", "central", "backward"):
            raise ValueError(f"stencil scheme must be forward, central or backward: {self.scheme}")
        if self.accuracy < 1 or (self.scheme == "central" and self.accuracy % 2):
            raise ValueError(
                f"{self.scheme}:{self.accuracy}: central stencils have even accuracy (central:2, "
                "central:4, ...), forward/backward any accuracy >= 1"
            )

    def spec(self) -> str:
        return f"{self.scheme}:{self.accuracy}"

    def option(self) -> str:
        return self.spec()

    def describe(self) -> dict[str, Any]:
        return {"method": "stencil", "scheme": self.scheme, "accuracy": self.accuracy}

    def derivatives(self, t, Y, *, periodic=False, period=None):
        h = _uniform(t)
        spacing = h if h is not None and not periodic else t
        if periodic and h is not None:
            spacing = h
        d = _stencil_derivative(
            np.ascontiguousarray(Y, dtype=np.float64),
            spacing,
            axis=-1,
            order=1,
            accuracy=self.accuracy,
            scheme=self.scheme,
            boundary="periodic" if periodic else "one-sided",
            period=period if periodic and h is None else None,
        )
        return d, {"uniform": h is not None}


@dataclass(frozen=True)
class SavitzkyGolay(Estimator):
    """Savitzky–Golay differentiation (SciPy), window by GCV unless given."""

    window: int | None = None
    degree: int = 3
    name: ClassVar[str] = "savgol"
    uniform_only: ClassVar[bool] = True
    MAX_WINDOW: ClassVar[int] = 201

    def __post_init__(self):
        self._check_types()
        if not 1 <= self.degree <= 10:
            raise ValueError(f"savgol: degree must be in 1..10, got {self.degree}")
        if self.window is not None and (self.window % 2 == 0 or self.window <= self.degree):
            raise ValueError(
                f"savgol: window must be an odd number of points > degree ({self.degree}), "
                f"got {self.window}"
            )

    def _candidates(self, n: int) -> list[int]:
        lo = self.degree + 2 + (self.degree % 2 == 0)  # odd, > degree + 1
        hi = min(n if n % 2 else n - 1, self.MAX_WINDOW)
        if hi < lo:
            raise ValueError(f"savgol: {n} samples are too few for degree {self.degree}")
        ws = np.unique(np.geomspace(lo, hi, 16).astype(int) | 1)
        return [int(w) for w in ws if lo <= w <= hi]

    def derivatives(self, t, Y, *, periodic=False, period=None):
        from scipy.signal import savgol_coeffs, savgol_filter

        h = _uniform(t)
        if h is None:  # estimate() checks uniform_only first
            raise ValueError("savgol needs uniform samples; these are irregular")
        n = Y.shape[-1]
        mode = "wrap" if periodic else "interp"
        if self.window is not None:
            if self.window > n:
                raise ValueError(f"savgol: window {self.window} is longer than the {n} samples")
            windows = np.full(Y.shape[0], self.window)
        else:  # GCV: n RSS / (n - tr H)^2, tr H = n c0 (the filter's centre weight)
            best = np.full(Y.shape[0], np.inf)
            windows = np.zeros(Y.shape[0], dtype=int)
            for w in self._candidates(n):
                smooth = savgol_filter(Y, w, self.degree, axis=-1, mode=mode)
                rss = np.sum((Y - smooth) ** 2, axis=-1)
                c0 = savgol_coeffs(w, self.degree)[w // 2]
                gcv = n * rss / (n * (1 - c0)) ** 2
                better = gcv < best
                best[better], windows[better] = gcv[better], w
        d = np.empty_like(Y, dtype=np.float64)
        for w in np.unique(windows):
            rows = windows == w
            d[rows] = savgol_filter(
                Y[rows], int(w), self.degree, deriv=1, delta=h, axis=-1, mode=mode
            )
        return d, {"window": _summary(windows), "selection": "given" if self.window else "GCV"}


@dataclass(frozen=True)
class SmoothingSpline(Estimator):
    """Smoothing spline of PyNumDiff (``splinediff``): residual budget ``s · N σ̂²``."""

    s: float = 1.0
    degree: int = 3
    name: ClassVar[str] = "spline"

    def __post_init__(self):
        self._check_types()
        if not (np.isfinite(self.s) and self.s >= 0):
            raise ValueError(f"spline: s must be a non-negative number, got {self.s}")
        if not 1 <= self.degree <= 5:
            raise ValueError(f"spline: degree must be in 1..5, got {self.degree}")

    def derivatives(self, t, Y, *, periodic=False, period=None):
        pnd = _require("pynumdiff", "spline")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, d = pnd.splinediff(np.asarray(Y, dtype=np.float64), t, self.degree, self.s, axis=1)
        sig = np.array([noise_scale(y) for y in Y])
        return d, {
            "noise_sigma": _summary(sig),
            "selection": "library default (s · N σ̂², σ̂ robust)" if self.s == 1.0 else "given",
        }


@dataclass(frozen=True)
class TrendFilter(Estimator):
    """Trend filtering (PyNumDiff ``tvrdiff``, CVXPY): ℓ1 on the total variation of the
    ``order``-th derivative; ``gamma`` by the discrepancy principle unless given."""

    gamma: float | None = None
    order: int = 2
    name: ClassVar[str] = "trend"
    uniform_only: ClassVar[bool] = True
    GAMMAS: ClassVar[tuple[float, ...]] = (0.1, 1.0, 10.0, 100.0, 1000.0)
    #: series on which the discrepancy principle chooses gamma (the rest reuse it)
    N_SELECT: ClassVar[int] = 2

    def __post_init__(self):
        self._check_types()
        if self.order not in (1, 2, 3):
            raise ValueError(f"trend: order must be 1, 2 or 3, got {self.order}")
        if self.gamma is not None and not (np.isfinite(self.gamma) and self.gamma > 0):
            raise ValueError(f"trend: gamma must be a positive number, got {self.gamma}")

    def _solve(self, pnd, y, h, gamma):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with np.errstate(all="ignore"):
                return pnd.tvrdiff(y, h, self.order, gamma)

    def select_gamma(self, Y, h) -> float:
        """The gamma of :attr:`GAMMAS` whose fit leaves residuals closest to the noise
        (Morozov's discrepancy principle: RMS(y − ŷ) ≈ σ̂, the robust noise estimate of
        :func:`noise_scale`), in the geometric mean over the series ``Y``. Noise-free data
        (σ̂ ≈ 0) get the smallest gamma."""
        pnd = _require("pynumdiff", "trend")
        _require("cvxpy", "trend")
        scores = np.zeros(len(self.GAMMAS))
        for y in Y:
            sig = noise_scale(y)
            if not sig > 1e-9 * max(float(np.abs(y).max()), 1e-300):
                return float(self.GAMMAS[0])
            for k, g in enumerate(self.GAMMAS):
                xh, _ = self._solve(pnd, y, h, g)
                rms = float(np.sqrt(np.mean((y - xh) ** 2)))
                scores[k] += abs(np.log(max(rms, 1e-300) / sig))
        return float(self.GAMMAS[int(np.argmin(scores))])

    def derivatives(self, t, Y, *, periodic=False, period=None, gamma=None):
        pnd = _require("pynumdiff", "trend")
        _require("cvxpy", "trend")
        h = _uniform(t)
        gamma = gamma or self.gamma or self.select_gamma(Y[: self.N_SELECT], h)
        d = np.empty_like(Y, dtype=np.float64)
        for i, y in enumerate(Y):
            d[i] = self._solve(pnd, y, h, gamma)[1]
        return d, {"gamma": gamma, "selection": "given" if self.gamma else "discrepancy"}


#: names at the edge → estimator classes (style rule 3: strings resolved in one registry)
@dataclass(frozen=True)
class Spectral(Estimator):
    """Fourier differentiation of periodic uniform samples (NumPy's FFT): d/dt of the
    trigonometric interpolant, the Nyquist mode dropped. ``cutoff`` (a fraction of the
    Nyquist wavenumber) low-passes first; by default it is chosen per series from the
    data — **noise-floor truncation**: the modes above the last one whose power exceeds
    ``floor`` × the power white noise of the robust estimate σ̂ would give each mode
    (n·σ̂²) are dropped; noise-free series (σ̂ ≈ 0) keep every mode."""

    cutoff: float | None = None
    floor: float = 10.0
    name: ClassVar[str] = "spectral"
    uniform_only: ClassVar[bool] = True

    def __post_init__(self):
        self._check_types()
        if self.cutoff is not None and not 0 < self.cutoff <= 1:
            raise ValueError(f"spectral: cutoff must be in (0, 1], got {self.cutoff}")
        if not (np.isfinite(self.floor) and self.floor > 0):
            raise ValueError(f"spectral: floor must be a positive number, got {self.floor}")

    def derivatives(self, t, Y, *, periodic=False, period=None):
        if not periodic or period is None:
            raise ValueError(
                "spectral differentiation needs periodic samples (a periodic axis and its "
                "period); use savgol, spline or trend otherwise"
            )
        Y = np.asarray(Y, dtype=np.float64)
        n = Y.shape[-1]
        k = 2 * np.pi / period * np.fft.rfftfreq(n, 1.0 / n)
        Yh = np.fft.rfft(Y, axis=-1)
        ik = 1j * k
        if n % 2 == 0:
            ik[-1] = 0.0  # the Nyquist mode has no odd derivative
        keep = np.ones(Yh.shape, dtype=bool)
        modes = np.full(Y.shape[0], Yh.shape[-1])
        if self.cutoff is not None:
            kmax = int(np.floor(self.cutoff * (Yh.shape[-1] - 1)))
            keep[:, kmax + 1 :] = False
            modes[:] = kmax + 1
        else:
            sig = np.array([noise_scale(y) for y in Y])
            power = np.abs(Yh) ** 2
            for i, s in enumerate(sig):
                if s <= 1e-12 * max(1.0, float(np.abs(Y[i]).max())):
                    continue  # noise-free: every mode
                above = np.nonzero(power[i] > self.floor * n * s**2)[0]
                last = int(above[-1]) if above.size else 0
                keep[i, last + 1 :] = False
                modes[i] = last + 1
        d = np.fft.irfft(np.where(keep, ik * Yh, 0.0), n=n, axis=-1)
        return d, {
            "modes_kept": _summary(modes),
            "selection": "given" if self.cutoff is not None else "noise-floor truncation",
        }


ESTIMATORS: dict[str, type[Estimator]] = {
    "savgol": SavitzkyGolay,
    "spline": SmoothingSpline,
    "trend": TrendFilter,
    "spectral": Spectral,
}
_STENCIL_RE = re.compile(r"^(central|forward|backward):([1-9][0-9]*)$")


def _summary(a) -> dict[str, float]:
    a = np.asarray(a, dtype=np.float64)
    return {"min": float(a.min()), "median": float(np.median(a)), "max": float(a.max())}


def parse_estimator(text: str | Estimator) -> Estimator:
    """``"central:2"``, ``"savgol"``, ``"spline:s=0.5"``, ``"trend:gamma=10,order=3"`` →
    an estimator object (one-line ``ValueError`` for anything else)."""
    if isinstance(text, Estimator):
        return text
    text = str(text).strip()
    m = _STENCIL_RE.match(text)
    if m:
        return Stencil(m.group(1), int(m.group(2)))
    name, _, args = text.partition(":")
    if name not in ESTIMATORS:
        raise ValueError(
            f"unknown derivative estimator {text!r}; choose forward:N, central:N, backward:N, "
            f"{', '.join(ESTIMATORS)} (with optional parameters, e.g. savgol:window=31)"
        )
    cls = ESTIMATORS[name]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for item in filter(None, (a.strip() for a in args.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in fields:
            raise ValueError(
                f"derivative estimator {text!r}: expected KEY=VALUE with KEY one of "
                f"{', '.join(fields)}, got {item!r}"
            )
        try:
            kwargs[key] = int(value) if key in ("window", "degree", "order") else float(value)
        except ValueError:
            raise ValueError(f"derivative estimator {text!r}: {key} must be a number") from None
    return cls(**kwargs)


def estimate_along(
    estimator: Estimator | str,
    values,
    coords,
    *,
    axis: int,
    periodic: bool = False,
    period: float | None = None,
) -> tuple[np.ndarray, dict]:
    """d(values)/d(coords) along ``axis`` of an array (every other axis is a separate
    series) and the estimator's provenance. ``periodic`` wraps the axis (a grid without the
    duplicated endpoint, of length ``period``): stencils and Savitzky–Golay wrap exactly,
    the global smoothers see the series padded with a quarter period on each side."""
    est = parse_estimator(estimator)
    values = np.asarray(values, dtype=np.float64)
    t = np.asarray(coords, dtype=np.float64)
    n = values.shape[axis]
    if t.shape != (n,):
        raise ValueError(f"{n} samples along axis {axis} but {t.shape} coordinates")
    if n < 3:
        raise ValueError(f"derivative estimation needs at least 3 samples, got {n}")
    if not np.all(np.diff(t) > 0):
        raise ValueError("coordinates must be strictly increasing")
    if est.uniform_only and _uniform(t) is None:
        raise ValueError(
            f"derivative estimator {est.spec()} needs uniform samples; these are irregular: "
            "use spline or a stencil (forward:N, central:N)"
        )
    Y = np.moveaxis(values, axis, -1)
    shape = Y.shape
    Y = Y.reshape(-1, n)
    if periodic and not isinstance(est, Stencil | SavitzkyGolay | Spectral):
        if period is None:
            raise ValueError("a periodic axis needs its period")
        pad = min(n, max(8, n // 4))
        Yp = np.concatenate([Y[:, -pad:], Y, Y[:, :pad]], axis=1)
        tp = np.concatenate([t[-pad:] - period, t, t[:pad] + period])
        d, info = est.derivatives(tp, Yp)
        d = d[:, pad : pad + n]
        info = {**info, "periodic": f"padded by {pad} wrapped samples per side"}
    else:
        d, info = est.derivatives(t, Y, periodic=periodic, period=period)
    out = np.moveaxis(d.reshape(shape), -1, axis)
    return out, {**est.describe(), "spec": est.spec(), **info}


def estimate(estimator: Estimator | str, states, t) -> tuple[np.ndarray, dict]:
    """dy/dt of trajectories ``states`` (n_traj, n_t, n_state) sampled at ``t``: one time
    vector (n_t,) shared by all, or one per trajectory (n_traj, n_t) (irregular times)."""
    states = np.asarray(states, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    if t.ndim == 1:
        return estimate_along(estimator, states, t, axis=1)
    out = np.empty_like(states)
    infos = []
    for i in range(states.shape[0]):
        out[i], info = estimate_along(estimator, states[i], t[i], axis=0)
        infos.append(info)
    prov = dict(infos[0])
    prov["per_trajectory"] = True
    return out, prov
