"""The benches cannot rot unseen: .ci/run runs every ``bench/*.py`` with ``--smoke``; these
checks keep that promise cheap to verify (no bench is run here)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHES = sorted(p for p in (ROOT / "bench").glob("*.py") if not p.name.startswith("_"))


def test_ci_runs_every_bench_at_smoke():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "for bench in bench/[!_]*.py; do" in ci
    assert '"$bench" --smoke' in ci
    assert len(BENCHES) >= 6


@pytest.mark.parametrize("path", BENCHES, ids=lambda p: p.name)
def test_bench_takes_smoke_and_imports_nothing_from_tests(path):
    tree = ast.parse(path.read_text())
    flags = [
        n.args[0].value
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and getattr(n.func, "attr", None) == "add_argument"
        and n.args
        and isinstance(n.args[0], ast.Constant)
    ]
    assert "--smoke" in flags
    imported = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            imported.update(a.name.split(".")[0] for a in n.names)
        elif isinstance(n, ast.ImportFrom) and n.module:
            imported.add(n.module.split(".")[0])
    assert not {m for m in imported if m.startswith("test")}, imported
    assert "pytest" not in imported
