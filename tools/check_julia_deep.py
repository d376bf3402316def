"""Deeper static checks of the Julia package, for machines where Julia cannot run.

1. **Boundary.** Every call that ``python/derlhybrid/kernels/_julia.py`` makes into
   DERLKernels (``load().name_b(...)``: juliacall spells ``name!`` as ``name_b``) matches a
   method of the package: the same name, a positional count the method takes (parameters
   whose annotation cannot hold the Python value, such as a ``::Function`` for a ``str(...)``,
   rule a method out), every keyword accepted (named by the method, or by a ``kw...`` that
   forwards it to another method of the same function that names it) and every required
   keyword given. No parameter that receives a value from Python is annotated with a
   concrete array type (``Array``, ``Vector``, ``Matrix``, ``DenseArray``, ``StridedArray``,
   ..., directly, inside a ``Union`` or through a ``where`` bound): juliacall passes NumPy
   arrays as ``PyArray``s, which are none of these. The values are followed by name into the
   package functions they are passed to, also through ``reshape``/``view``/``vec`` wrappers.
2. **Precompile workload.** ``src/precompile.jl`` makes each boundary call with the same
   positional count and keyword names (so the keyword handling Python uses is compiled).
3. **Free identifiers.** Every identifier used in ``src/`` is bound locally (parameters,
   assignments, loop and comprehension variables, ``where`` type variables, ...), defined
   by the package (functions, constants, types, macros), imported by name (``using X: a``;
   a bare ``using X`` is refused) or exported by Base or Core (``tools/julia_base_names.txt``).
   Scopes are approximated by top-level definitions.
4. **Compat.** ``julia/DERLKernels/Project.toml``'s ``[compat]`` admits the latest version of
   each dependency recorded in ``tools/julia_compat.toml`` (a table updated by hand, with the
   date it was checked), every dependency has a row, ``juliapkg.json`` declares the same
   bounds, and a root ``Project.toml`` with a ``[sources]`` table (read by Julia >= 1.11
   only) does not admit Julia 1.10.

Usage: ``python tools/check_julia_deep.py [ROOT]``; exit status 0 when every check passes, 1
with one line per problem otherwise.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_julia import _parse, _text, _walk  # the tools folder is not a package

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = Path("julia") / "DERLKernels"
SRC_DIR = PACKAGE_DIR / "src"
BOUNDARY_FILE = Path("python") / "derlhybrid" / "kernels" / "_julia.py"
PRECOMPILE_FILE = SRC_DIR / "precompile.jl"
BASE_NAMES_FILE = Path("tools") / "julia_base_names.txt"
COMPAT_TABLE_FILE = Path("tools") / "julia_compat.toml"
JULIAPKG_FILE = Path("python") / "derlhybrid" / "juliapkg.json"
PACKAGE_NAME = "DERLKernels"

#: Array types a ``PyArray`` is not a subtype of.
CONCRETE_ARRAYS = frozenset(
    {
        "Array",
        "Vector",
        "Matrix",
        "VecOrMat",
        "DenseArray",
        "DenseVector",
        "DenseMatrix",
        "DenseVecOrMat",
        "StridedArray",
        "StridedVector",
        "StridedMatrix",
        "StridedVecOrMat",
        "BitArray",
        "BitVector",
        "BitMatrix",
        "SubArray",
        "Memory",
    }
)
#: Wrappers of an array that keep Python's memory (followed by the flow check).
ARRAY_WRAPPERS = frozenset({"reshape", "view", "vec", "transpose", "PermutedDimsArray"})
#: Annotations a Python value of each kind can pass (besides none, ``Any`` and type variables
#: bound by them).
KIND_TYPES = {
    "string": {"AbstractString", "String"},
    "float": {"Real", "AbstractFloat", "Float64", "Number"},
    "int": {"Integer", "Int", "Int64", "Signed", "Real", "Number"},
    "bool": {"Bool", "Integer", "Real", "Number"},
}
UNBOUNDED = float("inf")


# --------------------------------------------------------------------------------------
# Python side: the calls of _julia.py
# --------------------------------------------------------------------------------------
@dataclass
class PyCall:
    julia_name: str
    line: int
    kinds: list[str]  # one per positional argument: string/float/int/bool/array/unknown
    keywords: list[str]
    keyword_kinds: dict[str, str]
    problems: list[str] = field(default_factory=list)


def _kind(node: ast.expr) -> str:
    """What juliacall will hand Julia, as far as the expression says."""
    if isinstance(node, ast.Constant):
        v = node.value
        if isinstance(v, bool):
            return "bool"
        return {str: "string", float: "float", int: "int"}.get(type(v), "unknown")
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return {"str": "string", "float": "float", "int": "int", "bool": "bool"}.get(
            node.func.id, "unknown"
        )
    return "unknown"


def boundary_calls(path: Path) -> list[PyCall]:
    """Every ``load().name(...)`` call of the boundary module."""
    tree = ast.parse(Path(path).read_text(), filename=str(path))
    calls = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        owner = node.func.value
        if not (
            isinstance(owner, ast.Call)
            and isinstance(owner.func, ast.Name)
            and owner.func.id == "load"
        ):
            continue
        attr = node.func.attr
        name = attr[: -len("_b")] + "!" if attr.endswith("_b") else attr
        call = PyCall(name, node.lineno, [], [], {})
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                call.problems.append(f"{path}:{node.lineno}: {attr}(*...) cannot be checked")
            call.kinds.append(_kind(arg))
        for kw in node.keywords:
            if kw.arg is None:
                call.problems.append(f"{path}:{node.lineno}: {attr}(**...) cannot be checked")
                continue
            call.keywords.append(kw.arg)
            call.keyword_kinds[kw.arg] = _kind(kw.value)
        calls.append(call)
    return calls


# --------------------------------------------------------------------------------------
# Julia side: method signatures
# --------------------------------------------------------------------------------------
@dataclass
class Param:
    name: str | None
    annotation: object | None  # a syntax node
    default: bool
    splat: bool


@dataclass
class Method:
    name: str
    file: Path
    line: int
    positional: list[Param]
    keywords: list[Param]
    where: dict[str, object | None]  # type variable -> its upper bound node (or None)
    body: object  # the definition node

    @property
    def pos_range(self) -> tuple[int, float]:
        fixed = [p for p in self.positional if not p.splat]
        low = sum(1 for p in fixed if not p.default)
        high = UNBOUNDED if any(p.splat for p in self.positional) else len(fixed)
        return low, high

    @property
    def keyword_names(self) -> set[str]:
        return {p.name for p in self.keywords if not p.splat and p.name}

    @property
    def keyword_splat(self) -> bool:
        return any(p.splat for p in self.keywords)

    @property
    def required_keywords(self) -> set[str]:
        return {p.name for p in self.keywords if not p.splat and not p.default and p.name}


def _param(node) -> Param:
    if node.type == "identifier":
        return Param(_text(node), None, False, False)
    if node.type == "typed_expression":
        kids = node.named_children
        name = _text(kids[0]) if kids[0].type == "identifier" else None
        return Param(name, kids[-1], False, False)
    if node.type == "named_argument":
        inner = _param(node.named_children[0])
        return Param(inner.name, inner.annotation, True, inner.splat)
    if node.type == "splat_expression":
        inner = _param(node.named_children[0]) if node.named_children else Param(None, None, 0, 0)
        return Param(inner.name, inner.annotation, False, True)
    if node.type == "unary_typed_expression":  # ::Type{T}
        return Param(None, node.named_children[-1], False, False)
    return Param(None, None, False, False)


def _split_arguments(arglist) -> tuple[list, list]:
    """Named children of an argument list before and after its ``;``."""
    before, after, seen = [], [], False
    for child in arglist.children:
        if child.type == ";":
            seen = True
        elif child.is_named and "comment" not in child.type:
            (after if seen else before).append(child)
    return before, after


def _where_bounds(node, bounds: dict) -> None:
    """Type variables of a ``where`` clause (``{T<:Real, S}`` or ``T``)."""
    items = node.named_children if node.type == "curly_expression" else [node]
    for item in items:
        if item.type == "identifier":
            bounds[_text(item)] = None
        elif item.type == "binary_expression" and len(item.named_children) == 3:
            lhs, op, rhs = item.named_children
            if _text(op) == "<:" and lhs.type == "identifier":
                bounds[_text(lhs)] = rhs


def _signature_call(sig):
    """``(call_expression, where-bounds)`` of a definition's signature, or None."""
    bounds: dict = {}
    node = sig
    while node is not None and node.type in ("signature", "where_expression", "typed_expression"):
        if node.type == "where_expression":
            for clause in node.named_children[1:]:
                _where_bounds(clause, bounds)
        node = node.named_children[0] if node.named_children else None
    if node is None or node.type != "call_expression":
        return None, bounds
    return node, bounds


