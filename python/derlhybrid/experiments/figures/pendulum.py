"""E1 pendulum (paper.md §3.5): phase portraits and the learned vector field."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .plumbing import (
    Loaded,
    RunInfo,
    by_label,
    colormap,
    error_colorbar,
    error_map,
    files_exist,
    fmt_stats,
    load_group,
    log,
    log_norm,
    log_or_linear,
    metric_stats,
    new_figure,
    note_if_empty,
    of_kind,
    per_group,
    save_png,
    shown_seed,
)

#: test trajectories in the phase portraits
MAX_TRAJECTORIES = 5
#: grid of the learned pendulum field (the metric uses 250×250; 60×60 keeps arrows legible)
FIELD_GRID = 60


def _pendulum_test_set(path: Path):
    """(t, initial states, states) of at most MAX_TRAJECTORIES test trajectories."""
    from ...data.store import h5_dataset, open_dataset

    with open_dataset(path) as f:
        n = h5_dataset(f, "trajectories/initial_states").shape[0]
        idx = np.sort(h5_dataset(f, "splits/test")[...]) if "splits/test" in f else np.arange(n)
        idx = np.unique(idx)[:MAX_TRAJECTORIES]
        t = h5_dataset(f, "trajectories/t")[...]
        y0 = h5_dataset(f, "trajectories/initial_states")[idx]
        states = h5_dataset(f, "trajectories/states")[idx]
    return np.asarray(t, float), np.asarray(y0, float), np.asarray(states, float)


def _pendulum_predict(lr: Loaded, t, y0):
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
    over the trajectories, band from min to max), all modes in one panel. One network per
    mode (seed 30, else the first); titles give the mean trajectory error, mean ± std over
    the seeds (n) where there are several."""

    def draw(group, group_runs, path):
        seeds_of = by_label(group_runs)
        loaded = load_group(group_runs, of_kind("pendulum"))
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
        fig = new_figure(3.6 * ncols + 0.6, 3.4 * nrows + 3.2)
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
            err = fmt_stats(*metric_stats(seeds_of[lr.run.label], "trajectory", "mean"))
            ax.set_title(
                f"{lr.run.label} ({shown_seed(lr.run)})\nmean trajectory L² error {err}",
                fontsize=9,
            )
            ax.grid(alpha=0.3)
            note_if_empty(ax, theta)
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
        log_or_linear(ax, np.concatenate([np.abs(p[3] - p[2][:, :, 0]).ravel() for p in panels]))
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
        save_png(fig, path)
        return True

    return per_group("pendulum_phase", runs, out_dir, draw)


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


def training_region(path: Path) -> np.ndarray | None:
    """The convex hull of the (θ, ω) states of the training split's trajectories of a
    pendulum data file (closed polygon, shape (k + 1, 2)), or None (logged) if it cannot be
    read or is degenerate."""
    from scipy.spatial import ConvexHull, QhullError

    from ...data.store import h5_dataset, open_dataset

    try:
        with open_dataset(path) as f:
            n = h5_dataset(f, "trajectories/initial_states").shape[0]
            idx = np.sort(h5_dataset(f, "splits/train")[...]) if "splits/train" in f else None
            idx = np.unique(idx) if idx is not None else np.arange(n)
            states = np.asarray(h5_dataset(f, "trajectories/states")[idx], dtype=np.float64)
        pts = states.reshape(-1, states.shape[-1])[:, :2]
        pts = pts[np.isfinite(pts).all(axis=1)]
        hull = ConvexHull(pts)
    except (QhullError, ValueError, KeyError, OSError) as exc:
        log.warning("figures: no training region of %s: %s", path, exc)
        return None
    ring = pts[hull.vertices]
    return np.concatenate([ring, ring[:1]])


def _draw_region(ax, region: np.ndarray | None) -> None:
    if region is not None:
        ax.plot(region[:, 0], region[:, 1], color="tab:blue", lw=0.9, ls="--", alpha=0.9)


