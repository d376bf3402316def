"""Evaluating a model given as a ``predict`` callable, the plumbing of every evaluator::

    predict(X: ndarray (N, n_in) float64, multi_indices: list[tuple[int, ...]])
        -> dict[tuple[int, ...], ndarray (N, n_out)]

A multi-index is a sorted tuple of input column positions (:func:`multi_index` builds one
from input names), ``()`` is the value and is always returned. :func:`predict_batched` calls
``predict`` on at most ``batch`` rows at a time and checks the contract; the rest builds
evaluation points (:func:`tensor_grid`, :func:`assemble_inputs`) and reads derivatives back
(:func:`derivative_getter`, :func:`stack_jacobian`, :func:`stack_hessian`). Pure NumPy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "DEFAULT_BATCH",
    "MultiIndex",
    "Predict",
    "assemble_inputs",
    "derivative_getter",
    "multi_index",
    "predict_batched",
    "residual_indices",
    "stack_hessian",
    "stack_jacobian",
    "tensor_grid",
]

MultiIndex = tuple[int, ...]
Predict = Callable[[np.ndarray, list[MultiIndex]], Mapping[MultiIndex, np.ndarray]]

#: most rows handed to ``predict`` in one call
DEFAULT_BATCH = 65536


def multi_index(inputs: Sequence[str], *names: str) -> MultiIndex:
    """The multi-index of ∂/∂names: sorted positions of ``names`` in ``inputs``.

    >>> multi_index(("t", "x", "y"), "y", "t")
    (0, 2)
    >>> multi_index(("t", "x", "y"))
    ()
    """
    inputs = tuple(inputs)
    missing = [n for n in names if n not in inputs]
    if missing:
        raise ValueError(f"no input named {missing[0]!r}; inputs are {inputs}")
    return tuple(sorted(inputs.index(n) for n in names))


def predict_batched(
    predict: Predict, X: np.ndarray, indices: Iterable[MultiIndex], batch: int
) -> dict[MultiIndex, np.ndarray]:
    """Evaluate ``predict`` on ``X`` in batches of at most ``batch`` rows, checking the
    contract; returns the requested derivatives (and the value) as (N, n_out) float64."""
    if int(batch) < 1:
        raise ValueError(f"batch must be a positive number of rows, got {batch}")
    batch = int(batch)
    X = np.ascontiguousarray(X, dtype=np.float64)
    wanted = sorted({(), *(tuple(sorted(a)) for a in indices)}, key=lambda a: (len(a), a))
    asked = [a for a in wanted if a]
    parts: dict[MultiIndex, list[np.ndarray]] = {a: [] for a in wanted}
    for start in range(0, X.shape[0], batch):
        xb = X[start : start + batch]
        got = predict(xb, list(asked))
        for a in wanted:
            if a not in got:
                raise KeyError(f"predict did not return the multi-index {a}")
            v = np.asarray(got[a], dtype=np.float64)
            if v.ndim == 1:
                v = v[:, None]
            if v.ndim != 2 or v.shape[0] != xb.shape[0]:
                raise ValueError(
                    f"predict returned shape {v.shape} for {a}; expected ({xb.shape[0]}, n_out)"
                )
            parts[a].append(v)
    return {a: np.concatenate(p, axis=0) for a, p in parts.items()}


def residual_indices(system) -> list[MultiIndex]:
    return [multi_index(system.inputs, *names) for names in system.residual_needs]


def derivative_getter(system, values: Mapping[MultiIndex, np.ndarray]):
    """The ``d(*names)`` of :meth:`FieldSystem.pde_residual` over computed derivatives."""

    def d(*names: str) -> np.ndarray:
        return values[multi_index(system.inputs, *names)]

    return d


def stack_jacobian(values, positions: Sequence[int]) -> np.ndarray:
    """(N, n_out, n_c) from first derivatives at the given input positions."""
    return np.stack([values[(p,)] for p in positions], axis=-1)


def stack_hessian(values, positions: Sequence[int]) -> np.ndarray:
    """(N, n_out, n_c, n_c) from second derivatives at the given input positions."""
    rows = [
        np.stack([values[tuple(sorted((p, q)))] for q in positions], axis=-1) for p in positions
    ]
    return np.stack(rows, axis=-2)


def tensor_grid(system, names: Sequence[str], n: int) -> tuple[list[np.ndarray], np.ndarray, float]:
    """A tensor grid of ``n`` points per coordinate over the domain box: the 1-D axes, the
    points (n^d, d) in 'ij' order, and the cell volume Π (b − a)/(n − 1)."""
    if int(n) < 2:
        raise ValueError(f"a grid needs n >= 2 points per axis, got {n}")
    dom = system.domain()
    axes = [np.linspace(dom[c][0], dom[c][1], int(n)) for c in names]
    mesh = np.meshgrid(*axes, indexing="ij")
    pts = np.stack([m.ravel() for m in mesh], axis=1)
    cell = float(np.prod([(dom[c][1] - dom[c][0]) / (int(n) - 1) for c in names]))
    return axes, pts, cell


def assemble_inputs(system, columns: Mapping[str, np.ndarray | float], n: int) -> np.ndarray:
    """Points (n, n_in) in the order of ``system.inputs`` from named columns (scalars
    broadcast)."""
    X = np.empty((n, len(system.inputs)))
    for i, name in enumerate(system.inputs):
        if name not in columns:
            raise ValueError(f"{system.name}: no values given for input {name!r}")
        X[:, i] = columns[name]
    return X
