"""The Hamiltonian Neural Network baseline of the pendulum experiment (paper.md §3.6;
Greydanus, Dzamba & Yosinski 2019).

The network maps the canonical state x = (q, p), q = θ and p = m·ω, to two scalars
(F1, F2): an MLP 2 → ``depth`` × ``width`` tanh → 2 whose output layer has no bias. The
predicted field is the symplectic gradient of the second output, the Hamiltonian H = F2,

    (q̇, ṗ) = (∂H/∂p, −∂H/∂q) − (0, (b/m)·p),

with the pendulum's damping force −b·ω = −(b/m)·p added explicitly (it vanishes for b = 0),
and (θ̇, ω̇) = (q̇, ṗ/m).

Reading of §3.6 ("solenoidal" field): the reference code (``pendulum_*/train_hnn.py`` with
``external_models/hnn.py``) builds Greydanus's ``HNN`` with its default
``field_type='solenoidal'``, which returns only the solenoidal part ∇F2 · Mᵀ with M the
canonical permutation [[0, 1], [−1, 0]], i.e. J∇F2. The conservative (irrotational) part
∇F1 is computed only for ``field_type`` ≠ 'solenoidal', so it is absent: F1 is an unused
output, kept so that the architecture (and the parameter count) is the reference's; only
weight decay acts on its weights. The damping is not learned: the reference subtracts
b·p from the predicted ṗ (m = 1), which is what the physical −(b/m)·p is. The symplectic
part is divergence-free by construction: ∂q̇/∂q + ∂ṗ/∂p = H_pq − H_qp = 0.

Training follows the reference: samples (q, p) → (q̇, ṗ) at every saved time of the
training trajectories (``/splits/train`` of ``/trajectories/states`` and
``/trajectories/derivatives``), mean squared error over both components, Adam (lr 1e-3,
weight decay 1e-4 as an L2 term in the gradient, not AdamW), batch 512, 200 epochs, float32;
the first three linear layers get an orthogonal initialisation (as the reference's ``MLP``,
whose ``linear4`` and bias-free ``linear5`` keep PyTorch's default). Seeds: one
``numpy.random.SeedSequence(seed)`` spawns the seeds of the initialisation and of the batch
order.

Metrics are those of the flow-map models (:func:`derlhybrid.learn.metrics.evaluate_pendulum`):
``phase_space`` is computed by that function itself, and ``field_along_test_trajectories``
is its ``field`` integral sqrt(Σ_t ‖f̂(y(t)) − f(y(t))‖² Δt) over the test trajectories
with the HNN field f̂ evaluated at the true states.
"""

from __future__ import annotations

import itertools
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.store import h5_dataset, open_dataset, provenance
from ..systems import get_system
from . import metrics as M
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .models import DTYPES
from .problems import ok_splits

__all__ = ["HNN", "hnn_field", "load_hnn", "train_hnn"]

HNN_FILE = "hnn.pt"
METRICS_FILE = "metrics.json"
#: rows per network evaluation outside training
EVAL_CHUNK = 65536


