"""The figures of ``derl reproduce``: every figure writes valid, non-blank PNGs from tiny
trained runs, one per group, and survives diverged runs and missing files."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from matplotlib import image as mpimg

from derlhybrid.data.generate import GenerateRequest, generate
from derlhybrid.experiments.figures import FIGURES, RunInfo, allen_cahn
from derlhybrid.learn.checkpoint import load_checkpoint, save_checkpoint
from derlhybrid.learn.config import TrainConfig
from derlhybrid.learn.evaluate import evaluate
from derlhybrid.learn.trainer import train

#: each system's evaluate options (typed per kind of metrics: a key another kind reads is
#: refused); continuity's frame_stride keeps its default
OPTIONS = {"pendulum": {"phase_grid": 20}, "continuity": {}}
MODES = ("derl",)
FIGURES_OF = {
    "pendulum": ("pendulum_phase", "pendulum_field"),
    "allen-cahn": ("allen_cahn_errors",),
    "allen-cahn-exp": ("parametric_errors",),
    "kovasznay": ("kovasznay_errors",),
    "continuity": ("continuity_errors",),
}


def _train(data: Path, out: Path, mode: str) -> Path:
    cfg = TrainConfig.from_dict(
        {
            "data": {"path": str(data)},
            "model": {"width": 8, "depth": 1, "dtype": "float64"},
            "objective": {"mode": mode},
            "train": {"epochs": 1, "batch_size": 512, "lr": 1e-3, "progress": False},
        }
    )
    train(cfg, out)
    return out / "checkpoint.pt"


def _runs(tmp: Path, key: str, data: Path, group: str) -> list[RunInfo]:
    runs = []
    for mode in MODES:
        ckpt = _train(data, tmp / f"{key}-{mode}", mode)
        runs.append(
            RunInfo(
                name=f"{key}-{mode}",
                label=mode.upper(),
                mode=mode,
                group=group,
                data=data,
                checkpoint=ckpt,
                metrics=evaluate(ckpt, data, options=OPTIONS.get(key, {"grid": 21})),
            )
        )
    return runs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("figures")
    files = {
        "pendulum": GenerateRequest(
            system="pendulum", out=str(d / "p.h5"), n_trajectories=6, n_times=21, t_end=1.0, seed=1
        ),
        "allen-cahn": GenerateRequest(
            system="allen-cahn", out=str(d / "a.h5"), n_points=200, n_boundary=11, seed=1
        ),
        "allen-cahn-exp": GenerateRequest(
            system="allen-cahn-exp", out=str(d / "e.h5"), preset="paper"
        ),
        "kovasznay": GenerateRequest(
            system="kovasznay", out=str(d / "k.h5"), n_points=200, n_boundary=11, seed=1
        ),
        "continuity": GenerateRequest(
            system="continuity",
            out=str(d / "c.h5"),
            method="exact",
            n_points=31,
            n_times=5,
            params={"t_end": 1.0},
        ),
    }
    groups = {
        "pendulum": "damped/true",
        "allen-cahn": "allen/rand",
        "allen-cahn-exp": "exp",
        "kovasznay": "kov",
        "continuity": "cont/grid",
    }
    out = {}
    for key, req in files.items():
        data = generate(req, progress=False)
        out[key] = _runs(d, key, Path(data), groups[key])
    return out


def _check_png(path: Path) -> None:
    assert path.is_file(), path
    assert not path.with_name(path.name + ".tmp").exists()
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4), img.shape
    assert img.shape[0] > 200 and img.shape[1] > 200, img.shape
    assert float(img[..., :3].std()) > 0.01, "blank image"


def _nan_metrics(obj):
    if isinstance(obj, dict):
        return {k: _nan_metrics(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nan_metrics(v) for v in obj]
    if isinstance(obj, float):
        return math.nan
    return obj


def _broken_runs(runs: list[RunInfo], tmp: Path) -> list[RunInfo]:
    """A diverged run (NaN weights and metrics), one without a checkpoint, one with no
    metrics (figures compute what they need from the network)."""
    (good,) = runs
    ckpt = load_checkpoint(good.checkpoint)
    ckpt["model_state"] = {k: v * float("nan") for k, v in ckpt["model_state"].items()}
    poisoned = tmp / "nan" / "checkpoint.pt"
    save_checkpoint(poisoned, ckpt)
    nan = {"name": "nan", "label": "NaN", "mode": "sob", "checkpoint": poisoned}
    diverged = RunInfo(**{**vars(good), **nan, "metrics": _nan_metrics(good.metrics)})
    missing = RunInfo(**{**vars(good), "name": "gone", "label": "GONE", "checkpoint": tmp / "x"})
    null = RunInfo(
        **{**vars(good), "name": "null", "label": "NULL", "mode": "outl", "metrics": None}
    )
    return [diverged, missing, null]


# the figures of single-stage runs; those of multi-stage pipelines (transfer_*) draw from
# per-stage metrics and are checked end to end in tests/test_reproduce_transfer.py
@pytest.mark.parametrize("figure", [f for names in FIGURES_OF.values() for f in names])
def test_figure_writes_one_png_per_group_despite_broken_runs(runs, tmp_path, figure, monkeypatch):
    monkeypatch.setattr(allen_cahn, "PARAMETRIC_GRID", 21)  # the NULL run's fallback
    (key,) = [k for k, names in FIGURES_OF.items() if figure in names]
    group = runs[key][0].group
    paths = FIGURES[figure](runs[key] + _broken_runs(runs[key], tmp_path), tmp_path)
    assert paths == [tmp_path / f"{figure}-{group.replace('/', '_')}.png"]
    _check_png(paths[0])


def test_nothing_to_draw_writes_nothing(runs, tmp_path):
    for key, rs in runs.items():
        missing = RunInfo(**{**vars(rs[0]), "checkpoint": tmp_path / "no.pt"})
        gone = RunInfo(**{**vars(rs[0]), "label": "x", "data": tmp_path / "no.h5"})
        for name, fig in FIGURES.items():
            assert fig([missing, gone], tmp_path / "none") == [], (key, name)
    assert fig([], tmp_path / "none") == []
    assert not (tmp_path / "none").exists() or not any((tmp_path / "none").iterdir())


def test_one_file_per_group_seeds_once_other_systems_ignored(runs, tmp_path):
    import sys

    (a,) = runs["pendulum"]
    seed2 = RunInfo(**{**vars(a), "name": "a-s2"})  # same label: drawn once
    other = RunInfo(**{**vars(a), "label": "B", "mode": "outl", "group": "damped/other"})
    # a kovasznay run is not a pendulum run: left out, no file for its group
    kov = RunInfo(**{**vars(runs["kovasznay"][0]), "group": "kov"})
    paths = FIGURES["pendulum_phase"]([a, seed2, other, kov], tmp_path)
    assert [p.name for p in paths] == [
        "pendulum_phase-damped_true.png",
        "pendulum_phase-damped_other.png",
    ]
    for p in paths:
        _check_png(p)
    # drawn on Figure objects: no pyplot figures left open
    pyplot = sys.modules.get("matplotlib.pyplot")
    assert pyplot is None or not pyplot.get_fignums()


def test_figures_pick_systems_by_their_kind_not_their_name():
    """A figure draws the systems whose metrics it knows (``metrics_kind``), so a user's own
    system that declares a kind is drawn as the paper's are, and no other."""
    from derlhybrid.experiments.figures.plumbing import of_kind
    from derlhybrid.systems import SYSTEMS, FieldSystem

    class MyAllenCahn(FieldSystem):  # not registered, another name: only the kind counts
        name = "my-allen-cahn"
        metrics_kind = "allen-cahn"

    class MyField(FieldSystem):
        name = "my-field"

    plain, param = of_kind("allen-cahn", parametric=False), of_kind("allen-cahn", parametric=True)
    assert plain(MyAllenCahn) and not param(MyAllenCahn) and not plain(MyField)
    picked = {n for n, c in SYSTEMS.items() if of_kind("allen-cahn")(c)}
    assert picked >= {"allen-cahn", "allen-cahn-exp", "allen-cahn-multi"}
    assert {n for n in picked if param(SYSTEMS[n])} >= {"allen-cahn-exp", "allen-cahn-multi"}
    assert not param(SYSTEMS["allen-cahn"]) and not of_kind("allen-cahn")(SYSTEMS["pendulum"])
    assert of_kind("grid-field", "allen-cahn")(SYSTEMS["kdv"])


