"""Evaluate a trained network on a dataset: the paper's metrics of its experiment, plus the
loss terms on every split.

``evaluate(checkpoint, data)`` rebuilds the network from its checkpoint, checks that the
file holds data of the same system with the inputs and outputs the network was trained on,
and returns a JSON-ready dict: ``splits`` (the unweighted interior loss terms of the
training objective on each split) and ``metrics`` (the experiment's metrics from
:mod:`derlhybrid.learn.metrics`, chosen by the kind the system declares,
``System.metrics_kind``, through :data:`EVALUATORS`; every ODE system — one of your own
too — gets the flow-map metrics of ``evaluate_ode`` unless it declares another kind).
The options of each kind are typed (:mod:`derlhybrid.learn.evaluate_options`) and checked
before the network or the data are loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..data.store import (
    DatasetError,
    check_finite,
    check_indices,
    damaged_file_errors,
    open_dataset,
    provenance,
)
from ..systems import SYSTEMS
from ..systems.base import FieldSystem, ODESystem, System
from . import metrics as M
from .checkpoint import CheckpointError
from .derivatives import input_derivatives
from .evaluate_options import (
    AllenCahnOptions,
    ContinuityOptions,
    EvaluateOptions,
    FlowMapOptions,
    KovasznayOptions,
    PendulumOptions,
    check_options,
    metrics_kind,
)
from .losses import StepContext, build_objective
from .problems import Problem, load_problem
from .trainer import chunks, load_model

__all__ = ["EVALUATORS", "evaluate", "make_predict"]


def make_predict(model: torch.nn.Module, engine: str = "auto") -> Callable:
    """The ``predict(X, multi_indices)`` callable of :mod:`metrics` for a torch model:
    float64 NumPy in, float64 NumPy out, derivatives by the same engine as training."""
    device, dtype = next(model.parameters()).device, next(model.parameters()).dtype

    def predict(X: np.ndarray, indices) -> dict:
        x = torch.as_tensor(X, dtype=dtype, device=device)
        with torch.set_grad_enabled(engine == "autograd"):
            d = input_derivatives(model, x, indices, engine=engine)
        return {k: d[k].detach().double().cpu().numpy() for k in d.keys()}

    return predict


def _held_out_trajectories(f, split: str = "test") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(t, y0, states) of the ``split`` trajectories (``"test"`` or ``"val"``) that did not
    fail; a file without splits: all of them as the test set, and no validation set."""
    n = f["trajectories/states"].shape[0]
    idx = np.arange(n)
    key = f"splits/{split}"
    if key in f:
        idx = np.sort(check_indices(f[key][...], n, f.filename, f"/{key}"))
    elif split != "test":
        raise DatasetError(
            f"{f.filename}: no /{key} (this file has no {split} trajectories); "
            "evaluate on split = 'test'"
        )
    if "trajectories/status" in f:  # failed trajectories (NaN rows) are not test cases
        idx = idx[f["trajectories/status"][...][idx] == 0]
    t, y0, states = (
        f["trajectories/t"][...],
        f["trajectories/initial_states"][idx],
        f["trajectories/states"][idx],
    )
    for name, a in (("t", t), ("initial_states", y0), ("states", states)):
        check_finite(a, f.filename, f"/trajectories/{name}", rows=None if a is t else idx)
    return t, y0, states


def _on_held_out(evaluator, predict, problem: Problem, f, options, **extra) -> dict:
    """``evaluator`` (:func:`metrics.evaluate_pendulum` or :func:`metrics.evaluate_ode`) on
    the ``options.split`` trajectories; metrics on the validation trajectories say so
    (``"split": "val"``), those on the test trajectories stay as they were."""
    t, y0, states = _held_out_trajectories(f, options.split)
    metrics = evaluator(
        predict,
        problem.system,
        t,
        y0,
        states,
        form=problem.form,
        phase_grid=options.phase_grid,
        **extra,
    )
    return metrics if options.split == "test" else {"split": options.split, **metrics}


def _pendulum(predict, problem: Problem, f, options: PendulumOptions) -> dict:
    return _on_held_out(M.evaluate_pendulum, predict, problem, f, options)


def _ode(predict, problem: Problem, f, options: FlowMapOptions) -> dict:
    """The flow-map metrics (every ODE system unless it declares another kind):
    :func:`metrics.evaluate_ode` on the held-out trajectories; the phase-space grid (two
    states) spans ``options.phase_box``, default the box of the file's initial states."""
    box = options.phase_box
    if not isinstance(problem.system, ODESystem):
        raise DatasetError(f"{problem.system.name}: the flow-map metrics are for ODE systems")
    if box is None and problem.system.n_state == 2:
        y0_all = f["trajectories/initial_states"][...]
        y0_all = y0_all[np.isfinite(y0_all).all(axis=1)]
        box = list(zip(y0_all.min(axis=0), y0_all.max(axis=0), strict=True))
    return _on_held_out(M.evaluate_ode, predict, problem, f, options, phase_box=box)


def _allen_cahn(predict, problem: Problem, f, options: AllenCahnOptions) -> dict:
    n = options.grid
    system = problem.system
    if not isinstance(system, FieldSystem):
        raise DatasetError(f"{system.name}: the allen-cahn metrics are for field systems")
    if not system.parameter_inputs:
        return M.evaluate_allen_cahn(predict, system, n=n)
    out = {}
    values = f["parameters/values"][...]
    for name in ("train", "val", "test"):
        if f"parameters/{name}" in f:
            ix = check_indices(f[f"parameters/{name}"][...], len(values), f.filename, name)
            sets = values[np.sort(ix)]
            out[name] = M.evaluate_allen_cahn(predict, system, n=n, parameter_sets=sets)
    if "parameters/test_values" in f:
        sets = f["parameters/test_values"][...]
        out["unseen"] = M.evaluate_allen_cahn(predict, system, n=n, parameter_sets=sets)
    return out


