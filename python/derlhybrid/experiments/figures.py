"""The PNG figures of ``derl reproduce`` (paper.md §3.5, §4.5, §5.4, §6.5, §7.3, §8, §9.5, §10).

Every figure is a function ``figure(runs, out_dir) -> list[Path]`` in :data:`FIGURES`. It takes
all runs of an experiment (:class:`RunInfo`, possibly of several groups), draws one PNG per
group, ``<figure>-<group with '/' replaced by '_'>.png`` in ``out_dir``, and returns the
paths it wrote. Within a group there is one panel (column) per loss mode; of several runs with
the same label (seeds) the first whose files exist is drawn. Runs whose checkpoint or data
file is missing, of another system, or that cannot be evaluated are left out with a logged
warning (a group with none left writes nothing); runs that diverged are drawn where their
values are finite (non-finite pixels are grey, a panel without any finite value says so).
Colour scales are shared across the modes of one figure, so panels are comparable.

Figures are drawn on :class:`matplotlib.figure.Figure` with the Agg canvas (no pyplot, no
global backend state) at 150 dpi and written atomically (``name.png.tmp`` then
``os.replace``).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..learn import metrics as M

__all__ = [
    "DPI",
    "FIGURES",
    "METRIC_ONLY",
    "RunInfo",
    "allen_cahn_errors",
    "continuity_errors",
    "kovasznay_errors",
    "ncl_slices",
    "noise_estimators",
    "parametric_errors",
    "pendulum_field",
    "pendulum_phase",
    "transfer_error_maps",
    "transfer_phase_errors",
]

log = logging.getLogger(__name__)

#: resolution of every PNG
DPI = 150
#: errors below this are drawn at this value on the logarithmic colour scales
ERROR_FLOOR = 1e-6
#: test trajectories in the phase portraits
MAX_TRAJECTORIES = 5
#: grid of the learned pendulum field (the metric uses 250×250; 60×60 keeps arrows legible)
FIELD_GRID = 60
ALLEN_CAHN_GRID = 201
PARAMETRIC_GRID = 101
KOVASZNAY_GRID = 200
#: frames of the reference read for the reference mass curve (strided), and frames evaluated
#: for the predicted mass when the metrics do not hold it
MASS_FRAMES = 101
MASS_FRAMES_PREDICTED = 21

MODE_COLORS = {
    "derl": "tab:blue",
    "outl": "tab:orange",
    "sob": "tab:green",
    "pinn": "tab:red",
    "outl+pinn": "tab:purple",
    "hesl": "tab:brown",
    "der+hesl": "tab:pink",
    "sob+hesl": "tab:olive",
}
_SPARE_COLORS = ("tab:cyan", "tab:gray", "gold", "navy", "lime", "teal", "maroon", "black")
SPLIT_MARKERS = {"train": "o", "val": "s", "test": "D", "unseen": "^"}
PARAM_LABELS = {"lam": "λ", "L1": "Λ₁", "L2": "Λ₂"}


@dataclass
class RunInfo:
    """One trained run, as the runner hands it to the figures."""

    name: str  # e.g. "damped-true-derl"
    label: str  # legend label, e.g. "DERL"
    mode: str  # loss mode: outl, derl, sob, pinn, outl+pinn, hesl, der+hesl, sob+hesl
    group: str  # e.g. "damped/true": one file per group
    data: Path  # the HDF5 dataset the run trained on
    checkpoint: Path  # derlhybrid checkpoint
    metrics: dict  # derlhybrid.learn.evaluate.evaluate(checkpoint, data, ...)
    #: the generation request of the run's dataset (the spec's [datasets.<key>]), if known
    request: dict | None = None

    @classmethod
    def from_row(cls, r: dict, request: dict | None = None) -> RunInfo:
        """From a row of ``results.json`` (and its dataset's request)."""
        return cls(
            name=r["name"],
            label=r["label"],
            mode=r["mode"],
            group=r["group"],
            data=Path(r["data"]),
            checkpoint=Path(r["checkpoint"]),
            metrics=r["metrics"],
            request=request,
        )


# ---------------------------------------------------------------------------------------------
# plumbing


@dataclass
class _Loaded:
    run: RunInfo
    system: Any
    predict: Callable
    form: str
    color: str = "tab:blue"

    def eval(self, X: np.ndarray, indices: Sequence[tuple[int, ...]] = ()) -> dict:
        return M._predict(self.predict, X, list(indices), M.DEFAULT_BATCH)


def _slug(group: str) -> str:
    return str(group).replace("/", "_").replace(os.sep, "_").replace(" ", "_") or "all"


def _save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as PNG at ``path`` atomically (``path.png.tmp``, then ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    FigureCanvasAgg(fig)
    try:
        fig.savefig(tmp, format="png", dpi=DPI)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _groups(runs: Sequence[RunInfo]) -> dict[str, list[RunInfo]]:
    out: dict[str, list[RunInfo]] = {}
    for r in runs:
        out.setdefault(str(r.group), []).append(r)
    return out


def _files_exist(run: RunInfo) -> bool:
    try:
        return Path(run.checkpoint).is_file() and Path(run.data).is_file()
    except (TypeError, OSError):
        return False


def _load(run: RunInfo, systems: Sequence[str]) -> _Loaded | None:
    """The run's network as a ``predict`` callable with its system, or None (logged) if its
    files are missing, it cannot be rebuilt, or it is of another system."""
    if not _files_exist(run):
        log.warning("figures: %s left out: checkpoint or data file missing", run.name)
        return None
    try:
        from ..learn.evaluate import make_predict
        from ..learn.trainer import load_model
        from ..systems import get_system

        model, ckpt = load_model(run.checkpoint)
        model.eval()
        sysd = ckpt["system"]
        if sysd["system"] not in systems:
            log.info("figures: %s left out: system %s", run.name, sysd["system"])
            return None
        system = get_system(sysd["system"], sysd.get("parameters") or {})
        cfg = ckpt.get("config") or {}
        engine = (cfg.get("train") or {}).get("engine", "auto")
        form = (cfg.get("data") or {}).get("form", "positions")
        return _Loaded(run, system, make_predict(model, engine), form)
    except Exception as exc:  # a figure must not fail because one run is broken
        log.warning("figures: %s left out: %s", run.name, exc)
        return None


def _load_group(runs: Sequence[RunInfo], systems: Sequence[str]) -> list[_Loaded]:
    """One loaded run per label (the first loadable of several seeds), with its colour."""
    seen: set[str] = set()
    out: list[_Loaded] = []
    for r in runs:
        if r.label in seen:
            continue
        lr = _load(r, systems)
        if lr is not None:
            seen.add(r.label)
            out.append(lr)
    used: set[str] = set()
    spare = iter(_SPARE_COLORS)
    for lr in out:
        c = MODE_COLORS.get(lr.run.mode)
        if c is None or c in used:
            c = next((s for s in spare if s not in used), "black")
        used.add(c)
        lr.color = c
    return out


def _metric(run: RunInfo, *path: str) -> float:
    """A float from ``run.metrics["metrics"][path...]``; nan if absent or null."""
    d: Any = run.metrics if isinstance(run.metrics, dict) else {}
    for key in ("metrics", *path):
        if not isinstance(d, dict) or key not in d:
            return math.nan
        d = d[key]
    try:
        return float(d)
    except (TypeError, ValueError):
        return math.nan


def _hat_err(name: str) -> str:
    """Mathtext |x̂ − x| (combining hats do not render well in plain text)."""
    return rf"$|\hat{{{name}}} - {name}|$"


def _fmt(v: float) -> str:
    return f"{v:.3g}" if math.isfinite(v) else "n/a"


def _finite_max(arrays, default: float = 1.0) -> float:
    vals = [float(np.max(a[np.isfinite(a)])) for a in arrays if np.isfinite(a).any()]
    return max(vals) if vals else default


def _log_norm(arrays) -> LogNorm:
    """One logarithmic scale for all ``arrays``: up to the largest finite value, down to the
    smallest 1st percentile of an array but not below ERROR_FLOOR (lower values are drawn in
    the lowest colour), at least one decade."""
    fin = [a[np.isfinite(a)] for a in (np.asarray(x, dtype=np.float64) for x in arrays)]
    fin = [f for f in fin if f.size]
    if not fin:
        return LogNorm(vmin=ERROR_FLOOR, vmax=1.0, clip=True)
    vmax = max(float(f.max()) for f in fin)
    vmin = max(ERROR_FLOOR, min(float(np.percentile(f, 1)) for f in fin))
    return LogNorm(vmin=vmin, vmax=max(vmax, 10 * vmin), clip=True)


def _error_colorbar(fig, img, axes, label, shrink=0.9):
    return fig.colorbar(img, ax=axes, label=label, shrink=shrink, extend="min")


def _log_or_linear(ax, values, axis: str = "y") -> None:
    """Logarithmic axis, or linear where the finite positive values span under a decade."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v) & (v > 0)]
    log_scale = v.size == 0 or v.max() > 10 * v.min()
    (ax.set_yscale if axis == "y" else ax.set_xscale)("log" if log_scale else "linear")


def _map_axes(fig, nrows: int, ncols: int, gridspec=None):
    """nrows×ncols axes sharing x and y (call :func:`_outer` once they are labelled)."""
    gs = gridspec if gridspec is not None else fig.add_gridspec(nrows, ncols)
    axs = gs.subplots(sharex=True, sharey=True, squeeze=False)
    return [list(row) for row in axs]


def _outer(axs) -> None:
    """Tick and axis labels only on the outer panels of a grid of shared axes."""
    for row in axs:
        for ax in row:
            ax.label_outer()


def _cmap(name: str = "viridis"):
    import matplotlib

    return matplotlib.colormaps[name].with_extremes(bad="lightgrey")


def _note_if_empty(ax, arr) -> None:
    if not np.isfinite(arr).any():
        ax.text(
            0.5,
            0.5,
            "no finite values\n(diverged)",
            ha="center",
            va="center",
            transform=ax.transAxes,
            fontsize=10,
            color="darkred",
            bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"},
        )


def _error_map(ax, err_ij, extent, norm, cmap, xlabel="x", ylabel="y", aspect="equal"):
    """|error| on an 'ij' grid (axis 0 is x), floored at ERROR_FLOOR, on a log scale."""
    img = ax.imshow(
        np.maximum(np.asarray(err_ij, dtype=np.float64), ERROR_FLOOR).T,
        origin="lower",
        extent=extent,
        norm=norm,
        cmap=cmap,
        interpolation="nearest",
        aspect=aspect,
    )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    _note_if_empty(ax, err_ij)
    return img


def _per_group(name: str, runs, out_dir, draw) -> list[Path]:
    """Call ``draw(group, runs, path) -> bool`` per group; collect the files written."""
    written = []
    for group, group_runs in _groups(runs).items():
        path = Path(out_dir) / f"{name}-{_slug(group)}.png"
        try:
            if draw(group, group_runs, path):
                written.append(path)
        except Exception:  # one broken group must not cost the others
            log.exception("figures: %s for group %s failed", name, group)
    return written


def _read(path: Path, keys: Sequence[str]) -> dict[str, np.ndarray] | None:
    from ..data.store import h5_dataset, open_dataset

    try:
        with open_dataset(path) as f:
            return {k: h5_dataset(f, k)[...] for k in keys if k in f}
    except Exception as exc:
        log.warning("figures: cannot read %s: %s", path, exc)
        return None


# ---------------------------------------------------------------------------------------------
# E1 pendulum (§3.5)


def _pendulum_test_set(path: Path):
    """(t, initial states, states) of at most MAX_TRAJECTORIES test trajectories."""
    from ..data.store import h5_dataset, open_dataset

    with open_dataset(path) as f:
        n = h5_dataset(f, "trajectories/initial_states").shape[0]
        idx = np.sort(h5_dataset(f, "splits/test")[...]) if "splits/test" in f else np.arange(n)
        idx = np.unique(idx)[:MAX_TRAJECTORIES]
        t = h5_dataset(f, "trajectories/t")[...]
        y0 = h5_dataset(f, "trajectories/initial_states")[idx]
        states = h5_dataset(f, "trajectories/states")[idx]
    return np.asarray(t, float), np.asarray(y0, float), np.asarray(states, float)


def _pendulum_predict(lr: _Loaded, t, y0):
    """θ̂ and the predicted angular velocity (∂θ̂/∂t, or ω̂ in the state form), (n_traj, n_t)."""
    n_traj, n_t = y0.shape[0], t.size
    X = np.concatenate([np.tile(t, n_traj)[:, None], np.repeat(y0, n_t, axis=0)], axis=1)
    if lr.form == "state":
        v = lr.eval(X)
        theta, omega = v[()][:, 0], v[()][:, 1]
    else:
        v = lr.eval(X, [(0,)])
        theta, omega = v[()][:, 0], v[(0,)][:, 0]
    return theta.reshape(n_traj, n_t), omega.reshape(n_traj, n_t)


def _limits(true: np.ndarray, pred: Sequence[np.ndarray]) -> tuple[float, float]:
    """Axis range of the true values, widened to show predictions up to max(span, 0.5)
    beyond it (a prediction further off is cut at the frame)."""
    lo, hi = float(np.min(true)), float(np.max(true))
    span = max(hi - lo, 0.5)
    for p in pred:
        fin = p[np.isfinite(p)]
        if fin.size:
            lo = min(lo, max(float(fin.min()), lo - span))
            hi = max(hi, min(float(fin.max()), hi + span))
    pad = 0.08 * (hi - lo)
    return lo - pad, hi + pad


def pendulum_phase(runs: list[RunInfo], out_dir: Path) -> list[Path]:
    """Phase portraits (θ, ω) of ≤ 5 test trajectories: the truth as thin black lines, each
    mode's (θ̂, ∂θ̂/∂t) in its colour, one panel per mode; below, |θ̂ − θ| against time (mean
    over the trajectories, band from min to max), all modes in one panel."""

    def draw(group, group_runs, path):
        loaded = _load_group(group_runs, ("pendulum",))
        if not loaded:
            return False
        cache: dict[str, tuple] = {}
        panels = []
        for lr in loaded:
            key = str(Path(lr.run.data).resolve())
            if key not in cache:
                cache[key] = _pendulum_test_set(lr.run.data)
            t, y0, states = cache[key]
            try:
                theta, omega = _pendulum_predict(lr, t, y0)
            except Exception as exc:
                log.warning("figures: %s not evaluated: %s", lr.run.name, exc)
                continue
            panels.append((lr, t, states, theta, omega))
        if not panels:
            return False
        n = len(panels)
        ncols = min(n, 4)
        nrows = math.ceil(n / ncols)
        fig = _figure(3.6 * ncols + 0.6, 3.4 * nrows + 3.2)
        gs = fig.add_gridspec(nrows + 1, ncols, height_ratios=[1] * nrows + [0.95])
        all_states = np.concatenate([p[2].reshape(-1, 2) for p in panels])
        xl = _limits(all_states[:, 0], [p[3] for p in panels])
        yl = _limits(all_states[:, 1], [p[4] for p in panels])
        for i, (lr, _t, states, theta, omega) in enumerate(panels):
            ax = fig.add_subplot(gs[i // ncols, i % ncols])
            for j in range(states.shape[0]):
                ax.plot(theta[j], omega[j], color=lr.color, lw=1.6, alpha=0.9)
                ax.plot(states[j, :, 0], states[j, :, 1], color="black", lw=0.7)
                ax.plot(states[j, 0, 0], states[j, 0, 1], "o", color="black", ms=3)
            ax.set_xlim(*xl)
            ax.set_ylim(*yl)
            ax.set_xlabel("θ [rad]")
            ax.set_ylabel("ω = dθ/dt [rad/s]")
            err = _metric(lr.run, "trajectory", "mean")
            ax.set_title(f"{lr.run.label}\nmean trajectory L² error {_fmt(err)}", fontsize=10)
            ax.grid(alpha=0.3)
            _note_if_empty(ax, theta)
        ax = fig.add_subplot(gs[nrows, :])
        for lr, t, states, theta, _omega in panels:
            e = np.abs(theta - states[:, :, 0])
            with np.errstate(invalid="ignore"):
                mean = np.maximum(np.mean(e, axis=0), 1e-12)
            if not np.isfinite(mean).any():
                ax.plot([], [], color=lr.color, label=f"{lr.run.label} (no finite values)")
                continue
            ax.plot(t, mean, color=lr.color, lw=1.6, label=lr.run.label)
            ax.fill_between(
                t,
                np.maximum(np.min(e, axis=0), 1e-12),
                np.maximum(np.max(e, axis=0), 1e-12),
                color=lr.color,
                alpha=0.15,
                lw=0,
            )
        _log_or_linear(ax, np.concatenate([np.abs(p[3] - p[2][:, :, 0]).ravel() for p in panels]))
        ax.set_xlabel("t [s]")
        ax.set_ylabel(r"$|\hat\theta - \theta|$ [rad]")
        ax.set_title(
            f"angle error along the {panels[0][2].shape[0]} test trajectories "
            "(line: mean, band: min–max)",
            fontsize=10,
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9, ncols=min(len(panels), 4))
        fig.suptitle(f"Pendulum phase portraits — {group} (black: true trajectories)")
        _save(fig, path)
        return True

    return _per_group("pendulum_phase", runs, out_dir, draw)


def _phase_grid(g: int = FIELD_GRID):
    th0 = np.linspace(-math.pi / 2, math.pi / 2, g)
    om0 = np.linspace(-1.5, 1.5, g)
    A, B = np.meshgrid(th0, om0, indexing="ij")
    X = np.stack([np.zeros(A.size), A.ravel(), B.ravel()], axis=1)
    return th0, om0, X


def _stream(ax, th0, om0, field_ij, **kw) -> None:
    """Streamlines of a field given on the 'ij' (θ0, ω0) grid, shape (G, G, 2)."""
    u = np.nan_to_num(field_ij[..., 0].T, nan=0.0, posinf=0.0, neginf=0.0)
    v = np.nan_to_num(field_ij[..., 1].T, nan=0.0, posinf=0.0, neginf=0.0)
    if not (np.any(u) or np.any(v)):
        return
    try:
        ax.streamplot(th0, om0, u, v, density=1.0, arrowsize=0.8, **kw)
    except Exception as exc:  # e.g. a field too wild to integrate
        log.warning("figures: streamplot failed: %s", exc)


def pendulum_field(runs: list[RunInfo], out_dir: Path) -> list[Path]:
    """The vector field at t = 0 on a 60×60 grid over θ0 ∈ [−π/2, π/2], ω0 ∈ [−1.5, 1.5]:
    the true f(θ, ω) (streamlines coloured by ‖f‖) and, per mode, the learned field
    (∂θ̂/∂t, ∂²θ̂/∂t²)(0, θ0, ω0) as streamlines over the pointwise error ‖f̂ − f‖ (one shared
    logarithmic colour scale); titles give the phase-space L² error of the metrics."""

    def draw(group, group_runs, path):
        loaded = _load_group(group_runs, ("pendulum",))
        if not loaded:
            return False
        th0, om0, X = _phase_grid()
        g = th0.size
        system = loaded[0].system
        f_true = np.asarray(system.vector_field(X[:, 0], X[:, 1:], np), dtype=np.float64)
        panels = []
        for lr in loaded:
            try:
                if lr.form == "state":
                    fp = lr.eval(X, [(0,)])[(0,)]
                else:
                    v = lr.eval(X, [(0,), (0, 0)])
                    fp = np.stack([v[(0,)][:, 0], v[(0, 0)][:, 0]], axis=1)
            except Exception as exc:
                log.warning("figures: %s not evaluated: %s", lr.run.name, exc)
                continue
            ft = np.asarray(lr.system.vector_field(X[:, 0], X[:, 1:], np), dtype=np.float64)
            err = np.linalg.norm(fp - ft, axis=1).reshape(g, g)
            panels.append((lr, fp.reshape(g, g, 2), err))
        if not panels:
            return False
        n = len(panels) + 1
        ncols = min(n, 4)
        nrows = math.ceil(n / ncols)
        fig = _figure(3.7 * ncols + 1.4, 3.5 * nrows + 0.6)
        axes = [fig.add_subplot(nrows, ncols, i + 1) for i in range(n)]
        extent = (th0[0], th0[-1], om0[0], om0[-1])
        ax = axes[0]
        ft = f_true.reshape(g, g, 2)
        speed = np.linalg.norm(ft, axis=-1)
        sp = ax.streamplot(
            th0, om0, ft[..., 0].T, ft[..., 1].T, color=speed.T, cmap="cividis", density=1.0
        )
        fig.colorbar(sp.lines, ax=ax, label="‖f(θ, ω)‖", shrink=0.9)
        ax.set_title("true field f(θ, ω)", fontsize=10)
        norm = _log_norm([p[2] for p in panels])
        cmap = _cmap("YlOrRd")
        img = None
        for ax, (lr, fp, err) in zip(axes[1:], panels, strict=True):
            img = _error_map(ax, err, extent, norm, cmap, "θ0 [rad]", "ω0 [rad/s]", aspect="auto")
            _stream(ax, th0, om0, fp, color="black", linewidth=0.6)
            l2 = _metric(lr.run, "phase_space", "l2")
            ax.set_title(f"{lr.run.label}\nphase-space L² error {_fmt(l2)}", fontsize=10)
        for ax in axes:
            ax.set_xlim(th0[0], th0[-1])
            ax.set_ylim(om0[0], om0[-1])
            ax.set_xlabel("θ0 [rad]")
            ax.set_ylabel("ω0 [rad/s]")
        if img is not None:
            _error_colorbar(fig, img, axes[1:], r"$\|\hat f - f\|$ at t = 0 (log scale)")
        fig.suptitle(
            "Pendulum: learned vector field "
            r"$(\partial_t\hat\theta, \partial_t^2\hat\theta)$"
            f" at t = 0 — {group}",
        )
        _save(fig, path)
        return True

    return _per_group("pendulum_field", runs, out_dir, draw)


# ---------------------------------------------------------------------------------------------
# E2 Allen–Cahn (§4.5) and its parametric families (§5.4)


def _allen_cahn_fields(lr: _Loaded, n: int):
    """|û − u| and |f̂ − f| on the n×n grid of the box ('ij'), as in metrics._allen_cahn_on."""
    system = lr.system
    coords = system.coordinates
    axes, X, _ = M._grid(system, coords, n)
    pos = [system.inputs.index(c) for c in coords]
    v = lr.eval(X, [(p,) for p in pos] + M._residual_indices(system))
    d = M._derivative_getter(system, v)
    f_hat = np.asarray(system.pde_residual(d, X, {"forcing": np.zeros(len(X))}, np))[:, 0]
    u_err = np.abs(v[()][:, 0] - system.exact(X)[:, 0]).reshape(n, n)
    f_err = np.abs(f_hat - np.asarray(system.forcing(X), dtype=np.float64)).reshape(n, n)
    return axes, u_err, f_err


def allen_cahn_errors(runs: list[RunInfo], out_dir: Path) -> list[Path]:
    """Steady Allen–Cahn: per mode (columns) the pointwise |û − u| (top row) and the forcing
    error |f̂ − f|, f̂ = λΔû − û + û³ (bottom row) on the 201×201 grid, log colour scales
    shared along each row (clipped at 1e-6); titles give the relative L² errors."""

    def draw(group, group_runs, path):
        loaded = _load_group(group_runs, ("allen-cahn",))
        panels = []
        for lr in loaded:
            try:
                panels.append((lr, *_allen_cahn_fields(lr, ALLEN_CAHN_GRID)))
            except Exception as exc:
                log.warning("figures: %s not evaluated: %s", lr.run.name, exc)
        if not panels:
            return False
        n = len(panels)
        fig = _figure(3.1 * n + 1.4, 6.6)
        axs = _map_axes(fig, 2, n)
        (x, y) = panels[0][1]
        extent = (x[0], x[-1], y[0], y[-1])
        cmap = _cmap("viridis")
        rows = [
            ("u", r"$|\hat u - u|$", [p[2] for p in panels]),
            (
                "forcing",
                r"$|\hat f - f|$,  $\hat f = \lambda\Delta\hat u - \hat u + \hat u^3$",
                [p[3] for p in panels],
            ),
        ]
        for r, (key, name, errs) in enumerate(rows):
            norm = _log_norm(errs)
            img = None
            for c, (lr, *_rest) in enumerate(panels):
                ax = axs[r][c]
                img = _error_map(ax, errs[c], extent, norm, cmap)
                rel = _metric(lr.run, key, "rel_l2")
                what = "u" if key == "u" else "f"
                ax.set_title(f"{lr.run.label}\nrel. L² error of {what}: {_fmt(rel)}", fontsize=10)
            _error_colorbar(fig, img, axs[r], name)
        _outer(axs)
        fig.suptitle(f"Allen–Cahn: pointwise errors on the {ALLEN_CAHN_GRID}² grid — {group}")
        _save(fig, path)
        return True

    return _per_group("allen_cahn_errors", runs, out_dir, draw)


def _parametric_sets_from_metrics(run: RunInfo) -> dict[str, list[dict]]:
    m = run.metrics.get("metrics") if isinstance(run.metrics, dict) else None
    if not isinstance(m, dict):
        return {}
    return {
        split: res["sets"]
        for split, res in m.items()
        if isinstance(res, dict) and isinstance(res.get("sets"), list) and res["sets"]
    }


def _parametric_sets_from_network(lr: _Loaded) -> dict[str, list[dict]]:
    """Per-set errors on a 101×101 grid for the parameter sets the data file lists (the
    splits as :mod:`derlhybrid.learn.evaluate` names them)."""
    keys = ["parameters/values"] + [
        f"parameters/{k}" for k in ("train", "val", "test", "test_values")
    ]
    d = _read(lr.run.data, keys) or {}
    sets = {}
    if "parameters/values" in d:
        for name in ("train", "val", "test"):
            if f"parameters/{name}" in d:
                sets[name] = d["parameters/values"][np.sort(d[f"parameters/{name}"])]
    if "parameters/test_values" in d:
        sets["unseen"] = d["parameters/test_values"]
    out = {}
    for name, ps in sets.items():
        res = M.evaluate_allen_cahn(lr.predict, lr.system, n=PARAMETRIC_GRID, parameter_sets=ps)
        out[name] = res["sets"]
    return out


def _num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def parametric_errors(runs: list[RunInfo], out_dir: Path) -> list[Path]:
    """Parametric Allen–Cahn (``allen-cahn-exp``: λ; ``allen-cahn-multi``: Λ1, Λ2): the
    relative L² error of u (left) and of the forcing f (right) per parameter set against
    the parameter (one row per parameter), one colour per mode, one marker per split
    (train / val / test / unseen). Values from the metrics' per-set results, else computed
    on a 101×101 grid."""

    def draw(group, group_runs, path):
        loaded = _load_group(group_runs, ("allen-cahn-exp", "allen-cahn-multi"))
        series = []
        for lr in loaded:
            sets = _parametric_sets_from_metrics(lr.run)
            if not sets:
                try:
                    sets = _parametric_sets_from_network(lr)
                except Exception as exc:
                    log.warning("figures: %s not evaluated: %s", lr.run.name, exc)
                    continue
            series.append((lr, sets))
        if not series:
            return False
        params = list(loaded[0].system.parameter_inputs)
        nrows = len(params)
        fig = _figure(11.5, 3.9 * nrows + 1.2)
        axs = [[fig.add_subplot(nrows, 2, r * 2 + c + 1) for c in range(2)] for r in range(nrows)]
        splits_seen: list[str] = []
        n_modes = len(series)
        for r, p in enumerate(params):
            dom = loaded[0].system.domain()[p]
            dodge = 0.008 * (dom[1] - dom[0])
            for c, (key, what) in enumerate((("u_rel_l2", "u"), ("forcing_rel_l2", "f"))):
                ax = axs[r][c]
                plotted: list[float] = []
                for i, (lr, sets) in enumerate(series):
                    shift = (i - (n_modes - 1) / 2) * dodge
                    xs_all, ys_all = [], []
                    for split, rows in sets.items():
                        xs = np.array([_num((s.get("parameters") or {}).get(p)) for s in rows])
                        ys = np.array([_num(s.get(key)) for s in rows])
                        ok = np.isfinite(xs) & np.isfinite(ys) & (ys > 0)
                        if split not in splits_seen:
                            splits_seen.append(split)
                        if not ok.any():
                            continue
                        ax.scatter(
                            xs[ok] + shift,
                            ys[ok],
                            marker=SPLIT_MARKERS.get(split, "x"),
                            s=36,
                            color=lr.color,
                            edgecolors="black" if split == "unseen" else "none",
                            linewidths=0.6,
                            alpha=0.9,
                            zorder=3,
                        )
                        xs_all += list(xs[ok] + shift)
                        ys_all += list(ys[ok])
                        plotted += list(ys[ok])
                    if len(params) == 1 and len(xs_all) > 1:  # guide line along λ
                        order = np.argsort(xs_all)
                        ax.plot(
                            np.asarray(xs_all)[order],
                            np.asarray(ys_all)[order],
                            color=lr.color,
                            lw=0.8,
                            alpha=0.5,
                        )
                _log_or_linear(ax, plotted)
                ax.set_xlabel(f"{PARAM_LABELS.get(p, p)}")
                ax.set_ylabel(f"relative L² error of {what}")
                ax.set_title(
                    f"{'u' if what == 'u' else 'forcing f'} against {PARAM_LABELS.get(p, p)}",
                    fontsize=10,
                )
                ax.grid(alpha=0.3)
        mode_handles = []
        for lr, sets in series:
            finite = any(
                math.isfinite(_num(s.get("u_rel_l2"))) for rows in sets.values() for s in rows
            )
            label = lr.run.label if finite else f"{lr.run.label} (no finite values)"
            mode_handles.append(
                Line2D([], [], color=lr.color, marker="o", ls="", ms=7, label=label)
            )
        split_handles = [
            Line2D(
                [],
                [],
                color="grey",
                marker=SPLIT_MARKERS.get(s, "x"),
                ls="",
                ms=7,
                markeredgecolor="black" if s == "unseen" else "grey",
                label=s,
            )
            for s in splits_seen
        ]
        fig.legend(
            handles=mode_handles + split_handles,
            loc="outside lower center",
            ncols=min(len(mode_handles) + len(split_handles), 6),
            fontsize=9,
        )
        system_name = loaded[0].system.name
        fig.suptitle(f"Parametric Allen–Cahn ({system_name}): error per parameter set — {group}")
        _save(fig, path)
        return True

    return _per_group("parametric_errors", runs, out_dir, draw)


# ---------------------------------------------------------------------------------------------
# E3 continuity (§6.5)


def _continuity_reference(path: Path):
    """Grid axes, the frames at t = 0, middle, end, and the reference mass on ≤ MASS_FRAMES
    strided frames; None without ``/fields/rho``."""
    from ..data.store import h5_dataset, open_dataset

    with open_dataset(path) as f:
        if "fields/rho" not in f:
            return None
        t, x, y = (np.asarray(h5_dataset(f, f"grid/{k}")[...], float) for k in "txy")
        rho = h5_dataset(f, "fields/rho")
        nt = t.size
        frames = sorted({0, nt // 2, nt - 1})
        snaps = np.stack([np.asarray(rho[k], float) for k in frames])
        stride = max(1, math.ceil(nt / MASS_FRAMES))
        mk = list(range(0, nt, stride))
        if mk[-1] != nt - 1:
            mk.append(nt - 1)
        dxdy = float((x[1] - x[0]) * (y[1] - y[0]))
        mass = np.array([float(np.sum(rho[k])) * dxdy for k in mk])
    return {
        "t": t,
        "x": x,
        "y": y,
        "frames": frames,
        "snaps": snaps,
        "mass_t": t[mk],
        "mass": mass,
        "dxdy": dxdy,
    }


def _continuity_frame(lr: _Loaded, tk: float, x, y) -> np.ndarray:
    X_, Y_ = np.meshgrid(x, y, indexing="ij")
    cols = {"t": np.full(X_.size, tk), "x": X_.ravel(), "y": Y_.ravel()}
    X = M._assemble(lr.system, cols, X_.size)
    return lr.eval(X)[()][:, 0].reshape(x.size, y.size)


def _continuity_mass(lr: _Loaded, ref) -> tuple[np.ndarray, np.ndarray]:
    """Predicted mass over time: the metrics' values, else Σρ̂ΔxΔy on ≤ 21 frames."""
    m = lr.run.metrics.get("metrics") if isinstance(lr.run.metrics, dict) else None
    mass = m.get("mass") if isinstance(m, dict) else None
    if isinstance(mass, dict) and mass.get("times") and mass.get("predicted"):
        ts = np.array([_num(v) for v in mass["times"]])
        ms = np.array([_num(v) for v in mass["predicted"]])
        if ts.size == ms.size and ts.size > 1:
            return ts, ms
    t = ref["t"]
    ts = np.linspace(t[0], t[-1], min(MASS_FRAMES_PREDICTED, t.size))
    ms = np.array(
        [float(np.sum(_continuity_frame(lr, tk, ref["x"], ref["y"]))) * ref["dxdy"] for tk in ts]
    )
    return ts, ms


def continuity_errors(runs: list[RunInfo], out_dir: Path) -> list[Path]:
    """Continuity equation: the reference ρ at t = 0, middle and end (top row); per mode the
    error |ρ̂ − ρ| at those times (one shared log colour scale, clipped at 1e-6); bottom, the
    total mass Σρ̂ΔxΔy over time of every mode against the reference's mass."""

    def draw(group, group_runs, path):
        loaded = _load_group(group_runs, ("continuity",))
        refs: dict[str, Any] = {}
        rows = []
        for lr in loaded:
            key = str(Path(lr.run.data).resolve())
            try:
                if key not in refs:
                    refs[key] = _continuity_reference(lr.run.data)
                ref = refs[key]
                if ref is None:
                    log.warning("figures: %s left out: no /fields/rho in its data", lr.run.name)
                    continue
                errs = [
                    np.abs(_continuity_frame(lr, ref["t"][k], ref["x"], ref["y"]) - snap)
                    for k, snap in zip(ref["frames"], ref["snaps"], strict=True)
                ]
                rows.append((lr, ref, errs, *_continuity_mass(lr, ref)))
            except Exception as exc:
                log.warning("figures: %s not evaluated: %s", lr.run.name, exc)
        if not rows:
            return False
        ref0 = rows[0][1]
        ncols = len(ref0["frames"])
        n = len(rows)
        fig = _figure(3.3 * ncols + 1.6, 2.9 * (n + 1) + 3.0)
        outer = fig.add_gridspec(2, 1, height_ratios=[2.9 * (n + 1), 3.0])
        axs = _map_axes(fig, n + 1, ncols, outer[0].subgridspec(n + 1, ncols))
        x, y = ref0["x"], ref0["y"]
        extent = (x[0], x[-1], y[0], y[-1])
        top = axs[0]
        vmax = _finite_max(list(ref0["snaps"]), 1.0)
        img = None
        for c, ax in enumerate(top):
            img = ax.imshow(
                ref0["snaps"][c].T,
                origin="lower",
                extent=extent,
                cmap="cividis",
                vmin=0.0,
                vmax=vmax,
                interpolation="nearest",
            )
            ax.set_title(f"reference ρ, t = {ref0['t'][ref0['frames'][c]]:.3g}", fontsize=10)
            ax.set_xlabel("x")
            ax.set_ylabel("y")
        assert img is not None  # ncols >= 1 frames
        fig.colorbar(img, ax=top, label="ρ", shrink=0.9)
        norm = _log_norm([e for r in rows for e in r[2]])
        cmap = _cmap("viridis")
        err_axes = []
        for i, (lr, ref, errs, _ts, _ms) in enumerate(rows):
            for c, e in enumerate(errs[:ncols]):
                ax = axs[i + 1][c]
                err_axes.append(ax)
                img = _error_map(ax, e, extent, norm, cmap)
                tk = ref["t"][ref["frames"][c]]
                title = f"{lr.run.label}: " + r"$|\hat\rho - \rho|$" + f", t = {tk:.3g}"
                if c == 0:
                    rel = _metric(lr.run, "density", "rel_l2")
                    title += f"\nrel. L² error {_fmt(rel)}"
                ax.set_title(title, fontsize=10)
        _error_colorbar(fig, img, err_axes, r"$|\hat\rho - \rho|$ (log scale)", shrink=0.6)
        _outer(axs)
        ax = fig.add_subplot(outer[1])
        ax.plot(ref0["mass_t"], ref0["mass"], color="black", lw=1.4, label="reference")
        for lr, _ref, _errs, ts, ms in rows:
            ok = np.isfinite(ts) & np.isfinite(ms)
            rmse = _metric(lr.run, "mass", "rmse")
            label = f"{lr.run.label} (RMSE {_fmt(rmse)})"
            if ok.any():
                ax.plot(ts[ok], ms[ok], color=lr.color, lw=1.4, marker=".", ms=4, label=label)
            else:
                ax.plot([], [], color=lr.color, label=f"{lr.run.label} (no finite values)")
        ax.set_xlabel("t")
        ax.set_ylabel("mass Σρ ΔxΔy")
        ax.set_title("total mass over time", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9, ncols=min(n + 1, 4))
        fig.suptitle(f"Continuity equation: density errors and mass — {group}")
        _save(fig, path)
        return True

    return _per_group("continuity_errors", runs, out_dir, draw)


# ---------------------------------------------------------------------------------------------
# E4 Kovasznay (§7.3)


def kovasznay_errors(runs: list[RunInfo], out_dir: Path) -> list[Path]:
    """Kovasznay flow: per mode (columns) the pointwise |û − u|, |v̂ − v|, |p̂ − p| (rows) on
    the 200×200 grid, log colour scales shared along each row (clipped at 1e-6); titles give
    the relative L² error of each component."""

    def draw(group, group_runs, path):
        loaded = _load_group(group_runs, ("kovasznay",))
        panels = []
        for lr in loaded:
            try:
                system = lr.system
                (x, y), X, _ = M._grid(system, system.coordinates, KOVASZNAY_GRID)
                E = np.abs(lr.eval(X)[()] - system.exact(X))
                E = E.reshape(x.size, y.size, -1)
                panels.append((lr, x, y, E))
            except Exception as exc:
                log.warning("figures: %s not evaluated: %s", lr.run.name, exc)
        if not panels:
            return False
        outputs = list(panels[0][0].system.outputs)
        n = len(panels)
        fig = _figure(2.9 * n + 1.5, 3.4 * len(outputs) + 0.5)
        axs = _map_axes(fig, len(outputs), n)
        x, y = panels[0][1], panels[0][2]
        extent = (x[0], x[-1], y[0], y[-1])
        cmap = _cmap("viridis")
        for r, name in enumerate(outputs):
            errs = [p[3][..., r] for p in panels]
            norm = _log_norm(errs)
            img = None
            for c, (lr, *_rest) in enumerate(panels):
                ax = axs[r][c]
                img = _error_map(ax, errs[c], extent, norm, cmap)
                rel = _metric(lr.run, "output", "per_output", name, "rel_l2")
                ax.set_title(f"{lr.run.label}: {_hat_err(name)}\nrel. L² {_fmt(rel)}", fontsize=10)
            _error_colorbar(fig, img, axs[r], _hat_err(name))
        _outer(axs)
        fig.suptitle(f"Kovasznay flow: pointwise errors on the {KOVASZNAY_GRID}² grid — {group}")
        _save(fig, path)
        return True

    return _per_group("kovasznay_errors", runs, out_dir, draw)


#: every figure by the name the experiment specs use

# ---------------------------------------------------------------------------------------------
# multi-stage experiments (§8, §10): errors per phase, error maps with the phase boundaries

#: markers of the evaluation regions of a parametric extension
REGION_MARKERS = ("o", "s", "D", "v", "P", "X")
TRANSFER_MAP_GRID = 101


def _final(run: RunInfo) -> dict:
    m = run.metrics.get("metrics") if isinstance(run.metrics, dict) else None
    return (m or {}).get("final") or {}


def _regions(run: RunInfo) -> dict:
    m = run.metrics.get("metrics") if isinstance(run.metrics, dict) else None
    return (m or {}).get("regions") or {}


def _first_per_label(runs):
    seen, out = set(), []
    for r in runs:
        if r.label not in seen and _final(r):
            seen.add(r.label)
            out.append(r)
    return out


def transfer_phase_errors(runs: list[RunInfo], out_dir: Path) -> list[Path]:
    """Multi-stage experiments: the final model's relative L² error of u per evaluation
    region (the phases, ``unseen``, ``global``) as grouped bars, one group per method
    (log scale; from the metrics, no network is evaluated)."""

    def draw(group, group_runs, path):
        chosen = _first_per_label(group_runs)
        if not chosen:
            return False
        names = list(_final(chosen[0]))
        names = [n for n in names if n not in ("global", "unseen")] + [
            n for n in ("unseen", "global") if n in names
        ]
        fig = _figure(max(6.0, 0.9 * len(chosen) * max(1, len(names)) / 2 + 2), 4.2)
        ax = fig.add_subplot()
        width = 0.8 / max(1, len(names))
        vals = []
        for j, name in enumerate(names):
            ys = []
            for r in chosen:
                v = (_final(r).get(name) or {}).get("u", {}).get("rel_l2")
                ys.append(float(v) if isinstance(v, int | float) else math.nan)
            vals += ys
            xs = np.arange(len(chosen)) + (j - (len(names) - 1) / 2) * width
            ax.bar(
                xs,
                ys,
                width,
                label=name,
                color=_SPARE_COLORS[j % len(_SPARE_COLORS)] if name not in ("global",) else "black",
            )
        ax.set_xticks(np.arange(len(chosen)), [r.label for r in chosen], rotation=30, ha="right")
        _log_or_linear(ax, vals)
        ax.set_ylabel("relative L² error of u (final model)")
        ax.legend(title="region", fontsize=8)
        ax.set_title(f"Errors per phase — {group}")
        _save(fig, path)
        return True

    return _per_group("transfer_phase_errors", runs, out_dir, draw)


def _stage_losses(run: RunInfo) -> list[tuple[str, np.ndarray]]:
    """(stage, total training loss per epoch) of each evaluated stage of a pipeline run,
    from the stages' checkpoints (their ``history``)."""
    from ..learn.checkpoint import load_checkpoint

    m = run.metrics.get("metrics") if isinstance(run.metrics, dict) else None
    order = (m or {}).get("stages_order") or []
    pdir = Path(run.checkpoint).parent.parent
    out = []
    for stage in order:
        ckpt = pdir / stage / "checkpoint.pt"
        if not ckpt.is_file():
            continue
        hist = load_checkpoint(ckpt).get("history") or []
        loss = [((h.get("train") or {}).get("loss", math.nan)) for h in hist]
        out.append((stage, np.asarray(loss, dtype=float)))
    return out


def transfer_loss_curves(runs: list[RunInfo], out_dir: Path) -> list[Path]:
    """Multi-stage experiments: each method's total training loss per epoch across its
    stages, one after the other (log scale), a dot at the first epoch of each later stage —
    where a stage starts from the previous weights (extend) or afresh (new), and how far
    each phase trains down."""

    def draw(group, group_runs, path):
        chosen = [r for r in _first_per_label(group_runs) if not _is_ncl(r)]
        curves = [(r, _stage_losses(r)) for r in chosen]
        curves = [(r, c) for r, c in curves if c]
        if not curves:
            return False
        fig = _figure(9.0, 4.6)
        ax = fig.add_subplot()
        vals = []
        colors = _cmap("tab20")
        for k, (r, stages) in enumerate(curves):
            start, xs, ys, firsts = 0, [], [], []
            for _, loss in stages:
                xs.append(start + np.arange(1, len(loss) + 1))
                ys.append(loss)
                if start and len(loss):
                    firsts.append((start + 1, loss[0]))
                start += len(loss)
            x, y = np.concatenate(xs), np.concatenate(ys)
            c = colors(k % 20)
            ax.plot(x, y, lw=1.2, color=c, label=r.label, ls="--" if "(new)" in r.label else "-")
            if firsts:
                ax.plot(*zip(*firsts, strict=True), "o", color=c, ms=4)
            vals += [v for v in y.tolist() if math.isfinite(v)]
        _log_or_linear(ax, vals)
        ax.set_xlabel("epoch (stages one after the other)")
        ax.set_ylabel("total training loss")
        ax.legend(fontsize=7, ncols=2)
        ax.set_title(f"Training loss across the stages — {group}")
        _save(fig, path)
        return True

    return _per_group("transfer_loss_curves", runs, out_dir, draw)


def _kdv_error_grid(lr: _Loaded, path: Path):
    from ..data.store import open_dataset
    from ..transfer.regions import kdv_grid

    with open_dataset(path) as f:
        t, x, u = kdv_grid(f)
    T, X = np.meshgrid(t, x, indexing="ij")
    pts = np.stack([T.ravel(), X.ravel()], axis=1)
    v = lr.eval(pts)[()][:, 0]
    return t, x, np.abs(v - u.reshape(-1)).reshape(len(t), len(x))


def _draw_boxes(ax, regions, xname, yname, dom) -> None:
    for name, reg in regions.items():
        box = (reg or {}).get("box")
        if not box:
            continue
        x0, x1 = box.get(xname, dom[xname])
        y0, y1 = box.get(yname, dom[yname])
        ax.plot([x0, x1, x1, x0, x0], [y0, y0, y1, y1, y0], color="white", lw=1.2, ls="--")
        ax.text(
            (x0 + x1) / 2,
            (y0 + y1) / 2,
            name,
            color="white",
            ha="center",
            va="center",
            fontsize=9,
            bbox={"facecolor": "black", "alpha": 0.3, "edgecolor": "none"},
        )


def transfer_error_maps(runs: list[RunInfo], out_dir: Path) -> list[Path]:
    """Multi-stage experiments: per method the final model's pointwise |û − u| over the
    whole domain with the phase regions drawn (KdV: over (t, x) on the data grid;
    Allen–Cahn: over (x, y) on a 101² grid), one shared log colour scale; parametric
    families: the per-parameter-set relative L² error in the (Λ₁, Λ₂) plane, one marker
    per region."""

    def draw(group, group_runs, path):
        chosen = _first_per_label(group_runs)
        loaded = _load_group(chosen, ("kdv", "allen-cahn", "allen-cahn-multi", "allen-cahn-exp"))
        if not loaded:
            return False
        system = loaded[0].system
        n = len(loaded)
        ncols = min(n, 4)
        nrows = math.ceil(n / ncols)
        fig = _figure(3.4 * ncols + 1.2, 3.0 * nrows + 0.6)
        if getattr(system, "parameter_inputs", ()):
            return _draw_parametric(fig, loaded, nrows, ncols, group, path)
        panels = []
        for lr in loaded:
            try:
                if system.name == "kdv":
                    a, b, err = _kdv_error_grid(lr, lr.run.data)
                    names = ("t", "x")
                else:
                    axes, X, _ = M._grid(lr.system, lr.system.coordinates, TRANSFER_MAP_GRID)
                    a, b = axes
                    err = np.abs(lr.eval(X)[()][:, 0] - lr.system.exact(X)[:, 0]).reshape(
                        len(a), len(b)
                    )
                    names = tuple(lr.system.coordinates)
                panels.append((lr, a, b, err, names))
            except Exception as exc:
                log.warning("figures: %s not evaluated: %s", lr.run.name, exc)
        if not panels:
            return False
        axs = _map_axes(fig, nrows, ncols)
        norm = _log_norm([p[3] for p in panels])
        cmap = _cmap("viridis")
        img = None
        dom = system.domain()
        for k, (lr, a, b, err, names) in enumerate(panels):
            ax = axs[k // ncols][k % ncols]
            extent = (a[0], a[-1], b[0], b[-1])
            img = _error_map(ax, err, extent, norm, cmap, names[0], names[1], aspect="auto")
            _draw_boxes(ax, _regions(lr.run), names[0], names[1], dom)
            ax.set_xlim(extent[0], extent[1])  # the boxes' lines add no margin
            ax.set_ylim(extent[2], extent[3])
            rel = (_final(lr.run).get("global") or {}).get("u", {}).get("rel_l2")
            ax.set_title(f"{lr.run.label}\nglobal rel. L² {_fmt(_num(rel))}", fontsize=9)
        for k in range(len(panels), nrows * ncols):
            axs[k // ncols][k % ncols].set_visible(False)
        _error_colorbar(fig, img, [a for row in axs for a in row], r"$|\hat u - u|$")
        _outer(axs)
        fig.suptitle(f"Final model, pointwise error, phase regions dashed — {group}")
        _save(fig, path)
        return True

    return _per_group("transfer_error_maps", runs, out_dir, draw)


def _draw_parametric(fig, loaded, nrows, ncols, group, path) -> bool:
    params = tuple(loaded[0].system.parameter_inputs)
    data = []
    for lr in loaded:
        per = []
        for j, (name, res) in enumerate((k, v) for k, v in _final(lr.run).items() if k != "global"):
            for s in res.get("sets", []):
                p = s["parameters"]
                per.append((name, j, [p[q] for q in params], _num(s["u_rel_l2"])))
        data.append((lr, per))
    vals = [e for _, per in data for *_, e in per]
    norm = _log_norm([np.asarray(vals)])
    cmap = _cmap("viridis")
    axs = _map_axes(fig, nrows, ncols)
    sc = None
    for k, (lr, per) in enumerate(data):
        ax = axs[k // ncols][k % ncols]
        for name in dict.fromkeys(n for n, *_ in per):
            pts = [(j, xy, e) for n, j, xy, e in per if n == name]
            xy = np.array([p[1] for p in pts], dtype=np.float64).reshape(-1, len(params))
            e = np.maximum(np.array([p[2] for p in pts]), ERROR_FLOOR)
            sc = ax.scatter(
                xy[:, 0],
                xy[:, -1],
                c=e,
                norm=norm,
                cmap=cmap,
                s=40,
                marker=REGION_MARKERS[pts[0][0] % len(REGION_MARKERS)],
                edgecolors="black",
                linewidths=0.5,
                label=name,
            )
        ax.set_xlabel(PARAM_LABELS.get(params[0], params[0]))
        ax.set_ylabel(PARAM_LABELS.get(params[-1], params[-1]))
        rel = (_final(lr.run).get("global") or {}).get("u", {}).get("rel_l2")
        ax.set_title(f"{lr.run.label}\nmean rel. L² {_fmt(_num(rel))}", fontsize=9)
        if k == 0:
            ax.legend(fontsize=7, title="parameters")
    for k in range(len(data), nrows * ncols):
        axs[k // ncols][k % ncols].set_visible(False)
    if sc is not None:
        fig.colorbar(sc, ax=[a for row in axs for a in row], label="relative L² error of u")
    _outer(axs)
    fig.suptitle(f"Final model, error per parameter set — {group}")
    _save(fig, path)
    return True


# ---------------------------------------------------------------------------------------------
# E6 Neural Conservation Law, Euler in a ball (§9.5)

NCL_SLICE_GRID = 101
NCL_SLICE_TIMES = (0.0, 0.25, 0.5)


def _is_ncl(run: RunInfo) -> bool:
    return isinstance(run.metrics, dict) and run.metrics.get("kind") == "ncl"


def _ncl_density(checkpoint: Path, grid: int = NCL_SLICE_GRID):
    """(x, y, ρ) of the NCL field of a raw-network checkpoint on the slice z = 0 at the
    times NCL_SLICE_TIMES: ρ of shape (len(times), grid, grid) on the 'ij' (x, y) grid,
    nan outside the unit disc."""
    import torch

    from ..learn.ncl import BallNCL
    from ..learn.trainer import load_model

    net = load_model(checkpoint)[0].eval()
    x = np.linspace(-1.0, 1.0, grid)
    X, Y = np.meshgrid(x, x, indexing="ij")
    inside = X**2 + Y**2 <= 1.0
    rho = np.full((len(NCL_SLICE_TIMES), grid, grid), np.nan)
    field = BallNCL(net)
    # the trainer's rule: one intra-op thread for small work (more only add synchronisation)
    before = torch.get_num_threads()
    if inside.sum() * net.config.width <= 2**18:
        torch.set_num_threads(1)
    try:
        for k, t in enumerate(NCL_SLICE_TIMES):
            pts = np.stack(
                [np.full(inside.sum(), t), X[inside], Y[inside], np.zeros(inside.sum())], axis=1
            )
            with torch.no_grad():
                v = field(torch.as_tensor(pts, dtype=field.dtype))[:, 0].double().numpy()
            rho[k][inside] = v
    finally:
        torch.set_num_threads(before)
    return x, x, rho


def ncl_slices(runs: list[RunInfo], out_dir: Path) -> list[Path]:
    """NCL distillation (paper.md §9.5): the teacher's density ρ on the slice z = 0 at
    t = 0, 0.25, 0.5 (top row) and, per student (rows), |ρ̂ − ρ_teacher| there on one shared
    logarithmic scale (grey: outside the ball). Runs of other kinds are left out."""

    def draw(group, group_runs, path):
        teachers = [r for r in group_runs if r.mode == "teacher" and _files_exist(r)]
        tckpt = (
            Path(teachers[0].checkpoint)
            if teachers
            else next(
                (
                    Path(r.metrics["teacher_checkpoint"])
                    for r in group_runs
                    if r.metrics.get("teacher_checkpoint")
                ),
                None,
            )
        )
        if tckpt is None or not tckpt.is_file():
            log.warning("figures: ncl_slices for %s: no teacher checkpoint", group)
            return False
        seen: set[str] = set()
        students = []
        for r in group_runs:
            if r.mode == "teacher" or r.label in seen or not _files_exist(r):
                continue
            if Path(r.metrics.get("teacher_checkpoint", "")) != tckpt:
                continue  # distilled from another seed's teacher
            seen.add(r.label)
            students.append(r)
        x, y, rho_t = _ncl_density(tckpt)
        errs = []
        for r in students:
            try:
                errs.append((r, np.abs(_ncl_density(r.checkpoint)[2] - rho_t)))
            except Exception as exc:
                log.warning("figures: %s not evaluated: %s", r.name, exc)
        ncols = len(NCL_SLICE_TIMES)
        nrows = 1 + len(errs)
        # a fixed layout: constrained layout costs seconds for this many panels
        fig = Figure(figsize=(3.0 * ncols + 1.6, 2.6 * nrows + 0.6), dpi=DPI)
        fig.subplots_adjust(
            left=0.1,
            right=0.8,
            bottom=0.5 / (2.6 * nrows + 0.6),
            top=1 - 0.9 / (2.6 * nrows + 0.6),
            wspace=0.08,
            hspace=0.3,
        )
        axs = _map_axes(fig, nrows, ncols)
        extent = (x[0], x[-1], y[0], y[-1])
        fin = rho_t[np.isfinite(rho_t)]
        lo, hi = (float(fin.min()), float(fin.max())) if fin.size else (0.0, 1.0)
        img = None
        for k, t in enumerate(NCL_SLICE_TIMES):
            ax = axs[0][k]
            img = ax.imshow(
                rho_t[k].T,
                origin="lower",
                extent=extent,
                vmin=lo,
                vmax=hi,
                cmap=_cmap("viridis"),
                interpolation="nearest",
            )
            ax.set_title(f"teacher ρ, t = {t:g}", fontsize=9)
            ax.set_xlabel("x")
            ax.set_ylabel("y")
            _note_if_empty(ax, rho_t[k])
        assert img is not None  # NCL_SLICE_TIMES is not empty
        fig.colorbar(img, ax=axs[0], label="ρ (teacher)", shrink=0.9)
        if errs:
            norm = _log_norm([e for _, e in errs])
            cmap = _cmap("magma")
            eimg = None
            for i, (r, err) in enumerate(errs, start=1):
                rms = _metric(r, "output_error", "rms")
                for k, t in enumerate(NCL_SLICE_TIMES):
                    ax = axs[i][k]
                    eimg = _error_map(ax, err[k], extent, norm, cmap)
                    ax.set_title(f"{r.label}, t = {t:g}" if k == 0 else f"t = {t:g}", fontsize=9)
                axs[i][0].set_ylabel(f"y\n(output err. RMS {_fmt(rms)})", fontsize=8)
            _error_colorbar(
                fig,
                eimg,
                [a for row in axs[1:] for a in row],
                r"$|\hat\rho - \rho_{teacher}|$",
                shrink=min(0.9, 3.0 / len(errs)),
            )
        for row in axs:
            for ax in row:
                ax.set_xticks([-0.5, 0, 0.5])
                ax.set_yticks([-0.5, 0, 0.5])
        _outer(axs)
        fig.suptitle(f"Density on the slice z = 0 — {group}")
        _save(fig, path)
        return True

    return _per_group("ncl_slices", [r for r in runs if _is_ncl(r)], out_dir, draw)


def _noise_and_estimator(run: RunInfo) -> tuple[float, str] | None:
    """σ and derivative estimator of the dataset a run trained on: from its generation
    request when the runner knows it (results merged from other machines have no files
    here), else from the file's ``config``."""
    import json

    from ..data.store import open_dataset

    if run.request is not None:
        est = run.request.get("empirical")
        return (float(run.request.get("noise") or 0.0), str(est)) if est else None
    if not _files_exist(run):
        log.warning("figures: noise_estimators: %s has no checkpoint or data file", run.name)
        return None
    try:
        with open_dataset(run.data) as f:
            # h5py is untyped: its inferred attrs[...] type holds arrays only, not str
            cfg = json.loads(f.attrs["config"])  # pyright: ignore[reportArgumentType]
    except Exception:  # a foreign file: the run is left out
        log.warning("figures: noise_estimators: cannot read %s", run.data)
        return None
    est = cfg.get("empirical")
    if not est:  # no estimated derivatives: not a noise-study dataset
        return None
    return float(cfg.get("noise") or 0.0), str(est)


#: the two panels of :func:`noise_estimators`: trajectories (the pendulum study) or a
#: steady field (the Allen–Cahn study), whichever metrics the runs have
_NOISE_PANELS = (
    (
        ("trajectory", "mean", "trajectory error"),
        ("field", "mean", "field error along trajectories"),
    ),
    (("u", "rel_l2", "rel. L2 error of u"), ("gradient", "l2", "L2 error of ∇u")),
)


def noise_estimators(runs: list[RunInfo], out_dir: Path) -> list[Path]:
    """Error against the noise σ of the samples, per derivative estimator (issue 19): the
    trajectory error and the field error along the test trajectories (flow maps) or the
    errors of u and ∇u on the evaluation grid (steady fields), mean ± std over seeds; DERL
    solid, SOB dashed, one colour per estimator, OUTL (no derivatives) black. One PNG for
    all groups, ``noise_estimators-all.png``."""
    cells: dict[tuple[str, str], dict[float, list[tuple[float, float]]]] = {}
    panels = _NOISE_PANELS[0]
    for r in runs:
        key = _noise_and_estimator(r)
        if key is None:
            continue
        sigma, est = key
        line = ("OUTL", "") if r.mode == "outl" else (r.mode.upper(), est)
        if not cells:  # the first run decides which metrics the study has
            panels = next(
                (p for p in _NOISE_PANELS if math.isfinite(_metric(r, *p[0][:2]))),
                _NOISE_PANELS[0],
            )
        vals = (_metric(r, *panels[0][:2]), _metric(r, *panels[1][:2]))
        cells.setdefault(line, {}).setdefault(sigma, []).append(vals)
    if not cells:
        return []
    sigmas = sorted({s for by in cells.values() for s in by})
    positive = [s for s in sigmas if s > 0]
    lin = min(positive) if positive else 1e-3
    estimators = sorted({e for _, e in cells if e})
    palette = dict(zip(estimators, [*MODE_COLORS.values(), *_SPARE_COLORS], strict=False))
    fig = _figure(11, 4.2)
    axs = fig.subplots(1, 2)
    for k, (ax, title) in enumerate(zip(axs, (p[2] for p in panels), strict=True)):
        for (mode, est), by in sorted(cells.items()):
            xs = sorted(by)
            arr = [np.array([v[k] for v in by[s]], dtype=float) for s in xs]
            mean = np.array([a.mean() for a in arr])
            std = np.array([a.std() for a in arr])
            style = {"DERL": "-", "SOB": "--"}.get(mode, ":")
            color = palette.get(est, "black")
            label = f"{mode} · {est}" if est else mode
            ax.errorbar(
                xs,
                mean,
                yerr=std,
                fmt="o" + style,
                color=color,
                label=label,
                ms=3.5,
                capsize=2,
                lw=1.2,
            )
        ax.set_xscale("symlog", linthresh=lin)
        ax.set_xlim(left=0)
        _log_or_linear(ax, [np.array([v[k] for by in cells.values() for s in by for v in by[s]])])
        ax.set_xlabel("noise σ on the samples")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
    axs[1].legend(fontsize=7, ncol=2, loc="best")
    where = "test trajectories" if panels is _NOISE_PANELS[0] else "evaluation grid"
    fig.suptitle(f"Learning through derivatives estimated from noisy samples ({where})")
    return [_save(fig, Path(out_dir) / "noise_estimators-all.png")]


#: figures drawn from the runs' metrics alone (no checkpoint or data file needed)
METRIC_ONLY = frozenset({"noise_estimators"})

FIGURES: dict[str, Callable[[list[RunInfo], Path], list[Path]]] = {
    "pendulum_phase": pendulum_phase,
    "pendulum_field": pendulum_field,
    "allen_cahn_errors": allen_cahn_errors,
    "parametric_errors": parametric_errors,
    "continuity_errors": continuity_errors,
    "kovasznay_errors": kovasznay_errors,
    "transfer_phase_errors": transfer_phase_errors,
    "transfer_error_maps": transfer_error_maps,
    "transfer_loss_curves": transfer_loss_curves,
    "ncl_slices": ncl_slices,
    "noise_estimators": noise_estimators,
}
