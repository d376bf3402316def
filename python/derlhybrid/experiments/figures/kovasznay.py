"""E4 Kovasznay flow (paper.md §7.3): pointwise errors of u, v, p."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...learn import metrics as M
from .plumbing import (
    RunInfo,
    by_label,
    colormap,
    error_colorbar,
    error_map,
    fmt_stats,
    hat_err,
    label_outer,
    load_group,
    log,
    log_norm,
    map_axes,
    metric_stats,
    new_figure,
    of_kind,
    per_group,
    save_png,
    shown_seed,
)

KOVASZNAY_GRID = 200


def kovasznay_errors(runs: list[RunInfo], out_dir: Path) -> list[Path]:
    """Kovasznay flow: per mode (columns) the pointwise |û − u|, |v̂ − v|, |p̂ − p| (rows) on
    the 200×200 grid, log colour scales shared along each row (clipped at 1e-6), of one
    network per mode (seed 30, else the first); titles give the relative L² error of each
    component, mean ± std over the seeds (n) where there are several."""

    def draw(group, group_runs, path):
        seeds_of = by_label(group_runs)
        loaded = load_group(group_runs, of_kind("kovasznay"))
        panels = []
        for lr in loaded:
            try:
                system = lr.system
                (x, y), X, _ = M.tensor_grid(system, system.coordinates, KOVASZNAY_GRID)
                E = np.abs(lr.eval(X)[()] - system.exact(X))
                E = E.reshape(x.size, y.size, -1)
                panels.append((lr, x, y, E))
            except Exception as exc:
                log.warning("figures: %s not evaluated: %s", lr.run.name, exc)
        if not panels:
            return False
        outputs = list(panels[0][0].system.outputs)
        n = len(panels)
        fig = new_figure(2.9 * n + 1.5, 3.4 * len(outputs) + 0.5)
        axs = map_axes(fig, len(outputs), n)
        x, y = panels[0][1], panels[0][2]
        extent = (x[0], x[-1], y[0], y[-1])
        cmap = colormap("viridis")
        for r, name in enumerate(outputs):
            errs = [p[3][..., r] for p in panels]
            norm = log_norm(errs)
            img = None
            for c, (lr, *_rest) in enumerate(panels):
                ax = axs[r][c]
                img = error_map(ax, errs[c], extent, norm, cmap)
                rel = metric_stats(seeds_of[lr.run.label], "output", "per_output", name, "rel_l2")
                ax.set_title(
                    f"{lr.run.label} ({shown_seed(lr.run)}): {hat_err(name)}\n"
                    f"rel. L² {fmt_stats(*rel)}",
                    fontsize=9,
                )
            error_colorbar(fig, img, axs[r], hat_err(name))
        label_outer(axs)
        fig.suptitle(f"Kovasznay flow: pointwise errors on the {KOVASZNAY_GRID}² grid — {group}")
        save_png(fig, path)
        return True

    return per_group("kovasznay_errors", runs, out_dir, draw)
