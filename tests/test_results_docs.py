"""Every results file committed under docs/results/ rebuilds its tables (issue 14: the
tables can be audited): the table in ``<prefix>results.json`` equals what the runner
computes from the runs recorded in the same file, and the metric tables of
``<prefix>results.md`` equal the markdown the runner writes from them. The spec is the
experiment's (``derl reproduce``) or the ``<prefix>.toml`` committed beside the results."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from derlhybrid.experiments.claims import claims_tables
from derlhybrid.experiments.pivot import pivot_table
from derlhybrid.experiments.report import aggregate
from derlhybrid.experiments.results_docs import (
    CLAIMS_BEGIN,
    CLAIMS_END,
    PIVOT_MARK,
    TABLE_MARK,
    committed_results,
    group_table,
    results_md_of,
    spec_for,
)
from derlhybrid.experiments.runner import EXPERIMENTS, load_spec

DOCS = Path(__file__).resolve().parents[1] / "docs" / "results"
FILES = sorted(DOCS.glob("**/*results.json"))
_END = ("## The paper's", "## This study", "## Sanity", "## Figures")


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
    spec = spec_for(path, result)
    rows = result["runs"]
    table = aggregate(rows, spec.get("columns", []))
    assert table == result["table"]
    md = path.with_name(path.name[: -len(".json")] + ".md")
    assert _metric_tables(md.read_text()) == _metric_tables(results_md_of(path))


# -- docs/results.md: the tables copied from a results file --------------------------------

RESULTS_MD = DOCS.parent / "results.md"


def _below(mark: re.Pattern) -> list[tuple[str, str, list[str]]]:
    """(results file, group or pivot name, the table right below) for every line of
    docs/results.md that ``mark`` matches."""
    out = []
    lines = RESULTS_MD.read_text().splitlines()
    for i, line in enumerate(lines):
        m = mark.match(line)
        if m:
            table = []
            for nxt in lines[i + 1 :]:
                if not nxt.startswith("|"):
                    break
                table.append(nxt)
            out.append((m["path"], m.group(2), table))
    return out


@pytest.mark.parametrize(
    ("path", "group", "table"), _below(TABLE_MARK), ids=lambda v: v if isinstance(v, str) else ""
)
def test_tables_in_results_md_are_their_results_files(path, group, table):
    """A table of docs/results.md marked as copied from a committed results file is the
    table the runner writes from that file's runs, cell for cell."""
    assert table, f"no table below the marker of {path} group {group}"
    assert table == group_table(DOCS.parent / path, group)


# -- docs/results.md: pivot tables built from a results file (the noise studies) ------------

#: the sections of docs/results.md whose every table must carry a marker
_AUDITED = (
    "## Noise study, pendulum: derivatives estimated from noisy samples (issue 19)",
    "## Noise study, steady Allen–Cahn: ∇u estimated from noisy grid samples (issue 19)",
)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


@pytest.mark.parametrize(
    ("path", "name", "table"), _below(PIVOT_MARK), ids=lambda v: v if isinstance(v, str) else ""
)
def test_pivot_tables_in_results_md_are_their_results_files(path, name, table):
    """A pivot table of docs/results.md (groups by σ and estimator, the baseline per σ,
    the verdicts over seeds) is what :func:`pivot_table` builds from the marked file's
    runs, cell for cell."""
    file = DOCS.parent / path
    result = json.loads(file.read_text())
    rebuilt = pivot_table(result, name, spec_for(file, result))
    assert table, f"no table below the marker of {path} {name}"
    assert [_cells(line) for line in table] == [_cells(line) for line in rebuilt]


def test_every_table_of_the_noise_studies_is_checked():
    """Each table in the noise-study sections has a marker right above it, so that one of
    the tests above rebuilds it from a committed results file."""
    lines = RESULTS_MD.read_text().splitlines()
    assert all(h in lines for h in _AUDITED), "a noise-study heading of docs/results.md moved"
    section, tables, unmarked = None, 0, []
    for i, line in enumerate(lines):
        if line.startswith("## "):
            section = line if line in _AUDITED else None
        is_row = line.lstrip().startswith("|")
        if section and is_row and not lines[i - 1].lstrip().startswith("|"):
            tables += 1
            if not (PIVOT_MARK.match(lines[i - 1]) or TABLE_MARK.match(lines[i - 1])):
                unmarked.append(f"docs/results.md:{i + 1}: {line[:60]}")
    assert tables, "no table found in the noise-study sections"
    assert not unmarked, "tables without a marker:\n" + "\n".join(unmarked)


# -- docs/results.md: every claim of every experiment, from the committed files ----------


def test_claims_overview_in_results_md_is_the_committed_files():
    """The claim tables at the top of docs/results.md (between the ``claims`` markers) are
    what :func:`claims_tables` decides from the committed results files, cell for cell:
    every [[checks]] entry of every spec has its row, and none is decided by hand."""
    lines = RESULTS_MD.read_text().splitlines()
    start, end = lines.index(CLAIMS_BEGIN), lines.index(CLAIMS_END)
    assert lines[start + 1 : end] == claims_tables(committed_results(DOCS))


def test_claims_overview_lists_every_check_and_reads_the_decision():
    results = committed_results(DOCS)
    rows = [ln for ln in claims_tables(results) if ln.startswith("| ") and "---" not in ln]
    n_checks = sum(len(load_spec(e).get("checks", [])) for e in EXPERIMENTS)
    assert len(rows) == n_checks + 3  # one header row for each of the three kinds
    # a results file decides: with the runs of one claim's winner swapped, the verdict flips
    spec = load_spec("pendulum")
    check = spec["checks"][0]  # DERL's phase-space field error below OUTL's, damped-true
    path = next(c["path"] for c in spec["columns"] if c["key"] == check["column"])

    def metrics(v: float) -> dict:
        out: dict = v  # type: ignore[assignment]
        for key in reversed(path.split(".")):
            out = {key: out}
        return out

    def fake(lower: float, than: float) -> dict:
        runs = [
            {
                "group": check["group"],
                "mode": mode,
                "label": mode,
                "seed": seed,
                "metrics": metrics(v),
            }
            for i, seed in enumerate((30, 1, 2))
            for mode, v in ((check["lower"], lower + 0.1 * i), (check["than"], than))
        ]
        return {"scale": "full", "runs": runs}

    def row(tables: list[str]) -> str:
        return next(ln for ln in tables if f"| {check['claim']} |" in ln)

    assert row(claims_tables({"pendulum": fake(1.0, 2.0)}, ("pendulum",))).endswith(
        "| full | 3 of 3 | 0.125 / 0.002045 | holds |"  # t = −0.9/(0.1/√3), 2 dof
    )
    assert row(claims_tables({"pendulum": fake(2.0, 1.0)}, ("pendulum",))).endswith("| **no** |")
    assert row(claims_tables({}, ("pendulum",))).endswith(
        "| — | — | — | no committed results file |"
    )
    hnn = next(c["claim"] for c in spec["checks"] if c.get("than") == "hnn")
    in_file = claims_tables({"pendulum": fake(1.0, 2.0)}, ("pendulum",))
    assert next(ln for ln in in_file if f"| {hnn} |" in ln).endswith(
        "| its group is not in the results file |"
    )
