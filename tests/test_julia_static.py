"""Static checks of the Julia package (Julia cannot run here): tools/check_julia.py."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "julia" / "DERLKernels"

pytest.importorskip("tree_sitter")
pytest.importorskip("tree_sitter_julia")


def _load_check_julia():
    spec = importlib.util.spec_from_file_location("check_julia", ROOT / "tools" / "check_julia.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_julia = _load_check_julia()

MODULE_TEMPLATE = """module DERLKernels

include("stencils.jl")

export {exports}

end
"""

STENCILS = """
fornberg_weights!(w, x0, xs, order) = w
fornberg_weights(x0, xs, order) = fornberg_weights!(zeros(length(xs)), x0, xs, order)
function derivative!(out::AbstractArray{{T}}, u::AbstractArray{{T}}, h; dim) where {{T}}
    return out
end
derivative(u, h; dim) = derivative!(similar(u), u, h; dim=dim)
"""


def _fake_repo(tmp_path: Path, exports: str) -> Path:
    """A minimal repository layout with the given export list."""
    src = tmp_path / "julia" / "DERLKernels" / "src"
    test = tmp_path / "julia" / "DERLKernels" / "test"
    src.mkdir(parents=True)
    test.mkdir(parents=True)
    (src / "DERLKernels.jl").write_text(MODULE_TEMPLATE.format(exports=exports))
    (src / "stencils.jl").write_text(STENCILS.format())
    (test / "runtests.jl").write_text('using DERLKernels, Test\ninclude("stencils.jl")\n')
    (test / "stencils.jl").write_text("@test true\n")
    return tmp_path


def test_repository_passes():
    assert check_julia.check(ROOT) == []
    assert check_julia.main([str(ROOT)]) == 0


def test_exports_match_python_kernels():
    from derlhybrid.kernels import KERNELS

    exported = check_julia.julia_exports(PACKAGE / "src" / "DERLKernels.jl")
    assert {name.removesuffix("!") for name in exported} == set(KERNELS)
    assert {f"{k}!" for k in KERNELS} <= exported


def test_broken_julia_is_reported(tmp_path):
    bad = tmp_path / "broken.jl"
    bad.write_text("function f(x)\n    y = (x + 1\n    return y\nend\n")
    problems = check_julia.parse_errors(bad)
    assert problems
    assert all(p.startswith(f"{bad}:") for p in problems)
    good = tmp_path / "good.jl"
    good.write_text("f(x) = x + 1\n")
    assert check_julia.parse_errors(good) == []


def test_fake_repository_passes(tmp_path):
    root = _fake_repo(tmp_path, "fornberg_weights!, fornberg_weights, derivative!, derivative")
    assert check_julia.check(root) == []


@pytest.mark.parametrize(
    ("exports", "expected"),
    [
        ("fornberg_weights!, fornberg_weights, derivative", "derivative!"),  # no in-place form
        ("fornberg_weights!, derivative!, laplacian!", "do not match"),  # extra kernel
        ("fornberg_weights!", "do not match"),  # missing kernel
    ],
)
def test_mismatched_exports_are_caught(tmp_path, exports, expected):
    root = _fake_repo(tmp_path, exports)
    problems = check_julia.check(root)
    assert any(expected in p for p in problems), problems
    assert check_julia.main([str(root)]) == 1


def test_missing_include_and_syntax_error_are_caught(tmp_path):
    root = _fake_repo(tmp_path, "fornberg_weights!, derivative!")
    (root / "julia" / "DERLKernels" / "src" / "stencils.jl").unlink()
    (root / "julia" / "DERLKernels" / "test" / "stencils.jl").write_text("@test (1 + \n")
    problems = check_julia.check(root)
    assert any("include('stencils.jl') names a missing file" in p for p in problems), problems
    assert any("test/stencils.jl:" in p and "syntax error" in p for p in problems), problems


def test_julia_uuids_agree():
    package = tomllib.loads((PACKAGE / "Project.toml").read_text())
    root_env = tomllib.loads((ROOT / "Project.toml").read_text())
    juliapkg = json.loads((ROOT / "python" / "derlhybrid" / "juliapkg.json").read_text())
    uuid = package["uuid"]
    assert package["name"] == "DERLKernels"
    assert juliapkg["packages"]["DERLKernels"]["uuid"] == uuid
    assert root_env["deps"]["DERLKernels"] == uuid
    assert root_env["sources"]["DERLKernels"]["path"] == "julia/DERLKernels"
    # every dependency of the package has a compat bound
    assert set(package["deps"]) | set(package.get("extras", {})) | {"julia"} <= set(
        package["compat"]
    )
