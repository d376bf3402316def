"""tools/check_julia_deep.py: the boundary, precompile, free-identifier and compat checks of
the Julia package (issue 18). Each check runs on the repository (clean) and on copies
broken on purpose, which it must report."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("tree_sitter")
pytest.importorskip("tree_sitter_julia")


def _load(name):
    sys.path.insert(0, str(ROOT / "tools"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


deep = _load("check_julia_deep")
COPIED = (
    "julia/DERLKernels",
    "python/derlhybrid/kernels/_julia.py",
    "python/derlhybrid/juliapkg.json",
    "tools/julia_base_names.txt",
    "tools/julia_compat.toml",
    "Project.toml",
)


@pytest.fixture
def repo(tmp_path):
    """A copy of the files the checks read, and a way to edit one of them."""
    for rel in COPIED:
        src, dst = ROOT / rel, tmp_path / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copy(src, dst)

    def edit(rel, pattern, replacement, count=1):
        path = tmp_path / rel
        text = path.read_text()
        new, n = re.subn(pattern, replacement, text, count=count)
        assert n, f"{pattern!r} not found in {rel}"
        path.write_text(new)

    return tmp_path, edit


SRC = "julia/DERLKernels/src"
PY = "python/derlhybrid/kernels/_julia.py"


def test_repository_passes():
    assert deep.check(ROOT) == []
    assert deep.main([str(ROOT)]) == 0


def test_copy_passes(repo):
    root, _ = repo
    assert deep.check(root) == []


def test_boundary_calls_are_read_from_python():
    calls = {c.julia_name: c for c in deep.boundary_calls(ROOT / PY)}
    assert set(calls) == {
        "fornberg_weights!",
        "derivative!",
        "solve_ensemble!",
        "solve_kdv!",
        "solve_continuity!",
    }
    assert len(calls["solve_ensemble!"].kinds) == 8
    assert calls["solve_ensemble!"].kinds[4] == "string"
    assert calls["solve_ensemble!"].keywords == ["rtol", "atol", "n_rejected"]
    assert calls["derivative!"].keywords[0] == "dim"


@pytest.mark.parametrize(
    ("rel", "pattern", "replacement", "expected"),
    [
        # a renamed Julia function
        (f"{SRC}/pde.jl", r"function solve_kdv!\(", "function solve_kdv_new!(", "no method"),
        # Python passes one positional argument too many
        (
            PY,
            r"float\(x0\), nodes, int\(order\)",
            "float(x0), nodes, int(order), 1",
            "5 positional",
        ),
        # a misspelt keyword: named method, and one that reaches a kw... splat
        (PY, r"dim=dim,", "dimm=dim,", "keyword 'dimm' is not accepted"),
        (PY, r"rtol=_tolerance\(rtol\)", "rtoll=_tolerance(rtol)", "keyword 'rtoll' reaches"),
        # a required keyword left out
        (PY, r"        dim=dim,\n", "", "required keywords ['dim']"),
        # the string Python sends cannot reach a method taking a Symbol
        (f"{SRC}/ode.jl", r"system::AbstractString,", "system::Symbol,", "argument types"),
    ],
)
def test_boundary_mismatches_are_caught(repo, rel, pattern, replacement, expected):
    root, edit = repo
    edit(rel, pattern, replacement)
    problems = deep.check_boundary(root)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(
    ("rel", "pattern", "replacement", "expected"),
    [
        # directly on a parameter Python fills
        (f"{SRC}/stencils.jl", r"out::AbstractArray\{T\}", "out::Array{T}", "'out' receives"),
        # in a keyword
        (
            f"{SRC}/ode.jl",
            r"n_rejected::Union\{Nothing, ?AbstractVector\{<:Integer\}\}",
            "n_rejected::Union{Nothing,Vector{Int}}",
            "'n_rejected' receives",
        ),
        # through a where bound
        (
            f"{SRC}/pde.jl",
            r"rho0::AbstractMatrix;",
            "rho0::M;",
            None,  # the where clause is added below
        ),
        # in a helper reached through reshape (derivative! -> _apply!)
        (
            f"{SRC}/stencils.jl",
            r"function _apply!\(\s*out::AbstractArray\{T, ?3\}",
            "function _apply!(out::Array{T,3}",
            "_apply!: parameter 'out' receives",
        ),
        # in a helper reached by name (solve_continuity! -> _read_field)
        (
            f"{SRC}/pde.jl",
            r"function _read_field\(rho0::AbstractMatrix",
            "function _read_field(rho0::StridedMatrix",
            "_read_field: parameter 'rho0' receives",
        ),
    ],
)
def test_concrete_array_annotations_are_caught(repo, rel, pattern, replacement, expected):
    root, edit = repo
    edit(rel, pattern, replacement)
    if expected is None:  # rho0::M where {M<:DenseMatrix}
        edit(
            rel,
            r"(paper_edges::Bool = false,?\s*\))",
            r"\1 where {M<:DenseMatrix}",
        )
        expected = "'rho0' receives"
    problems = deep.check_boundary(root)
    assert any(expected in p for p in problems), problems


def test_precompile_workload_must_make_the_boundary_calls(repo):
    root, edit = repo
    edit(f"{SRC}/precompile.jl", r"tol ?= ?1\.0e-6, dt ?= ?0\.005", "dt = 0.005")
    assert deep.check_precompile(root) == []  # another call still has (tol, dt)
    edit(f"{SRC}/precompile.jl", r"tol ?= ?1\.0e-6, dt ?= ?nothing", "dt = nothing")
    problems = deep.check_precompile(root)
    assert any("never calls solve_kdv!" in p for p in problems), problems
    # a new keyword on the Python side is missing from the workload too
    root2 = root
    edit(PY, r"paper_edges=bool\(paper_edges\),", "paper_edges=bool(paper_edges), extra=1,")
    assert any("never calls solve_continuity!" in p for p in deep.check_precompile(root2))


@pytest.mark.parametrize(
    ("rel", "pattern", "replacement", "expected"),
    [
        (f"{SRC}/stencils.jl", r"N = length\(x\)", "N = lenght(x)", "'lenght' is not defined"),
        (f"{SRC}/DERLKernels.jl", r"using LinearAlgebra: mul!\n", "", "'mul!' is not defined"),
        (
            f"{SRC}/DERLKernels.jl",
            r"using LinearAlgebra: mul!",
            "using LinearAlgebra",
            "`using LinearAlgebra` imports every export",
        ),
        (f"{SRC}/ode.jl", r"n_state, n_traj = size\(y0\)", "n_state = size(y0, 1)", "'n_traj'"),
        (f"{SRC}/pde.jl", r"@inbounds for j", "@inbonds for j", "'@inbonds' is not defined"),
    ],
)
def test_free_identifiers_are_caught(repo, rel, pattern, replacement, expected):
    root, edit = repo
    edit(rel, pattern, replacement)
    problems = deep.check_free_identifiers(root)
    assert any(expected in p for p in problems), problems


def test_free_identifier_scopes(tmp_path):
    """Locals of every kind are bound; a name bound in one function is free in another."""
    src = tmp_path / SRC
    src.mkdir(parents=True)
    (tmp_path / "tools").mkdir()
    shutil.copy(ROOT / "tools" / "julia_base_names.txt", tmp_path / "tools")
    (src / "DERLKernels.jl").write_text(
        'module DERLKernels\nusing Base.Threads: @threads\ninclude("a.jl")\nend\n'
    )
    (src / "a.jl").write_text(
        """
