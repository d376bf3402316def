"""Every claim of every experiment in one place, decided from the committed results files.

``docs/results.md`` opens with these tables (issue 14: a reader should see at a glance which of
the paper's claims hold over seeds, which are not settled, which fail, and which checks are
only sanity checks). Each row is the decision :func:`~.report.check_claims` makes from an
experiment's ``results.json`` (paired over seeds, :func:`~.report.paired_decision`); an
experiment without a results file, or a claim whose group its file does not hold, is listed as
such, so the tables never hide a claim. ``tests/test_results_docs.py`` rebuilds them from the
files under ``docs/results/`` and compares them cell for cell.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .report import CHECK_KINDS, claim_cells, table_and_checks
from .spec import EXPERIMENTS, load_spec

#: the table of each kind of check, in this order
TITLES = {
    "paper": "The paper's claims",
    "study": "This package's studies (not in the paper)",
    "sanity": "Sanity checks (true by construction, or trivially): not evidence for the method",
}
HEADER = [
    "| experiment | claim | scale | seeds won | p (Wilcoxon / t) | verdict |",
    "|---|---|---|---|---|---|",
]
NOT_RUN = "no committed results file"
NOT_IN = "its group is not in the results file"


def _decisions(spec: dict, result: dict | None) -> dict[str, dict[str, Any]]:
    """claim text → its decision from ``result`` (none: the claim is not decided there)."""
    if result is None:
        return {}
    return {c["claim"]: c for c in table_and_checks(spec, result)[1]}


def _row(name: str, claim: str, decided: dict[str, Any] | None, has_file: bool) -> str:
    if decided is None:
        return f"| {name} | {claim} | — | — | — | {NOT_IN if has_file else NOT_RUN} |"
    won, p, verdict = claim_cells(decided)
    return f"| {name} | {claim} | {decided['scale']} | {won} | {p} | {verdict} |"


def claims_tables(
    results: Mapping[str, dict | None], experiments: tuple[str, ...] = EXPERIMENTS
) -> list[str]:
    """The markdown lines of the claim tables (a ``### <title>`` and a table per kind of check
    that some spec has): one row per ``[[checks]]`` entry of each experiment's spec, decided
    from ``results[experiment]`` (a ``results.json`` dict) or listed as not run."""
    specs = {e: load_spec(e) for e in experiments}
    decided = {e: _decisions(specs[e], results.get(e)) for e in experiments}
    lines: list[str] = []
    for kind in CHECK_KINDS:
        rows = [
            _row(e, c["claim"], decided[e].get(c["claim"]), results.get(e) is not None)
            for e in experiments
            for c in specs[e].get("checks", [])
            if c.get("kind", "paper") == kind
        ]
        if rows:
            lines += [f"### {TITLES[kind]}", "", *HEADER, *rows, ""]
    return lines[:-1] if lines else lines
