"""Check that a wheel of derlhybrid carries a working juliapkg declaration, without Julia.

juliacall installs the Julia packages that the ``juliapkg.json`` files of the environment
declare; a ``path`` entry is resolved relative to the directory of its ``juliapkg.json``
(``juliapkg.deps.find_requirements``). This tool

1. copies the repository's files (tracked and untracked-but-not-ignored, links kept) to a
   temporary folder and builds a wheel there (``pip wheel --no-deps --no-build-isolation``:
   no download, a few seconds);
2. installs the wheel into a fresh virtual environment (``venv --without-pip``, installed by
   this interpreter's pip with ``--python``; no dependencies, no index);
3. runs the fresh interpreter, isolated (``-I``, from an empty folder), with juliapkg taken
   from this interpreter's environment: ``juliapkg.deps.find_requirements()`` lists the
   requirements exactly as juliacall would, without starting Julia;
4. checks that ``derlhybrid`` came from the fresh environment, that every requirement with a
   ``path`` names an existing folder, and that the DERLKernels it names lies inside the
   installed package and holds the same ``Project.toml`` and ``.jl`` files, byte for byte,
   as ``julia/DERLKernels`` of the repository (the source of truth);
5. checks the source layout too: ``python/derlhybrid/juliapkg.json`` resolves, from its own
   folder, to ``julia/DERLKernels`` (what an editable install uses).

Usage: ``python tools/check_julia_wheel.py [--wheel WHEEL] [--keep]``; exit status 0 when every
check passes, 1 with one line per problem otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "derlhybrid"
JULIA_PACKAGE = "DERLKernels"
SOURCE_JSON = Path("python") / PACKAGE / "juliapkg.json"
SOURCE_JULIA = Path("julia") / JULIA_PACKAGE

# Run by the fresh interpreter: where derlhybrid comes from and what juliapkg would install.
PROBE = """
import json, os, sys
sys.path.append(sys.argv[1])  # juliapkg (and its dependencies) of the checking environment
import derlhybrid
import juliapkg.deps
compat, deps = juliapkg.deps.find_requirements()
print(json.dumps({
    "package_file": os.path.abspath(derlhybrid.__file__),
    "deps_files": juliapkg.deps.deps_files(),
    "requirements": [d.dict() for d in deps],
}))
"""


def julia_files(folder: Path) -> dict[str, bytes]:
    """``relative path -> bytes`` of the Julia package's ``Project.toml`` and ``.jl`` files."""
    folder = Path(folder)
    found = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and (rel == "Project.toml" or path.suffix == ".jl"):
            found[rel] = path.read_bytes()
    return found


def resolve_json_path(json_file: Path, name: str = JULIA_PACKAGE) -> Path | None:
    """The folder that ``json_file``'s ``packages[name].path`` names, resolved the way
    juliapkg resolves it (relative to the json file's folder); None without a path."""
    spec = json.loads(Path(json_file).read_text())["packages"].get(name, {})
    if "path" not in spec:
        return None
    return Path(os.path.normpath(Path(json_file).parent / spec["path"]))


def check_julia_package(folder: Path, source: Path, uuid: str, where: str) -> list[str]:
    """Problems of the Julia package at ``folder`` against the source package ``source``."""
    if not folder.is_dir():
        return [f"{where}: {JULIA_PACKAGE} path {folder} is not a folder"]
    problems = []
    project = folder / "Project.toml"
    if not project.is_file():
        return [f"{where}: {project} is missing"]
    meta = tomllib.loads(project.read_text())
    if meta.get("name") != JULIA_PACKAGE or meta.get("uuid") != uuid:
        problems.append(
            f"{where}: {project} declares {meta.get('name')!r} {meta.get('uuid')!r}, expected "
            f"{JULIA_PACKAGE!r} {uuid!r} (juliapkg.json)"
        )
    got, expected = julia_files(folder), julia_files(source)
    problems.extend(
        f"{where}: {folder} lacks {rel} of {source}" for rel in sorted(set(expected) - set(got))
    )
    problems.extend(
        f"{where}: {folder} has {rel}, which {source} does not"
        for rel in sorted(set(got) - set(expected))
    )
    problems.extend(
        f"{where}: {folder}/{rel} differs from {source}/{rel}"
        for rel in sorted(set(got) & set(expected))
        if got[rel] != expected[rel]
    )
    return problems


def check_source_layout(root: Path = REPO_ROOT) -> list[str]:
    """The editable layout: the source ``juliapkg.json`` names ``julia/DERLKernels``."""
    root = Path(root)
    json_file = root / SOURCE_JSON
    where = str(json_file)
    folder = resolve_json_path(json_file)
    if folder is None:
        return [f"{where}: {JULIA_PACKAGE} has no path"]
    problems = []
    source = root / SOURCE_JULIA
    if folder.is_dir() and folder.resolve() != source.resolve():
        problems.append(f"{where}: path resolves to {folder.resolve()}, not {source.resolve()}")
    uuid = json.loads(json_file.read_text())["packages"][JULIA_PACKAGE]["uuid"]
    problems.extend(check_julia_package(folder, source, uuid, where))
    return problems


