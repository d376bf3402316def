"""Teacher labels: a trained network evaluated with its input derivatives at a set of
points, written as a *distillation dataset* (paper.md §1 "Distillation", §8.3, §10).

``label(teacher, points, out=PATH)`` computes, in batches of bounded size, the teacher's
value û(x), Jacobian ∇û(x) = ∂û_o/∂x_i and Hessian Hû(x) = ∂²û_o/∂x_i∂x_j with respect to
chosen inputs (default: all of them) by the Taylor-mode engine
:func:`~derlhybrid.learn.derivatives.input_derivatives`, and writes an HDF5 file of the
project's dataset contract (``docs/datasets.md``): layout ``"points"`` with

====================  =========================  ==========================================
``/points/inputs``    (N, n_in)                  the points
``/points/outputs``   (N, n_out)                 û (order 0)
``/points/jacobian``  (N, n_out, k)              ∇û w.r.t. ``derivative_inputs`` (order 1)
``/points/hessian``   (N, n_out, k, k)           Hû, symmetric (order 2)
``/points/<aux>``     (N,)                       per-point data of the PDE residual (e.g.
                                                 the Allen–Cahn ``forcing``), if given
``/true/<target>``    as in the source data      the true values, if given
====================  =========================  ==========================================

and root attributes ``role = "distillation"``, ``teacher`` (JSON: checkpoint path and
sha256, epoch, model config), ``orders``, ``inputs``, ``outputs``, ``derivative_inputs``,
``system``, ``system_parameters``, ``package_version``, ``created`` (UTC). The file is
written under a unique ``<name>.<pid>-<random>.writing`` and renamed when complete (a
kill never leaves a file at the final name). :func:`read_labels` validates it and returns
a :class:`Labels` whose :class:`~derlhybrid.learn.problems.PointSet` carries the targets
``output``, ``jacobian``, ``hessian`` that the loss terms read.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.store import (
    DatasetError,
    DatasetWriter,
    h5_dataset,
    h5_group,
    open_dataset,
    provenance,
)
from ..learn.derivatives import input_derivatives
from ..learn.problems import PointSet
from ..systems import get_system
from ..systems.base import System

__all__ = ["ROLE", "Labels", "label", "read_labels", "sha256"]

#: root attribute ``role`` of a distillation dataset
ROLE = "distillation"
#: targets of the true data kept beside the teacher's labels
TRUE_TARGETS = ("output", "jacobian", "hessian")
_DATASET = {"output": "outputs", "jacobian": "jacobian", "hessian": "hessian"}


def sha256(path) -> str:
    """SHA-256 of a file's bytes (hex), read in 1 MiB blocks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(2**20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class Labels:
    """A distillation dataset in memory: ``points.X`` and the teacher's targets
    (``output`` (N, n_out), ``jacobian`` (N, n_out, k), ``hessian`` (N, n_out, k, k), and
    the residual's per-point data such as ``forcing``), derivatives with respect to the
    inputs named in ``derivative_inputs``; ``true`` holds the true values if stored."""

    path: Path
    system: System
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    derivative_inputs: tuple[str, ...]
    orders: tuple[int, ...]
    points: PointSet
    true: dict[str, torch.Tensor] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.points)


def _teacher(model_or_checkpoint) -> tuple[nn.Module, dict[str, Any], dict | None]:
    """The network, its provenance, and its checkpoint (None for an in-memory model)."""
    if isinstance(model_or_checkpoint, nn.Module):
        model = model_or_checkpoint
        config = getattr(model, "config", None)
        info = {
            "checkpoint": None,
            "sha256": None,
            "model_config": (
                config.to_dict() if config is not None and hasattr(config, "to_dict") else None
            ),
        }
        return model, info, None
    from ..learn.trainer import load_model

    path = Path(model_or_checkpoint)
    model, ckpt = load_model(path)
    info = {
        "checkpoint": str(path.resolve()),
        "sha256": sha256(path),
        "epoch": ckpt.get("epoch"),
        "model_config": ckpt.get("model_config"),
        "package_version": ckpt.get("package_version"),
    }
    return model, info, ckpt


