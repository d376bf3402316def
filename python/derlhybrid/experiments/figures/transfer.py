"""Multi-stage experiments (paper.md §8, §10): errors per phase, loss across the stages,
error maps with the phase boundaries."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ...learn import metrics as M
from .ncl import is_ncl
from .plumbing import (
    ERROR_FLOOR,
    PARAM_LABELS,
    SPARE_COLORS,
    Loaded,
    RunInfo,
    by_label,
    colormap,
    curve_stats,
    error_colorbar,
    error_map,
    fmt,
    fmt_stats,
    label_outer,
    load_group,
    log,
    log_band,
    log_norm,
    log_or_linear,
    map_axes,
    mean_std,
    new_figure,
    num,
    of_kind,
    per_group,
    save_png,
    shown_seed,
)
from .training import TOTAL, ordered_terms, term_panels, term_title

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
    """One run per label with final metrics (seed 30, else the first)."""
    return [seeds[0] for seeds in _seeds_per_label(runs).values()]


def _seeds_per_label(runs) -> dict[str, list[RunInfo]]:
    """The runs with final metrics per label (seed 30 first)."""
    return {
        k: v for k, v in ((k, [r for r in v if _final(r)]) for k, v in by_label(runs).items()) if v
    }


def _phase_value(run: RunInfo, region: str) -> float:
    v = (_final(run).get(region) or {}).get("u", {}).get("rel_l2")
    return float(v) if isinstance(v, int | float) else math.nan


def phase_error_stats(runs: list[RunInfo]) -> tuple[list[str], list[str], np.ndarray]:
    """Labels, regions (phases, then ``unseen``, ``global``) and per (label, region) the
    (mean, population std, n) of the final model's relative L² error of u over the seeds,
    shape (labels, regions, 3)."""
    per = _seeds_per_label(runs)
    if not per:
        return [], [], np.zeros((0, 0, 3))
    names = list(_final(next(iter(per.values()))[0]))
    names = [n for n in names if n not in ("global", "unseen")] + [
        n for n in ("unseen", "global") if n in names
    ]
    stats = np.array(
        [
            [mean_std([_phase_value(r, name) for r in seeds]) for name in names]
            for seeds in per.values()
        ],
        dtype=np.float64,
    ).reshape(len(per), len(names), 3)
    return list(per), names, stats


def transfer_phase_errors(runs: list[RunInfo], out_dir: Path) -> list[Path]:
    """Multi-stage experiments: the final model's relative L² error of u per evaluation
    region (the phases, ``unseen``, ``global``) as grouped bars, one group per method: the
    mean over the method's seeds with error bars of ± one std (population; n under the
    method's name; log scale; from the metrics, no network is evaluated)."""

    def draw(group, group_runs, path):
        labels, names, stats = phase_error_stats(group_runs)
        if not labels:
            return False
        fig = new_figure(max(6.0, 0.9 * len(labels) * max(1, len(names)) / 2 + 2), 4.2)
        ax = fig.add_subplot()
        width = 0.8 / max(1, len(names))
        vals = []
        for j, name in enumerate(names):
            ys, sd = stats[:, j, 0], stats[:, j, 1]
            vals += list(ys)
            xs = np.arange(len(labels)) + (j - (len(names) - 1) / 2) * width
            err = np.nan_to_num(sd)
            ax.bar(
                xs,
                ys,
                width,
                yerr=[np.minimum(err, np.nan_to_num(ys) * 0.99), err],  # log axis: above 0
                capsize=2,
                error_kw={"elinewidth": 0.8},
                label=name,
                color=SPARE_COLORS[j % len(SPARE_COLORS)] if name not in ("global",) else "black",
            )
        n = stats[:, :, 2].max(axis=1).astype(int)
        ax.set_xticks(
            np.arange(len(labels)),
            [f"{lab}\n(n = {k})" for lab, k in zip(labels, n, strict=True)],
            rotation=30,
            ha="right",
        )
        log_or_linear(ax, vals)
        ax.set_ylabel("relative L² error of u (final model)")
        ax.legend(title="region", fontsize=8)
        ax.set_title(f"Errors per phase — {group} (mean over seeds, bars ± 1 std)")
        save_png(fig, path)
        return True

    return per_group("transfer_phase_errors", runs, out_dir, draw)


def stage_histories(run: RunInfo) -> list[tuple[str, list[dict]]]:
    """(stage, per-epoch ``history``) of each evaluated stage of a pipeline run, in order,
    from the stages' checkpoints; a stage without a checkpoint is left out."""
    from ...learn.checkpoint import load_checkpoint

    m = run.metrics.get("metrics") if isinstance(run.metrics, dict) else None
    order = (m or {}).get("stages_order") or []
    pdir = Path(run.checkpoint).parent.parent
    out = []
    for stage in order:
        ckpt = pdir / stage / "checkpoint.pt"
        if ckpt.is_file():
            out.append((stage, load_checkpoint(ckpt).get("history") or []))
    return out


