"""The results of a ``derl reproduce`` call from its rows (one per run): the table (mean ±
std over seeds per column, :func:`aggregate`), the claims of ``[[checks]]`` decided over
seeds (:func:`check_claims`, :func:`paired_decision`), the figures, and ``results.json`` and
``results.md`` (:func:`write_results`, :func:`results_markdown`); :func:`merge` builds them
from the rows of earlier calls' ``results.json`` files (``derl reproduce --merge``).
"""

from __future__ import annotations

import copy
import json
import math
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from .._io import exclusive_lock, write_text_atomic
from .._revision import source_revision
from .._tables import deep_merge as _merge
from .plan import plan, plan_baselines
from .spec import OPTIONAL_SCALES, ReproduceError, load_spec


def dotted_get(d: Any, dotted: str):
    """``d["a"]["b"]`` for ``"a.b"``; ``None`` where a part is missing."""
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def _fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float) and not math.isfinite(v):
        return "nan"
    return f"{v:.4g}"


def aggregate(rows: list[dict], columns: list[dict]) -> list[dict]:
    """Rows of the table: one per (group, mode) with mean ± std over seeds per column."""
    table: dict[tuple[str, str], dict] = {}
    for r in rows:
        key = (r["group"], r["mode"])
        t = table.setdefault(
            key,
            {
                "group": r["group"],
                "mode": r["mode"],
                "label": r["label"],
                "seeds": [],
                "diverged": [],
                "values": {},
            },
        )
        t["seeds"].append(r["seed"])
        if r.get("diverged"):
            t["diverged"].append(r["seed"])
        for c in columns:
            v = dotted_get(r["metrics"], c["path"])
            if isinstance(v, int | float):
                t["values"].setdefault(c["key"], []).append(float(v))
    out = []
    for t in table.values():
        stats = {}
        for k, vs in t["values"].items():
            a = np.asarray(vs)
            stats[k] = {
                "mean": float(a.mean()),
                "std": float(a.std()) if a.size > 1 else None,
                "n": int(a.size),
            }
        keep = ("group", "mode", "label", "seeds", "diverged")
        out.append({**{k: t[k] for k in keep}, "stats": stats})
    return out


#: the kinds of ``[[checks]]``: a claim of the paper (the default), a question of a study of
#: this package's own, and a sanity check (true by construction, or trivially)
CHECK_KINDS = ("paper", "study", "sanity")


def _wins_needed(n: int) -> int:
    """Seeds a claim must win to hold: all of 3, 4 of 5, 8 of 10 — n − ⌊n/5⌋."""
    return n - n // 5


def paired_decision(a: dict[int, float], b: dict[int, float] | float) -> dict[str, Any]:
    """The claim "a < b" over seeds: ``a`` and ``b`` map seed → value (the same seed: the
    same data and initialisation draw), or ``b`` is a bound. Per-seed wins, the mean
    difference a − b, one-sided paired tests (SciPy: Wilcoxon signed-rank, exact for small
    n, and the paired t-test; alternative "a < b"), and the verdict: ``"holds"`` needs ≥ 3
    seeds, the mean difference below 0 and a win in n − ⌊n/5⌋ of n seeds (3 of 3, 4 of 5);
    ``"no"`` when the reverse claim holds by the same rule; else ``"not settled"``."""
    from scipy import stats

    seeds = sorted(a) if not isinstance(b, dict) else sorted(set(a) & set(b))
    va = np.array([a[k] for k in seeds], dtype=float)
    vb = np.array([b[k] if isinstance(b, dict) else float(b) for k in seeds], dtype=float)
    ok = np.isfinite(va) & np.isfinite(vb)
    d = va[ok] - vb[ok]
    n = int(d.size)
    out: dict[str, Any] = {
        "seeds": [s for s, keep in zip(seeds, ok, strict=True) if keep],
        "n": n,
        "wins": int((d < 0).sum()),
        "mean_difference": float(d.mean()) if n else None,
        "p_wilcoxon": None,
        "p_ttest": None,
    }
    if n >= 2 and np.any(d != 0):
        with np.errstate(all="ignore"):
            # SciPy's result objects are not typed with .pvalue in its stubs
            wil: Any = stats.wilcoxon(d, alternative="less")
            out["p_wilcoxon"] = float(wil.pvalue)
            if np.std(d) > 0:
                tt: Any = stats.ttest_1samp(d, 0.0, alternative="less")
                out["p_ttest"] = float(tt.pvalue)
    need = _wins_needed(n)
    if n < 3:
        out["verdict"] = "not settled"
    elif d.mean() < 0 and out["wins"] >= need:
        out["verdict"] = "holds"
    elif d.mean() > 0 and int((d > 0).sum()) >= need:
        out["verdict"] = "no"
    else:
        out["verdict"] = "not settled"
    return out


