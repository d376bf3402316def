"""The results table of ``derl reproduce``: mean ± std over seeds, checked with numbers
worked out by hand (population standard deviation, ``ddof = 0``; one seed: no ±)."""

from __future__ import annotations

import math

import pytest

from derlhybrid.experiments.report import aggregate, results_markdown

COLUMNS = [
    {"key": "u_l2", "title": "L2 u", "path": "metrics.u.l2"},
    {"key": "f_l2", "title": "L2 f", "path": "metrics.f.l2"},
]


def _row(group, mode, seed, u, f=None, diverged=None):
    metrics = {"u": {"l2": u}}
    if f is not None:
        metrics["f"] = {"l2": f}
    return {
        "group": group,
        "mode": mode,
        "label": mode.upper(),
        "seed": seed,
        "diverged": diverged,
        "metrics": {"metrics": metrics},
    }


ROWS = [
    _row("grid", "derl", 1, 1.0, f=10.0),
    _row("grid", "derl", 2, 2.0, f=10.0),
    _row("grid", "derl", 3, 4.0, f=None),  # a metric missing from one run: two values
    _row("grid", "outl", 1, 5.0, f=0.5),  # one seed
    _row("rand", "derl", 1, 0.25, f="n/a"),  # not a number: left out
    _row("rand", "derl", 2, 0.75, diverged="the loss rose 100x"),
]


def test_mean_and_population_std_over_seeds():
    table = {(t["group"], t["mode"]): t for t in aggregate(ROWS, COLUMNS)}
    assert list(table) == [("grid", "derl"), ("grid", "outl"), ("rand", "derl")]  # first seen
    t = table[("grid", "derl")]
    assert t["seeds"] == [1, 2, 3] and t["diverged"] == [] and t["label"] == "DERL"
    u = t["stats"]["u_l2"]
    # 1, 2, 4: mean 7/3; squared deviations 16/9 + 1/9 + 25/9 = 42/9, over n = 3 (not n - 1)
    assert u["n"] == 3
    assert u["mean"] == pytest.approx(7 / 3, rel=1e-15)
    assert u["std"] == pytest.approx(math.sqrt(14) / 3, rel=1e-15)  # 1.2472; ddof=1: 1.5275
    f = t["stats"]["f_l2"]
    assert f == {"mean": 10.0, "std": 0.0, "n": 2}
    # one seed: the value, and no spread (None, not 0)
    assert table[("grid", "outl")]["stats"]["u_l2"] == {"mean": 5.0, "std": None, "n": 1}
    r = table[("rand", "derl")]
    assert r["diverged"] == [2] and r["seeds"] == [1, 2]
    assert r["stats"]["u_l2"] == {"mean": 0.5, "std": 0.25, "n": 2}  # ddof=1 would be 0.3536
    assert "f_l2" not in r["stats"]  # no number in any run: no statistic at all


def test_a_nan_value_makes_the_mean_nan_not_skipped():
    rows = [_row("g", "derl", 1, 1.0), _row("g", "derl", 2, float("nan"))]
    (t,) = aggregate(rows, COLUMNS[:1])
    assert math.isnan(t["stats"]["u_l2"]["mean"]) and t["stats"]["u_l2"]["n"] == 2


def test_results_md_prints_mean_plus_minus_std():
    table = aggregate(ROWS, COLUMNS)
    spec = {
        "name": "toy",
        "title": "Toy",
        "columns": COLUMNS,
        "groups": [{"name": "grid", "label": "Grid"}, {"name": "rand", "label": "Random"}],
        "paper": [{"group": "grid", "mode": "outl", "column": "u_l2", "value": 4.5}],
    }
    meta = {"version": "0", "torch": "0", "machine": "m", "cpus": 1, "seconds": 1.0}
    lines = results_markdown(spec, "full", table, [], ROWS, meta).splitlines()
    derl = next(ln for ln in lines if ln.startswith("| DERL | 1,2,3 |"))
    assert derl.split(" | ")[2:4] == ["2.333 ± 1.247", "10 ± 0"]
    outl = next(ln for ln in lines if ln.startswith("| OUTL | 1 |"))
    assert outl.split(" | ")[2:4] == ["5 (paper 4.5)", "0.5"]  # one seed: no ±
    rand = next(ln for ln in lines if ln.startswith("| DERL † | 1,2 |"))
    assert rand.split(" | ")[2:4] == ["0.5 ± 0.25", "—"]  # no number in any run
    assert "† DERL, seed 2: the loss rose 100x." in lines


