"""E3 continuity equation (paper.md §6.5): density errors and mass over time."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ...learn import metrics as M
from .plumbing import (
    Loaded,
    RunInfo,
    by_label,
    colormap,
    curve_stats,
    error_colorbar,
    error_map,
    finite_max,
    fmt_stats,
    label_outer,
    load_group,
    log,
    log_norm,
    map_axes,
    metric_stats,
    new_figure,
    num,
    of_kind,
    per_group,
    save_png,
    shown_seed,
)

#: frames of the reference read for the reference mass curve (strided), and frames evaluated
#: for the predicted mass when the metrics do not hold it
MASS_FRAMES = 101
MASS_FRAMES_PREDICTED = 21


def _continuity_reference(path: Path):
    """Grid axes, the frames at t = 0, middle, end, and the reference mass on ≤ MASS_FRAMES
    strided frames; None without ``/fields/rho``."""
    from ...data.store import h5_dataset, open_dataset

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


def _continuity_frame(lr: Loaded, tk: float, x, y) -> np.ndarray:
    X_, Y_ = np.meshgrid(x, y, indexing="ij")
    cols = {"t": np.full(X_.size, tk), "x": X_.ravel(), "y": Y_.ravel()}
    X = M.assemble_inputs(lr.system, cols, X_.size)
    return lr.eval(X)[()][:, 0].reshape(x.size, y.size)


def _metrics_mass(run: RunInfo) -> tuple[np.ndarray, np.ndarray] | None:
    """(times, predicted mass) of the run's metrics, or None."""
    m = run.metrics.get("metrics") if isinstance(run.metrics, dict) else None
    mass = m.get("mass") if isinstance(m, dict) else None
    if isinstance(mass, dict) and mass.get("times") and mass.get("predicted"):
        ts = np.array([num(v) for v in mass["times"]])
        ms = np.array([num(v) for v in mass["predicted"]])
        if ts.size == ms.size and ts.size > 1:
            return ts, ms
    return None


def mass_stats(runs) -> tuple[np.ndarray, np.ndarray, np.ndarray, int] | None:
    """Times, mean and population std of the predicted mass over the seeds whose metrics
    hold it on the same times (those of the first that does), and their count; None if
    none does."""
    found = [tm for tm in map(_metrics_mass, runs) if tm is not None]
    if not found:
        return None
    ts = found[0][0]
    same = [ms for t, ms in found if t.shape == ts.shape and np.allclose(t, ts, equal_nan=True)]
    mean, std, _ = curve_stats(same)
    return ts, mean, std, len(same)


def _continuity_mass(lr: Loaded, ref) -> tuple[np.ndarray, np.ndarray]:
    """Predicted mass over time: the metrics' values, else Σρ̂ΔxΔy on ≤ 21 frames."""
    found = _metrics_mass(lr.run)
    if found is not None:
        return found
    t = ref["t"]
    ts = np.linspace(t[0], t[-1], min(MASS_FRAMES_PREDICTED, t.size))
    ms = np.array(
        [float(np.sum(_continuity_frame(lr, tk, ref["x"], ref["y"]))) * ref["dxdy"] for tk in ts]
    )
    return ts, ms


def continuity_errors(runs: list[RunInfo], out_dir: Path) -> list[Path]:
    """Continuity equation: the reference ρ at t = 0, middle and end (top row); per mode the
    error |ρ̂ − ρ| at those times (one shared log colour scale, clipped at 1e-6) of one
    network per mode (seed 30, else the first); bottom, the total mass Σρ̂ΔxΔy over time of
    every mode against the reference's mass: the mean over the seeds whose metrics hold it,
    with a band of ± one std (population) and n in the legend. Relative errors and mass
    RMSE: mean ± std over the seeds (n)."""

    def draw(group, group_runs, path):
        seeds_of = by_label(group_runs)
        loaded = load_group(group_runs, of_kind("continuity"))
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
        fig = new_figure(3.3 * ncols + 1.6, 2.9 * (n + 1) + 3.0)
        outer = fig.add_gridspec(2, 1, height_ratios=[2.9 * (n + 1), 3.0])
        axs = map_axes(fig, n + 1, ncols, outer[0].subgridspec(n + 1, ncols))
        x, y = ref0["x"], ref0["y"]
        extent = (x[0], x[-1], y[0], y[-1])
        top = axs[0]
        vmax = finite_max(list(ref0["snaps"]), 1.0)
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
        norm = log_norm([e for r in rows for e in r[2]])
        cmap = colormap("viridis")
        err_axes = []
        for i, (lr, ref, errs, _ts, _ms) in enumerate(rows):
            for c, e in enumerate(errs[:ncols]):
                ax = axs[i + 1][c]
                err_axes.append(ax)
                img = error_map(ax, e, extent, norm, cmap)
                tk = ref["t"][ref["frames"][c]]
                title = f"{lr.run.label}: " + r"$|\hat\rho - \rho|$" + f", t = {tk:.3g}"
                if c == 0:
                    rel = metric_stats(seeds_of[lr.run.label], "density", "rel_l2")
                    title += f" ({shown_seed(lr.run)})\nrel. L² error {fmt_stats(*rel)}"
                ax.set_title(title, fontsize=10)
        error_colorbar(fig, img, err_axes, r"$|\hat\rho - \rho|$ (log scale)", shrink=0.6)
        label_outer(axs)
        ax = fig.add_subplot(outer[1])
        ax.plot(ref0["mass_t"], ref0["mass"], color="black", lw=1.4, label="reference")
        for lr, _ref, _errs, ts, ms in rows:
            seeds = seeds_of[lr.run.label]
            stats = mass_stats(seeds)
            sd = None
            if stats is not None and stats[3] > 1:
                ts, ms, sd, n = stats
            else:
                n = 1
            ok = np.isfinite(ts) & np.isfinite(ms)
            rmse = fmt_stats(*metric_stats(seeds, "mass", "rmse"))
            label = f"{lr.run.label} (n = {n}; RMSE {rmse})"
            if ok.any():
                ax.plot(ts[ok], ms[ok], color=lr.color, lw=1.4, marker=".", ms=4, label=label)
                if sd is not None:
                    ax.fill_between(
                        ts[ok], (ms - sd)[ok], (ms + sd)[ok], color=lr.color, alpha=0.2, lw=0
                    )
            else:
                ax.plot([], [], color=lr.color, label=f"{lr.run.label} (no finite values)")
        ax.set_xlabel("t")
        ax.set_ylabel("mass Σρ ΔxΔy")
        ax.set_title("total mass over time (mean over seeds, band ± 1 std)", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9, ncols=min(n + 1, 4))
        fig.suptitle(f"Continuity equation: density errors and mass — {group}")
        save_png(fig, path)
        return True

    return per_group("continuity_errors", runs, out_dir, draw)