def julia_methods(files) -> list[Method]:
    """Every method definition (long and short form, named) of the files."""
    methods = []
    for path in files:
        for node in _walk(_parse(path).root_node):
            if node.type == "function_definition":
                sig = next((c for c in node.named_children if c.type == "signature"), None)
            elif node.type == "assignment" and node.named_children:
                sig = node.named_children[0]
                if sig.type not in ("call_expression", "where_expression"):
                    continue
            else:
                continue
            call, bounds = _signature_call(sig)
            if call is None or len(call.named_children) < 2:
                continue
            head, args = call.named_children[0], call.named_children[1]
            if head.type != "identifier" or args.type != "argument_list":
                continue
            before, after = _split_arguments(args)
            positional, keywords = [], []
            for child in before:
                p = _param(child)
                # a named argument before ';' is an optional positional parameter
                positional.append(p)
            keywords = [_param(child) for child in after]
            methods.append(
                Method(
                    _text(head),
                    Path(path),
                    node.start_point[0] + 1,
                    positional,
                    keywords,
                    bounds,
                    node,
                )
            )
    return methods


def _type_heads(node, where: dict, seen=None) -> set[str]:
    """The type names an annotation can stand for: a parametrized type's head, every member
    of a ``Union``, a type variable's bound."""
    if node is None:
        return set()
    seen = seen or set()
    if node.type == "identifier":
        name = _text(node)
        if name in where and name not in seen:
            bound = where[name]
            return {"Any"} if bound is None else _type_heads(bound, where, seen | {name})
        return {name}
    if node.type == "parametrized_type_expression":
        head = node.named_children[0]
        name = _text(head)
        if name == "Union":
            heads = set()
            for member in node.named_children[1].named_children:
                heads |= _type_heads(member, where, seen)
            return heads
        return {name}
    if node.type == "field_expression":
        return {_text(node.named_children[-1])}
    if node.type in ("unary_expression", "unary_typed_expression") and node.named_children:
        return _type_heads(node.named_children[-1], where, seen)
    return {_text(node)}