def _per_seed(rows: list[dict], group: str, mode: str, path: str) -> dict[int, float]:
    out = {}
    for r in rows:  # rows without a seed (e.g. an NCL group's shared teacher) pair nothing
        if r.get("group") == group and r.get("mode") == mode and r.get("seed") is not None:
            v = dotted_get(r.get("metrics") or {}, path)
            out[int(r["seed"])] = float(v) if isinstance(v, int | float) else math.nan
    return out


def check_claims(spec, table, scale, rows: list[dict] | None = None) -> list[dict]:
    """The claims of ``[[checks]]``: ``lower`` below ``than`` on ``column``, or, with
    ``below = <number>``, ``lower`` (a mode, or ``"*"``: every method of the group, their
    largest mean) below that bound. ``holds``: the group means are ordered as claimed;
    with ``rows``, ``paired``: the decision over seeds (:func:`paired_decision`; for
    ``"*"`` the mode with the largest mean) — what ``verdict`` reports."""
    out = []
    by = {(t["group"], t["mode"]): t for t in table}
    paths = {c["key"]: c["path"] for c in spec.get("columns", [])}
    for c in spec.get("checks", []):
        bound = c.get("below")
        if bound is not None:
            modes = (
                [t["mode"] for t in table if t["group"] == c["group"]]
                if c.get("lower", "*") == "*"
                else [c["lower"]]
            )
            found = [by.get((c["group"], m)) for m in modes]
            cells = [t for t in found if t is not None]
            if not modes or len(cells) != len(found):
                continue
            vals = [t["stats"].get(c["column"], {}).get("mean") for t in cells]
            va = None if None in vals else max(vals)
            vb = float(bound)
            pair = modes
        else:
            a, b = by.get((c["group"], c["lower"])), by.get((c["group"], c["than"]))
            if a is None or b is None:
                continue
            va = a["stats"].get(c["column"], {}).get("mean")
            vb = b["stats"].get(c["column"], {}).get("mean")
            pair = [c["lower"], c["than"]]
        holds = va is not None and vb is not None and math.isfinite(va) and va < vb
        paired = None
        if rows is not None and c["column"] in paths:
            path = paths[c["column"]]
            if bound is not None:  # the method with the largest mean against the bound
                means = [
                    by[(c["group"], m)]["stats"].get(c["column"], {}).get("mean") for m in pair
                ]
                finite = [math.nan if v is None else float(v) for v in means]
                if any(math.isfinite(v) for v in finite):
                    worst = pair[int(np.nanargmax(finite))]
                    paired = paired_decision(_per_seed(rows, c["group"], worst, path), float(bound))
            else:
                paired = paired_decision(
                    _per_seed(rows, c["group"], pair[0], path),
                    _per_seed(rows, c["group"], pair[1], path),
                )
        out.append(
            {
                "claim": c["claim"],
                "kind": c.get("kind", "paper"),
                "group": c["group"],
                "column": c["column"],
                "lower": c.get("lower", "*"),
                "than": c.get("than") if bound is None else None,
                "below": bound,
                "values": [va, vb],
                "holds": bool(holds),
                # a claim decided by a diverged run says little about the method
                "diverged": sorted(m for m in set(pair) if by[(c["group"], m)]["diverged"]),
                "expected_at_smoke": bool(c.get("smoke", False)),
                "scale": scale,
                "paired": paired,
                "verdict": paired["verdict"] if paired else ("holds" if holds else "no"),
            }
        )
    return out


def table_and_checks(spec: dict, result: dict) -> tuple[list[dict], list[dict]]:
    """The table and the claims' decisions of a ``results.json`` dict, from its runs."""
    rows = result["runs"]
    table = aggregate(rows, spec.get("columns", []))
    return table, check_claims(spec, table, result["scale"], rows)


def claim_cells(c: dict) -> tuple[str, str, str]:
    """A decided claim's "seeds won", "p (Wilcoxon / t)" and verdict cells."""
    pr = c.get("paired") or {}
    won = f"{pr['wins']} of {pr['n']}" if pr else "—"
    p = f"{_fmt(pr.get('p_wilcoxon'))} / {_fmt(pr.get('p_ttest'))}" if pr.get("n", 0) >= 2 else "—"
    verdict = {"holds": "holds", "no": "**no**"}.get(c["verdict"], "not settled")
    if c.get("diverged"):
        verdict += f" ({', '.join(c['diverged'])} diverged †)"
    return won, p, verdict