class HNN(nn.Module):
    """F(q, p) = (F1, F2), an MLP 2 → depth × width tanh → 2 (bias-free output); the field
    is J∇F2 minus ``damping``·p in the ṗ component (``damping`` = b/m)."""

    def __init__(self, width: int = 20, depth: int = 4, damping: float = 0.0):
        super().__init__()
        if width < 1 or depth < 1:
            raise ValueError(f"HNN: width and depth must be >= 1, got {width}, {depth}")
        sizes = [2] + [width] * depth
        hidden = [nn.Linear(a, b) for a, b in itertools.pairwise(sizes)]
        self.hidden = nn.ModuleList(hidden)
        self.out = nn.Linear(width, 2, bias=False)
        for layer in hidden[:3]:  # orthogonal, as the reference (its linear1..3)
            nn.init.orthogonal_(layer.weight)
        self.damping = float(damping)

    def potentials(self, x: torch.Tensor) -> torch.Tensor:
        """(F1, F2) at states x = (q, p), shape (N, 2)."""
        h = x
        for layer in self.hidden:
            h = torch.tanh(layer(h))
        return self.out(h)

    def hamiltonian(self, x: torch.Tensor) -> torch.Tensor:
        """H = F2, shape (N,)."""
        return self.potentials(x)[:, 1]

    def time_derivative(self, x: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
        """(q̇, ṗ) = (∂H/∂p, −∂H/∂q − damping·p), shape (N, 2). With ``create_graph`` the
        result can be backpropagated to the weights (training) and, if ``x`` requires
        grad, to ``x``; otherwise it is detached."""
        with torch.enable_grad():
            if not x.requires_grad:
                x = x.detach().requires_grad_(True)
            (dh,) = torch.autograd.grad(self.hamiltonian(x).sum(), x, create_graph=create_graph)
        field = torch.stack([dh[:, 1], -dh[:, 0] - self.damping * x[:, 1]], dim=1)
        return field if create_graph else field.detach()

    forward = time_derivative


def hnn_field(model: HNN, theta, omega, system) -> tuple[np.ndarray, np.ndarray]:
    """The HNN's (θ̇, ω̇) at states (θ, ω) (arrays of one broadcast shape, float64 out):
    p = m·ω, (q̇, ṗ) from the network, θ̇ = q̇ and ω̇ = ṗ/m (m of ``system``)."""
    th, om = np.broadcast_arrays(np.asarray(theta, float), np.asarray(omega, float))
    shape, m = th.shape, float(system.m)
    x = np.stack([th.ravel(), m * om.ravel()], axis=1)
    par = next(model.parameters())
    out = np.empty_like(x)
    for s in range(0, len(x), EVAL_CHUNK):
        xb = torch.as_tensor(x[s : s + EVAL_CHUNK], dtype=par.dtype, device=par.device)
        out[s : s + EVAL_CHUNK] = model.time_derivative(xb).double().cpu().numpy()
    return out[:, 0].reshape(shape), (out[:, 1] / m).reshape(shape)


def _seeds(seed: int) -> tuple[int, int]:
    kids = np.random.SeedSequence(seed).spawn(2)
    init_seed, batch_seed = (int(k.generate_state(1, np.uint64)[0] % (2**63 - 1)) for k in kids)
    return init_seed, batch_seed


def _read(data) -> dict[str, Any]:
    """System, provenance, and per split the (q, p) samples with their (q̇, ṗ) targets."""
    with open_dataset(data, layout="trajectories") as f:
        prov = provenance(f)
        system = get_system(prov["system"], prov.get("system_parameters") or {})
        if not getattr(system, "damped_hamiltonian_1dof", False):
            raise ValueError(
                f"the HNN baseline is for a damped Hamiltonian system of one degree of freedom "
                f"(damped_hamiltonian_1dof = True: the pendulum), {data} holds {system.name}"
            )
        splits = ok_splits(f, h5_dataset(f, "trajectories/initial_states").shape[0])
        out = {"system": system, "provenance": prov, "t": h5_dataset(f, "trajectories/t")[...]}
        for name, idx in splits.items():
            if len(idx):
                out[name] = (
                    h5_dataset(f, "trajectories/states")[idx],
                    h5_dataset(f, "trajectories/derivatives")[idx],
                )
    if "train" not in out:
        raise ValueError(f"{data} has no training trajectories")
    if out["t"].ndim != 1:
        raise ValueError(f"{data}: the trajectories need one common time grid")
    return out


def _canonical(states, derivs, m: float) -> tuple[np.ndarray, np.ndarray]:
    """(θ, ω), (θ̇, ω̇) → (q, p), (q̇, ṗ) rows: p = m·ω, ṗ = m·ω̇."""
    scale = np.array([1.0, m])
    return (states * scale).reshape(-1, 2), (derivs * scale).reshape(-1, 2)


def load_hnn(path, map_location="cpu") -> tuple[HNN, dict[str, Any]]:
    """Rebuild the network of an ``hnn.pt``: ``(model, checkpoint)``."""
    ckpt = load_checkpoint(path, map_location=map_location)
    try:
        c = ckpt["config"]
        model = HNN(c["width"], c["depth"], c["damping"]).to(DTYPES[c["dtype"]])
        model.load_state_dict(ckpt["state_dict"])
    except (KeyError, TypeError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{path}: not an HNN checkpoint ({exc})") from None
    return model.to(map_location), ckpt


def _phase_space(model: HNN, system, phase_grid: int) -> dict[str, Any]:
    """``evaluate_pendulum``'s ``phase_space`` entry, computed by it: a flow map's field
    at t = 0 is its ∂ŷ/∂t(0; y0), so the HNN enters as a ``form="state"`` predictor whose
    ∂ŷ/∂t at (t, y0) is f̂(y0) (its value y0). The grid, the cell 3π/G², the pointwise
    ‖f̂ − f‖ and the statistics are then exactly those of the flow-map models. The one
    trajectory passed is a placeholder; only the phase-space entry is kept."""

    def predict(X, indices):
        dth, dom = hnn_field(model, X[:, 1], X[:, 2], system)
        return {(): X[:, 1:], (0,): np.stack([dth, dom], axis=1)}

    out = M.evaluate_pendulum(
        predict,
        system,
        np.array([0.0, 1.0]),
        np.zeros((1, 2)),
        np.zeros((1, 2, 2)),
        phase_grid=int(phase_grid),
        form="state",
        horizons=[0.0],
    )
    return out["phase_space"]


def _metrics(model: HNN, data: dict, phase_grid: int) -> dict[str, Any]:
    system = data["system"]
    out = {"phase_space": _phase_space(model, system, phase_grid)}
    if "test" in data:
        states = data["test"][0]
        t = data["t"]
        pred = np.stack(hnn_field(model, states[..., 0], states[..., 1], system), axis=-1)
        true = np.asarray(system.vector_field(None, states.reshape(-1, 2), np)).reshape(pred.shape)
        out["field_along_test_trajectories"] = M.trajectory_errors(pred, true, t[1] - t[0])
    return out


def _mse(model: HNN, X: torch.Tensor, Y: torch.Tensor) -> float:
    total = 0.0
    for s in range(0, len(X), EVAL_CHUNK):
        d = model.time_derivative(X[s : s + EVAL_CHUNK]) - Y[s : s + EVAL_CHUNK]
        total += float(d.square().sum())
    return total / Y.numel()


def train_hnn(
    data,
    out_dir,
    *,
    epochs: int = 200,
    batch_size: int = 512,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    width: int = 20,
    depth: int = 4,
    seed: int = 30,
    dtype: str = "float32",
    progress: bool = False,
    phase_grid: int = 250,
) -> dict[str, Any]:
    """Train the HNN baseline on the pendulum dataset ``data`` and write
    ``out_dir/hnn.pt`` (config, system, state_dict, epoch, history; atomically) and
    ``out_dir/metrics.json``. A finished ``hnn.pt`` of the same configuration is not
    retrained (its metrics are recomputed); one of another configuration is refused.

    Returns ``{"phase_space", "field_along_test_trajectories", "history", "config",
    "system", "trained", "seconds"}``: the phase-space field error and the field error
    along the test trajectories as :func:`derlhybrid.learn.metrics.evaluate_pendulum`
    defines them, the per-epoch losses (mean over the epoch's batches; ``val`` on the
    validation trajectories after the epoch), and whether this call trained."""
    t0 = time.perf_counter()
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if epochs < 0 or batch_size < 1:
        raise ValueError(f"epochs >= 0 and batch_size >= 1 required, got {epochs}, {batch_size}")
    d = _read(data)
    system = d["system"]
    m = float(system.m)
    config = {
        "model": "hnn",
        "field": "solenoidal",
        "epochs": int(epochs),
        "batch_size": int(batch_size),
        "lr": float(lr),
        "weight_decay": float(weight_decay),
        "width": int(width),
        "depth": int(depth),
        "seed": int(seed),
        "dtype": dtype,
        "damping": float(system.b) / m,
        "data_config_hash": d["provenance"].get("config_hash"),
    }
    out = Path(out_dir)
    path = out / HNN_FILE
    torch_dtype = DTYPES[dtype]
    trained = False
    if path.exists():
        model, ckpt = load_hnn(path)
        if ckpt["config"] != config:
            diff = sorted(k for k in config if ckpt["config"].get(k) != config[k])
            raise CheckpointError(
                f"{path} was written with another configuration ({', '.join(diff)} differ): "
                "choose another out_dir or restore that configuration"
            )
        history = ckpt["history"]
    else:
        init_seed, batch_seed = _seeds(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            model = HNN(width, depth, config["damping"]).to(torch_dtype)
        gen = torch.Generator().manual_seed(batch_seed)
        states, derivs = d["train"]
        X, Y = (torch.as_tensor(a, dtype=torch_dtype) for a in _canonical(states, derivs, m))
        val = None
        if "val" in d:
            states, derivs = d["val"]
            val = tuple(
                torch.as_tensor(a, dtype=torch_dtype) for a in _canonical(states, derivs, m)
            )
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
        history = []
        before = torch.get_num_threads()
        torch.set_num_threads(1)  # a 20-unit network: threads cost more than they give
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=epochs, unit="epoch", desc="train hnn", dynamic_ncols=True)
        try:
            for epoch in range(epochs):
                tick = time.perf_counter()
                perm = torch.randperm(len(X), generator=gen)
                total, steps = torch.zeros((), dtype=torch_dtype), 0
                for s in range(0, len(X), batch_size):
                    idx = perm[s : s + batch_size]
                    pred = model.time_derivative(X[idx], create_graph=True)
                    loss = (pred - Y[idx]).square().mean()
                    opt.zero_grad(set_to_none=False)
                    loss.backward()
                    opt.step()
                    total += loss.detach()
                    steps += 1
                record = {"epoch": epoch + 1, "train": float(total) / steps}
                if not math.isfinite(record["train"]):
                    raise FloatingPointError(
                        f"HNN training diverged at epoch {epoch + 1} (loss {record['train']}); "
                        "lower the learning rate"
                    )
                if val is not None:
                    record["val"] = _mse(model, *val)
                record["seconds"] = time.perf_counter() - tick
                history.append(record)
                if bar is not None:
                    bar.set_postfix(loss=f"{record['train']:.3e}", refresh=False)
                    bar.update(1)
        finally:
            torch.set_num_threads(before)
            if bar is not None:
                bar.close()
        save_checkpoint(
            path,
            {
                "config": config,
                "system": system.describe(),
                "data": str(data),
                "state_dict": model.state_dict(),
                "epoch": epochs,
                "history": history,
            },
        )
        trained = True
    result = {
        **_metrics(model, d, phase_grid),
        "history": history,
        "config": config,
        "system": system.describe(),
        "trained": trained,
    }
    result["seconds"] = time.perf_counter() - t0
    M.write_metrics(out / METRICS_FILE, result)
    return M.to_jsonable(result)