def _accepts(param: Param, kind: str, where: dict) -> bool:
    if param.annotation is None or kind in ("unknown", "array"):
        return True
    heads = _type_heads(param.annotation, where)
    return bool(heads & (KIND_TYPES[kind] | {"Any"})) or not heads.isdisjoint({"Union"})


def _positional_param(method: Method, i: int) -> Param | None:
    fixed = [p for p in method.positional if not p.splat]
    if i < len(fixed):
        return fixed[i]
    splats = [p for p in method.positional if p.splat]
    return splats[0] if splats else None


def match_call(call: PyCall, methods: list[Method]) -> tuple[list[Method], list[str]]:
    """The methods a boundary call can reach, and the problems of the call."""
    named = [m for m in methods if m.name == call.julia_name]
    where = f"{BOUNDARY_FILE}:{call.line}: {call.julia_name}"
    if not named:
        return [], [f"{where}: no method of that name in the package"]
    n = len(call.kinds)
    by_count = [m for m in named if m.pos_range[0] <= n <= m.pos_range[1]]
    if not by_count:
        counts = sorted({m.pos_range for m in named})
        return [], [f"{where}: {n} positional arguments; its methods take {counts}"]
    matching = [
        m
        for m in by_count
        if all(
            _accepts(_positional_param(m, i), kind, m.where) for i, kind in enumerate(call.kinds)
        )
    ]
    if not matching:
        return [], [f"{where}: no method takes the argument types Python passes {call.kinds}"]
    problems = []
    for m in matching:
        at = f"{where} (method at {m.file.name}:{m.line})"
        for kw in call.keywords:
            if kw in m.keyword_names:
                continue
            if not m.keyword_splat:
                problems.append(f"{at}: keyword {kw!r} is not accepted")
            elif not any(kw in other.keyword_names for other in named if other is not m):
                problems.append(
                    f"{at}: keyword {kw!r} reaches a kw... that no method of "
                    f"{call.julia_name} names"
                )
        missing = m.required_keywords - set(call.keywords)
        if missing:
            problems.append(f"{at}: required keywords {sorted(missing)} are not passed")
    return matching, problems


