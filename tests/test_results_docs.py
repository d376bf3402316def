"""Every results file committed under docs/results/ rebuilds its tables (issue 14: the
tables can be audited): the table in ``<prefix>results.json`` equals what the runner
computes from the runs recorded in the same file, and the metric tables of
``<prefix>results.md`` equal the markdown the runner writes from them. The spec is the
experiment's (``derl reproduce``) or the ``<prefix>.toml`` committed beside the results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from derlhybrid.experiments.report import aggregate, check_claims, results_markdown
from derlhybrid.experiments.runner import EXPERIMENTS, load_spec

DOCS = Path(__file__).resolve().parents[1] / "docs" / "results"
FILES = sorted(DOCS.glob("**/*results.json"))
_END = ("## The paper's", "## This study", "## Sanity", "## Figures")


def _spec_for(path: Path, result: dict) -> dict:
    prefix = path.name[: -len("results.json")].rstrip("-")
    beside = path.with_name(f"{prefix}.toml") if prefix else None
    if beside is not None and beside.exists():
        return load_spec(str(beside))
    assert result["experiment"] in EXPERIMENTS, f"{path}: no spec for {result['experiment']!r}"
    return load_spec(result["experiment"])


def _metric_tables(markdown: str) -> list[str]:
    lines = []
    for line in markdown.splitlines():
        if line.startswith(_END):
            break
        if line.startswith("|"):
            lines.append(line)
    return lines


def test_there_are_results_to_audit():
    assert FILES, "no results.json under docs/results"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(DOCS)))
def test_committed_tables_rebuild_from_their_runs(path):
    result = json.loads(path.read_text())
    spec = _spec_for(path, result)
    rows = result["runs"]
    table = aggregate(rows, spec.get("columns", []))
    assert table == result["table"]
    md = path.with_name(path.name[: -len(".json")] + ".md")
    rebuilt = results_markdown(
        spec, result["scale"], table, check_claims(spec, table, result["scale"], rows), rows, result
    )
    assert _metric_tables(md.read_text()) == _metric_tables(rebuilt)
