"""Learning through derivatives estimated from noisy samples (issue 19)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .plumbing import (
    MODE_COLORS,
    SPARE_COLORS,
    RunInfo,
    files_exist,
    log,
    log_or_linear,
    mean_std,
    metric,
    new_figure,
    save_png,
)


def _noise_and_estimator(run: RunInfo) -> tuple[float, str] | None:
    """σ and derivative estimator of the dataset a run trained on: from its generation
    request when the runner knows it (results merged from other machines have no files
    here), else from the file's ``config``."""
    import json

    from ...data.store import open_dataset

    if run.request is not None:
        est = run.request.get("empirical")
        return (float(run.request.get("noise") or 0.0), str(est)) if est else None
    if not files_exist(run):
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
    errors of u and ∇u on the evaluation grid (steady fields), mean ± std (population) over
    the seeds' finite values, n in the legend; DERL solid, SOB dashed, one colour per
    estimator, OUTL (no derivatives) black. One PNG for all groups,
    ``noise_estimators-all.png``."""
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
                (p for p in _NOISE_PANELS if math.isfinite(metric(r, *p[0][:2]))),
                _NOISE_PANELS[0],
            )
        vals = (metric(r, *panels[0][:2]), metric(r, *panels[1][:2]))
        cells.setdefault(line, {}).setdefault(sigma, []).append(vals)
    if not cells:
        return []
    sigmas = sorted({s for by in cells.values() for s in by})
    positive = [s for s in sigmas if s > 0]
    lin = min(positive) if positive else 1e-3
    estimators = sorted({e for _, e in cells if e})
    palette = dict(zip(estimators, [*MODE_COLORS.values(), *SPARE_COLORS], strict=False))
    fig = new_figure(11, 4.2)
    axs = fig.subplots(1, 2)
    for k, (ax, title) in enumerate(zip(axs, (p[2] for p in panels), strict=True)):
        for (mode, est), by in sorted(cells.items()):
            xs = sorted(by)
            arr = [np.array([v[k] for v in by[s]], dtype=float) for s in xs]
            stats = np.array([mean_std(a) for a in arr], dtype=float).reshape(-1, 3)
            mean, std = stats[:, 0], stats[:, 1]
            style = {"DERL": "-", "SOB": "--"}.get(mode, ":")
            color = palette.get(est, "black")
            ns = sorted({int(np.isfinite(a).sum()) for a in arr})
            n_txt = str(ns[0]) if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"
            label = (f"{mode} · {est}" if est else mode) + f" (n = {n_txt})"
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
        log_or_linear(ax, [np.array([v[k] for by in cells.values() for s in by for v in by[s]])])
        ax.set_xlabel("noise σ on the samples")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
    axs[1].legend(fontsize=7, ncol=2, loc="best")
    where = "test trajectories" if panels is _NOISE_PANELS[0] else "evaluation grid"
    fig.suptitle(f"Learning through derivatives estimated from noisy samples ({where})")
    return [save_png(fig, Path(out_dir) / "noise_estimators-all.png")]