def stage_losses(run: RunInfo) -> list[tuple[str, np.ndarray]]:
    """(stage, total training loss per epoch) of each evaluated stage of a pipeline run,
    from the stages' checkpoints (their ``history``)."""
    return [
        (stage, _term_curve([_epoch_terms(h) for h in hist], TOTAL))
        for stage, hist in stage_histories(run)
    ]


def term_key(raw: str) -> str:
    """The panel a recorded loss term is drawn in: a term on a source's old points,
    ``distill:<source>:<kind>`` or ``replay:<source>:<kind>`` (the point set of
    :class:`~derlhybrid.transfer.distill.DistillSource`), as ``distill:<kind>`` or
    ``replay:<kind>``, so that each later stage's term on its own predecessor's points
    continues one curve; every other term as is."""
    parts = raw.split(":", 2)
    if len(parts) == 3 and parts[0] in ("distill", "replay"):
        return f"{parts[0]}:{parts[2]}"
    return raw


def _epoch_terms(record: dict) -> dict[str, float]:
    """One history record's training terms by :func:`term_key` (summed where a stage
    distils the same kind from several sources)."""
    out: dict[str, float] = {}
    for k, v in (record.get("train") or {}).items():
        if isinstance(v, int | float):
            key = term_key(k)
            out[key] = out.get(key, 0.0) + float(v)
    return out


def _term_curve(epochs: list[dict[str, float]], term: str) -> np.ndarray:
    """One term per epoch from :func:`_epoch_terms` records; nan where it is absent."""
    return np.asarray([e.get(term, math.nan) for e in epochs], dtype=np.float64)


def stage_term_stats(seeds: list[RunInfo]):
    """The seeds' training loss terms across their stages, one stage after the other:
    ``(terms, starts, n_runs)`` with ``terms`` mapping each term (the total, ``"loss"``,
    first, then the others as they first appear; see :func:`term_key`) to its per-epoch
    (mean, population std, count) over the seeds, nan in the stages that do not record it;
    ``starts`` the first epoch (1-based) of each later stage, from the first seed with
    stages. None without any stage."""
    per_seed, starts = [], None
    for r in seeds:
        stages = stage_histories(r)
        if not stages:
            continue
        per_seed.append([_epoch_terms(rec) for _, hist in stages for rec in hist])
        if starts is None:
            lengths = np.cumsum([len(hist) for _, hist in stages])
            starts = [int(k) + 1 for k in lengths[:-1]]
    if not per_seed:
        return None
    names = ordered_terms(epoch for epochs in per_seed for epoch in epochs)
    terms = {t: curve_stats([_term_curve(epochs, t) for epochs in per_seed]) for t in names}
    return terms, starts or [], len(per_seed)


def transfer_loss_curves(runs: list[RunInfo], out_dir: Path) -> list[Path]:
    """Multi-stage experiments: each method's training loss per epoch across its stages,
    one after the other, one panel per loss term (the total first, then each term as the
    trainer records it, a distillation term under its kind whatever stage it distils;
    log y), the mean over its seeds with a band of ± one std (population; n in the legend;
    a fresh student (new) dashed), a dot at the first epoch of each later stage — where a
    stage starts from the previous weights (extend) or afresh (new), how far each phase
    trains down, and which term holds the loss up. A term a stage does not train leaves a
    gap there; every panel spans all the epochs; the first method is drawn on top, so a
    stage the methods share (a teacher, a first phase) shows in its colour."""

    def draw(group, group_runs, path):
        per = {k: [r for r in v if not is_ncl(r)] for k, v in _seeds_per_label(group_runs).items()}
        stats = [(label, stage_term_stats(seeds)) for label, seeds in per.items() if seeds]
        stats = [(label, st) for label, st in stats if st is not None]
        if not stats:
            return False
        names = ordered_terms(terms for _, (terms, _s, _n) in stats)
        fig, panels = term_panels(len(names), 4.6, 1.3)
        colors = colormap("tab20")
        handles, legend, last = [], [], 1
        for j, (ax, term) in enumerate(zip(panels, names, strict=True)):
            vals = []
            for k, (label, (terms, starts, n_runs)) in enumerate(stats):
                if term not in terms:
                    continue
                mean, std, _n = terms[term]
                x = np.arange(1, mean.size + 1)
                c = colors(k % 20)
                ls = "--" if "(new)" in label else "-"
                z = 2 + len(stats) - k  # the first method on top: a stage it shares
                (h,) = ax.plot(x, mean, lw=1.1, color=c, ls=ls, zorder=z)
                if j == 0:
                    handles.append(h)
                    legend.append(f"{label} (n = {n_runs})")
                if n_runs > 1:
                    lo, hi = log_band(mean, std)
                    ax.fill_between(x, lo, hi, color=c, alpha=0.2, lw=0, zorder=z)
                firsts = [(e, mean[e - 1]) for e in starts if e <= mean.size]
                firsts = [(e, v) for e, v in firsts if math.isfinite(v)]
                if firsts:
                    ax.plot(*zip(*firsts, strict=True), "o", color=c, ms=3.5, zorder=z)
                last = max(last, mean.size)
                vals += [v for v in mean.tolist() if math.isfinite(v)]
            log_or_linear(ax, vals)
            ax.set_xlabel("epoch (stages one after the other)")
            ax.set_title(term_title(term), fontsize=10)
            ax.grid(alpha=0.3)
        for ax in panels:  # one epoch axis for every term, so the stages line up
            ax.set_xlim(0, last + 1)
        fig.legend(
            handles, legend, loc="outside lower center", ncols=min(len(handles), 4), fontsize=8
        )
        fig.suptitle(
            f"Training loss per term across the stages — {group}\n(mean over seeds, "
            "band ± 1 std; dot: a later stage's first epoch; dashed: a fresh student)",
            fontsize=11,
        )
        save_png(fig, path)
        return True

    return per_group("transfer_loss_curves", runs, out_dir, draw)


