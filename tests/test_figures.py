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
