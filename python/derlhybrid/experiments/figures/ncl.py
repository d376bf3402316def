"""E6 Neural Conservation Law, Euler in a ball (paper.md §9.5): density slices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .plumbing import (
    DPI,
    RunInfo,
    colormap,
    error_colorbar,
    error_map,
    files_exist,
    fmt,
    label_outer,
    log,
    log_norm,
    map_axes,
    metric,
    note_if_empty,
    per_group,
    save_png,
)

NCL_SLICE_GRID = 101
NCL_SLICE_TIMES = (0.0, 0.25, 0.5)


def is_ncl(run: RunInfo) -> bool:
    return isinstance(run.metrics, dict) and run.metrics.get("kind") == "ncl"


def _ncl_density(checkpoint: Path, grid: int = NCL_SLICE_GRID):
    """(x, y, ρ) of the NCL field of a raw-network checkpoint on the slice z = 0 at the
    times NCL_SLICE_TIMES: ρ of shape (len(times), grid, grid) on the 'ij' (x, y) grid,
    nan outside the unit disc."""
    import torch

    from ...learn.ncl import BallNCL
    from ...learn.trainer import load_model

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
        teachers = [r for r in group_runs if r.mode == "teacher" and files_exist(r)]
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
            if r.mode == "teacher" or r.label in seen or not files_exist(r):
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
        axs = map_axes(fig, nrows, ncols)
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
                cmap=colormap("viridis"),
                interpolation="nearest",
            )
            ax.set_title(f"teacher ρ, t = {t:g}", fontsize=9)
            ax.set_xlabel("x")
            ax.set_ylabel("y")
            note_if_empty(ax, rho_t[k])
        assert img is not None  # NCL_SLICE_TIMES is not empty
        fig.colorbar(img, ax=axs[0], label="ρ (teacher)", shrink=0.9)
        if errs:
            norm = log_norm([e for _, e in errs])
            cmap = colormap("magma")
            eimg = None
            for i, (r, err) in enumerate(errs, start=1):
                rms = metric(r, "output_error", "rms")
                for k, t in enumerate(NCL_SLICE_TIMES):
                    ax = axs[i][k]
                    eimg = error_map(ax, err[k], extent, norm, cmap)
                    ax.set_title(f"{r.label}, t = {t:g}" if k == 0 else f"t = {t:g}", fontsize=9)
                axs[i][0].set_ylabel(f"y\n(output err. RMS {fmt(rms)})", fontsize=8)
            error_colorbar(
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
        label_outer(axs)
        fig.suptitle(f"Density on the slice z = 0 — {group}")
        save_png(fig, path)
        return True

    return per_group("ncl_slices", [r for r in runs if is_ncl(r)], out_dir, draw)