const TABLE = ("a" => (x = 1.0,),)
struct Op{T}
    w::Vector{T}
end
function f(a::AbstractArray{T}, (b, c), d = 1; k::Int = 2, kw...) where {T<:Real}
    e, g = size(a)
    h = [i + j for i in 1:e, j in 1:g if i > 0]
    q = (u, v) -> u + v
    r = function (s, _...)
        return s
    end
    map(a) do z
        z + k
    end
    for (m, n) in pairs(a), o in 1:2
        m + n + o
    end
    let p = 1
        p
    end
    try
        error("x")
    catch err
        err
    end
    @threads for t in 1:2
        t
    end
    return Op{T}(T[b, c, d, h[1], q(1, 2), r(3), TABLE[1][2].x, kw[1], "$(e)"[1]])
end
g2(x) = x + e
"""
    )
    problems = deep.check_free_identifiers(tmp_path)
    assert problems == [p for p in problems if "'e' is not defined" in p], problems
    assert len(problems) == 1 and "a.jl:32:" in problems[0]  # g2(x) = x + e


def test_compat_admits():
    admits = deep.compat_admits
    assert admits("1", "1.9.3") and not admits("1", "2.0.0")
    assert admits("1, 2", "2.2.0") and not admits("1, 2", "3.0.0")
    assert admits("2, 3", "3.49.2") and not admits("2", "3.49.2")
    assert admits("0.3", "0.3.9") and not admits("0.3", "0.4.0")
    assert admits("0.0.3", "0.0.3") and not admits("0.0.3", "0.0.4")
    assert admits("~1.2", "1.2.9") and not admits("~1.2", "1.3.0")
    assert admits("=1.2.3", "1.2.3") and not admits("=1.2.3", "1.2.4")
    assert admits(">= 1.4", "3.0.0") and not admits("< 1.4", "1.4.0")
    assert admits("1.2 - 1.4", "1.4.7") and not admits("1.2 - 1.4", "1.5.0")
    assert admits("1.10", "1.12.0") and not admits("1.11", "1.10.5")
    with pytest.raises(ValueError):
        admits("1,,2", "1.0.0")
    with pytest.raises(ValueError):
        admits("banana", "1.0.0")


def test_compat_mismatches_are_caught(repo):
    root, edit = repo
    project = "julia/DERLKernels/Project.toml"
    edit(project, r'OrdinaryDiffEqHighOrderRK = "1, 2"', 'OrdinaryDiffEqHighOrderRK = "1"')
    edit(project, r'SciMLBase = "2, 3"', 'SciMLBase = "2"')
    problems = deep.check_compat(root)
    assert any("OrdinaryDiffEqHighOrderRK = '1' does not admit 2.2.0" in p for p in problems)
    assert any("SciMLBase = '2' does not admit 3.49.2" in p for p in problems)
    # juliapkg.json kept the new bounds: they now differ from the package's
    assert any("juliapkg.json: SciMLBase version '2, 3' differs" in p for p in problems)


def test_compat_table_must_cover_every_dependency(repo):
    root, edit = repo
    edit("tools/julia_compat.toml", r'FFTW = \{ version = "1\.8\.0" \}\n', "")
    edit("tools/julia_compat.toml", r"checked = .*\n", "")
    problems = deep.check_compat(root)
    assert any("[latest] has no row for FFTW" in p for p in problems), problems
    assert any("say when the table was checked" in p for p in problems), problems


def test_root_sources_need_julia_1_11(repo):
    root, edit = repo
    edit("Project.toml", r'(?m)^julia = "1\.11"', 'julia = "1.10"')
    problems = deep.check_compat(root)
    assert any("[sources] is read by Julia >= 1.11 only" in p for p in problems), problems


def test_juliapkg_json_bounds_match(repo):
    root, _ = repo
    path = root / "python/derlhybrid/juliapkg.json"
    spec = json.loads(path.read_text())
    spec["packages"]["FFTW"]["version"] = "1.9"
    path.write_text(json.dumps(spec))
    problems = deep.check_compat(root)
    assert any("FFTW version '1.9' differs" in p for p in problems), problems
