"""Static checks of the Julia sources, for machines where Julia cannot run.

1. Every ``*.jl`` file of the repository parses with tree-sitter-julia (no ERROR or MISSING
   node); each problem is reported as ``file:line:col``.
2. The names exported by ``julia/DERLKernels/src/DERLKernels.jl`` (read from the syntax tree),
   with a trailing ``!`` stripped, equal ``derlhybrid.kernels.KERNELS``; every Python kernel
   ``K`` has an exported in-place ``K!``, and every exported name is defined as a function in
   the package sources.
3. Every ``include("...")`` of the Julia files names a file that exists.

Usage: ``python tools/check_julia.py [ROOT]``; exit status 0 when all checks pass, 1 with one
line per problem otherwise.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = Path("julia") / "DERLKernels"
MODULE_FILE = PACKAGE_DIR / "src" / "DERLKernels.jl"
RUNTESTS_FILE = PACKAGE_DIR / "test" / "runtests.jl"
SKIP_DIRS = {".git", ".hg", ".venv", "venv", "node_modules", "__pycache__", ".tox", "build"}


@functools.cache
def _parser():
    import tree_sitter
    import tree_sitter_julia

    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_julia.language()))


def _parse(path: Path):
    return _parser().parse(Path(path).read_bytes())


def _walk(node) -> Iterator:
    """Every node of the subtree, depth first."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(n.children))


def _text(node) -> str:
    return node.text.decode("utf-8", errors="replace")


def iter_julia_files(root: Path) -> list[Path]:
    """The ``*.jl`` files under ``root``, skipping VCS folders and virtual environments."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d not in SKIP_DIRS and not (Path(dirpath, d) / "pyvenv.cfg").exists()
        )
        found.extend(Path(dirpath, f) for f in sorted(filenames) if f.endswith(".jl"))
    return found


def parse_errors(path) -> list[str]:
    """``file:line:col: ...`` for every ERROR or MISSING node of the file's syntax tree."""
    problems = []
    stack = [_parse(path).root_node]
    while stack:  # descend only into subtrees that hold an error
        node = stack.pop()
        row, col = node.start_point
        where = f"{path}:{row + 1}:{col + 1}"
        if node.is_missing:
            problems.append(f"{where}: syntax error: missing {node.type!r}")
        elif node.type == "ERROR":
            snippet = " ".join(_text(node).split())[:60]
            problems.append(f"{where}: syntax error: cannot parse {snippet!r}")
        stack.extend(c for c in reversed(node.children) if c.has_error or c.is_missing)
    return problems


def julia_exports(path) -> set[str]:
    """Names in the ``export`` statements of a Julia file, as written (``derivative!``)."""
    names = set()
    for node in _walk(_parse(path).root_node):
        if node.type == "export_statement":
            for child in node.named_children:
                if child.type in ("identifier", "macro_identifier", "operator"):
                    names.add(_text(child))
    return names


def _callee_name(node) -> str | None:
    """Name of the function a definition signature defines (``f`` in ``f(x) where T``)."""
    while node is not None and node.type in ("signature", "where_expression", "typed_expression"):
        node = node.named_children[0] if node.named_children else None
    if node is None or node.type != "call_expression" or not node.named_children:
        return None
    head = node.named_children[0]
    if head.type == "field_expression":  # Base.f(x) = ... extends another module's f
        return None
    return _text(head) if head.type == "identifier" else None


def julia_functions(path) -> set[str]:
    """Names of the functions a Julia file defines (long and short form)."""
    names = set()
    for node in _walk(_parse(path).root_node):
        if node.type == "function_definition":
            sig = next((c for c in node.named_children if c.type == "signature"), None)
            name = _callee_name(sig)
        elif node.type == "assignment" and node.named_children:
            name = _callee_name(node.named_children[0])
        else:
            continue
        if name:
            names.add(name)
    return names


def julia_includes(path) -> list[tuple[int, str]]:
    """``(line, target)`` of every ``include("literal")`` call of a Julia file."""
    found = []
    for node in _walk(_parse(path).root_node):
        if node.type != "call_expression" or len(node.named_children) < 2:
            continue
        head, args = node.named_children[0], node.named_children[1]
        if head.type != "identifier" or _text(head) != "include":
            continue
        lits = [a for a in args.named_children if a.type == "string_literal"]
        if len(lits) == 1 and len(args.named_children) == 1:
            content = "".join(_text(c) for c in lits[0].named_children if c.type == "content")
            found.append((node.start_point[0] + 1, content))
    return found


def python_kernels(root: Path) -> tuple[str, ...]:
    """``derlhybrid.kernels.KERNELS`` from the installed package (or the source tree)."""
    try:
        from derlhybrid.kernels import KERNELS
    except ImportError:
        sys.path.insert(0, str(Path(root) / "python"))
        from derlhybrid.kernels import KERNELS
    return tuple(KERNELS)


def check_exports(module_file: Path, kernels, defined: set[str]) -> list[str]:
    """Problems with the module's exports against the Python kernels and the definitions."""
    exported = julia_exports(module_file)
    problems = []
    stripped = {name.removesuffix("!") for name in exported}
    if stripped != set(kernels):
        problems.append(
            f"{module_file}: exports {sorted(exported)} (without '!': {sorted(stripped)}) "
            f"do not match the python kernels {sorted(kernels)}"
        )
    problems.extend(
        f"{module_file}: python kernel {k!r} has no exported in-place '{k}!'"
        for k in kernels
        if f"{k}!" not in exported
    )
    problems.extend(
        f"{module_file}: exported {name!r} is not defined as a function in the package"
        for name in sorted(exported - defined)
    )
    return problems


def check(root=REPO_ROOT) -> list[str]:
    """All problems found under ``root`` (empty when every check passes)."""
    root = Path(root)
    files = iter_julia_files(root)
    problems = [p for f in files for p in parse_errors(f)]
    module_file, runtests = root / MODULE_FILE, root / RUNTESTS_FILE
    for f in (module_file, runtests):
        if not f.is_file():
            problems.append(f"{f}: missing")
    if module_file.is_file():
        src = [f for f in files if f.is_relative_to(root / PACKAGE_DIR / "src")]
        defined = set().union(*(julia_functions(f) for f in src))
        problems.extend(check_exports(module_file, python_kernels(root), defined))
    for f in files:
        for line, target in julia_includes(f):
            if not (f.parent / target).is_file():
                problems.append(f"{f}:{line}: include({target!r}) names a missing file")
    return problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", nargs="?", default=str(REPO_ROOT), help="repository root")
    root = Path(ap.parse_args(argv).root)
    problems = check(root)
    for p in problems:
        print(p)
    if problems:
        print(f"check_julia: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    kernels = python_kernels(root)
    print(
        f"check_julia: {len(iter_julia_files(root))} .jl files parsed, exports match python "
        f"kernels ({', '.join(kernels)})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
