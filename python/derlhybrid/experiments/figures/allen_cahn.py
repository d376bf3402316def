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
    by_label,
    colormap,
    error_colorbar,
    error_map,
    fmt_stats,
    label_outer,
    load_group,
    log,
    log_norm,
    log_or_linear,
    map_axes,
    mean_std,
    metric_stats,
    mode_colors,
    new_figure,
    num,
    of_kind,
    per_group,
    read_arrays,
    save_png,
    shown_seed,
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
    shared along each row (clipped at 1e-6), of one network per mode (seed 30, else the
    first); titles give the relative L² errors, mean ± std over the seeds (n) where there
    are several."""

    def draw(group, group_runs, path):
        seeds_of = by_label(group_runs)
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
                rel = fmt_stats(*metric_stats(seeds_of[lr.run.label], key, "rel_l2"))
                what = "u" if key == "u" else "f"
                ax.set_title(
                    f"{lr.run.label} (map: {shown_seed(lr.run)})\nrel. L² error of {what}: {rel}",
                    fontsize=9,
                )
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


def parametric_stats(seed_sets: list[dict[str, list[dict]]]) -> dict[str, list[dict]]:
    """The per-set errors of several seeds (each split → its list of sets, the same sets in
    the same order: one data file) as split → per set ``{"parameters", "u_rel_l2",
    "forcing_rel_l2"}``, each error a (mean, population std, n) over the seeds' finite
    values."""
    out: dict[str, list[dict]] = {}
    for split in dict.fromkeys(k for sets in seed_sets for k in sets):
        rows = [sets[split] for sets in seed_sets if split in sets]
        n_sets = max(len(r) for r in rows)
        out[split] = [
            {
                "parameters": next(r[i] for r in rows if len(r) > i).get("parameters") or {},
                **{
                    key: mean_std([num(r[i].get(key)) for r in rows if len(r) > i])
                    for key in ("u_rel_l2", "forcing_rel_l2")
                },
            }
            for i in range(n_sets)
        ]
    return out


def parametric_errors(runs: list[RunInfo], out_dir: Path) -> list[Path]:
    """Parametric Allen–Cahn (``allen-cahn-exp``: λ; ``allen-cahn-multi``: Λ1, Λ2): the
    relative L² error of u (left) and of the forcing f (right) per parameter set against
    the parameter (one row per parameter), one colour per mode, one marker per split
    (train / val / test / unseen): the mean over the mode's seeds with error bars of ± one
    std (population; n in the legend). Values from the metrics' per-set results, else
    computed on a 101×101 grid of the drawn network (seed 30, else the first)."""

    def draw(group, group_runs, path):
        seeds_of = by_label(group_runs)
        loaded = load_group(group_runs, of_kind("allen-cahn", parametric=True))
        series = []
        for lr in loaded:
            seed_sets = [s for s in map(_parametric_sets_from_metrics, seeds_of[lr.run.label]) if s]
            if not seed_sets:
                try:
                    seed_sets = [_parametric_sets_from_network(lr)]
                except Exception as exc:
                    log.warning("figures: %s not evaluated: %s", lr.run.name, exc)
                    continue
            series.append((lr, len(seed_sets), parametric_stats(seed_sets)))
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
                for i, (lr, _n, sets) in enumerate(series):
                    shift = (i - (n_modes - 1) / 2) * dodge
                    xs_all, ys_all = [], []
                    for split, rows in sets.items():
                        xs = np.array([num(s["parameters"].get(p)) for s in rows])
                        ys = np.array([s[key][0] for s in rows], dtype=np.float64)
                        sd = np.array([s[key][1] for s in rows], dtype=np.float64)
                        ok = np.isfinite(xs) & np.isfinite(ys) & (ys > 0)
                        if split not in splits_seen:
                            splits_seen.append(split)
                        if not ok.any():
                            continue
                        low = np.minimum(np.nan_to_num(sd[ok]), ys[ok] * 0.99)  # log axis
                        ax.errorbar(
                            xs[ok] + shift,
                            ys[ok],
                            yerr=[low, np.nan_to_num(sd[ok])],
                            fmt=SPLIT_MARKERS.get(split, "x"),
                            ms=6,
                            color=lr.color,
                            mec="black" if split == "unseen" else lr.color,
                            mew=0.6,
                            elinewidth=0.9,
                            capsize=2,
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
        for lr, n, sets in series:
            finite = any(math.isfinite(s["u_rel_l2"][0]) for rows in sets.values() for s in rows)
            label = f"{lr.run.label} (n = {n})" if finite else f"{lr.run.label} (no finite values)"
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
        fig.suptitle(
            f"Parametric Allen–Cahn ({system_name}): error per parameter set — {group}\n"
            "(mean over seeds, bars ± 1 std)",
            fontsize=11,
        )
        save_png(fig, path)
        return True

    return per_group("parametric_errors", runs, out_dir, draw)


#: the ablations of the Allen–Cahn spec: group name prefix → (what varies, axis label, title)
ABLATIONS = {
    "noise": ("σ", "noise σ on u and ∇u", "noise on the samples"),
    "step": ("h", "finite-difference step h of ∇u", "∇u by central differences"),
}
#: the clean group the ablations are drawn against (same data, same L-BFGS protocol)
ABLATION_REFERENCE = "rand-lbfgs"
#: the panels: the spec's columns of u and of the forcing (allen-cahn.toml [[columns]])
ABLATION_PANELS = (
    (("u", "l2"), "L2 error of u"),
    (("u", "rel_l2"), "relative L2 error of u"),
    (("u", "max"), "max |u − û|"),
    (("residual", "l2"), "L2 PDE residual (= forcing error)"),
)


def _ablation_value(group: str) -> tuple[str, float] | None:
    """("noise", 0.01) of a group named ``noise-0.01`` (``step-…`` likewise), else None."""
    kind, _, value = str(group).partition("-")
    if kind not in ABLATIONS:
        return None
    try:
        v = float(value)
    except ValueError:
        return None
    return (kind, v) if v > 0 and math.isfinite(v) else None


def ablation_series(runs: list[RunInfo], kind: str) -> dict[str, dict]:
    """Per label of the ``kind`` ablation (``noise`` or ``step``): its mode, the swept
    values (ascending) and per panel of :data:`ABLATION_PANELS` the (mean, std, n) over the
    seeds at each value, plus the clean reference's (mean, std, n) per panel (group
    :data:`ABLATION_REFERENCE`, None where that label has no clean runs)."""
    cells: dict[str, dict[float, list[RunInfo]]] = {}
    modes: dict[str, str] = {}
    for r in runs:
        key = _ablation_value(r.group)
        if key is None or key[0] != kind:
            continue
        cells.setdefault(r.label, {}).setdefault(key[1], []).append(r)
        modes.setdefault(r.label, r.mode)
    out = {}
    for label, by in cells.items():
        xs = sorted(by)
        ref = [r for r in runs if r.group == ABLATION_REFERENCE and r.label == label]
        out[label] = {
            "mode": modes[label],
            "x": np.asarray(xs, dtype=np.float64),
            "panels": [[metric_stats(by[x], *path) for x in xs] for path, _ in ABLATION_PANELS],
            "reference": [metric_stats(ref, *path) for path, _ in ABLATION_PANELS] if ref else None,
        }
    return out


def ablation_lines(runs: list[RunInfo], out_dir: Path) -> list[Path]:
    """The Allen–Cahn ablations (groups ``noise-<σ>`` and ``step-<h>``): one PNG each,
    ``ablation_lines-noise.png`` and ``ablation_lines-step.png``, the error against σ
    (resp. h) on log–log axes, one panel per column of u and of the forcing, one line per
    method in its colour with markers and error bars of ± one std over the seeds
    (population, ddof 0; n in the legend). The clean L-BFGS group ``rand-lbfgs`` (σ = 0,
    exact ∇u), which a log axis cannot place, is a dotted horizontal line per method with a
    ± one std band. From the metrics alone."""
    written = []
    for kind, (sym, xlabel, what) in ABLATIONS.items():
        series = ablation_series(runs, kind)
        if not series:
            continue
        labels = list(series)
        colors = dict(zip(labels, mode_colors([series[k]["mode"] for k in labels]), strict=True))
        fig = new_figure(10.5, 8.0)
        axes = fig.subplots(2, 2, squeeze=False).ravel()
        handles, names = [], []
        for p, (ax, (_, title)) in enumerate(zip(axes, ABLATION_PANELS, strict=True)):
            plotted: list[float] = []
            for label, s in series.items():
                stats = np.asarray(s["panels"][p], dtype=np.float64)
                mean, std = stats[:, 0], stats[:, 1]
                ok = np.isfinite(mean) & (mean > 0)
                c = colors[label]
                if ok.any():
                    lo = np.minimum(std[ok], mean[ok] - mean[ok] / 100)  # log axis: above 0
                    h = ax.errorbar(
                        s["x"][ok],
                        mean[ok],
                        yerr=[lo, std[ok]],
                        fmt="o-",
                        color=c,
                        ms=4,
                        capsize=3,
                        lw=1.3,
                    )
                    plotted += list(mean[ok])
                    if p == 0:
                        ns = sorted({int(n) for n in stats[ok, 2]})
                        n_txt = str(ns[0]) if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"
                        handles.append(h)
                        names.append(f"{label} (n = {n_txt})")
                ref = s["reference"]
                if ref is not None:
                    rm, rs, rn = ref[p]
                    if math.isfinite(rm) and rm > 0:
                        ax.axhline(rm, color=c, ls=":", lw=1.2)
                        if rn > 1:
                            ax.axhspan(max(rm - rs, rm / 100), rm + rs, color=c, alpha=0.1, lw=0)
                        plotted.append(rm)
            ax.set_xscale("log")
            if plotted:  # log–log even where the errors span under a decade
                ax.set_yscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(title)
            ax.set_title(title, fontsize=10)
            ax.grid(alpha=0.3, which="both")
        if handles:
            fig.legend(
                handles, names, loc="outside lower center", ncols=min(len(names), 5), fontsize=9
            )
        fig.suptitle(
            f"Allen–Cahn ablation: {what}, error against {sym} (L-BFGS)\n"
            f"markers: mean over seeds, bars ± 1 std; dotted: clean data ({ABLATION_REFERENCE},"
            f" {sym} = 0), band ± 1 std",
            fontsize=11,
        )
        written.append(save_png(fig, Path(out_dir) / f"ablation_lines-{kind}.png"))
    return written