def _resolve_system(system, ckpt) -> System:
    if isinstance(system, System):
        return system
    if isinstance(system, str):
        return get_system(system)
    if ckpt is not None and "system" in ckpt:
        d = ckpt["system"]
        return get_system(d["system"], d.get("parameters") or {})
    raise ValueError("label: give system= for a teacher that is not a checkpoint")


def label(
    model_or_checkpoint,
    points,
    *,
    out,
    orders: Sequence[int] = (0, 1, 2),
    inputs: Sequence[str] | None = None,
    system: System | str | None = None,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    batch_size: int = 4096,
    engine: str = "auto",
    overwrite: bool = False,
    compression: str = "gzip",
    progress: bool = False,
) -> Path:
    """Label ``points`` with a teacher and write the distillation dataset ``out``.

    ``model_or_checkpoint``: a network, or the path of a trainer checkpoint (whose system,
    inputs and outputs are then recorded). ``points``: a
    :class:`~derlhybrid.learn.problems.PointSet` (its ``output``/``jacobian``/``hessian``
    targets are kept as the true values, any other per-point target — e.g. the
    ``forcing`` of a residual — is copied beside the labels) or an (N, n_in) array.
    ``orders``: which of 0 (û), 1 (∇û), 2 (Hû) to store. ``inputs``: names of the inputs
    the derivatives are taken with respect to (default: all). Batches of ``batch_size``
    points keep memory bounded. Returns the path written.
    """
    orders = tuple(sorted({int(o) for o in orders}))
    if not orders or any(o not in (0, 1, 2) for o in orders):
        raise ValueError(f"label: orders must be a non-empty subset of 0, 1, 2, got {orders}")
    if batch_size < 1:
        raise ValueError("label: batch_size must be a positive integer")
    model, teacher, ckpt = _teacher(model_or_checkpoint)
    sys_ = _resolve_system(system, ckpt)
    names_in = tuple(
        input_names
        or (ckpt["problem"]["inputs"] if ckpt and "problem" in ckpt else None)
        or getattr(sys_, "inputs", ())
    )
    names_out = tuple(
        output_names
        or (ckpt["problem"]["outputs"] if ckpt and "problem" in ckpt else None)
        or getattr(sys_, "outputs", ())
    )
    pts = points if isinstance(points, PointSet) else PointSet(torch.as_tensor(points))
    X = pts.X.detach().cpu().to(torch.float64)
    if X.dim() != 2 or X.shape[1] != len(names_in):
        raise ValueError(
            f"label: points must be (N, {len(names_in)}) with columns {names_in}, "
            f"got {tuple(X.shape)}"
        )
    if len(X) == 0:
        raise ValueError("label: no points to label")
    chosen = tuple(inputs) if inputs is not None else names_in
    unknown = [n for n in chosen if n not in names_in]
    if unknown or not chosen:
        raise ValueError(
            f"label: unknown input {unknown[0] if unknown else '(none)'!r}; "
            f"inputs are {', '.join(names_in)}"
        )
    pos = [names_in.index(n) for n in chosen]
    wanted = []
    if 1 in orders:
        wanted += [(i,) for i in pos]
    if 2 in orders:
        wanted += [(i, j) for a, i in enumerate(pos) for j in pos[a:]]
    n, k = X.shape[0], len(pos)
    n_out = len(names_out)
    true = {t: v for t, v in pts.targets.items() if t in TRUE_TARGETS}
    aux = {t: v for t, v in pts.targets.items() if t not in TRUE_TARGETS}
    request = {
        "kind": "teacher-labels",
        "teacher": teacher,
        "orders": list(orders),
        "derivative_inputs": list(chosen),
        "n_points": n,
        "engine": engine,
        "batch_size": batch_size,
    }
    attrs = {
        "role": ROLE,
        "system": sys_.name,
        "system_parameters": sys_.params(),
        "generator": {"method": "teacher labels (input_derivatives)", "engine": engine},
        "backend": "torch",
        "package_version": _package_version(),
        "teacher": teacher,
        "orders": list(orders),
        "inputs": list(names_in),
        "outputs": list(names_out),
        "derivative_inputs": list(chosen),
        "dtype": "float64",
    }
    dtype, device = _model_dtype_device(model)
    # the forward engine needs no autograd graph (a model answering input_derivatives
    # itself, e.g. the NCL field, runs it inside)
    forward = engine != "autograd" and (
        getattr(model, "layers", None) is not None or hasattr(model, "input_derivatives")
    )
    grad_mode = torch.no_grad() if forward else contextlib.nullcontext()
    was_training = model.training
    model.eval()
    bar = None
    try:
        with DatasetWriter(
            out,
            layout="points",
            attrs=attrs,
            config=request,
            overwrite=overwrite,
            compression=compression,
        ) as w:
            rows = min(n, 65536)
            w.create("points/inputs", None, data=X.numpy(), attrs={"columns": list(names_in)})
            dsets = {}
            if 0 in orders:
                dsets[0] = w.create("points/outputs", (n, n_out), chunks=(rows, n_out))
            if 1 in orders:
                dsets[1] = w.create("points/jacobian", (n, n_out, k), chunks=(rows, n_out, k))
                dsets[1].attrs["columns"] = list(chosen)
            if 2 in orders:
                dsets[2] = w.create("points/hessian", (n, n_out, k, k), chunks=(rows, n_out, k, k))
                dsets[2].attrs["columns"] = list(chosen)
            for name, v in aux.items():
                w.create(f"points/{name}", None, data=v.detach().cpu().double().numpy())
            for name, v in true.items():
                w.create(f"true/{_DATASET[name]}", None, data=v.detach().cpu().double().numpy())
            if progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=n, unit="pt", desc=f"label {Path(out).name}", leave=False)
            for start in range(0, n, batch_size):
                xb = X[start : start + batch_size].to(device=device, dtype=dtype)
                with grad_mode:
                    d = input_derivatives(model, xb, wanted, engine=engine)
                stop = start + len(xb)
                if 0 in orders:
                    dsets[0][start:stop] = _np(d.value)
                if 1 in orders:
                    dsets[1][start:stop] = _np(d.jacobian(pos))
                if 2 in orders:
                    dsets[2][start:stop] = _np(d.hessian(pos))
                if bar is not None:
                    bar.update(len(xb))
    finally:
        if bar is not None:
            bar.close()
        model.train(was_training)
    return Path(out)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