# --------------------------------------------------------------------------------------
# Concrete array annotations along the flow of Python's values
# --------------------------------------------------------------------------------------
def _concrete(param: Param, where: dict) -> set[str]:
    return _type_heads(param.annotation, where) & CONCRETE_ARRAYS


def _tracked_source(node, tracked: set[str]) -> bool:
    """Whether an argument expression is (a wrapper of) a tracked Python value."""
    if node.type == "identifier":
        return _text(node) in tracked
    if node.type == "call_expression" and len(node.named_children) >= 2:
        head, args = node.named_children[0], node.named_children[1]
        if head.type == "identifier" and _text(head) in ARRAY_WRAPPERS:
            before, _ = _split_arguments(args)
            return bool(before) and _tracked_source(before[0], tracked)
    return False


def check_flow(method: Method, tracked: set[str], methods, seen: set, origin: str) -> list[str]:
    """Concrete array annotations on the parameters of ``method`` named in ``tracked`` and,
    recursively, of the package methods those values are passed to."""
    problems = []
    for p in method.positional + method.keywords:
        if p.name in tracked and (heads := _concrete(p, method.where)):
            problems.append(
                f"{method.file}:{method.line}: {method.name}: parameter {p.name!r} receives "
                f"{origin} but is annotated {sorted(heads)}: a PyArray is none of these "
                "(use AbstractArray)"
            )
    names = {m.name for m in methods}
    for node in _walk(method.body):
        if node.type != "call_expression" or len(node.named_children) < 2:
            continue
        head, args = node.named_children[0], node.named_children[1]
        if head.type != "identifier" or _text(head) not in names or args.type != "argument_list":
            continue
        before, after = _split_arguments(args)
        fed = [i for i, a in enumerate(before) if _tracked_source(a, tracked)]
        fed_kw = set()
        for a in after + [a for a in before if a.type == "named_argument"]:
            kids = a.named_children
            if a.type == "named_argument" and len(kids) >= 2:
                if _tracked_source(kids[-1], tracked):
                    fed_kw.add(_text(kids[0]))
            elif a.type == "identifier" and _text(a) in tracked:
                fed_kw.add(_text(a))
        positional = [a for a in before if a.type != "named_argument"]
        fed = [i for i, a in enumerate(positional) if _tracked_source(a, tracked)]
        if not fed and not fed_kw:
            continue
        for callee in methods:
            if callee.name != _text(head):
                continue
            low, high = callee.pos_range
            if not low <= len(positional) <= high:
                continue
            names_in = {_positional_param(callee, i).name for i in fed} | fed_kw
            names_in.discard(None)
            key = (callee.file, callee.line, frozenset(names_in))
            if key in seen:
                continue
            seen.add(key)
            problems.extend(check_flow(callee, names_in, methods, seen, origin))
    return problems


def check_boundary(root: Path) -> list[str]:
    root = Path(root)
    src = sorted((root / SRC_DIR).glob("*.jl"))
    methods = julia_methods(src)
    problems = []
    calls = boundary_calls(root / BOUNDARY_FILE)
    if not calls:
        problems.append(f"{root / BOUNDARY_FILE}: no load().name(...) calls found")
    for call in calls:
        problems.extend(call.problems)
        matching, found = match_call(call, methods)
        problems.extend(found)
        origin = f"a Python value ({call.julia_name} call)"
        for m in matching:
            fed = {p.name for p in m.positional if p.name} | {
                p.name for p in m.keywords if p.name in call.keywords
            }
            seen: set = set()
            problems.extend(check_flow(m, fed, methods, seen, origin))
            # keywords a kw... forwards: the methods of the same function that name them
            forwarded = set(call.keywords) - m.keyword_names if m.keyword_splat else set()
            for other in methods:
                if other is not m and other.name == m.name and forwarded & other.keyword_names:
                    names = forwarded & other.keyword_names
                    problems.extend(check_flow(other, names, methods, seen, origin))
    return sorted(set(problems))