def _kdv_error_grid(lr: Loaded, path: Path):
    from ...data.store import open_dataset
    from ...transfer.regions import kdv_grid

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
    Allen–Cahn: over (x, y) on a 101² grid) of one network per method (seed 30, else the
    first), titles with the global error's mean ± std over the seeds; one shared log colour
    scale; parametric
    families: the per-parameter-set relative L² error in the (Λ₁, Λ₂) plane, one marker
    per region."""

    def draw(group, group_runs, path):
        seeds_of = _seeds_per_label(group_runs)
        chosen = [seeds[0] for seeds in seeds_of.values()]
        loaded = load_group(chosen, of_kind("grid-field", "allen-cahn"))
        if not loaded:
            return False
        system = loaded[0].system
        n = len(loaded)
        ncols = min(n, 4)
        nrows = math.ceil(n / ncols)
        fig = new_figure(3.4 * ncols + 1.2, 3.0 * nrows + 0.6)
        if getattr(system, "parameter_inputs", ()):
            return _draw_parametric(fig, loaded, nrows, ncols, group, path)
        panels = []
        for lr in loaded:
            try:
                if system.metrics_kind == "grid-field":  # the data grid's field (KdV)
                    a, b, err = _kdv_error_grid(lr, lr.run.data)
                    names = ("t", "x")
                else:
                    axes, X, _ = M.tensor_grid(lr.system, lr.system.coordinates, TRANSFER_MAP_GRID)
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
        axs = map_axes(fig, nrows, ncols)
        norm = log_norm([p[3] for p in panels])
        cmap = colormap("viridis")
        img = None
        dom = system.domain()
        for k, (lr, a, b, err, names) in enumerate(panels):
            ax = axs[k // ncols][k % ncols]
            extent = (a[0], a[-1], b[0], b[-1])
            img = error_map(ax, err, extent, norm, cmap, names[0], names[1], aspect="auto")
            _draw_boxes(ax, _regions(lr.run), names[0], names[1], dom)
            ax.set_xlim(extent[0], extent[1])  # the boxes' lines add no margin
            ax.set_ylim(extent[2], extent[3])
            rel = mean_std([_phase_value(r, "global") for r in seeds_of.get(lr.run.label, [])])
            ax.set_title(
                f"{lr.run.label} ({shown_seed(lr.run)})\nglobal rel. L² {fmt_stats(*rel)}",
                fontsize=9,
            )
        for k in range(len(panels), nrows * ncols):
            axs[k // ncols][k % ncols].set_visible(False)
        error_colorbar(fig, img, [a for row in axs for a in row], r"$|\hat u - u|$")
        label_outer(axs)
        fig.suptitle(f"Final model, pointwise error, phase regions dashed — {group}")
        save_png(fig, path)
        return True

    return per_group("transfer_error_maps", runs, out_dir, draw)


def _draw_parametric(fig, loaded, nrows, ncols, group, path) -> bool:
    params = tuple(loaded[0].system.parameter_inputs)
    data = []
    for lr in loaded:
        per = []
        for j, (name, res) in enumerate((k, v) for k, v in _final(lr.run).items() if k != "global"):
            for s in res.get("sets", []):
                p = s["parameters"]
                per.append((name, j, [p[q] for q in params], num(s["u_rel_l2"])))
        data.append((lr, per))
    vals = [e for _, per in data for *_, e in per]
    norm = log_norm([np.asarray(vals)])
    cmap = colormap("viridis")
    axs = map_axes(fig, nrows, ncols)
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
        ax.set_title(f"{lr.run.label}\nmean rel. L² {fmt(num(rel))}", fontsize=9)
        if k == 0:
            ax.legend(fontsize=7, title="parameters")
    for k in range(len(data), nrows * ncols):
        axs[k // ncols][k % ncols].set_visible(False)
    if sc is not None:
        fig.colorbar(sc, ax=[a for row in axs for a in row], label="relative L² error of u")
    label_outer(axs)
    fig.suptitle(f"Final model, error per parameter set — {group}")
    save_png(fig, path)
    return True