def results_markdown(spec, scale, table, checks, rows, meta) -> str:
    cols = spec.get("columns", [])
    paper = {(p["group"], p["mode"], p["column"]): p for p in spec.get("paper", [])}
    lines = [f"# {spec.get('title', spec['name'])}", ""]
    src = meta.get("source")
    rev = f" ({src['commit'][:10]}{' + local changes' if src['dirty'] else ''})" if src else ""
    lines += [
        f"`derl reproduce {spec['name']}{'' if scale == 'full' else ' --' + scale}` — "
        f"{spec.get('section', '')}; scale **{scale}**; derlhybrid {meta['version']}{rev}, "
        f"torch {meta['torch']}, {meta['machine']}, {meta['cpus']} CPUs{_kernels(meta)}; "
        f"{meta['seconds']:.0f} s in this call.",
        "",
    ]
    sc = spec.get("scales", {}).get(scale, {})
    scale_notes = list(sc.get("notes", []))
    if scale in OPTIONAL_SCALES:  # a smaller protocol than the paper's: said first, in bold
        lines.append(
            f"> **Scale {scale}: not the paper's protocol** but a smaller one "
            f"(`[scales.{scale}]` of the spec), for an experiment whose full protocol does "
            "not fit the machine. What it changes, and why:"
        )
        for n in scale_notes:
            lines += [">", f"> {n}"]
        lines.append("")
    if meta.get("merged_from"):  # derl reproduce --merge: rows of earlier calls
        parts = []
        for m in meta["merged_from"]:
            made_by = m.get("source") or {}
            made = (
                f"commit {made_by['commit'][:10]}"
                if made_by.get("commit")
                else "commit not recorded"
            )
            parts.append(f"`{m['file']}` ({m['runs']} runs, finished {m.get('finished')}, {made})")
        missing = meta.get("missing") or []
        lines += [
            f"**Merged** (`--merge`, nothing trained in this call) from {'; '.join(parts)}: "
            f"{meta['planned'] - len(missing)} of the {meta['planned']} planned runs"
            + (f"; missing: {', '.join(missing)}." if missing else "."),
            "",
        ]
    notes = [*spec.get("notes", [])]
    if scale not in OPTIONAL_SCALES:  # (those are above, under the title)
        notes += [f"Scale {scale}: {n}" for n in scale_notes]
    for note in notes:
        lines.append(f"- {note}")
    if notes:
        lines.append("")
    groups = list(dict.fromkeys(t["group"] for t in table))
    for gname in groups:
        g = next((g for g in spec["groups"] if g["name"] == gname), {})
        g = _merge(g, sc.get("patch", {}).get(gname, {}))
        lines += [f"## {g.get('label', gname)}", ""]
        header = ["method", "seeds"] + [c["title"] for c in cols] + ["train s"]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        flagged = []
        for t in (t for t in table if t["group"] == gname):
            label = t["label"]
            if t["diverged"]:
                label += " †"
                flagged += [
                    f"† {t['label']}, seed {r['seed']}: {r['diverged'].rstrip('.')}."
                    for r in rows
                    if r["group"] == gname and r["mode"] == t["mode"] and r.get("diverged")
                ]
            cells = [label, ",".join(str(s) for s in t["seeds"])]
            for c in cols:
                s = t["stats"].get(c["key"])
                cell = "—" if s is None else _fmt(s["mean"])
                if s is not None and s["std"] is not None:
                    cell += f" ± {_fmt(s['std'])}"
                p = paper.get((gname, t["mode"], c["key"]))
                if p is not None:
                    cell += f" (paper {_fmt(p['value'])})"
                cells.append(cell)
            secs = [
                r.get("train_seconds")
                for r in rows
                if r["group"] == gname and r["mode"] == t["mode"]
            ]
            secs = [s for s in secs if isinstance(s, int | float)]
            cells.append(f"{sum(secs):.0f}" if secs else "—")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        if flagged:
            lines += [*flagged, ""]
    if paper:
        lines.append(
            "Paper numbers: paper.md §11 ([review] quotes of an earlier version, "
            "unverified; metric definitions may differ)."
        )
        lines.append("")
    headings = {
        "paper": "## The paper's qualitative claims",
        "study": "## This study's questions",
        "sanity": "## Sanity checks (true by construction, or trivially)",
    }
    for kind in CHECK_KINDS:
        these = [c for c in checks if c.get("kind", "paper") == kind]
        if not these:
            continue
        lines += [
            headings[kind],
            "",
            "Decided over seeds, each pair from the same seed and data: *holds* needs the mean "
            "difference in the claimed direction and a win in all of 3, 4 of 5 seeds "
            "(n − ⌊n/5⌋); *no* when the reverse holds so; otherwise *not settled* (always "
            "with fewer than 3 seeds). p: one-sided Wilcoxon signed-rank / paired t-test.",
            "",
            "| claim | means (column) | seeds won | p (Wilcoxon / t) | verdict |",
            "|---|---|---|---|---|",
        ]
        for c in these:
            va, vb = c["values"]
            if c.get("below") is not None:
                who = "largest of all" if c["lower"] == "*" else c["lower"]
                ours = f"{who} {_fmt(va)} vs bound {_fmt(vb)}"
            else:
                ours = f"{c['lower']} {_fmt(va)} vs {c['than']} {_fmt(vb)}"
            won, p, verdict = claim_cells(c)
            lines.append(f"| {c['claim']} | {ours} ({c['column']}) | {won} | {p} | {verdict} |")
        lines.append("")
    figs = meta.get("figures", [])
    if figs:
        lines += (
            ["## Figures", ""] + [f"![{Path(f).stem}](figures/{Path(f).name})" for f in figs] + [""]
        )
    return "\n".join(lines)


