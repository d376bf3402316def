"""Pivot tables of a study's results: its groups arranged by two keys (the noise studies'
σ × estimator) instead of the runner's one table per group, so that the tables
docs/results.md shows for a study can be rebuilt from its committed ``results.json``
(issue 14; ``tests/test_results_docs.py`` checks every table marked
``<!-- pivot: results/<experiment>/results.json NAME -->``).

Three kinds of table, each a list of markdown lines (header, rule, one line per row):

- :func:`cells_table`: one row per group, mean ± std over seeds of some (mode, column)
  cells and the seed count n;
- :func:`baseline_table`: one row per first key, one mode found in one group of that key
  (the noise studies' OUTL, trained once per σ);
- :func:`versus_table`: one row per group, seeds won and the verdict of "mode a below the
  baseline mode" per column (:func:`~derlhybrid.experiments.report.paired_decision`).

:data:`PIVOTS` names the tables of each study; :func:`pivot_table` builds one from a
``results.json``.
"""

from __future__ import annotations

from collections.abc import Callable

from .report import aggregate, dotted_get, paired_decision
from .spec import load_spec

#: a cell of a table: (title, mode, column key of the spec's ``[[columns]]``)
Cell = tuple[str, str, str]


def noise_keys(spec: dict) -> dict[str, tuple[str, str]]:
    """group name → (σ, estimator) for the noise studies, whose groups are named
    ``s<σ>-<estimator>`` (``s1e-3-savgol``); checked against the group's dataset (its
    ``noise`` and ``empirical`` = ``"<estimator>[:order]"``)."""
    out = {}
    for g in spec["groups"]:
        sigma, estimator = g["name"].removeprefix("s").rsplit("-", 1)
        data = spec.get("datasets", {}).get(g.get("dataset"), {})
        if float(sigma) != float(data.get("noise", 0.0)) or (
            str(data.get("empirical", "")).split(":")[0] != estimator
        ):
            raise ValueError(f"group {g['name']!r} disagrees with its dataset {data}")
        out[g["name"]] = (sigma, estimator)
    return out


def _keyed_groups(spec: dict, rows: list[dict], keys: dict[str, tuple[str, str]]) -> list[str]:
    """The groups with runs, in the spec's order."""
    have = {r["group"] for r in rows}
    return [g["name"] for g in spec["groups"] if g["name"] in have and g["name"] in keys]


def _mean_std(stats: dict | None, decimals: int) -> str:
    if stats is None:
        return "—"
    cell = f"{stats['mean']:.{decimals}f}"
    if stats["std"] is not None:
        cell += f" ± {stats['std']:.{decimals}f}"
    return cell


def _n(ns: list[int]) -> str:
    return "—" if not ns else str(ns[0]) if min(ns) == max(ns) else f"{min(ns)}–{max(ns)}"