def _kovasznay(predict, problem, f, options: KovasznayOptions) -> dict:
    return M.evaluate_kovasznay(predict, problem.system, n=options.grid)


def _continuity(predict, problem, f, options: ContinuityOptions) -> dict:
    if "fields/rho" not in f:
        raise DatasetError(f"{f.filename}: continuity metrics need the grid file (/fields/rho)")
    stride = options.frame_stride
    t = f["grid/t"][...][::stride]
    rho = f["fields/rho"][::stride]
    frames = np.arange(0, len(f["grid/t"]), stride)
    check_finite(rho, f.filename, "/fields/rho", rows=frames, unit="frame")
    return M.evaluate_continuity(
        predict, problem.system, rho, t, f["grid/x"][...], f["grid/y"][...]
    )


def _grid_field(predict, problem, f, options: EvaluateOptions) -> dict:
    if "fields" not in f:
        return {}
    (name,) = list(f["fields"])
    axes = [f[f"grid/{n}"][...] for n in problem.inputs]
    mesh = np.meshgrid(*axes, indexing="ij")
    X = np.stack([m.ravel() for m in mesh], axis=1)
    u = f[f"fields/{name}"][...].reshape(-1, 1)
    cell = float(np.prod([a[1] - a[0] for a in axes]))
    return M.evaluate_field(predict, problem.system, X, u, cell=cell)


#: the experiment metrics of each kind a system may declare in ``metrics_kind`` (paper.md
#: §3.5, §4.5, §5.4, §6.5, §7.3, §8.5); ODE systems default to ``"flow-map"``, the metrics
#: of :func:`metrics.evaluate_ode`; their options: :data:`evaluate_options.OPTIONS`
EVALUATORS: dict[str, Callable] = {
    "pendulum": _pendulum,
    "flow-map": _ode,
    "allen-cahn": _allen_cahn,
    "kovasznay": _kovasznay,
    "continuity": _continuity,
    "grid-field": _grid_field,
}


def split_losses(model, problem: Problem, objective, engine: str = "auto") -> dict:
    """Unweighted interior loss terms on every split (chunked)."""
    ctx = StepContext(model, problem, engine, torch.Generator().manual_seed(0))
    out = {}
    for name, pts in problem.sets.items():
        if name in ("initial", "boundary") or len(pts) == 0:
            continue
        sums: dict[str, float] = {}
        for chunk in chunks(pts):
            batches = {"interior": chunk}
            if problem.initial_from_batch:
                batches["initial"] = problem.initial_points(chunk)
            _, parts = objective(batches, ctx)
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + float(v) * len(chunk) / len(pts)
        out[name] = sums
    return out


def data_system(data) -> type[System] | None:
    """The class of the system a dataset file records (None: not registered; loading the
    file then says so), read from its attributes alone."""
    with open_dataset(data) as f, damaged_file_errors(data):
        return SYSTEMS.get(str(provenance(f).get("system")))


def evaluate(checkpoint, data, *, options: dict | None = None, device="cpu") -> dict[str, Any]:
    """Metrics of the network in ``checkpoint`` on the dataset file ``data``. ``options``:
    those of the metrics of the file's system (:mod:`evaluate_options`), checked first (a
    one-line :class:`~derlhybrid.learn.config.ConfigError` for an unknown key or a wrong
    type)."""
    cls = data_system(data)
    opts = check_options(cls, options) if cls is not None else None
    model, ckpt = load_model(checkpoint, map_location=device)
    cfg = ckpt["config"]
    variant = opts.variant if opts is not None else (options or {}).get("variant")
    problem = load_problem(data, form=cfg["data"]["form"], variant=variant)
    if opts is None:  # not reached: load_problem refuses an unregistered system
        opts = check_options(problem.system, options)
    trained = ckpt["system"]
    if problem.system.name != trained["system"]:
        raise DatasetError(
            f"{data} holds {problem.system.name!r} data but the network was trained on "
            f"{trained['system']!r}"
        )
    mc = ckpt["model_config"]
    if (mc["n_in"], mc["n_out"]) != (problem.n_in, problem.n_out):
        raise CheckpointError(
            f"shape mismatch: the network maps {mc['n_in']} → {mc['n_out']} but {data} has "
            f"{problem.n_in} inputs {problem.inputs} and {problem.n_out} outputs"
        )
    problem.to(device, model.dtype)
    obj_cfg = cfg["objective"]
    objective = build_objective(
        problem,
        obj_cfg["mode"],
        obj_cfg["weights"],
        obj_cfg["terms"],
        obj_cfg["hessian_projection"],
    )
    engine = cfg["train"]["engine"]
    result = {
        "checkpoint": str(checkpoint),
        "data": str(data),
        "system": problem.system.describe(),
        "epochs": ckpt["epoch"],
        "splits": split_losses(model, problem, objective, engine),
    }
    kind = metrics_kind(problem.system)
    if kind is not None:
        with open_dataset(data) as f, damaged_file_errors(data):
            predict = make_predict(model, engine)
            result["metrics"] = EVALUATORS[kind](predict, problem, f, opts)
    return M.to_jsonable(result)
