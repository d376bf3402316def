"""Values checked against a dataclass's annotations, at the edge, before any work.

TOML and JSON hand us strings where numbers were meant (``n_trajectories = "20"``), and
Python's truthiness turns ``overwrite = "false"`` into *true*; ``bool`` is also an ``int``.
:func:`check_fields` refuses every such value with one line that names the key, the type
wanted and the value given. It reads the annotations themselves (``typing.get_type_hints``),
so a new field is checked without anyone remembering to. pydantic would do this and more;
it is not used because the configuration dataclasses are frozen, hashed into run identities
and must stay plain (no dependency is added for a check this size).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

__all__ = [
    "PYDANTIC_TYPE_WORDS",
    "check_built",
    "check_fields",
    "describe_type",
    "expected_type",
]


def _args(tp) -> tuple:
    return typing.get_args(tp)


def _is_union(tp) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


_NOUNS = {
    bool: ("true or false", "booleans"),
    int: ("an integer", "integers"),
    float: ("a number", "numbers"),
    str: ("a string", "strings"),
}


def _plural(tp) -> str:
    return _NOUNS.get(tp, (None, "values"))[1]


def describe_type(tp) -> str:
    """``int`` → "an integer", ``bool`` → "true or false", ``str | None`` → "a string"."""
    if _is_union(tp):
        return " or ".join(describe_type(a) for a in _args(tp) if a is not type(None))
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in _args(tp))
    if origin is tuple:
        a = _args(tp)
        if len(a) == 2 and a[1] is Ellipsis:
            return f"a list of {_plural(a[0])}"
        return f"a list of {len(a)} {_plural(a[0])}"
    if origin is list:
        return f"a list of {_plural((_args(tp) or (Any,))[0])}"
    if origin is dict or tp is dict:
        return "a table"
    if tp is Any:
        return "any value"
    return _NOUNS.get(tp, (f"a {getattr(tp, '__name__', tp)}",))[0]


def _matches(value, tp) -> bool:
    if tp is Any or tp is typing.Any:
        return True
    if _is_union(tp):
        return any(_matches(value, a) for a in _args(tp))
    if tp is type(None):
        return value is None
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return value in _args(tp)
    if origin is tuple:
        a = _args(tp)
        if not isinstance(value, tuple | list):
            return False
        if len(a) == 2 and a[1] is Ellipsis:
            return all(_matches(v, a[0]) for v in value)
        return len(value) == len(a) and all(_matches(v, t) for v, t in zip(value, a, strict=True))
    if origin is list:
        return isinstance(value, list | tuple) and all(
            _matches(v, (_args(tp) or (Any,))[0]) for v in value
        )
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            return False
        kt, vt = _args(tp) or (Any, Any)
        return all(_matches(k, kt) and _matches(v, vt) for k, v in value.items())
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(tp, type):
        if dataclasses.is_dataclass(tp):
            return isinstance(value, tp | dict)  # built (and checked) by its own caller
        return isinstance(value, tp)
    return True  # an annotation this checker does not know: left to the constructor


def _shown(value) -> str:
    kind = {bool: "a boolean", str: "a string", int: "an integer", float: "a number"}.get(
        type(value), f"a {type(value).__name__}"
    )
    text = repr(value)
    return f"{text[:60]}… ({kind})" if len(text) > 60 else f"{text} ({kind})"


def check_fields(cls, values: dict[str, Any], where: str, error=ValueError) -> None:
    """Raise ``error`` (one line) for the first entry of ``values`` whose value does not
    match the annotation of the field of that name in the dataclass ``cls``. Unknown keys
    are the caller's to refuse; a string where a number, boolean or table was meant gets a
    hint about TOML quotes."""
    hints = typing.get_type_hints(cls)
    for name, value in values.items():
        if name not in hints or _matches(value, hints[name]):
            continue
        tp = hints[name]
        hint = (
            " (write it without quotes)" if isinstance(value, str) and not _matches("", tp) else ""
        )
        raise error(f"{where}.{name} must be {describe_type(tp)}, got {_shown(value)}{hint}")


def check_built(obj, where: str, error=ValueError, skip: tuple[str, ...] = ()) -> None:
    """:func:`check_fields` over the values of a dataclass instance as built (its
    ``__post_init__``: a value given from Python is checked as one read from TOML), the
    fields in ``skip`` left to the caller's own checks."""
    values = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.name not in skip}
    check_fields(type(obj), values, where, error)


#: pydantic's error types of a wrong type, in the words of a TOML user (the spec and the
#: evaluate options, both pydantic models, name the expected type this way)
PYDANTIC_TYPE_WORDS = {
    "string_type": "a string",
    "float_type": "a number",
    "int_type": "an integer",
    "bool_type": "true or false",
    "list_type": "a list",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
}


def expected_type(err) -> str | None:
    """``expected <type>, got <value>`` for a pydantic wrong-type error, else None."""
    words = PYDANTIC_TYPE_WORDS.get(err["type"])
    return None if words is None else f"expected {words}, got {err['input']!r}"
