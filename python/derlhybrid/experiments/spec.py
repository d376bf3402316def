"""An experiment's spec: ``specs/<name>.toml``, loaded, its groups' modes merged
(``modes_from``) and checked (:func:`load_spec`).

A spec is data, not code:

* ``[datasets.<key>]``: a generation request (``system``, ``params``, ``preset``, sizes…);
* ``[defaults]``: ``model``, ``objective``, ``train`` tables and ``evaluate`` options shared
  by all runs (typed by the metrics of the dataset's system,
  :mod:`derlhybrid.learn.evaluate_options`, and checked before any data exist);
* ``[[groups]]``: a dataset (and ``variant``), ``seeds``, table overrides and ``modes``: one
  run per mode and seed, each mode with its ``weights``, ``lr`` and further overrides
  (``modes_from`` copies another group's modes);
* ``[scales.quick]`` / ``[scales.smoke]``: which groups (and ``modes``) run, and overrides
  (``train``, ``evaluate``, ``seeds``, per-dataset replacements ``datasets.<key>``,
  per-group patches ``patch.<group>``); ``full`` is the spec itself (``[scales.full]``
  may record its seeds); ``[scales.reduced]``, only where the full protocol does not fit
  the machine: a documented smaller protocol (its ``notes`` say which sizes and why);
* ``[[columns]]`` (what the results table shows, as dotted paths into a run's metrics),
  ``[[paper]]`` (the paper's numbers, paper.md §11), ``[[checks]]`` (the qualitative
  orderings the paper claims) and ``figures``.

The typed tree of the spec is :mod:`.spec_model`; what a ``stages`` or ``ncl`` group's
tables hold, :mod:`.pipelines` and :mod:`.ncl`.
"""

from __future__ import annotations

from pathlib import Path

from .._tables import deep_merge as _merge
from .._tables import read_toml
from . import ncl as _ncl
from .pipelines import validate_group
from .spec_model import SpecError, validate_spec

SPECS = Path(__file__).with_name("specs")
EXPERIMENTS = tuple(sorted(p.stem for p in SPECS.glob("*.toml")))
SCALES = ("full", "reduced", "quick", "smoke")
#: scales a spec has only where it has their table: ``reduced`` is a documented smaller
#: protocol for an experiment whose full protocol does not fit the machine (ncl-ball)
OPTIONAL_SCALES = ("reduced",)


class ReproduceError(ValueError):
    """A bad experiment name, scale, seed list or spec (one line; ``derl`` exits with 2)."""


def load_spec(name: str) -> dict:
    """The validated spec of experiment ``name`` (a name of :data:`EXPERIMENTS` or a path)."""
    path = Path(name)
    if path.suffix != ".toml":
        path = SPECS / f"{name}.toml"
    if not path.exists():
        raise ReproduceError(
            f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)} "
            "(or give a spec .toml file)"
        )
    spec = read_toml(path, "experiment spec", ReproduceError)
    try:  # the typed tree: unknown keys and wrong types, with their path (spec_model.py)
        validate_spec(spec, str(path))
    except SpecError as exc:
        raise ReproduceError(str(exc)) from None
    spec.setdefault("name", path.stem)
    names = [g.get("name") for g in spec.get("groups", [])]
    if not names or None in names or len(set(names)) != len(names):
        raise ReproduceError(f"{path}: every [[groups]] entry needs a unique name")
    by_name = {g["name"]: g for g in spec["groups"]}
    for g in spec["groups"]:
        if g.get("dataset") not in spec.get("datasets", {}):
            raise ReproduceError(
                f"{path}: group {g['name']!r}: unknown dataset {g.get('dataset')!r}"
            )
        if "modes_from" in g:
            src = by_name.get(g["modes_from"])
            if src is None or "modes" not in src:
                raise ReproduceError(f"{path}: group {g['name']!r}: bad modes_from")
            g["modes"] = _merge(src["modes"], g.get("modes", {}))
        if not g.get("modes"):
            raise ReproduceError(f"{path}: group {g['name']!r} has no modes")
        if g.get("kind") == "stages":  # what a stage group's tables hold (pipelines.py)
            validate_group(path, g, ReproduceError)
        elif g.get("kind") == "ncl":  # the teacher/student tables (ncl.py)
            _ncl.validate_group(path, g, ReproduceError)
    for scale, sv in spec.get("scales", {}).items():
        if scale in OPTIONAL_SCALES and not sv.get("notes"):  # a reader must see why
            raise ReproduceError(
                f"{path}: scales.{scale} needs notes: which sizes differ from the full "
                "protocol, and why"
            )
        for gname in sv.get("groups", []):
            if gname not in by_name:
                raise ReproduceError(f"{path}: scales.{scale}: unknown group {gname!r}")
        known = {m for g in spec["groups"] for m in g["modes"]}
        for mode in sv.get("modes", []):
            if mode not in known:
                raise ReproduceError(f"{path}: scales.{scale}: unknown mode {mode!r}")
    columns = {c.get("key") for c in spec.get("columns", [])}
    for i, c in enumerate(spec.get("checks", [])):
        where = f"{path}: checks[{i}]"
        if c.get("column") not in columns:
            raise ReproduceError(f"{where}: column {c.get('column')!r} is not a [[columns]] key")
        if c.get("group") not in by_name:
            raise ReproduceError(f"{where}: unknown group {c.get('group')!r}")
    spec["_path"] = str(path)
    return spec
