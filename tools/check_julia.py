"""Static checks of the Julia sources, for machines where Julia cannot run.

1. Every ``*.jl`` file of the repository parses with tree-sitter-julia (no ERROR or MISSING
   node); each problem is reported as ``file:line:col``.
2. The names exported by ``julia/DERLKernels/src/DERLKernels.jl`` (read from the syntax tree),
   with a trailing ``!`` stripped, equal ``derlhybrid.kernels.KERNELS`` plus the generators of
   ``derlhybrid.kernels._julia.JULIA_GENERATORS`` (without ``!``); every Python kernel ``K``
   has an exported in-place ``K!``, every generator is exported as written (an in-place
   ``name!``), and every exported name is defined as a function in the package sources.
3. Every ``include("...")`` of the Julia files names a file that exists.
4. The package's ``const SYSTEMS = ("name" => (param = default, ...), ...)`` table declares
   exactly the built-in systems of Python's registry (``derlhybrid.systems.SYSTEMS``, less
   those registered from other modules, such as a user's), each with the
   parameter names of ``parameter_specs()`` in the same order and equal defaults (1e-12
   relative); the defaults are plain number literals.
5. Every system Julia solves (the names of ``const ODE_SYSTEMS`` / ``const PDE_SYSTEMS``, each
   ``"name" => ...``) is a Python system of that kind (``"ode"`` / ``"pde"``), and the ODE
   names are exactly ``derlhybrid.kernels._julia.JULIA_ODE_SYSTEMS`` (what Python sends).
6. The package's ``const STATUS_* = n`` codes equal ``derlhybrid.kernels.ode``'s.

Usage: ``python tools/check_julia.py [ROOT]``; exit status 0 when all checks pass, 1 with one
line per problem otherwise.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = Path("julia") / "DERLKernels"
MODULE_FILE = PACKAGE_DIR / "src" / "DERLKernels.jl"
RUNTESTS_FILE = PACKAGE_DIR / "test" / "runtests.jl"
SKIP_DIRS = {".git", ".hg", ".venv", "venv", "node_modules", "__pycache__", ".tox", "build"}
SYSTEMS_TABLE = "SYSTEMS"
#: tables of the systems Julia solves -> the Python ``kind`` of their systems
SOLVER_TABLES = {"ODE_SYSTEMS": "ode", "PDE_SYSTEMS": "pde"}
STATUS_PREFIX = "STATUS_"
DEFAULT_RTOL = 1e-12


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


def _python_module(root: Path, name: str):
    """Import ``name`` from the installed package, or else from the source tree."""
    try:
        return importlib.import_module(name)
    except ImportError:
        src = str(Path(root) / "python")
        if src not in sys.path:
            sys.path.insert(0, src)
        return importlib.import_module(name)


def python_kernels(root: Path) -> tuple[str, ...]:
    """``derlhybrid.kernels.KERNELS`` from the installed package (or the source tree)."""
    return tuple(_python_module(root, "derlhybrid.kernels").KERNELS)


def python_generators(root: Path) -> tuple[str, ...]:
    """``derlhybrid.kernels._julia.JULIA_GENERATORS`` (importing it starts no Julia)."""
    return tuple(_python_module(root, "derlhybrid.kernels._julia").JULIA_GENERATORS)


def python_julia_ode_systems(root: Path) -> tuple[str, ...]:
    """``derlhybrid.kernels._julia.JULIA_ODE_SYSTEMS``: the ODE systems Python sends to Julia."""
    return tuple(_python_module(root, "derlhybrid.kernels._julia").JULIA_ODE_SYSTEMS)


def python_systems(root: Path) -> dict[str, tuple[str, list[tuple[str, float]]]]:
    """Python's built-in systems: ``name -> (kind, [(parameter, default), ...])``.

    Systems registered from outside ``derlhybrid.systems`` (a user's, a test's) are left
    out: Julia mirrors the package's own systems only.
    """
    package = _python_module(root, "derlhybrid.systems")
    return {
        name: (cls.kind, [(spec.name, float(spec.default)) for spec in cls.parameter_specs()])
        for name, cls in package.SYSTEMS.items()
        if cls.__module__.split(".")[:2] == ["derlhybrid", "systems"]
    }


def python_status_codes(root: Path) -> dict[str, int]:
    """The ``STATUS_*`` codes of ``derlhybrid.kernels.ode``."""
    ode = _python_module(root, "derlhybrid.kernels.ode")
    return {
        name: int(getattr(ode, name))
        for name in dir(ode)
        if name.startswith(STATUS_PREFIX) and isinstance(getattr(ode, name), int)
    }


# --- constant tables read from the syntax tree ----------------------------------------------


def julia_consts(path) -> dict[str, tuple[int, object]]:
    """``name -> (line, value node)`` of every ``const name = value`` of a Julia file."""
    found = {}
    for node in _walk(_parse(path).root_node):
        if node.type != "const_statement":
            continue
        for assign in node.named_children:
            kids = assign.named_children
            if assign.type == "assignment" and len(kids) == 3 and kids[0].type == "identifier":
                found[_text(kids[0])] = (assign.start_point[0] + 1, kids[2])
    return found


class TableError(ValueError):
    """A constant table the checker cannot read (the message says what to write)."""


def _string_value(node) -> str:
    if node.type != "string_literal" or any(c.type != "content" for c in node.named_children):
        raise TableError(f"expected a plain string literal, got {_text(node)!r}")
    return "".join(_text(c) for c in node.named_children)


def _number_value(node, integer_ok: bool = True) -> float:
    """A number literal, optionally signed (``-1.5e-3``, ``10``, ``0.25``); only Float64
    literals when ``integer_ok`` is false."""
    sign = 1.0
    while node.type == "unary_expression" and len(node.children) == 2:
        op = _text(node.children[0])
        if op not in ("-", "+"):
            break
        sign = -sign if op == "-" else sign
        node = node.children[1]
    text = _text(node).replace("_", "")
    if integer_ok and node.type == "integer_literal" and text.isdigit():
        return sign * float(int(text))
    if node.type == "float_literal" and "f" not in text.lower() and "p" not in text.lower():
        return sign * float(text)
    raise TableError(f"expected a Float64 number literal, got {_text(node)!r}")


def _entries(node) -> list:
    """Named children of a node, comments left out."""
    return [c for c in node.named_children if "comment" not in c.type]


def _pairs(node) -> list:
    """The ``"name" => value`` entries of a tuple ``("a" => x, "b" => y)``."""
    if node.type != "tuple_expression":
        raise TableError(
            'expected a tuple of pairs ("name" => ..., ...) with a trailing comma for one entry'
        )
    entries = []
    for entry in _entries(node):
        kids = entry.named_children
        if entry.type != "binary_expression" or len(kids) != 3 or _text(kids[1]) != "=>":
            raise TableError(f'expected "name" => value, got {_text(entry)[:60]!r}')
        entries.append((_string_value(kids[0]), kids[2]))
    return entries


def julia_systems_table(node) -> list[tuple[str, list[tuple[str, float]]]]:
    """``[(system, [(parameter, default), ...]), ...]`` of a ``SYSTEMS`` table value."""
    table = []
    for name, value in _pairs(node):
        if value.type != "tuple_expression":
            raise TableError(
                f"{name}: expected a named tuple (param = default, ...), with a trailing comma "
                "for one parameter"
            )
        params = []
        for field in _entries(value):
            kids = field.named_children
            if field.type != "named_field" or len(kids) != 2 or kids[0].type != "identifier":
                raise TableError(f"{name}: expected param = default, got {_text(field)!r}")
            try:
                params.append((_text(kids[0]), _number_value(kids[1], integer_ok=False)))
            except TableError as exc:
                raise TableError(f"{name}.{_text(kids[0])}: {exc}") from None
        table.append((name, params))
    return table


def julia_table_names(node) -> list[str]:
    """The names of a ``("name" => ..., ...)`` table value."""
    return [name for name, _ in _pairs(node)]


def _close(a: float, b: float, rtol: float = DEFAULT_RTOL) -> bool:
    return a == b or abs(a - b) <= rtol * max(abs(a), abs(b))


def check_systems(src_consts, python: dict, python_ode=None) -> list[str]:
    """Problems of the Julia ``SYSTEMS`` table and the solver tables against Python's registry
    (and, given ``python_ode``, of ``ODE_SYSTEMS`` against the names Python sends to Julia).

    ``src_consts`` maps each package source file to its :func:`julia_consts`.
    """
    problems = []
    defs = [(f, *c[SYSTEMS_TABLE]) for f, c in src_consts.items() if SYSTEMS_TABLE in c]
    if len(defs) != 1:
        where = ", ".join(f"{f}:{line}" for f, line, _ in defs) or "none found"
        return [
            f'the package sources must define one `const {SYSTEMS_TABLE} = ("name" => '
            f"(param = default, ...), ...)` table mirroring python's registry ({where})"
        ]
    path, line, node = defs[0]
    where = f"{path}:{line}"
    try:
        table = julia_systems_table(node)
    except TableError as exc:
        return [f"{where}: cannot read {SYSTEMS_TABLE}: {exc}"]
    names = [name for name, _ in table]
    problems.extend(
        f"{where}: {SYSTEMS_TABLE} declares {name!r} more than once"
        for name in sorted({n for n in names if names.count(n) > 1})
    )
    problems.extend(
        f"{where}: {SYSTEMS_TABLE} lacks python system {name!r} (parameters "
        f"{[p for p, _ in python[name][1]]})"
        for name in sorted(set(python) - set(names))
    )
    problems.extend(
        f"{where}: {SYSTEMS_TABLE} declares {name!r}, which python's registry does not have"
        for name in sorted(set(names) - set(python))
    )
    for name, params in table:
        if name not in python:
            continue
        expected = python[name][1]
        if [p for p, _ in params] != [p for p, _ in expected]:
            problems.append(
                f"{where}: {name}: parameters {[p for p, _ in params]} differ from python's "
                f"{[p for p, _ in expected]} (same names, same order)"
            )
            continue
        problems.extend(
            f"{where}: {name}.{p}: default {v!r} differs from python's {d!r}"
            for (p, v), (_, d) in zip(params, expected, strict=True)
            if not _close(v, d)
        )
    julia_ode = []
    for table_name, kind in SOLVER_TABLES.items():
        for f, consts in src_consts.items():
            if table_name not in consts:
                continue
            tline, tnode = consts[table_name]
            try:
                solved = julia_table_names(tnode)
            except TableError as exc:
                problems.append(f"{f}:{tline}: cannot read {table_name}: {exc}")
                continue
            if kind == "ode":
                julia_ode.extend(solved)
            for name in solved:
                if name not in python:
                    problems.append(
                        f"{f}:{tline}: {table_name} solves {name!r}, which python's registry "
                        "does not have"
                    )
                elif python[name][0] != kind:
                    problems.append(
                        f"{f}:{tline}: {table_name} solves {name!r}, a python {python[name][0]!r}"
                        f" system, not {kind!r}"
                    )
    if python_ode is not None and sorted(julia_ode) != sorted(python_ode):
        problems.append(
            f"ODE_SYSTEMS of the package ({sorted(julia_ode)}) differ from JULIA_ODE_SYSTEMS of "
            f"derlhybrid/kernels/_julia.py ({sorted(python_ode)})"
        )
    return problems


def check_status_codes(src_consts, python_codes: dict[str, int]) -> list[str]:
    """Problems of the package's ``STATUS_*`` constants against ``kernels.ode``'s."""
    julia_codes, problems = {}, []
    for f, consts in src_consts.items():
        for name, (line, node) in consts.items():
            if name.startswith(STATUS_PREFIX):
                try:
                    julia_codes[name] = (f"{f}:{line}", _number_value(node))
                except TableError as exc:
                    problems.append(f"{f}:{line}: {name}: {exc}")
    for name in sorted(set(python_codes) | set(julia_codes)):
        if name not in julia_codes:
            problems.append(
                f"the package sources lack `const {name} = {python_codes[name]}` "
                "(derlhybrid.kernels.ode)"
            )
        elif name not in python_codes:
            problems.append(f"{julia_codes[name][0]}: {name} is not a derlhybrid.kernels.ode code")
        elif julia_codes[name][1] != python_codes[name]:
            problems.append(
                f"{julia_codes[name][0]}: {name} = {julia_codes[name][1]:g} differs from python's "
                f"{python_codes[name]}"
            )
    return problems


def check_exports(module_file: Path, kernels, defined: set[str], generators=()) -> list[str]:
    """Problems with the module's exports against the Python kernels, the generators Python
    calls and the definitions."""
    exported = julia_exports(module_file)
    problems = []
    stripped = {name.removesuffix("!") for name in exported}
    expected = set(kernels) | {g.removesuffix("!") for g in generators}
    if stripped != expected:
        problems.append(
            f"{module_file}: exports {sorted(exported)} (without '!': {sorted(stripped)}) "
            f"do not match the python kernels {sorted(kernels)} and generators "
            f"{sorted(generators)}"
        )
    problems.extend(
        f"{module_file}: python kernel {k!r} has no exported in-place '{k}!'"
        for k in kernels
        if f"{k}!" not in exported
    )
    problems.extend(
        f"JULIA_GENERATORS: {g!r} must name an in-place function (ending in '!')"
        for g in generators
        if not g.endswith("!")
    )
    problems.extend(
        f"{module_file}: julia generator {g!r} (JULIA_GENERATORS) is not exported"
        for g in generators
        if g not in exported
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
        problems.extend(
            check_exports(module_file, python_kernels(root), defined, python_generators(root))
        )
        consts = {f: julia_consts(f) for f in src}
        problems.extend(check_systems(consts, python_systems(root), python_julia_ode_systems(root)))
        problems.extend(check_status_codes(consts, python_status_codes(root)))
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
    kernels, generators = python_kernels(root), python_generators(root)
    print(
        f"check_julia: {len(iter_julia_files(root))} .jl files parsed, exports match python "
        f"kernels ({', '.join(kernels)}) and generators ({', '.join(generators)}), "
        f"SYSTEMS matches python's {len(python_systems(root))} systems, status codes agree"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
