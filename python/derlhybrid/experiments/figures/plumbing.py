"""What every figure of :mod:`derlhybrid.experiments.figures` shares: :class:`RunInfo`,
loading a run's network, the colours, the Agg figure and its atomic PNG write, the shared
colour scales and error maps, one PNG per group."""

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

from ...learn import metrics as M

#: the package's logger for every figure module (records as before the split)
log = logging.getLogger(__name__.rpartition(".")[0])

#: resolution of every PNG
DPI = 150
#: errors below this are drawn at this value on the logarithmic colour scales
ERROR_FLOOR = 1e-6

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
#: modes of baseline networks that are not coordinate networks (no flow map, no history of
#: loss terms): the figures that do not know them leave them out
BASELINE_MODES = frozenset({"hnn"})
#: the seed whose network a figure draws where a method has several (else the first)
PREFERRED_SEED = 30
SPARE_COLORS = ("tab:cyan", "tab:gray", "gold", "navy", "lime", "teal", "maroon", "black")
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
    #: the run's training seed, if known (several runs of one label: the seeds)
    seed: int | None = None

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
            seed=r.get("seed"),
        )


# ---------------------------------------------------------------------------------------------
# plumbing


@dataclass
class Loaded:
    run: RunInfo
    system: Any
    predict: Callable
    form: str
    color: str = "tab:blue"

    def eval(self, X: np.ndarray, indices: Sequence[tuple[int, ...]] = ()) -> dict:
        return M.predict_batched(self.predict, X, list(indices), M.DEFAULT_BATCH)


def slug(group: str) -> str:
    return str(group).replace("/", "_").replace(os.sep, "_").replace(" ", "_") or "all"


def save_png(fig: Figure, path: Path) -> Path:
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


def new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def by_group(runs: Sequence[RunInfo]) -> dict[str, list[RunInfo]]:
    out: dict[str, list[RunInfo]] = {}
    for r in runs:
        out.setdefault(str(r.group), []).append(r)
    return out


def files_exist(run: RunInfo) -> bool:
    try:
        return Path(run.checkpoint).is_file() and Path(run.data).is_file()
    except (TypeError, OSError):
        return False


#: which systems a figure draws, asked of the system's class (never of its name)
Accept = Callable[[type], bool]


def of_kind(*kinds: str, parametric: bool | None = None) -> Accept:
    """The systems whose ``metrics_kind`` is one of ``kinds`` (the metrics, and so the
    exact solution and fields, a figure knows how to draw); ``parametric``: only those with
    (True) or without (False) parameter inputs, None: either. A system of your own with the
    right kind is drawn as the paper's are."""

    def accept(cls: type) -> bool:
        if getattr(cls, "metrics_kind", None) not in kinds:
            return False
        return parametric is None or bool(getattr(cls, "parameter_inputs", ())) == parametric

    return accept


def load_run(run: RunInfo, accept: Accept) -> Loaded | None:
    """The run's network as a ``predict`` callable with its system, or None (logged) if its
    files are missing, it cannot be rebuilt, or its system is not one ``accept`` takes
    (:func:`of_kind`). Baselines of another kind of network (the pendulum's HNN, mode
    ``hnn``) are not flow maps: None, drawn only by the figures that know them."""
    if run.mode in BASELINE_MODES:
        log.debug("figures: %s left out: a %s baseline", run.name, run.mode)
        return None
    if not files_exist(run):
        log.warning("figures: %s left out: checkpoint or data file missing", run.name)
        return None
    try:
        from ...learn.evaluate import make_predict
        from ...learn.trainer import load_model
        from ...systems import SYSTEMS, get_system

        model, ckpt = load_model(run.checkpoint)
        model.eval()
        sysd = ckpt["system"]
        cls = SYSTEMS.get(sysd["system"])
        if cls is None or not accept(cls):
            log.info("figures: %s left out: system %s", run.name, sysd["system"])
            return None
        system = get_system(sysd["system"], sysd.get("parameters") or {})
        cfg = ckpt.get("config") or {}
        engine = (cfg.get("train") or {}).get("engine", "auto")
        form = (cfg.get("data") or {}).get("form", "positions")
        return Loaded(run, system, make_predict(model, engine), form)
    except Exception as exc:  # a figure must not fail because one run is broken
        log.warning("figures: %s left out: %s", run.name, exc)
        return None


def by_label(runs: Sequence[RunInfo]) -> dict[str, list[RunInfo]]:
    """The runs per label (the seeds of one method), labels in order of first appearance,
    each label's runs with seed :data:`PREFERRED_SEED` first, the others in their order."""
    out: dict[str, list[RunInfo]] = {}
    for r in runs:
        out.setdefault(r.label, []).append(r)
    return {k: sorted(v, key=lambda r: r.seed != PREFERRED_SEED) for k, v in out.items()}


def mode_colors(modes: Sequence[str]) -> list[str]:
    """One colour per entry: the mode's :data:`MODE_COLORS`, a spare one where the mode has
    none or its colour is taken already."""
    used: set[str] = set()
    spare = iter(SPARE_COLORS)
    out = []
    for m in modes:
        c = MODE_COLORS.get(m)
        if c is None or c in used:
            c = next((s for s in spare if s not in used), "black")
        used.add(c)
        out.append(c)
    return out