def check_precompile(root: Path) -> list[str]:
    """Every boundary call's signature (positional count, keyword names) in the workload."""
    root = Path(root)
    workload = []
    for node in _walk(_parse(root / PRECOMPILE_FILE).root_node):
        if node.type != "call_expression" or len(node.named_children) < 2:
            continue
        head, args = node.named_children[0], node.named_children[1]
        if head.type == "identifier" and args.type == "argument_list":
            before, after = _split_arguments(args)
            kws = {
                _text(a.named_children[0]) if a.type == "named_argument" else _text(a)
                for a in after + [a for a in before if a.type == "named_argument"]
            }
            n_pos = sum(1 for a in before if a.type != "named_argument")
            workload.append((_text(head), n_pos, frozenset(kws)))
    problems = []
    for call in boundary_calls(root / BOUNDARY_FILE):
        sig = (call.julia_name, len(call.kinds), frozenset(call.keywords))
        if sig not in workload:
            problems.append(
                f"{root / PRECOMPILE_FILE}: the workload never calls {call.julia_name} with "
                f"{len(call.kinds)} positional arguments and keywords {sorted(call.keywords)} "
                f"as {BOUNDARY_FILE}:{call.line} does"
            )
    return problems


# --------------------------------------------------------------------------------------
# Free identifiers
# --------------------------------------------------------------------------------------
SKIP_NODES = frozenset(
    {
        "comment",
        "line_comment",
        "block_comment",
        "quote_expression",
        "export_statement",
        "content",
        "escape_sequence",
        "integer_literal",
        "float_literal",
        "boolean_literal",
        "character_literal",
        "operator",
    }
)
ALWAYS_BOUND = frozenset({"end", "begin", "__module__", "__source__", "new", "_"})


class _Scope:
    def __init__(self):
        self.bound: set[str] = set()
        self.used: list[tuple[str, int]] = []
        self.imports: set[str] = set()
        self.bare_usings: list[tuple[str, int]] = []

    def use(self, node):
        self.used.append((_text(node), node.start_point[0] + 1))


def _bind_pattern(node, scope: _Scope) -> None:
    """Names bound by an assignment target or loop variable (uses inside are recorded)."""
    if node.type == "identifier":
        scope.bound.add(_text(node))
    elif node.type in ("tuple_expression", "parenthesized_expression", "open_tuple"):
        for child in node.named_children:
            _bind_pattern(child, scope)
    elif node.type == "typed_expression":
        _bind_pattern(node.named_children[0], scope)
        for child in node.named_children[1:]:
            _visit(child, scope)
    elif node.type == "splat_expression":
        for child in node.named_children:
            _bind_pattern(child, scope)
    elif node.type == "named_argument":  # default of a parameter
        _bind_pattern(node.named_children[0], scope)
        for child in node.named_children[1:]:
            _visit(child, scope)
    else:  # a.b = ..., x[i] = ...: uses
        _visit(node, scope)


def _bind_parameters(arglist, scope: _Scope) -> None:
    for child in arglist.named_children:
        if child.type == "unary_typed_expression":
            for c in child.named_children:
                _visit(c, scope)
        else:
            _bind_pattern(child, scope)


def _visit_signature(sig, scope: _Scope) -> None:
    node = sig
    while node is not None and node.type in ("signature", "where_expression", "typed_expression"):
        kids = node.named_children
        if node.type == "where_expression":
            for clause in kids[1:]:
                bounds: dict = {}
                _where_bounds(clause, bounds)
                scope.bound.update(bounds)
                for b in bounds.values():
                    if b is not None:
                        _visit(b, scope)
        elif node.type == "typed_expression":
            for c in kids[1:]:
                _visit(c, scope)  # return type
        node = kids[0] if kids else None
    if node is None:
        return
    if node.type == "argument_list":  # anonymous function
        _bind_parameters(node, scope)
    elif node.type == "call_expression" and len(node.named_children) >= 2:
        head, args = node.named_children[0], node.named_children[1]
        if head.type == "parenthesized_expression":  # (f::Foo)(x)
            _bind_pattern(head, scope)
        elif head.type == "identifier":
            scope.bound.add(_text(head))
        else:
            _visit(head, scope)
        _bind_parameters(args, scope)


