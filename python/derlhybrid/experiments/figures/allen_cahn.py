"""E2 Allen–Cahn (paper.md §4.5) and its parametric families (§5.4)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.lines import Line2D

from ...learn import metrics as M
from .plumbing import (
    PARAM_LABELS,
    Loaded,
    RunInfo,
    colormap,
    error_colorbar,
    error_map,
    fmt,
    label_outer,
    load_group,
    log,
    log_norm,
    log_or_linear,
    map_axes,
    metric,
    new_figure,
    num,
    of_kind,
    per_group,
    read_arrays,
    save_png,
)

ALLEN_CAHN_GRID = 201
PARAMETRIC_GRID = 101
SPLIT_MARKERS = {"train": "o", "val": "s", "test": "D", "unseen": "^"}


def _allen_cahn_fields(lr: Loaded, n: int):
    """|û − u| and |f̂ − f| on the n×n grid of the box ('ij'), as in metrics._allen_cahn_on."""
    system = lr.system
    coords = system.coordinates
    axes, X, _ = M.tensor_grid(system, coords, n)
    pos = [system.inputs.index(c) for c in coords]
    v = lr.eval(X, [(p,) for p in pos] + M.residual_indices(system))
    d = M.derivative_getter(system, v)
    f_hat = np.asarray(system.pde_residual(d, X, {"forcing": np.zeros(len(X))}, np))[:, 0]
    u_err = np.abs(v[()][:, 0] - system.exact(X)[:, 0]).reshape(n, n)
    f_err = np.abs(f_hat - np.asarray(system.forcing(X), dtype=np.float64)).reshape(n, n)
    return axes, u_err, f_err


def allen_cahn_errors(runs: list[RunInfo], out_dir: Path) -> list[Path]:
    """Steady Allen–Cahn: per mode (columns) the pointwise |û − u| (top row) and the forcing
    error |f̂ − f|, f̂ = λΔû − û + û³ (bottom row) on the 201×201 grid, log colour scales
    shared along each row (clipped at 1e-6); titles give the relative L² errors."""

    def draw(group, group_runs, path):
        loaded = load_group(group_runs, of_kind("allen-cahn", parametric=False))
        panels = []
        for lr in loaded:
            try:
                panels.append((lr, *_allen_cahn_fields(lr, ALLEN_CAHN_GRID)))
            except Exception as exc:
                log.warning("figures: %s not evaluated: %s", lr.run.name, exc)
        if not panels:
            return False
        n = len(panels)
        fig = new_figure(3.1 * n + 1.4, 6.6)
        axs = map_axes(fig, 2, n)
        (x, y) = panels[0][1]
        extent = (x[0], x[-1], y[0], y[-1])
        cmap = colormap("viridis")
        rows = [
            ("u", r"$|\hat u - u|$", [p[2] for p in panels]),
            (
                "forcing",
                r"$|\hat f - f|$,  $\hat f = \lambda\Delta\hat u - \hat u + \hat u^3$",
                [p[3] for p in panels],
            ),
        ]
        for r, (key, name, errs) in enumerate(rows):
            norm = log_norm(errs)
            img = None
            for c, (lr, *_rest) in enumerate(panels):
                ax = axs[r][c]
                img = error_map(ax, errs[c], extent, norm, cmap)
                rel = metric(lr.run, key, "rel_l2")
                what = "u" if key == "u" else "f"
                ax.set_title(f"{lr.run.label}\nrel. L² error of {what}: {fmt(rel)}", fontsize=10)
            error_colorbar(fig, img, axs[r], name)
        label_outer(axs)
        fig.suptitle(f"Allen–Cahn: pointwise errors on the {ALLEN_CAHN_GRID}² grid — {group}")
        save_png(fig, path)
        return True

    return per_group("allen_cahn_errors", runs, out_dir, draw)


def _parametric_sets_from_metrics(run: RunInfo) -> dict[str, list[dict]]:
    m = run.metrics.get("metrics") if isinstance(run.metrics, dict) else None
    if not isinstance(m, dict):
        return {}
    return {
        split: res["sets"]
        for split, res in m.items()
        if isinstance(res, dict) and isinstance(res.get("sets"), list) and res["sets"]
    }


def _parametric_sets_from_network(lr: Loaded) -> dict[str, list[dict]]:
    """Per-set errors on a 101×101 grid for the parameter sets the data file lists (the
    splits as :mod:`derlhybrid.learn.evaluate` names them)."""
    keys = ["parameters/values"] + [
        f"parameters/{k}" for k in ("train", "val", "test", "test_values")
    ]
    d = read_arrays(lr.run.data, keys) or {}
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


def parametric_errors(runs: list[RunInfo], out_dir: Path) -> list[Path]:
    """Parametric Allen–Cahn (``allen-cahn-exp``: λ; ``allen-cahn-multi``: Λ1, Λ2): the
    relative L² error of u (left) and of the forcing f (right) per parameter set against
    the parameter (one row per parameter), one colour per mode, one marker per split
    (train / val / test / unseen). Values from the metrics' per-set results, else computed
    on a 101×101 grid."""

    def draw(group, group_runs, path):
        loaded = load_group(group_runs, of_kind("allen-cahn", parametric=True))
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
        fig = new_figure(11.5, 3.9 * nrows + 1.2)
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
                        xs = np.array([num((s.get("parameters") or {}).get(p)) for s in rows])
                        ys = np.array([num(s.get(key)) for s in rows])
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
                log_or_linear(ax, plotted)
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
                math.isfinite(num(s.get("u_rel_l2"))) for rows in sets.values() for s in rows
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
        save_png(fig, path)
        return True

    return per_group("parametric_errors", runs, out_dir, draw)