def _hnn_panel(runs: list[RunInfo], X: np.ndarray, g: int):
    """The HNN baseline of the group (mode ``hnn``; seed 30, else the first loadable) as
    (run, its seeds, field (G, G, 2) of (θ̇, ω̇) at the grid's (θ, ω), ‖f̂ − f‖ (G, G)),
    or None: the (q̇, ṗ) the network predicts at p = m·ω, converted to (θ̇, ω̇) = (q̇, ṗ/m)
    as the phase-space metric of :mod:`derlhybrid.learn.hnn` does."""
    from ...learn.hnn import hnn_field, load_hnn
    from ...systems import get_system

    for label, seeds in by_label([r for r in runs if r.mode == "hnn"]).items():
        for r in seeds:
            if not Path(r.checkpoint).is_file():
                log.warning("figures: %s left out: no hnn.pt", r.name)
                continue
            try:
                model, ckpt = load_hnn(r.checkpoint)
                model.eval()
                sysd = ckpt["system"]
                system: Any = get_system(sysd["system"], sysd.get("parameters") or {})
                dth, dom = hnn_field(model, X[:, 1], X[:, 2], system)
                fp = np.stack([dth, dom], axis=1)
                ft = np.asarray(system.vector_field(X[:, 0], X[:, 1:], np), dtype=np.float64)
            except Exception as exc:
                log.warning("figures: %s left out: %s", r.name, exc)
                continue
            err = np.linalg.norm(fp - ft, axis=1).reshape(g, g)
            return r, seeds, fp.reshape(g, g, 2), err
        log.warning("figures: no HNN of %s could be drawn", label)
    return None


def pendulum_field(runs: list[RunInfo], out_dir: Path) -> list[Path]:
    """The vector field at t = 0 on a 60×60 grid over θ0 ∈ [−π/2, π/2], ω0 ∈ [−1.5, 1.5]:
    the true f(θ, ω) (streamlines coloured by ‖f‖) and, per mode, the learned field
    (∂θ̂/∂t, ∂²θ̂/∂t²)(0, θ0, ω0) as streamlines over the pointwise error ‖f̂ − f‖ (one shared
    logarithmic colour scale); where the group has an HNN baseline (mode ``hnn``), its field
    (θ̇, ω̇) = (q̇, ṗ/m) at (θ, ω) as one more panel. One network per method (seed 30, else
    the first); titles give the phase-space L² error of the metrics, mean ± std over the
    seeds (n) where there are several. Every panel outlines (blue, dashed) the convex hull
    of the states (θ, ω) the training trajectories visit."""

    def draw(group, group_runs, path):
        seeds_of = by_label(group_runs)
        loaded = load_group(group_runs, of_kind("pendulum"))
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
            panels.append((lr.run, seeds_of[lr.run.label], fp.reshape(g, g, 2), err))
        if not panels:
            return False
        hnn = _hnn_panel(group_runs, X, g)
        if hnn is not None:
            panels.append(hnn)
        region = next(
            (
                reg
                for reg in (training_region(lr.run.data) for lr in loaded if files_exist(lr.run))
                if reg is not None
            ),
            None,
        )
        n = len(panels) + 1
        ncols = min(n, 4)
        nrows = math.ceil(n / ncols)
        fig = new_figure(3.7 * ncols + 1.4, 3.5 * nrows + 0.9)
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
        norm = log_norm([p[3] for p in panels])
        cmap = colormap("YlOrRd")
        img = None
        for ax, (run, seeds, fp, err) in zip(axes[1:], panels, strict=True):
            img = error_map(ax, err, extent, norm, cmap, "θ0 [rad]", "ω0 [rad/s]", aspect="auto")
            _stream(ax, th0, om0, fp, color="black", linewidth=0.6)
            l2 = fmt_stats(*metric_stats(seeds, "phase_space", "l2"))
            what = " baseline" if run.mode == "hnn" else ""
            ax.set_title(
                f"{run.label}{what} ({shown_seed(run)})\nphase-space L² error {l2}", fontsize=9
            )
        for ax in axes:
            _draw_region(ax, region)
            ax.set_xlim(th0[0], th0[-1])
            ax.set_ylim(om0[0], om0[-1])
            ax.set_xlabel("θ0 [rad]")
            ax.set_ylabel("ω0 [rad/s]")
        if img is not None:
            error_colorbar(fig, img, axes[1:], r"$\|\hat f - f\|$ at t = 0 (log scale)")
        hull = "; blue dashed: convex hull of the training states" if region is not None else ""
        fig.suptitle(
            "Pendulum: learned vector field "
            r"$(\partial_t\hat\theta, \partial_t^2\hat\theta)$"
            f" at t = 0 — {group}\n(one network per method: seed 30, else the first{hull})",
            fontsize=11,
        )
        save_png(fig, path)
        return True

    return per_group("pendulum_field", runs, out_dir, draw)