def _visit(node, scope: _Scope) -> None:
    t = node.type
    if t in SKIP_NODES:
        return
    kids = node.named_children
    if t == "identifier":
        scope.use(node)
    elif t == "function_definition":
        for child in kids:
            if child.type == "signature":
                _visit_signature(child, scope)
            else:
                _visit(child, scope)
    elif t in ("assignment", "let_binding", "for_binding", "compound_assignment_expression"):
        if (
            len(kids) >= 2
            and t == "assignment"
            and kids[0].type
            in (
                "call_expression",
                "where_expression",
            )
        ):
            _visit_signature(kids[0], scope)  # short-form method definition
        elif t == "compound_assignment_expression":
            _visit(kids[0], scope)
        elif kids:
            _bind_pattern(kids[0], scope)
        for child in kids[1:]:
            _visit(child, scope)
    elif t == "arrow_function_expression":
        params = kids[0]
        if params.type == "argument_list":
            _bind_parameters(params, scope)
        else:
            _bind_pattern(params, scope)
        for child in kids[1:]:
            _visit(child, scope)
    elif t == "do_clause":
        for child in kids:
            if child.type == "argument_list":
                _bind_parameters(child, scope)
            else:
                _visit(child, scope)
    elif t == "catch_clause":
        if kids and kids[0].type == "identifier":
            scope.bound.add(_text(kids[0]))
            kids = kids[1:]
        for child in kids:
            _visit(child, scope)
    elif t in ("named_argument", "named_field"):  # f(; key = value), (key = value,)
        for child in kids[1:]:
            _visit(child, scope)
    elif t == "field_expression":
        _visit(kids[0], scope)
    elif t == "macrocall_expression":
        rest = kids
        if len(kids) >= 2 and kids[1].type == "macro_identifier":  # Mod.@macro
            _visit(kids[0], scope)
            rest = kids[2:]
        elif kids and kids[0].type == "macro_identifier":
            name_nodes = kids[0].named_children
            if name_nodes and name_nodes[0].type == "identifier":
                scope.used.append(("@" + _text(name_nodes[0]), kids[0].start_point[0] + 1))
            rest = kids[1:]
        for child in rest:
            _visit(child, scope)
    elif t in ("struct_definition", "abstract_definition", "primitive_definition"):
        for child in kids:
            if child.type == "type_head":
                _bind_type_head(child, scope)
            elif child.type == "typed_expression":  # field: name::Type
                for c in child.named_children[1:]:
                    _visit(c, scope)
            elif child.type == "identifier":  # untyped field
                continue
            else:
                _visit(child, scope)
    elif t in ("using_statement", "import_statement"):
        _record_import(node, scope)
    elif t == "module_definition":
        for child in kids:
            if child.type == "identifier" and child == kids[0]:
                scope.bound.add(_text(child))
            else:
                _visit(child, scope)
    elif t == "macro_definition":
        for child in kids:
            if child.type == "signature":
                _visit_signature(child, scope)
            else:
                _visit(child, scope)
    else:
        for child in kids:
            _visit(child, scope)


def _bind_type_head(head, scope: _Scope) -> None:
    node = head.named_children[0] if head.named_children else None
    if node is not None and node.type == "binary_expression":  # S <: Super
        _visit(node.named_children[-1], scope)
        node = node.named_children[0]
    if node is None:
        return
    if node.type == "identifier":
        scope.bound.add(_text(node))
    elif node.type == "parametrized_type_expression":
        scope.bound.add(_text(node.named_children[0]))
        for param in node.named_children[1].named_children:
            bounds: dict = {}
            _where_bounds(param, bounds)
            scope.bound.update(bounds)


def _record_import(node, scope: _Scope) -> None:
    """``using X: a, b`` / ``import X: a`` bind a, b; ``import X`` binds X; ``using X`` is a
    bare using (its names are unknown here)."""
    selected = [c for c in node.named_children if c.type == "selected_import"]
    if selected:
        for sel in selected:
            for child in sel.named_children[1:]:
                name = _text(child).split(" as ")[-1].strip()
                scope.imports.add(name)
        return
    for child in node.named_children:
        name = _text(child).split(".")[-1].strip()
        if node.type == "import_statement":
            scope.imports.add(name)
        else:
            scope.imports.add(name)
            scope.bare_usings.append((_text(child), node.start_point[0] + 1))


