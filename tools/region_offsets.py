"""How much of a transfer run's u error on a region is one constant? Re-evaluate the final
network of every run in ``derl reproduce`` results files with today's region metrics
(``derlhybrid.transfer.regions``: ``u_offset`` and ``u_centred``, the error left after the
best constant shift) and tabulate mean ± std over seeds per group and method.

    python tools/region_offsets.py RESULTS_JSON [...] --region p1 [--grid 201]
                                   [--json FILE] [--md FILE] [--figure FILE.png]

Written for the parametric Allen–Cahn transfer experiment (docs/results.md), where DERL
distils only ∇(x,y)û of phase 1, which fixes u up to one constant per parameter set. The
results files name each run's checkpoint and dataset, so the run folders must still be
there; nothing is trained or changed. Each run's recomputed ``u.rel_l2`` must equal the one
its results file holds (the same network, grid and code of the metric), else exit 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from derlhybrid._io import write_text_atomic
from derlhybrid.transfer.regions import evaluate_regions

# relative, recomputed against stored u.rel_l2: the batches of the evaluation differ (the
# stored one predicted every region's sets in one pass), which moves float32 sums by ~1e-9
TOLERANCE = 1e-6


def _runs(paths):
    for p in paths:
        res = json.loads(Path(p).read_text())
        for run in res["runs"]:
            if run.get("kind") == "stages" and not run.get("diverged"):
                yield res["experiment"], run


def measure(paths, region: str, grid: int):
    rows, bad = [], []
    for exp, run in _runs(paths):
        m = run["metrics"]["metrics"]
        if region not in m["regions"]:
            continue
        got = evaluate_regions(
            run["checkpoint"], run["data"], {region: m["regions"][region]}, options={"grid": grid}
        )[region]
        stored = m["final"][region]["u"]["rel_l2"]
        rel, centred = got["u"]["rel_l2"], got["u_centred"]["rel_l2"]
        if abs(rel - stored) > TOLERANCE * abs(stored):
            bad.append(f"{run['name']}: u.rel_l2 {rel:.12g} recomputed, {stored:.12g} stored")
        offsets = [s["u_offset"] for s in got.get("sets", [])] or [got["u_offset"]]
        rows.append(
            {
                "experiment": exp,
                "run": run["name"],
                "group": run["group"],
                "mode": run["mode"],
                "label": run["label"],
                "seed": run["seed"],
                "final_stage": m["final_stage"],
                "u_rel_l2": rel,
                "u_centred_rel_l2": centred,
                "left_without_constant": centred / rel,
                "mean_abs_offset": float(np.mean(np.abs(offsets))),
            }
        )
    return rows, bad


def summarise(rows):
    out = {}
    for r in rows:
        out.setdefault((r["group"], r["mode"], r["label"]), []).append(r)
    table = []
    for (group, mode, label), rs in out.items():  # the results files' order

        def ms(key, rs=rs):
            v = np.array([r[key] for r in rs])
            # std over seeds: population (ddof 0), as the tables of docs/results.md
            return float(v.mean()), float(v.std()) if len(v) > 1 else None

        table.append(
            {
                "group": group,
                "mode": mode,
                "label": label,
                "n": len(rs),
                "seeds": sorted(r["seed"] for r in rs),
                "u_rel_l2": ms("u_rel_l2"),
                "u_centred_rel_l2": ms("u_centred_rel_l2"),
                "left_without_constant": ms("left_without_constant"),
            }
        )
    return table


def markdown(table, region: str) -> str:
    lines = [
        f"| split | method | n | {region} u rel L² | without its constant | ratio of the two |",
        "|---|---|---|---|---|---|",
    ]

    def pm(v, digits):
        return f"{v[0]:.{digits}f}" + ("" if v[1] is None else f" ± {v[1]:.{digits}f}")

    for t in table:
        a, b, c = t["u_rel_l2"], t["u_centred_rel_l2"], t["left_without_constant"]
        lines.append(
            f"| {t['group']} | {t['label']} | {t['n']} | {pm(a, 4)} | {pm(b, 4)} | {pm(c, 2)} |"
        )
    return "\n".join(lines) + "\n"


def figure(table, region: str, path: Path) -> None:
    """One panel per split: per method, the u error and the error without its constant
    (mean over seeds, bars ± 1 std, population; linear scale, so bar heights compare)."""
    from derlhybrid.experiments.figures.plumbing import new_figure, save_png

    groups = list(dict.fromkeys(t["group"] for t in table))
    fig = new_figure(5.5 * len(groups), 4.2)
    axes = fig.subplots(1, len(groups), squeeze=False)[0]
    for ax, group in zip(axes, groups, strict=True):
        rows = [t for t in table if t["group"] == group]
        x = np.arange(len(rows))
        for j, (key, name, color) in enumerate(
            (
                ("u_rel_l2", "u error", "tab:blue"),
                ("u_centred_rel_l2", "without its constant", "tab:orange"),
            )
        ):
            mean = np.array([t[key][0] for t in rows])
            sd = np.array([t[key][1] or 0.0 for t in rows])
            ax.bar(
                x + (j - 0.5) * 0.4,
                mean,
                0.4,
                yerr=[np.minimum(sd, 0.99 * mean), sd],
                capsize=2,
                color=color,
                label=name,
            )
        ax.set_xticks(x, [t["label"] for t in rows], rotation=40, ha="right")
        seeds = sorted({n for t in rows for n in [t["n"]]})
        ax.set_title(f"{group} split: region {region}, n = {'/'.join(map(str, seeds))} seeds")
        ax.set_ylabel(f"relative L² error of u on {region} (final model)")
        ax.legend(fontsize=8)
    fig.suptitle("The part of the u error that is one constant per parameter set")
    save_png(fig, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+", help="results.json files of derl reproduce")
    ap.add_argument("--region", default="p1", help="region of the final metrics (default p1)")
    ap.add_argument("--grid", type=int, default=201, help="grid side the runs were evaluated on")
    ap.add_argument("--json", help="write the rows and the summary here")
    ap.add_argument("--md", help="write the summary table (Markdown) here")
    ap.add_argument("--figure", help="draw the summary as bars (PNG) here")
    a = ap.parse_args(argv)
    for p in a.results:
        if not Path(p).is_file():
            print(f"error: {p}: no such results file", file=sys.stderr)
            return 2
    rows, bad = measure(a.results, a.region, a.grid)
    table = summarise(rows)
    text = markdown(table, a.region)
    print(text, end="")
    if a.json:
        doc = {"region": a.region, "grid": a.grid, "results": a.results, "rows": rows}
        write_text_atomic(Path(a.json), json.dumps({**doc, "summary": table}, indent=1) + "\n")
    if a.md:
        write_text_atomic(Path(a.md), text)
    if a.figure:
        figure(table, a.region, Path(a.figure))
    for b in bad:
        print(f"error: {b}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