def load_group(runs: Sequence[RunInfo], accept: Accept) -> list[Loaded]:
    """One loaded run per label (of several seeds, seed :data:`PREFERRED_SEED` if it
    loads, else the first loadable), with its colour."""
    out: list[Loaded] = []
    for seeds in by_label(runs).values():
        lr = next((x for x in (load_run(r, accept) for r in seeds) if x is not None), None)
        if lr is not None:
            out.append(lr)
    for lr, c in zip(out, mode_colors([lr.run.mode for lr in out]), strict=True):
        lr.color = c
    return out


def shown_seed(run: RunInfo) -> str:
    """``"seed 30"`` for a run of known seed, else ``"first run"`` (titles of the drawn
    networks where a method has several seeds)."""
    return "first run" if run.seed is None else f"seed {run.seed}"


def mean_std(values) -> tuple[float, float, int]:
    """Mean, population standard deviation (ddof 0) and count of the finite ``values``
    (nan, nan, 0 where none is finite): a diverged seed is not averaged in."""
    a = np.array([num(v) for v in values], dtype=np.float64)
    a = a[np.isfinite(a)]
    if not a.size:
        return math.nan, math.nan, 0
    return float(a.mean()), float(a.std()), int(a.size)


def metric_stats(runs: Sequence[RunInfo], *path: str) -> tuple[float, float, int]:
    """:func:`mean_std` of :func:`metric` over ``runs`` (the seeds of one method)."""
    return mean_std([metric(r, *path) for r in runs])


def fmt_stats(mean: float, std: float, n: int) -> str:
    """``"0.0123"`` of one value, ``"0.0123 ± 0.0011 (n = 5)"`` of several, ``"n/a"``."""
    if n == 0:
        return "n/a"
    return fmt(mean) if n == 1 else f"{fmt(mean)} ± {fmt(std)} (n = {n})"


def curve_stats(curves: Sequence) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per index (epoch) the mean, population std (ddof 0) and count of the curves' finite
    values; curves of different lengths count at each index only where they reach it
    (mean and std nan where no curve has a finite value)."""
    arrs = [np.asarray(c, dtype=np.float64).ravel() for c in curves]
    length = max((a.size for a in arrs), default=0)
    table = np.full((len(arrs), length), np.nan)
    for i, a in enumerate(arrs):
        table[i, : a.size] = a
    ok = np.isfinite(table)
    n = ok.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(ok, table, 0.0).sum(axis=0) / n
        var = np.where(ok, (table - mean) ** 2, 0.0).sum(axis=0) / n
    return mean, np.sqrt(var), n


def log_band(mean, std):
    """The band mean ± std for a logarithmic axis: the lower edge kept above mean/100
    (a std larger than the mean would reach zero)."""
    mean, std = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
    return np.maximum(mean - std, mean / 100), mean + std


def metric(run: RunInfo, *path: str) -> float:
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


def hat_err(name: str) -> str:
    """Mathtext |x̂ − x| (combining hats do not render well in plain text)."""
    return rf"$|\hat{{{name}}} - {name}|$"


def fmt(v: float) -> str:
    return f"{v:.3g}" if math.isfinite(v) else "n/a"


def finite_max(arrays, default: float = 1.0) -> float:
    vals = [float(np.max(a[np.isfinite(a)])) for a in arrays if np.isfinite(a).any()]
    return max(vals) if vals else default


def log_norm(arrays) -> LogNorm:
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


def error_colorbar(fig, img, axes, label, shrink=0.9):
    return fig.colorbar(img, ax=axes, label=label, shrink=shrink, extend="min")


def log_or_linear(ax, values, axis: str = "y") -> None:
    """Logarithmic axis, or linear where the finite positive values span under a decade."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v) & (v > 0)]
    log_scale = v.size == 0 or v.max() > 10 * v.min()
    (ax.set_yscale if axis == "y" else ax.set_xscale)("log" if log_scale else "linear")


def map_axes(fig, nrows: int, ncols: int, gridspec=None):
    """nrows×ncols axes sharing x and y (call :func:`label_outer` once they are labelled)."""
    gs = gridspec if gridspec is not None else fig.add_gridspec(nrows, ncols)
    axs = gs.subplots(sharex=True, sharey=True, squeeze=False)
    return [list(row) for row in axs]


def label_outer(axs) -> None:
    """Tick and axis labels only on the outer panels of a grid of shared axes."""
    for row in axs:
        for ax in row:
            ax.label_outer()


def colormap(name: str = "viridis"):
    import matplotlib

    return matplotlib.colormaps[name].with_extremes(bad="lightgrey")


def note_if_empty(ax, arr) -> None:
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


def error_map(ax, err_ij, extent, norm, cmap, xlabel="x", ylabel="y", aspect="equal"):
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
    note_if_empty(ax, err_ij)
    return img


def per_group(name: str, runs, out_dir, draw) -> list[Path]:
    """Call ``draw(group, runs, path) -> bool`` per group; collect the files written."""
    written = []
    for group, group_runs in by_group(runs).items():
        path = Path(out_dir) / f"{name}-{slug(group)}.png"
        try:
            if draw(group, group_runs, path):
                written.append(path)
        except Exception:  # one broken group must not cost the others
            log.exception("figures: %s for group %s failed", name, group)
    return written


def read_arrays(path: Path, keys: Sequence[str]) -> dict[str, np.ndarray] | None:
    from ...data.store import h5_dataset, open_dataset

    try:
        with open_dataset(path) as f:
            return {k: h5_dataset(f, k)[...] for k in keys if k in f}
    except Exception as exc:
        log.warning("figures: cannot read %s: %s", path, exc)
        return None


def num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan
