"""The paper's evaluation metrics (paper.md §3.5, §4.5, §5.4, §6.5, §7.3, §8.5), as JSON-ready
dicts, under one name. Pure NumPy in float64.

This module re-exports the public names of the modules that own them:

* :mod:`.metrics_stats`, statistics on arrays: :func:`error_stats`, :func:`relative_l2`,
  :func:`trajectory_errors`, :func:`cumulative_error_curve`, :func:`mass_rmse`,
  :func:`spectral_error_norm`, :func:`frobenius_error_norm`;
* :mod:`.metrics_predict`, evaluating a ``predict`` callable (its contract,
  :data:`DEFAULT_BATCH`, :func:`multi_index`);
* :mod:`.metrics_ode`, flow-map evaluators: :func:`evaluate_pendulum`, :func:`evaluate_ode`;
* :mod:`.metrics_fields`, field evaluators: :func:`evaluate_allen_cahn`,
  :func:`evaluate_continuity`, :func:`evaluate_kovasznay`, :func:`evaluate_field`;
* :mod:`.metrics_json`: :func:`to_jsonable`, :func:`non_finite_paths`, :func:`write_metrics`
  (non-finite values stay ``nan``/``inf`` in the dicts and become ``null`` in the file).

``docs/metrics.md`` tabulates every metric with its formula, JSON key and paper section.
"""

from __future__ import annotations

from .metrics_fields import (
    evaluate_allen_cahn,
    evaluate_continuity,
    evaluate_field,
    evaluate_kovasznay,
)
from .metrics_json import non_finite_paths, to_jsonable, write_metrics
from .metrics_ode import evaluate_ode, evaluate_pendulum
from .metrics_predict import (
    DEFAULT_BATCH,
    MultiIndex,
    Predict,
    assemble_inputs,
    derivative_getter,
    multi_index,
    predict_batched,
    residual_indices,
    stack_hessian,
    stack_jacobian,
    tensor_grid,
)
from .metrics_stats import (
    cumulative_error_curve,
    error_stats,
    frobenius_error_norm,
    mass_rmse,
    relative_l2,
    spectral_error_norm,
    trajectory_errors,
)

__all__ = [
    "DEFAULT_BATCH",
    "MultiIndex",
    "Predict",
    "assemble_inputs",
    "cumulative_error_curve",
    "derivative_getter",
    "error_stats",
    "evaluate_allen_cahn",
    "evaluate_continuity",
    "evaluate_field",
    "evaluate_kovasznay",
    "evaluate_ode",
    "evaluate_pendulum",
    "frobenius_error_norm",
    "mass_rmse",
    "multi_index",
    "non_finite_paths",
    "predict_batched",
    "relative_l2",
    "residual_indices",
    "spectral_error_norm",
    "stack_hessian",
    "stack_jacobian",
    "tensor_grid",
    "to_jsonable",
    "trajectory_errors",
    "write_metrics",
]