def base_names(root: Path) -> set[str]:
    lines = (Path(root) / BASE_NAMES_FILE).read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def check_free_identifiers(root: Path, base: set[str] | None = None) -> list[str]:
    root = Path(root)
    base = base_names(root) if base is None else base
    files = sorted((root / SRC_DIR).glob("*.jl"))
    package = set()  # names the package defines at top level
    imports = set()
    per_statement = []  # (file, scope of one top-level statement)
    problems = []
    for path in files:
        tree = _parse(path).root_node
        tops = tree.named_children
        if len(tops) == 1 and tops[0].type == "module_definition":
            package.add(_text(tops[0].named_children[0]))
            tops = tops[0].named_children[1:]
        for stmt in tops:
            scope = _Scope()
            _visit(stmt, scope)
            imports |= scope.imports
            problems.extend(
                f"{path}:{line}: `using {name}` imports every export of {name}; import the "
                f"names used explicitly (using {name}: a, b)"
                for name, line in scope.bare_usings
            )
            package |= _top_level_names(stmt)
            per_statement.append((path, scope))
    known = package | imports | base | ALWAYS_BOUND
    for path, scope in per_statement:
        for name, line in scope.used:
            if name in scope.bound or name in known:
                continue
            problems.append(
                f"{path}:{line}: {name!r} is not defined in the package, imported by name, "
                f"bound locally, or a Base/Core export ({BASE_NAMES_FILE})"
            )
    return sorted(set(problems))


def _top_level_names(stmt) -> set[str]:
    """Names a top-level statement defines for the whole package."""
    node = stmt
    while node.type == "macrocall_expression":  # @inline function f ... end
        args = [c for c in node.named_children if c.type == "macro_argument_list"]
        if not args or not args[0].named_children:
            return set()
        node = args[0].named_children[0]
    if node.type == "const_statement":
        return {
            _text(a.named_children[0])
            for a in node.named_children
            if a.type == "assignment" and a.named_children[0].type == "identifier"
        }
    if node.type in ("function_definition", "macro_definition"):
        sig = next((c for c in node.named_children if c.type == "signature"), None)
        call, _ = _signature_call(sig) if sig is not None else (None, {})
        if call is not None and call.named_children[0].type == "identifier":
            name = _text(call.named_children[0])
            return {"@" + name if node.type == "macro_definition" else name}
        ident = sig.named_children[0] if sig is not None and sig.named_children else None
        return {_text(ident)} if ident is not None and ident.type == "identifier" else set()
    if node.type == "assignment":
        lhs = node.named_children[0]
        call, _ = _signature_call(lhs)
        if call is not None and call.named_children[0].type == "identifier":
            return {_text(call.named_children[0])}
        return {_text(lhs)} if lhs.type == "identifier" else set()
    if node.type in ("struct_definition", "abstract_definition", "primitive_definition"):
        scope = _Scope()
        for child in node.named_children:
            if child.type == "type_head":
                _bind_type_head(child, scope)
        head = [c for c in node.named_children if c.type == "type_head"]
        first = head[0].named_children[0] if head else None
        while first is not None and first.type in ("binary_expression",):
            first = first.named_children[0]
        if first is not None and first.type == "parametrized_type_expression":
            first = first.named_children[0]
        return {_text(first)} if first is not None else set()
    return set()


# --------------------------------------------------------------------------------------
# Compat
# --------------------------------------------------------------------------------------
_VERSION = re.compile(r"^\d+(\.\d+){0,2}$")


def _version(text: str) -> tuple[int, int, int]:
    parts = [int(p) for p in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))  # type: ignore[return-value]


def _caret(spec: str) -> tuple[tuple, tuple]:
    """Pkg's caret range of ``1.2.3`` / ``0.2`` / ``0.0.3``: ``[lower, upper)``."""
    parts = [int(p) for p in spec.split(".")]
    lower = _version(spec)
    if parts[0] != 0 or len(parts) == 1:
        upper = (parts[0] + 1, 0, 0)
    elif len(parts) == 2 or parts[1] != 0:
        upper = (0, parts[1] + 1, 0)
    else:
        upper = (0, 0, parts[2] + 1) if len(parts) == 3 else (0, 1, 0)
    return lower, upper


def _tilde(spec: str) -> tuple[tuple, tuple]:
    parts = [int(p) for p in spec.split(".")]
    lower = _version(spec)
    if len(parts) == 1:
        return lower, (parts[0] + 1, 0, 0)
    return lower, (parts[0], parts[1] + 1, 0)