def _model_dtype_device(model: nn.Module) -> tuple[torch.dtype, torch.device]:
    p = next(model.parameters(), None)
    if p is None:
        return torch.float64, torch.device("cpu")
    return p.dtype, p.device


def _package_version() -> str:
    from .. import __version__

    return __version__


def read_labels(path) -> Labels:
    """Read and validate a distillation dataset (one-line :class:`DatasetError`)."""
    path = Path(path)
    with open_dataset(path, layout="points") as f:
        prov = provenance(f)
        if prov.get("role") != ROLE:
            raise DatasetError(
                f"{path} is not a distillation dataset (no role = {ROLE!r} attribute; "
                "write one with derlhybrid.transfer.label)"
            )
        sys_ = get_system(prov["system"], prov.get("system_parameters") or {})
        targets = {}
        for target, key in _DATASET.items():
            if f"points/{key}" in f:
                targets[target] = _t(h5_dataset(f, f"points/{key}")[...])
        for key in h5_group(f, "points"):
            if key not in ("inputs", *_DATASET.values()):
                targets[key] = _t(h5_dataset(f, f"points/{key}")[...])
        true = {
            t: _t(h5_dataset(f, f"true/{key}")[...])
            for t, key in _DATASET.items()
            if f"true/{key}" in f
        }
        X = _t(h5_dataset(f, "points/inputs")[...])
    return Labels(
        path=path,
        system=sys_,
        inputs=tuple(prov["inputs"]),
        outputs=tuple(prov["outputs"]),
        derivative_inputs=tuple(prov["derivative_inputs"]),
        orders=tuple(prov["orders"]),
        points=PointSet(X, targets),
        true=true,
        provenance=prov,
    )


def _t(a) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float64)


def describe_labels(labels: Labels) -> Mapping[str, Any]:
    """What a stage records about a distillation source."""
    return {
        "path": str(labels.path),
        "sha256": sha256(labels.path),
        "n_points": len(labels),
        "teacher": labels.provenance.get("teacher"),
        "orders": list(labels.orders),
        "derivative_inputs": list(labels.derivative_inputs),
    }
