"""The juliapkg declaration works in an editable install and in a wheel (issue 18, defect 1).

The full round trip (build the wheel, install it in a fresh environment, ask juliapkg) is
tools/check_julia_wheel.py, a step of .ci/run; these tests check its checks on small layouts,
including the broken path that shipped before (``../../julia/DERLKernels`` beside an
installed ``juliapkg.json``)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "julia" / "DERLKernels"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


wheel_check = _load("check_julia_wheel")
UUID = json.loads((ROOT / "python" / "derlhybrid" / "juliapkg.json").read_text())["packages"][
    "DERLKernels"
]["uuid"]


def _site(tmp_path: Path, path_entry: str, copy_package: bool = True) -> Path:
    """A fake site-packages holding derlhybrid/juliapkg.json (``path`` = ``path_entry``) and,
    with ``copy_package``, a copy of the Julia package at derlhybrid/DERLKernels."""
    site = tmp_path / "site-packages"
    pkg = site / "derlhybrid"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    spec = json.loads((ROOT / "python" / "derlhybrid" / "juliapkg.json").read_text())
    spec["packages"]["DERLKernels"]["path"] = path_entry
    (pkg / "juliapkg.json").write_text(json.dumps(spec))
    if copy_package:
        shutil.copytree(SOURCE, pkg / "DERLKernels")
    return site


def _probe(site: Path) -> dict:
    """What PROBE reports for ``site``, resolved the way juliapkg resolves paths."""
    json_file = site / "derlhybrid" / "juliapkg.json"
    spec = json.loads(json_file.read_text())["packages"]["DERLKernels"]
    return {
        "package_file": str(site / "derlhybrid" / "__init__.py"),
        "deps_files": [str(json_file)],
        "requirements": [
            {
                "name": "DERLKernels",
                "uuid": spec["uuid"],
                "dev": True,
                "path": str(wheel_check.resolve_json_path(json_file)),
            },
            {"name": "SciMLBase", "uuid": "0bca4576-84f4-4d90-8ffe-ffa030f20462"},
        ],
    }


def test_source_layout_resolves_to_the_julia_package():
    """Editable install: the json's path, from python/derlhybrid, is julia/DERLKernels."""
    assert wheel_check.check_source_layout(ROOT) == []
    folder = wheel_check.resolve_json_path(ROOT / "python" / "derlhybrid" / "juliapkg.json")
    assert folder.resolve() == SOURCE.resolve()
    assert (folder / "src" / "DERLKernels.jl").is_file()


def test_juliapkg_resolves_the_source_json_like_the_checker():
    """juliapkg's own resolution (no Julia started) gives the same folder as the checker's."""
    juliapkg_deps = pytest.importorskip("juliapkg.deps")

    _, deps = juliapkg_deps.find_requirements()
    (req,) = [d for d in deps if d.name == "DERLKernels"]
    assert req.dev and Path(req.path).resolve() == SOURCE.resolve()


def test_wheel_layout_passes(tmp_path):
    site = _site(tmp_path, "DERLKernels")
    assert wheel_check.check_probe(_probe(site), site, ROOT) == []


def test_old_relative_path_is_caught_in_a_wheel(tmp_path):
    """The path that shipped before: fine in the source tree, missing beside site-packages."""
    site = _site(tmp_path, "../../julia/DERLKernels")
    problems = wheel_check.check_probe(_probe(site), site, ROOT)
    assert any("does not exist" in p for p in problems), problems


def test_missing_or_stale_files_are_caught(tmp_path):
    site = _site(tmp_path, "DERLKernels")
    copy = site / "derlhybrid" / "DERLKernels"
    (copy / "src" / "pde.jl").unlink()
    (copy / "src" / "ode.jl").write_text("# stale\n")
    (copy / "src" / "extra.jl").write_text("# not in the source\n")
    problems = wheel_check.check_probe(_probe(site), site, ROOT)
    assert any("lacks src/pde.jl" in p for p in problems), problems
    assert any("src/ode.jl differs" in p for p in problems), problems
    assert any("has src/extra.jl" in p for p in problems), problems


def test_wrong_uuid_and_foreign_import_are_caught(tmp_path):
    site = _site(tmp_path, "DERLKernels")
    project = site / "derlhybrid" / "DERLKernels" / "Project.toml"
    project.write_text(project.read_text().replace(UUID, "00000000-0000-0000-0000-000000000000"))
    probe = _probe(site)
    probe["package_file"] = str(ROOT / "python" / "derlhybrid" / "__init__.py")
    problems = wheel_check.check_probe(probe, site, ROOT)
    assert any("expected 'DERLKernels'" in p for p in problems), problems
    assert any("not from the wheel's environment" in p for p in problems), problems


def test_path_outside_the_package_is_caught(tmp_path):
    site = _site(tmp_path, "../elsewhere", copy_package=False)
    shutil.copytree(SOURCE, site / "elsewhere")
    problems = wheel_check.check_probe(_probe(site), site, ROOT)
    assert any("outside the installed package" in p for p in problems), problems


def test_broken_source_json_is_caught(tmp_path):
    root = tmp_path / "repo"
    (root / "python" / "derlhybrid").mkdir(parents=True)
    shutil.copytree(SOURCE, root / "julia" / "DERLKernels")
    spec = json.loads((ROOT / "python" / "derlhybrid" / "juliapkg.json").read_text())
    spec["packages"]["DERLKernels"]["path"] = "../julia/DERLKernels"  # one level short
    (root / "python" / "derlhybrid" / "juliapkg.json").write_text(json.dumps(spec))
    problems = wheel_check.check_source_layout(root)
    assert any("is not a folder" in p for p in problems), problems
    (root / "python" / "derlhybrid" / "DERLKernels").symlink_to(
        Path("..", "..", "julia", "DERLKernels")
    )
    spec["packages"]["DERLKernels"]["path"] = "DERLKernels"
    (root / "python" / "derlhybrid" / "juliapkg.json").write_text(json.dumps(spec))
    assert wheel_check.check_source_layout(root) == []


def test_package_data_lists_the_julia_files():
    """pyproject's package data covers every file of the Julia package (the wheel check
    compares the installed copy with the source; this names a missing pattern early)."""
    import fnmatch
    import tomllib

    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["derlhybrid"]
    for rel in wheel_check.julia_files(SOURCE):
        assert any(fnmatch.fnmatch(f"DERLKernels/{rel}", p) for p in patterns), rel