def _line(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _stats_by(spec: dict, rows: list[dict]) -> dict[tuple[str, str], dict]:
    return {(t["group"], t["mode"]): t["stats"] for t in aggregate(rows, spec["columns"])}


def cells_table(
    spec: dict,
    rows: list[dict],
    cells: list[Cell],
    *,
    decimals: int,
    keys: dict[str, tuple[str, str]],
    key_titles: tuple[str, str],
) -> list[str]:
    """One line per group: its two keys, mean ± std over seeds of each cell, and n (the
    seeds behind the cells; a range where they differ)."""
    stats = _stats_by(spec, rows)
    lines = [
        _line([*key_titles, *(c[0] for c in cells), "n"]),
        "|---|---|" + "---:|" * (len(cells) + 1),
    ]
    for g in _keyed_groups(spec, rows, keys):
        found = [stats.get((g, mode), {}).get(col) for _, mode, col in cells]
        ns = [s["n"] for s in found if s is not None]
        lines.append(_line([*keys[g], *(_mean_std(s, decimals) for s in found), _n(ns)]))
    return lines


def _baseline_groups(
    spec: dict, rows: list[dict], mode: str, keys: dict[str, tuple[str, str]]
) -> dict[str, str]:
    """first key → the one group of that key with runs of ``mode``."""
    out: dict[str, str] = {}
    for g in _keyed_groups(spec, rows, keys):
        if any(r["group"] == g and r["mode"] == mode for r in rows):
            first = keys[g][0]
            if first in out:
                raise ValueError(f"{mode} runs in two groups of {first}: {out[first]}, {g}")
            out[first] = g
    return out


def baseline_table(
    spec: dict,
    rows: list[dict],
    mode: str,
    cells: list[tuple[str, str]],
    *,
    decimals: int,
    keys: dict[str, tuple[str, str]],
    key_title: str,
) -> list[str]:
    """One line per first key: mean ± std of ``mode`` on each (title, column) and n."""
    stats = _stats_by(spec, rows)
    lines = [_line([key_title, *(c[0] for c in cells), "n"]), "|---|" + "---:|" * (len(cells) + 1)]
    for first, g in _baseline_groups(spec, rows, mode, keys).items():
        found = [stats.get((g, mode), {}).get(col) for _, col in cells]
        ns = [s["n"] for s in found if s is not None]
        lines.append(_line([first, *(_mean_std(s, decimals) for s in found), _n(ns)]))
    return lines


def _per_seed(rows: list[dict], group: str, mode: str, path: str) -> dict[int, float]:
    out = {}
    for r in rows:
        if r["group"] == group and r["mode"] == mode and r.get("seed") is not None:
            v = dotted_get(r.get("metrics") or {}, path)
            out[int(r["seed"])] = float(v) if isinstance(v, int | float) else float("nan")
    return out


def versus_table(
    spec: dict,
    rows: list[dict],
    lower: str,
    than: str,
    cells: list[tuple[str, str]],
    *,
    keys: dict[str, tuple[str, str]],
    key_titles: tuple[str, str],
) -> list[str]:
    """One line per group with runs of ``lower``: per (title, column), the seeds won and
    the verdict of "``lower`` below ``than``" seed by seed (:func:`paired_decision`), where
    ``than`` is the one group of the same first key that ran it (the baseline)."""
    paths = {c["key"]: c["path"] for c in spec["columns"]}
    base = _baseline_groups(spec, rows, than, keys)
    header = [*key_titles]
    for title, _ in cells:
        header += [title, "verdict"]
    lines = [_line(header), "|" + "---|" * len(header)]
    for g in _keyed_groups(spec, rows, keys):
        b = base.get(keys[g][0])
        if b is None or not any(r["group"] == g and r["mode"] == lower for r in rows):
            continue
        out = [*keys[g]]
        for _, col in cells:
            d = paired_decision(
                _per_seed(rows, g, lower, paths[col]), _per_seed(rows, b, than, paths[col])
            )
            out += [f"{d['wins']} of {d['n']}", d["verdict"]]
        lines.append(_line(out))
    return lines


Builder = Callable[[dict, list[dict]], list[str]]
_KEYS = ("σ", "estimator")


def _noise(
    cells: list[Cell], outl: list[tuple[str, str]], verdicts: list[tuple[str, str]], decimals: int
) -> dict[str, Builder]:
    """The three tables of a noise study: ``estimators`` (DERL and SOB per σ and
    estimator), ``outl`` (the baseline, once per σ) and ``verdicts`` (DERL vs OUTL)."""
    return {
        "estimators": lambda spec, rows: cells_table(
            spec, rows, cells, decimals=decimals, keys=noise_keys(spec), key_titles=_KEYS
        ),
        "outl": lambda spec, rows: baseline_table(
            spec, rows, "outl", outl, decimals=decimals, keys=noise_keys(spec), key_title="σ"
        ),
        "verdicts": lambda spec, rows: versus_table(
            spec, rows, "derl", "outl", verdicts, keys=noise_keys(spec), key_titles=_KEYS
        ),
    }


#: experiment → table name → builder (spec, rows) → markdown lines
PIVOTS: dict[str, dict[str, Builder]] = {
    "noise-estimators": _noise(
        [
            ("DERL trajectory", "derl", "trajectory"),
            ("DERL field", "derl", "field"),
            ("SOB trajectory", "sob", "trajectory"),
            ("SOB field", "sob", "field"),
        ],
        [("OUTL trajectory", "trajectory"), ("OUTL field", "field")],
        [
            ("DERL vs OUTL, field: seeds won", "field"),
            ("DERL vs OUTL, trajectory: seeds won", "trajectory"),
        ],
        decimals=4,
    ),
    "noise-estimators-allen-cahn": _noise(
        [
            ("DERL u (rel. L2)", "derl", "u_rel"),
            ("DERL ∇u (L2)", "derl", "gradient_l2"),
            ("SOB u", "sob", "u_rel"),
            ("SOB ∇u", "sob", "gradient_l2"),
        ],
        [
            ("OUTL u (rel. L2)", "u_rel"),
            ("OUTL ∇u (L2)", "gradient_l2"),
            ("OUTL residual (L2)", "residual_l2"),
        ],
        [("DERL vs OUTL, ∇u: seeds won", "gradient_l2"), ("DERL vs OUTL, u: seeds won", "u_rel")],
        decimals=3,
    ),
}


def pivot_table(result: dict, name: str, spec: dict | None = None) -> list[str]:
    """Table ``name`` of :data:`PIVOTS` for the experiment of ``result`` (a results.json:
    its ``runs``), with the experiment's spec unless ``spec`` is given."""
    if spec is None:
        spec = load_spec(result["experiment"])
    return PIVOTS[result["experiment"]][name](spec, result["runs"])
