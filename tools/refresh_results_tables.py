"""Rewrite every marked table of docs/results.md from its committed results file
(``derlhybrid.experiments.results_docs``: metric tables, study pivots, the claim tables).
Run it after committing new results files, then read the diff: the text around the tables
is yours to update.

    python tools/refresh_results_tables.py [--check]

``--check``: change nothing; exit 1 if a table differs from its file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from derlhybrid.experiments.results_docs import refresh

DOCS = Path(__file__).resolve().parents[1] / "docs"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Rewrite docs/results.md's marked tables.")
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 on a difference")
    a = ap.parse_args(argv)
    path = DOCS / "results.md"
    old = path.read_text().splitlines()
    new = refresh(old, DOCS)
    if new == old:
        print("docs/results.md: every marked table is its file's")
        return 0
    if a.check:
        print(
            "docs/results.md: tables differ from their files; run tools/refresh_results_tables.py"
        )
        return 1
    path.write_text("\n".join(new) + "\n")
    print(f"rewrote the marked tables of {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