def check_probe(probe: dict, site: Path, root: Path = REPO_ROOT) -> list[str]:
    """Problems in what the fresh environment's juliapkg reports (see ``PROBE``)."""
    site = Path(site).resolve()
    problems = []
    package_file = Path(probe["package_file"]).resolve()
    if not package_file.is_relative_to(site):
        problems.append(
            f"{PACKAGE} was imported from {package_file}, not from the wheel's environment {site}"
        )
    ours = [f for f in probe["deps_files"] if Path(f).resolve().is_relative_to(site / PACKAGE)]
    if not ours:
        problems.append(f"juliapkg found no juliapkg.json of {PACKAGE} under {site}")
    by_name = {r["name"]: r for r in probe["requirements"]}
    for req in probe["requirements"]:
        if req.get("path") and not Path(req["path"]).is_dir():
            problems.append(
                f"juliapkg requirement {req['name']}: path {req['path']} does not exist "
                "(juliacall's Pkg.develop would fail for every package of the environment)"
            )
    req = by_name.get(JULIA_PACKAGE)
    if req is None:
        problems.append(f"juliapkg does not list {JULIA_PACKAGE}")
        return problems
    if not req.get("dev") or not req.get("path"):
        problems.append(f"{JULIA_PACKAGE} must be a dev requirement with a path, got {req}")
        return problems
    folder = Path(req["path"])
    if folder.is_dir() and not folder.resolve().is_relative_to(site / PACKAGE):
        problems.append(f"{JULIA_PACKAGE} path {folder} lies outside the installed package")
    problems.extend(check_julia_package(folder, Path(root) / SOURCE_JULIA, req["uuid"], "wheel"))
    return problems


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def copy_sources(root: Path, dest: Path) -> None:
    """The repository's tracked and untracked-but-not-ignored files (links kept as links)."""
    listed = _run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root
    ).stdout
    for rel in sorted(set(filter(None, listed.split("\0")))):
        src, dst = root / rel, dest / rel
        if not src.exists() and not src.is_symlink():
            continue  # deleted in the working tree
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
        else:
            shutil.copy2(src, dst)


def build_wheel(root: Path, out: Path) -> Path:
    """Build the wheel from a copy of the sources (no stale ``build/`` can leak into it)."""
    src = out / "src"
    copy_sources(root, src)
    dist = out / "dist"
    pip = [sys.executable, "-m", "pip"]
    _run([*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist), str(src)])
    (wheel,) = dist.glob(f"{PACKAGE}-*.whl")
    return wheel


def install_fresh(wheel: Path, out: Path) -> tuple[Path, Path]:
    """A fresh virtual environment holding only the wheel: ``(python, site-packages)``."""
    env = out / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(env)])
    python = env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    _run([*pip, "install", "-q", "--no-deps", "--no-index", str(wheel)])
    site = _run([str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
    return python, Path(site.stdout.strip())


def probe_environment(python: Path, cwd: Path) -> dict:
    """Run ``PROBE`` in the fresh environment; juliapkg comes from this one."""
    import juliapkg

    juliapkg_site = str(Path(juliapkg.__file__).resolve().parents[1])
    cwd.mkdir(parents=True, exist_ok=True)
    res = _run([str(python), "-I", "-c", PROBE, juliapkg_site], cwd=cwd)
    return json.loads(res.stdout.strip().splitlines()[-1])


def check(root: Path = REPO_ROOT, wheel: Path | None = None, keep: bool = False) -> list[str]:
    root = Path(root)
    problems = check_source_layout(root)
    out = Path(tempfile.mkdtemp(prefix="derl-wheel-"))
    try:
        wheel = Path(wheel) if wheel else build_wheel(root, out)
        python, site = install_fresh(wheel, out)
        probe = probe_environment(python, out / "empty")
        problems.extend(check_probe(probe, site, root))
        print(f"check_julia_wheel: {wheel.name} installed in {site}")
        for req in probe["requirements"]:
            if req.get("path"):
                print(f"  juliapkg: {req['name']} dev={req.get('dev')} path={req['path']}")
    except subprocess.CalledProcessError as exc:
        problems.append(f"{' '.join(map(str, exc.cmd))[:200]} failed: {exc.stderr.strip()[-600:]}")
    finally:
        if keep:
            print(f"check_julia_wheel: kept {out}")
        else:
            shutil.rmtree(out, ignore_errors=True)
    return problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=str(REPO_ROOT), help="repository root")
    ap.add_argument("--wheel", help="check this wheel instead of building one")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args(argv)
    problems = check(Path(args.root), args.wheel, args.keep)
    for p in problems:
        print(p)
    if problems:
        print(f"check_julia_wheel: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print("check_julia_wheel: every juliapkg path exists, in the wheel and in the source tree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