def draw_figures(spec: dict, rows: list[dict], datasets: dict, fig_dir: Path) -> list[str]:
    """The spec's figures from the rows: figures drawn from metrics alone
    (:data:`~derlhybrid.experiments.figures.METRIC_ONLY`) get every row, the others the
    rows whose checkpoint is on this machine."""
    from .figures import FIGURES, METRIC_ONLY, RunInfo

    infos = [RunInfo.from_row(r, datasets.get(r.get("dataset"))) for r in rows]
    fig_dir.mkdir(parents=True, exist_ok=True)
    figs: list[str] = []
    for fname in spec["figures"]:
        use = infos if fname in METRIC_ONLY else [i for i in infos if i.checkpoint.exists()]
        figs += [str(p) for p in FIGURES[fname](use, fig_dir)]
    return figs


def _comparable(config: dict) -> dict:
    """A run's training configuration without what differs between calls of one plan:
    the data file's path and the intra-op thread count (``--jobs`` sets it)."""
    c = copy.deepcopy(config)
    c.get("data", {}).pop("path", None)
    c.get("train", {}).pop("threads", None)
    return c


def merge(
    name: str, files: list, *, out=None, figures: bool = True, scale: str | None = None
) -> Path:
    """One ``results.json`` (and ``results.md``, metric figures) from the rows of earlier
    calls of ``derl reproduce name`` — e.g. the seeds or groups of one study trained in
    separate sittings — with no training and no data: every row must be a run the spec
    plans at that scale, with the configuration the spec gives it now, and each run may
    come from one file only. The table is built over the rows found; ``planned`` and
    ``missing`` say how much of the plan that is. Returns the path of ``results.json``."""
    t_start = time.perf_counter()
    spec = load_spec(name)
    if not files:
        raise ReproduceError("--merge needs at least one results.json")
    parts = []
    for f in files:
        try:
            parts.append((Path(f), json.loads(Path(f).read_text())))
        except OSError as exc:
            raise ReproduceError(f"cannot read {f} ({exc.strerror})") from None
        except json.JSONDecodeError as exc:
            raise ReproduceError(f"{f} is not a results.json ({exc.msg})") from None
    for f, part in parts:
        if not isinstance(part, dict) or not isinstance(part.get("runs"), list):
            raise ReproduceError(f"{f} is not a results.json of derl reproduce (no runs)")
        if part.get("experiment") != spec["name"]:
            raise ReproduceError(
                f"{f} holds results of {part.get('experiment')!r}, not {spec['name']!r}"
            )
    scales = {part.get("scale") for _, part in parts}
    if scale is None:
        if len(scales) != 1:
            raise ReproduceError(f"the files are of different scales: {sorted(map(str, scales))}")
        scale = scales.pop()
    elif scales != {scale}:
        raise ReproduceError(f"the files are of scale(s) {sorted(map(str, scales))}, not {scale}")
    seeds = sorted({int(r["seed"]) for _, part in parts for r in part["runs"]})
    datasets, runs = plan(spec, str(scale), None)
    by_name = {r.name: r for r in runs}
    # runs with other seeds than the spec's (--seeds) are planned with those seeds
    extra = sorted(set(seeds) - {r.seed for r in runs})
    if extra:
        by_name.update({r.name: r for r in plan(spec, str(scale), extra)[1]})
    # the baselines of those runs' groups, once per seed (the HNN), with their own configs
    baselines = {b["name"]: b for b in plan_baselines(spec, str(scale), list(by_name.values()))}
    by_name.update(baselines)
    rows: dict[str, dict] = {}
    origin: dict[str, Path] = {}
    for f, part in parts:
        for row in part["runs"]:
            run = by_name.get(row.get("name"))
            if run is None:
                raise ReproduceError(
                    f"{f}: run {row.get('name')!r} is not planned by the spec at scale {scale}"
                )
            if row["name"] in rows:
                raise ReproduceError(
                    f"run {row['name']} is in both {origin[row['name']]} and {f}: keep one"
                )
            # a run's or a baseline's configuration (pipelines and NCL runs have none here)
            wanted = run["config"] if isinstance(run, dict) else getattr(run, "config", None)
            if wanted is not None and _comparable(row.get("config", {})) != _comparable(wanted):
                raise ReproduceError(
                    f"{f}: run {row['name']} was trained with another configuration than "
                    "the spec gives it now: train it again instead of merging it"
                )
            rows[row["name"]] = row
            origin[row["name"]] = f
    ordered = [rows[n] for n in by_name if n in rows]
    planned = [r.name for r in runs] + [b["name"] for b in plan_baselines(spec, str(scale), runs)]
    out = Path(out) if out else Path("reproduce") / f"{spec['name']}-merged"
    out.mkdir(parents=True, exist_ok=True)
    columns = spec.get("columns", [])
    table = aggregate(ordered, columns)
    checks = check_claims(spec, table, scale, ordered)
    figs = (
        draw_figures(spec, ordered, datasets, out / "figures")
        if figures and spec.get("figures")
        else []
    )
    meta = {
        "experiment": spec["name"],
        "scale": scale,
        "version": __version__,
        "source": source_revision(),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": time.perf_counter() - t_start,
        "figures": figs,
        "spec": spec["_path"],
        "merged_from": [
            {
                "file": str(f),
                "runs": len(part["runs"]),
                **{
                    k: part.get(k)
                    for k in ("finished", "version", "source", "machine", "cpus", "platform")
                },
                "seconds": part.get("seconds"),
            }
            for f, part in parts
        ],
        "planned": len(planned),
        "missing": [n for n in planned if n not in rows],
        "torch": parts[0][1].get("torch"),
        "machine": parts[0][1].get("machine"),
        "cpus": parts[0][1].get("cpus"),
        "platform": parts[0][1].get("platform"),
    }
    with exclusive_lock(out, error=ReproduceError):
        return write_results(out, spec, scale, table, checks, ordered, meta)


