"""Training-loss curves per loss term of every run-based experiment: one panel per term,
one line per method, mean over seeds with a ± one std band."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .plumbing import (
    BASELINE_MODES,
    RunInfo,
    by_label,
    curve_stats,
    files_exist,
    log,
    log_band,
    mode_colors,
    new_figure,
    per_group,
    save_png,
)

#: the key of the total training loss in a history record's ``train``
TOTAL = "loss"


@dataclass
class LossSeries:
    """One method's curve of one loss term: per epoch the mean, population std and count
    over its seeds (training, and validation where recorded)."""

    label: str
    mode: str
    n: int  # seeds with a history
    epochs: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    val_mean: np.ndarray | None = None
    val_std: np.ndarray | None = None


def run_history(run: RunInfo) -> list[dict] | None:
    """The per-epoch ``history`` of the run's checkpoint, or None (logged) if the checkpoint
    is missing, cannot be read or holds no history."""
    from ...learn.checkpoint import load_checkpoint

    try:
        if not files_exist(run):
            log.warning("figures: loss_curves: %s left out: checkpoint or data missing", run.name)
            return None
        hist = load_checkpoint(run.checkpoint).get("history")
    except Exception as exc:
        log.warning("figures: loss_curves: %s left out: %s", run.name, exc)
        return None
    if not isinstance(hist, list) or not hist or not isinstance(hist[0].get("train"), dict):
        log.warning("figures: loss_curves: %s left out: no history of loss terms", run.name)
        return None
    return hist


def _curve(hist: list[dict], split: str, term: str) -> np.ndarray:
    vals = []
    for h in hist:
        d = h.get(split)
        v = d.get(term) if isinstance(d, dict) else None
        vals.append(float(v) if isinstance(v, int | float) else math.nan)
    return np.asarray(vals, dtype=np.float64)


def ordered_terms(groups) -> list[str]:
    """The loss terms named in ``groups`` (iterables of term names), each once: the total
    (``"loss"``) first, then the others in the order they first appear."""
    terms: list[str] = []
    for names in groups:
        terms += [k for k in names if k not in terms]
    terms.sort(key=lambda k: k != TOTAL)
    return terms


def loss_series(histories: dict[str, list[tuple[RunInfo, list[dict]]]]) -> dict[str, list]:
    """Per loss term (the total, ``"loss"``, first) the :class:`LossSeries` of every label
    that records it, from ``histories``: label → [(run, history)] of its seeds."""
    terms = ordered_terms(
        [k for k, v in (h.get("train") or {}).items() if isinstance(v, int | float)]
        for seeds in histories.values()
        for _, hist in seeds
        for h in hist
    )
    out: dict[str, list[LossSeries]] = {}
    for term in terms:
        for label, seeds in histories.items():
            curves = [_curve(hist, "train", term) for _, hist in seeds]
            if not any(np.isfinite(c).any() for c in curves):
                continue
            mean, std, _ = curve_stats(curves)
            vals = [_curve(hist, "val", term) for _, hist in seeds]
            has_val = any(np.isfinite(c).any() for c in vals)
            vm, vs, _ = curve_stats(vals) if has_val else (None, None, None)
            out.setdefault(term, []).append(
                LossSeries(
                    label=label,
                    mode=seeds[0][0].mode,
                    n=len(seeds),
                    epochs=np.arange(1, mean.size + 1),
                    mean=mean,
                    std=std,
                    val_mean=vm,
                    val_std=vs,
                )
            )
    return out


def term_panels(n: int, width: float, below: float) -> tuple[Figure, list]:
    """A figure of ``n`` loss-term panels, three to a row, each ``width`` × 3.3 inches,
    ``below`` inches more for the legend: (figure, the ``n`` axes in order); the grid's
    spare cells are hidden."""
    ncols = min(n, 3)
    nrows = math.ceil(n / ncols)
    fig = new_figure(width * ncols + 0.4, 3.3 * nrows + below)
    grid = fig.subplots(nrows, ncols, squeeze=False)
    for k in range(n, nrows * ncols):
        grid[k // ncols][k % ncols].set_visible(False)
    return fig, [grid[k // ncols][k % ncols] for k in range(n)]


def term_title(term: str) -> str:
    """A loss panel's title: the total, or the term's name as the trainer records it."""
    return "total training loss" if term == TOTAL else f"loss term “{term}”"


def loss_curves(runs: list[RunInfo], out_dir: Path) -> list[Path]:
    """Training loss per epoch, one panel per loss term (the total first, then each term as
    the trainer records it in the checkpoint's ``history``), one line per method in its
    colour, log y: the mean over the method's seeds, a band of ± one std (population,
    ddof 0; its lower edge kept above mean/100 on the log axis) where it has several,
    n in the legend; the validation loss dashed where recorded (the validation records the
    terms of the interior points, not the total). Runs without a checkpoint, data file or
    history are left out (logged); baselines of another kind (HNN) are not drawn."""

    def draw(group, group_runs, path):
        histories: dict[str, list[tuple[RunInfo, list[dict]]]] = {}
        for label, seeds in by_label(
            [r for r in group_runs if r.mode not in BASELINE_MODES]
        ).items():
            for r in seeds:
                hist = run_history(r)
                if hist is not None:
                    histories.setdefault(label, []).append((r, hist))
        series = loss_series(histories)
        if not series:
            return False
        labels = list(histories)
        colors = dict(
            zip(labels, mode_colors([histories[k][0][0].mode for k in labels]), strict=True)
        )
        fig, axes = term_panels(len(series), 4.2, 1.2)
        handles: dict[str, Line2D] = {}
        any_val = False
        for ax, (term, lines) in zip(axes, series.items(), strict=True):
            positive = False
            for s in lines:
                c = colors[s.label]
                marker = "o" if s.epochs.size < 3 else None
                (h,) = ax.plot(s.epochs, s.mean, color=c, lw=1.4, marker=marker, ms=3)
                handles.setdefault(s.label, h)
                if s.n > 1:
                    lo, hi = log_band(s.mean, s.std)
                    ax.fill_between(s.epochs, lo, hi, color=c, alpha=0.2, lw=0)
                if s.val_mean is not None:
                    any_val = True
                    ax.plot(
                        s.epochs,
                        s.val_mean,
                        color=c,
                        lw=1.0,
                        ls="--",
                        marker=marker,
                        ms=4,
                        mfc="none",
                    )
                    if s.n > 1 and s.val_std is not None:
                        lo, hi = log_band(s.val_mean, s.val_std)
                        ax.fill_between(s.epochs, lo, hi, color=c, alpha=0.08, lw=0)
                positive |= bool(np.any(np.isfinite(s.mean) & (s.mean > 0)))
            if positive:
                ax.set_yscale("log")
            ax.set_xlabel("epoch")
            ax.set_title(term_title(term), fontsize=10)
            ax.grid(alpha=0.3)
        n_of = {label: len(seeds) for label, seeds in histories.items()}
        fig.legend(
            list(handles.values()),
            [f"{label} (n = {n_of[label]})" for label in handles],
            loc="outside lower center",
            ncols=min(len(handles), 5),
            fontsize=9,
        )
        val = "; dashed, open markers: validation" if any_val else ""
        fig.suptitle(
            f"Training loss per term — {group}\n(line: mean over seeds, band: ± 1 std{val})",
            fontsize=11,
        )
        save_png(fig, path)
        return True

    return per_group("loss_curves", runs, out_dir, draw)
