"""The tables of ``docs/results.md`` that are copies of committed results files.

Three kinds of marked table (issue 14: every table can be audited against its file):

* ``<!-- table: results/<experiment>/results.json group G -->`` above a group's metric table,
  as ``derl reproduce`` writes it into ``results.md`` from the file's runs;
* ``<!-- pivot: results/<study>/results.json NAME -->`` above a study's pivot
  (:mod:`.pivot`);
* the claim tables between ``<!-- claims: begin -->`` and ``<!-- claims: end -->``
  (:mod:`.claims`, from every ``results/<experiment>/results.json``).

:func:`refresh` rewrites them all from the files (``tools/refresh_results_tables.py``);
``tests/test_results_docs.py`` checks that each equals its file, cell for cell.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .claims import claims_tables
from .pivot import pivot_table
from .report import results_markdown, table_and_checks
from .spec import EXPERIMENTS, load_spec

TABLE_MARK = re.compile(r"^<!-- table: (?P<path>\S+results\.json) group (?P<group>\S+) -->$")
PIVOT_MARK = re.compile(r"^<!-- pivot: (?P<path>\S+results\.json) (?P<name>\S+) -->$")
CLAIMS_BEGIN, CLAIMS_END = "<!-- claims: begin -->", "<!-- claims: end -->"


def spec_for(path: Path, result: dict) -> dict:
    """The spec of a results file: ``<prefix>.toml`` beside ``<prefix>-results.json`` when
    there is one (a diagnosis run of an edited spec), else the experiment's."""
    prefix = path.name[: -len("results.json")].rstrip("-")
    beside = path.with_name(f"{prefix}.toml") if prefix else None
    if beside is not None and beside.exists():
        return load_spec(str(beside))
    if result.get("experiment") not in EXPERIMENTS:
        raise ValueError(f"{path}: no spec for experiment {result.get('experiment')!r}")
    return load_spec(result["experiment"])


def _load(path: Path) -> tuple[dict, dict]:
    result = json.loads(path.read_text())
    return result, spec_for(path, result)


def results_md_of(path: Path) -> str:
    """The ``results.md`` the runner writes from the runs recorded in ``path``."""
    return _markdown(*_load(path))


def _markdown(result: dict, spec: dict) -> str:
    table, checks = table_and_checks(spec, result)
    return results_markdown(spec, result["scale"], table, checks, result["runs"], result)


def group_table(path: Path, group: str) -> list[str]:
    """The metric table of ``group`` as the runner writes it from ``path``."""
    result, spec = _load(path)
    label = next(g.get("label", g["name"]) for g in spec["groups"] if g["name"] == group)
    lines = _markdown(result, spec).splitlines()
    table: list[str] = []
    for line in lines[lines.index(f"## {label}") + 1 :]:
        if line.startswith("|"):
            table.append(line)
        elif table or line.startswith("#"):
            break
    return table


def committed_results(results_dir: Path) -> dict[str, dict]:
    """experiment → its ``<results_dir>/<experiment>/results.json``, where committed."""
    return {
        e: json.loads((results_dir / e / "results.json").read_text())
        for e in EXPERIMENTS
        if (results_dir / e / "results.json").exists()
    }


def refresh(lines: list[str], docs_dir: Path) -> list[str]:
    """``lines`` of ``docs/results.md`` with every marked table rebuilt from its file
    (paths in the markers are relative to ``docs_dir``)."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        i += 1
        if line == CLAIMS_BEGIN:
            out += claims_tables(committed_results(docs_dir / "results"))
            while lines[i] != CLAIMS_END:
                i += 1
            continue
        m, p = TABLE_MARK.match(line), PIVOT_MARK.match(line)
        if m:
            out += group_table(docs_dir / m["path"], m["group"])
        elif p:
            out += pivot_table(json.loads((docs_dir / p["path"]).read_text()), p["name"])
        else:
            continue
        while i < len(lines) and lines[i].startswith("|"):
            i += 1
    return out
