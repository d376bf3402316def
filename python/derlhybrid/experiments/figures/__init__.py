"""The PNG figures of ``derl reproduce`` (paper.md §3.5, §4.5, §5.4, §6.5, §7.3, §8, §9.5, §10).

Every figure is a function ``figure(runs, out_dir) -> list[Path]`` in :data:`FIGURES`. It takes
all runs of an experiment (:class:`RunInfo`, possibly of several groups), draws one PNG per
group, ``<figure>-<group with '/' replaced by '_'>.png`` in ``out_dir``, and returns the
paths it wrote (figures across groups say which files they write: ``ablation_lines``,
``noise_estimators``). Within a group there is one panel (column) per loss mode; of several
runs with the same label (seeds) the network of seed 30 is drawn (else the first whose files
exist), and the numbers a figure shows per method are the mean ± std (population, ddof 0)
over the seeds, with n. Runs whose checkpoint or data file is missing, of another system,
or that cannot be evaluated are left out with a logged warning (a group with none left
writes nothing); runs that diverged are drawn where their values are finite (non-finite
pixels are grey, a panel without any finite value says so). Colour scales are shared across
the modes of one figure, so panels are comparable.

Figures are drawn on :class:`matplotlib.figure.Figure` with the Agg canvas (no pyplot, no
global backend state) at 150 dpi and written atomically (``name.png.tmp`` then
``os.replace``).

One module per family: :mod:`.pendulum` (§3.5), :mod:`.allen_cahn` (§4.5, §5.4),
:mod:`.continuity` (§6.5), :mod:`.kovasznay` (§7.3), :mod:`.transfer` (§8, §10), :mod:`.ncl`
(§9.5), :mod:`.noise`, :mod:`.training` (loss curves of every run-based experiment); what they share
(loading, colours, scales, saving) in :mod:`.plumbing`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .allen_cahn import ablation_lines, allen_cahn_errors, parametric_errors
from .continuity import continuity_errors
from .kovasznay import kovasznay_errors
from .ncl import ncl_slices
from .noise import noise_estimators
from .pendulum import pendulum_field, pendulum_phase
from .plumbing import DPI, RunInfo
from .training import loss_curves
from .transfer import stage_losses, transfer_error_maps, transfer_loss_curves, transfer_phase_errors

# tests/test_reproduce_transfer.py reads a pipeline run's per-stage losses by this name
_stage_losses = stage_losses

__all__ = [
    "DPI",
    "FIGURES",
    "METRIC_ONLY",
    "RunInfo",
    "ablation_lines",
    "allen_cahn_errors",
    "continuity_errors",
    "kovasznay_errors",
    "loss_curves",
    "ncl_slices",
    "noise_estimators",
    "parametric_errors",
    "pendulum_field",
    "pendulum_phase",
    "transfer_error_maps",
    "transfer_phase_errors",
]

#: figures drawn from the runs' metrics alone (no checkpoint or data file needed)
METRIC_ONLY = frozenset({"noise_estimators", "ablation_lines"})

#: every figure by the name the experiment specs use
FIGURES: dict[str, Callable[[list[RunInfo], Path], list[Path]]] = {
    "pendulum_phase": pendulum_phase,
    "pendulum_field": pendulum_field,
    "allen_cahn_errors": allen_cahn_errors,
    "ablation_lines": ablation_lines,
    "parametric_errors": parametric_errors,
    "continuity_errors": continuity_errors,
    "kovasznay_errors": kovasznay_errors,
    "transfer_phase_errors": transfer_phase_errors,
    "transfer_error_maps": transfer_error_maps,
    "transfer_loss_curves": transfer_loss_curves,
    "ncl_slices": ncl_slices,
    "noise_estimators": noise_estimators,
    "loss_curves": loss_curves,
}