# -- issue 14: loss curves, the Allen–Cahn ablations, the HNN panel, mean ± std over seeds


def _seeded(run: RunInfo, tmp: Path, seed: int, history: list[dict], **kw) -> RunInfo:
    """A copy of ``run`` as another seed whose checkpoint holds ``history``."""
    ckpt = load_checkpoint(run.checkpoint)
    path = tmp / f"{run.name}-{kw.get('label', run.label)}-s{seed}" / "checkpoint.pt"
    save_checkpoint(path, {**ckpt, "history": history})
    new = {"name": f"{run.name}-s{seed}", "seed": seed, **kw, "checkpoint": path}
    return RunInfo(**{**vars(run), **new})


def _history(rng, epochs: int, val: bool = True) -> list[dict]:
    out = []
    for e in range(epochs):
        sys_, init = rng.uniform(0.1, 1.0, 2) / (e + 1)
        rec = {"epoch": e + 1, "train": {"loss": sys_ + init, "sys": sys_, "init": init}}
        if val:
            rec["val"] = {"sys": 2 * sys_}
        out.append(rec)
    return out


def test_loss_curves_mean_and_std_over_seeds(runs, tmp_path, monkeypatch):
    import numpy as np
    from matplotlib.axes import Axes

    from derlhybrid.experiments.figures import training as LC
    from derlhybrid.experiments.figures.plumbing import log_band

    (good,) = runs["pendulum"]
    rng = np.random.default_rng(0)
    hists = [_history(rng, 6) for _ in range(3)]
    derl = [_seeded(good, tmp_path, s, h) for s, h in zip((30, 1, 2), hists, strict=True)]
    outl = _seeded(good, tmp_path, 30, _history(rng, 6, val=False), label="OUTL", mode="outl")
    series = LC.loss_series(
        {"DERL": [(r, h) for r, h in zip(derl, hists, strict=True)], "OUTL": [(outl, [])]}
    )
    assert list(series) == ["loss", "sys", "init"]  # the total first
    d = next(s for s in series["sys"] if s.label == "DERL")
    table = np.array([[h["train"]["sys"] for h in hist] for hist in hists])
    np.testing.assert_allclose(d.mean, table.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(d.std, table.std(axis=0, ddof=0), rtol=1e-12)
    vt = np.array([[h["val"]["sys"] for h in hist] for hist in hists])
    assert d.val_mean is not None and d.n == 3
    np.testing.assert_allclose(d.val_mean, vt.mean(axis=0), rtol=1e-12)
    assert all(s.val_mean is None for s in series["loss"])  # no validation total

    bands, plots, ofill, oplot = [], [], Axes.fill_between, Axes.plot

    def fill(ax, x, lo, hi, **kw):
        bands.append((lo, hi))
        return ofill(ax, x, lo, hi, **kw)

    def plot(ax, *a, **kw):
        plots.append(a)
        return oplot(ax, *a, **kw)

    monkeypatch.setattr(Axes, "fill_between", fill)
    monkeypatch.setattr(Axes, "plot", plot)
    # the hnn baseline and a run without a checkpoint are left out
    hnn = RunInfo(**{**vars(good), "name": "hnn", "label": "HNN", "mode": "hnn"})
    gone = RunInfo(**{**vars(good), "name": "gone", "label": "X", "checkpoint": tmp_path / "x"})
    paths = FIGURES["loss_curves"]([*derl, outl, hnn, gone], tmp_path / "out")
    assert paths == [tmp_path / "out" / f"loss_curves-{good.group.replace('/', '_')}.png"]
    _check_png(paths[0])
    total = np.array([[h["train"]["loss"] for h in hist] for hist in hists])
    lo, hi = log_band(total.mean(axis=0), total.std(axis=0))
    assert any(np.allclose(b[0], lo) and np.allclose(b[1], hi) for b in bands)
    assert any(len(a) >= 2 and np.allclose(a[1], total.mean(axis=0)) for a in plots)
    # the one-seed method has no band: 3 terms + 1 validation term of DERL only
    assert len(bands) == 4


def test_loss_curves_of_trained_runs_despite_broken_runs(runs, tmp_path):
    for key in ("pendulum", "allen-cahn"):
        rs = runs[key]
        paths = FIGURES["loss_curves"](rs + _broken_runs(rs, tmp_path / key), tmp_path)
        assert paths == [tmp_path / f"loss_curves-{rs[0].group.replace('/', '_')}.png"]
        _check_png(paths[0])


def _ac_run(group: str, mode: str, seed: int, u: float, f: float) -> RunInfo:
    metrics = {"u": {"l2": u, "rel_l2": u / 2, "max": 3 * u}, "residual": {"l2": f}}
    return RunInfo(
        name=f"{group}-{mode}-s{seed}",
        label=mode.upper(),
        mode=mode,
        group=group,
        data=Path("/nonexistent.h5"),
        checkpoint=Path("/nonexistent.pt"),
        metrics={"metrics": metrics},
        seed=seed,
    )


def test_ablation_lines_error_bars_over_seeds(tmp_path, monkeypatch):
    import numpy as np
    from matplotlib.axes import Axes

    from derlhybrid.experiments.figures import allen_cahn as AC

    rng = np.random.default_rng(1)
    rows, want = [], {}
    for group in ("rand-lbfgs", "noise-0.001", "noise-0.01", "step-0.1", "step-0.01", "grid-adam"):
        modes = ("derl", "sob") if group.startswith("step") else ("derl", "outl")
        for mode in modes:
            seeds = (30, 42, 2025) if mode == "derl" else (30,)
            us = rng.uniform(1e-3, 1e-2, len(seeds))
            rows += [_ac_run(group, mode, s, u, 2 * u) for s, u in zip(seeds, us, strict=True)]
            want[group, mode] = us
    rows.append(_ac_run("noise-0.01", "derl", 7, math.nan, math.nan))  # diverged: not counted
    calls, original = [], Axes.errorbar

    def errorbar(ax, x, y, **kw):
        calls.append((x, y, kw["yerr"]))
        return original(ax, x, y, **kw)

    monkeypatch.setattr(Axes, "errorbar", errorbar)
    paths = FIGURES["ablation_lines"](rows, tmp_path)
    assert [p.name for p in paths] == ["ablation_lines-noise.png", "ablation_lines-step.png"]
    for p in paths:
        _check_png(p)
    s = AC.ablation_series(rows, "noise")
    assert list(s) == ["DERL", "OUTL"]
    np.testing.assert_array_equal(s["DERL"]["x"], [0.001, 0.01])
    for i, group in enumerate(("noise-0.001", "noise-0.01")):
        m, sd, n = s["DERL"]["panels"][0][i]  # u.l2
        us = want[group, "derl"]
        assert n == 3 and math.isclose(m, us.mean()) and math.isclose(sd, us.std(ddof=0))
    m, sd, n = s["DERL"]["reference"][3]  # the clean group's residual.l2
    assert n == 3 and math.isclose(m, 2 * want["rand-lbfgs", "derl"].mean())
    assert AC.ablation_series(rows, "step")["SOB"]["reference"] is None  # no clean SOB
    # what is drawn: DERL's u.l2 means with ± std bars (the lower one kept above 0)
    us = np.array([want[g, "derl"] for g in ("noise-0.001", "noise-0.01")])
    drawn = [c for c in calls if np.allclose(c[1], us.mean(axis=1))]
    assert drawn and np.allclose(drawn[0][2][1], us.std(axis=1))
    assert FIGURES["ablation_lines"]([rows[0]], tmp_path / "none") == []


def test_pendulum_field_draws_the_hnn_and_the_training_region(runs, tmp_path, monkeypatch):
    import numpy as np
    from matplotlib.path import Path as MPath

    from derlhybrid.experiments.figures import pendulum as P
    from derlhybrid.learn.hnn import train_hnn

    (good,) = runs["pendulum"]
    metrics = train_hnn(good.data, tmp_path / "hnn", epochs=1, phase_grid=20)
    as_hnn = {"name": "hnn-s30", "label": "HNN", "mode": "hnn", "seed": 30}
    as_hnn |= {"checkpoint": tmp_path / "hnn" / "hnn.pt", "metrics": {"metrics": metrics}}
    hnn = RunInfo(**{**vars(good), **as_hnn})
    first = RunInfo(**{**vars(good), "name": "s1", "seed": 1})
    preferred = RunInfo(**{**vars(good), "name": "s30", "seed": 30})
    figs, save = [], P.save_png
    monkeypatch.setattr(P, "save_png", lambda fig, path: figs.append(fig) or save(fig, path))
    paths = FIGURES["pendulum_field"]([first, preferred, hnn], tmp_path)
    assert len(paths) == 1
    _check_png(paths[0])
    titles = [ax.get_title() for ax in figs[0].axes]
    assert any(t.startswith("HNN baseline (seed 30)") for t in titles), titles
    assert any(t.startswith("DERL (seed 30)") for t in titles), titles  # seed 30 drawn
    assert "convex hull" in figs[0].get_suptitle()
    region = P.training_region(good.data)
    assert region is not None and np.allclose(region[0], region[-1])
    # every training state lies in the outline
    from derlhybrid.data.store import h5_dataset, open_dataset

    with open_dataset(good.data) as f:
        idx = np.sort(h5_dataset(f, "splits/train")[...])
        states = h5_dataset(f, "trajectories/states")[idx].reshape(-1, 2)
    outline = MPath(region)
    inside = outline.contains_points(states, radius=1e-9) | outline.contains_points(
        states, radius=-1e-9
    )  # the sign of the tolerance depends on the polygon's orientation
    assert inside.all()
    # without the HNN: one panel less; the other figures leave the HNN out
    figs.clear()
    FIGURES["pendulum_field"]([good], tmp_path / "no-hnn")
    assert not any(ax.get_title().startswith("HNN") for ax in figs[0].axes)
    assert len(FIGURES["pendulum_phase"]([good, hnn], tmp_path)) == 1
    broken = RunInfo(**{**vars(hnn), "checkpoint": tmp_path / "none.pt"})
    assert len(FIGURES["pendulum_field"]([good, broken], tmp_path / "b")) == 1


def test_statistics_over_seeds_are_population_mean_and_std():
    import numpy as np

    from derlhybrid.experiments.figures import allen_cahn as AC
    from derlhybrid.experiments.figures.plumbing import curve_stats, fmt_stats, mean_std
    from derlhybrid.experiments.figures.transfer import phase_error_stats

    assert mean_std([1.0, 2.0, math.nan, None]) == (1.5, 0.5, 2)
    assert fmt_stats(1.5, 0.5, 2) == "1.5 ± 0.5 (n = 2)" and fmt_stats(1.5, 0, 1) == "1.5"
    curves = [np.array([1.0, 2.0, 3.0]), np.array([3.0, 4.0]), np.array([math.nan, 8.0])]
    mean, std, n = curve_stats(curves)
    np.testing.assert_allclose(mean, [2.0, 14 / 3, 3.0])
    np.testing.assert_allclose(std, [1.0, np.std([2.0, 4.0, 8.0]), 0.0])
    np.testing.assert_array_equal(n, [2, 3, 1])
    # transfer bars: per method and region over the seeds
    rng = np.random.default_rng(2)
    vals = rng.uniform(0.01, 0.1, (3, 2))
    rows = []
    for k, v in enumerate(vals):
        final = {"phase-1": {"u": {"rel_l2": v[0]}}, "global": {"u": {"rel_l2": v[1]}}}
        rows.append(
            RunInfo(
                name=f"p-s{k}",
                label="DERL",
                mode="derl",
                group="g",
                data=Path("x"),
                checkpoint=Path("y"),
                seed=k,
                metrics={"metrics": {"final": final}},
            )
        )
    labels, names, stats = phase_error_stats(rows)
    assert labels == ["DERL"] and names == ["phase-1", "global"]
    np.testing.assert_allclose(stats[0, :, 0], vals.mean(axis=0))
    np.testing.assert_allclose(stats[0, :, 1], vals.std(axis=0, ddof=0))
    # parametric: per set over the seeds
    sets = [
        {"test": [{"parameters": {"lam": 0.1}, "u_rel_l2": a, "forcing_rel_l2": 2 * a}]}
        for a in (0.1, 0.3)
    ]
    (row,) = AC.parametric_stats(sets)["test"]
    assert row["parameters"] == {"lam": 0.1}
    np.testing.assert_allclose(row["u_rel_l2"], (0.2, 0.1, 2))
    np.testing.assert_allclose(row["forcing_rel_l2"], (0.4, 0.2, 2))


def test_run_info_from_a_row_keeps_the_seed():
    row = {"name": "a", "label": "A", "mode": "derl", "group": "g", "data": "d", "seed": 42}
    row |= {"checkpoint": "c", "metrics": {}}
    assert RunInfo.from_row(row).seed == 42
    assert RunInfo.from_row({**row, "seed": None}).seed is None