def _kernels(meta) -> str:
    """`` (kernels AVX512, MKL; MKL_CBWR=AVX2)``: what the numerical libraries dispatched
    to, where the file records it (files written before it did: nothing)."""
    plat = meta.get("platform") or {}
    kernels = (
        [f"kernels {plat['torch_cpu_capability']}"] if plat.get("torch_cpu_capability") else []
    )
    if plat.get("blas"):
        kernels.append(str(plat["blas"]).upper())
    env = [f"{k}={v}" for k, v in (plat.get("env") or {}).items()]
    if not kernels and not env:
        return ""
    return f" ({'; '.join(filter(None, (', '.join(kernels), ', '.join(env))))})"


def write_results(out, spec, scale, table, checks, rows, meta, extra=None) -> Path:
    """``results.json`` (``meta``, the scale's ``notes`` as ``scale_notes``, ``extra``, the
    table, the claims and every run) and ``results.md``, each written atomically; returns
    the path of ``results.json``."""
    from ..learn.metrics import to_jsonable

    scale_notes = spec.get("scales", {}).get(scale, {}).get("notes", [])
    result = {
        **meta,
        "scale_notes": list(scale_notes),
        **(extra or {}),
        "table": table,
        "checks": checks,
        "runs": rows,
    }
    text = json.dumps(to_jsonable(result), indent=1, allow_nan=True)
    write_text_atomic(out / "results.json", text)
    write_text_atomic(out / "results.md", results_markdown(spec, scale, table, checks, rows, meta))
    return out / "results.json"