def compat_admits(spec: str, version: str) -> bool:
    """Whether a Julia ``[compat]`` entry admits ``version`` (Pkg's semantics for caret,
    ``^``, ``~``, ``=``, inequalities and hyphen ranges, comma-separated unions)."""
    v = _version(version)
    parts = [p.strip() for p in spec.split(",")]
    for part in parts:
        if not part:
            raise ValueError(f"empty entry in compat {spec!r}")
        if " - " not in part and not re.match(r"^(\^|~|=|>=|<=|<|>|≥|≤)?\s*[\d.]+$", part):
            raise ValueError(f"cannot read compat entry {part!r} of {spec!r}")
    for part in parts:
        if " - " in part:
            lo, hi = (s.strip() for s in part.split(" - "))
            hi_parts = hi.split(".")
            upper = list(_version(hi))
            upper[len(hi_parts) - 1] += 1  # 1.2 - 1.4 admits every 1.4.x
            for i in range(len(hi_parts), 3):
                upper[i] = 0
            if _version(lo) <= v < tuple(upper):
                return True
            continue
        m = re.match(r"^(\^|~|=|>=|<=|<|>|≥|≤)?\s*(\S+)$", part)
        if not m or not _VERSION.match(m.group(2)):
            raise ValueError(f"cannot read compat entry {part!r} of {spec!r}")
        op, ver = m.group(1) or "^", m.group(2)
        if op == "^":
            lo, up = _caret(ver)
            ok = lo <= v < up
        elif op == "~":
            lo, up = _tilde(ver)
            ok = lo <= v < up
        elif op == "=":
            ok = v == _version(ver)
        elif op in (">=", "≥"):
            ok = v >= _version(ver)
        elif op in ("<=", "≤"):
            ok = v <= _version(ver)
        elif op == "<":
            ok = v < _version(ver)
        else:
            ok = v > _version(ver)
        if ok:
            return True
    return False


def check_compat(root: Path) -> list[str]:
    root = Path(root)
    project_file = root / PACKAGE_DIR / "Project.toml"
    table_file = root / COMPAT_TABLE_FILE
    project = tomllib.loads(project_file.read_text())
    table = tomllib.loads(table_file.read_text())
    latest = table.get("latest", {})
    problems = []
    if "checked" not in table:
        problems.append(f"{table_file}: say when the table was checked (checked = YYYY-MM-DD)")
    compat = project.get("compat", {})
    deps = set(project.get("deps", {})) | set(project.get("extras", {})) | {"julia"}
    for name in sorted(deps):
        if name not in compat:
            problems.append(f"{project_file}: [compat] has no entry for {name}")
        if name not in latest:
            problems.append(f"{table_file}: [latest] has no row for {name} (a dependency)")
    for name, row in sorted(latest.items()):
        version = row["version"] if isinstance(row, dict) else str(row)
        if name not in compat:
            if name not in deps:
                problems.append(f"{table_file}: {name} is not a dependency of {PACKAGE_NAME}")
            continue
        try:
            ok = compat_admits(compat[name], version)
        except ValueError as exc:
            problems.append(f"{project_file}: {name}: {exc}")
            continue
        if not ok:
            problems.append(
                f"{project_file}: compat {name} = {compat[name]!r} does not admit {version}, "
                f"the latest version recorded in {COMPAT_TABLE_FILE} ({table.get('checked')})"
            )
    juliapkg = json.loads((root / JULIAPKG_FILE).read_text())
    for name, spec in juliapkg.get("packages", {}).items():
        if "version" in spec and spec["version"] != compat.get(name):
            problems.append(
                f"{root / JULIAPKG_FILE}: {name} version {spec['version']!r} differs from the "
                f"package's compat {compat.get(name)!r}"
            )
    root_project = root / "Project.toml"
    if root_project.is_file():
        env = tomllib.loads(root_project.read_text())
        julia = env.get("compat", {}).get("julia")
        if env.get("sources") and (julia is None or compat_admits(julia, "1.10.99")):
            problems.append(
                f"{root_project}: [sources] is read by Julia >= 1.11 only, but compat julia = "
                f"{julia!r} admits Julia 1.10: require 1.11 there (the package keeps 1.10)"
            )
    return problems


def check(root=REPO_ROOT) -> list[str]:
    root = Path(root)
    return (
        check_boundary(root)
        + check_precompile(root)
        + check_free_identifiers(root)
        + check_compat(root)
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", nargs="?", default=str(REPO_ROOT), help="repository root")
    root = Path(ap.parse_args(argv).root)
    problems = check(root)
    for p in problems:
        print(p)
    if problems:
        print(f"check_julia_deep: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    calls = boundary_calls(root / BOUNDARY_FILE)
    print(
        f"check_julia_deep: {len(calls)} boundary calls match their Julia methods (no concrete "
        "array annotations on Python's values) and the precompile workload; no free "
        "identifiers in src/; compat admits the latest recorded versions"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