def test_paired_decision_over_seeds():
    from derlhybrid.experiments.runner import paired_decision

    a = {1: 1.0, 2: 2.0, 3: 3.0, 4: 4.0, 5: 5.0}
    # five wins: the exact one-sided Wilcoxon p is 1/2^5 (every sign negative)
    d = paired_decision(a, {k: v + 1 + 0.1 * k for k, v in a.items()})
    assert d["verdict"] == "holds" and d["wins"] == 5 and d["n"] == 5
    assert d["p_wilcoxon"] == pytest.approx(1 / 32)
    assert d["mean_difference"] == pytest.approx(-1.3)
    # the paired t-test is the one-sample t-test of the differences (SciPy's ttest_rel)
    from scipy import stats

    ref = stats.ttest_rel(
        list(a.values()), [v + 1 + 0.1 * k for k, v in a.items()], alternative="less"
    )
    assert d["p_ttest"] == pytest.approx(ref.pvalue)
    # 4 of 5 holds; 3 of 5 is not settled; the reverse is "no"
    four = {**{k: v + 1 for k, v in a.items()}, 5: 4.5}
    assert paired_decision(a, four)["verdict"] == "holds"
    three = {**four, 4: 3.5}
    assert paired_decision(a, three)["verdict"] == "not settled"
    assert paired_decision({k: v + 1 for k, v in a.items()}, a)["verdict"] == "no"
    # fewer than 3 seeds settle nothing; seeds pair by number, unmatched and NaN dropped
    assert paired_decision({1: 0.0, 2: 0.0}, {1: 1.0, 2: 1.0})["verdict"] == "not settled"
    got = paired_decision({1: 0.0, 2: 0.0, 3: 0.0, 9: 5.0}, {1: 1.0, 2: 1.0, 3: float("nan")})
    assert got["seeds"] == [1, 2] and got["n"] == 2
    # against a bound: every seed below it
    assert paired_decision({1: 0.1, 2: 0.2, 3: 0.3}, 0.5)["verdict"] == "holds"
    assert paired_decision({1: 0.1, 2: 0.6, 3: 0.3}, 0.5)["verdict"] == "not settled"


@pytest.mark.parametrize(
    "check,message",
    [
        ('kind = "tautology"', "checks[0].kind: input should be 'paper', 'study' or 'sanity'"),
        ('lowr = "derl"', "unknown key 'lowr'"),
        ('column = "nope"', "not a [[columns]] key"),
    ],
)
def test_checks_of_a_spec_are_validated(tmp_path, check, message):
    from derlhybrid.experiments.runner import ReproduceError, load_spec

    base = {"claim": '"c"', "group": '"g"', "column": '"u"', "lower": '"derl"', "than": '"outl"'}
    key = check.split(" = ")[0]
    lines = [f"{k} = {v}" for k, v in base.items() if k != key] + [check]
    spec = tmp_path / "s.toml"
    spec.write_text(
        '[datasets.d]\nsystem = "pendulum"\n[[groups]]\nname = "g"\ndataset = "d"\n'
        "[groups.modes]\nderl = {}\noutl = {}\n"
        '[[columns]]\nkey = "u"\ntitle = "u"\npath = "metrics.u"\n'
        "[[checks]]\n" + "\n".join(lines) + "\n"
    )
    with pytest.raises(ReproduceError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_spec(str(spec))


def test_a_bound_check_decides_over_the_seeds_of_its_worst_method():
    # a bound check before a pair check: neither may lose the runs (a name clash once did)
    from derlhybrid.experiments.report import check_claims

    rows = [
        _row("g", m, s, u)
        for m, vs in (("derl", (1, 2, 3)), ("outl", (4, 5, 6)))
        for s, u in zip((1, 2, 3), vs, strict=True)
    ]
    spec = {
        "columns": COLUMNS,
        "checks": [
            {"claim": "all below 10", "group": "g", "column": "u_l2", "lower": "*", "below": 10},
            {
                "claim": "derl < outl",
                "group": "g",
                "column": "u_l2",
                "lower": "derl",
                "than": "outl",
            },
        ],
    }
    bound, pair = check_claims(spec, aggregate(rows, COLUMNS), "full", rows)
    assert bound["paired"]["n"] == 3 and bound["verdict"] == "holds"  # outl: 4, 5, 6 < 10
    assert pair["paired"]["wins"] == 3 and pair["verdict"] == "holds"
