"""Small text helpers every layer shares: readable type names, one-line shortening, and the
check for degenerate prose (`degenerate`: a small model's loops, like ``1.1.1.1.1``).

`type_name` is the one formatter of annotations for people: error messages, port labels in
drawings, and (through `kaizen.signatures`) the spec syntax the signature parser reads back.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from typing import Any, Literal, TypeVar, Union

__all__ = ["degenerate", "first_line", "shorten", "type_name"]

_NONE = type(None)
_MODULE_PREFIXES = ("typing.", "typing_extensions.", "collections.abc.", "builtins.")


def type_name(annotation: Any, name_of: Callable[[type], str | None] | None = None) -> str:
    """`str`, `list[int]`, `int | None`, `Literal['a', 'b']`, `tuple[int, ...]`, `Any`.

    `name_of(cls)` may name classes its own way (the signature layer names registered pydantic
    models by their registered name); returning None falls back to the class's own name.
    """
    if annotation is Any:
        return "Any"
    if annotation is None or annotation is _NONE:
        return "None"
    if isinstance(annotation, str):
        return annotation  # an unresolved forward reference, shown as written
    if isinstance(annotation, TypeVar):
        return annotation.__name__
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return "Literal[" + ", ".join(repr(v) for v in args) + "]"
    if origin is Union or origin is types.UnionType:
        return " | ".join(type_name(arg, name_of) for arg in args)
    if origin is typing.Annotated:
        return type_name(args[0], name_of)
    if origin is not None and isinstance(origin, type):
        if origin is tuple and not args:
            return "tuple[()]"
        parts = ["..." if arg is Ellipsis else _argument(arg, name_of) for arg in args]
        return f"{_class_name(origin, None)}[{', '.join(parts)}]"
    if isinstance(annotation, type):
        return _class_name(annotation, name_of)
    text = repr(annotation)
    for prefix in _MODULE_PREFIXES:
        text = text.replace(prefix, "")
    return text


def _argument(arg: Any, name_of: Callable[[type], str | None] | None) -> str:
    if isinstance(arg, list):  # Callable[[int], str]
        return "[" + ", ".join(type_name(a, name_of) for a in arg) + "]"
    return type_name(arg, name_of)


def _class_name(cls: type, name_of: Callable[[type], str | None] | None) -> str:
    if name_of is not None:
        named = name_of(cls)
        if named is not None:
            return named
    if cls.__module__ in ("builtins", "typing", "collections.abc"):
        return cls.__name__
    return cls.__qualname__


def first_line(error: BaseException) -> str:
    """The first line of an error's message, else the error's class name."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def shorten(text: str, width: int) -> str:
    """The first line of `text`, cut to `width` characters with an ellipsis."""
    stripped = text.strip()
    line = stripped.splitlines()[0] if stripped else ""
    return line if len(line) <= width else line[: max(width - 1, 1)] + "…"


# A unit of 1-12 characters (starting with one that is not a space) said four or more times in
# a row, the run at least 8 characters long: "1.1.1.1.", "no no no no", "!!!!!!!!". "...."
# stays prose. The last time may lack the unit's trailing spaces ("no no no no" is "no " four
# times).
_LONGEST_UNIT = 12
_MIN_LOOP = 8


def _loop(text: str) -> tuple[str, int] | None:
    """`(unit, times)` of the first loop in `text` (see above), or None. Every start and every
    unit length is tried: a regex's leftmost match can swallow the start of a loop of another
    unit ("aaa1aaa1aaa1aaa1" begins with "aaa")."""
    for length in range(1, _LONGEST_UNIT + 1):
        for start in range(len(text) - length + 1):
            unit = text[start : start + length]
            if unit[0].isspace():
                continue
            end = start + length
            while text.startswith(unit, end):
                end += length
            times, span = (end - start) // length, end - start
            last = unit.rstrip()
            if last != unit and text.startswith(last, end):
                times, span = times + 1, span + len(last)
            if times >= 4 and span >= _MIN_LOOP:
                return unit, times
    return None


def degenerate(text: str) -> str | None:
    """Why `text`, meant as prose, is degenerate, or None when it reads as prose.

    Degenerate: a short unit repeated four or more times in a row (a sampling loop, such as
    ``1.1.1.1.1``), or under half of its non-space characters letters (digits and punctuation
    where a sentence was asked for). Empty text is not degenerate (it is empty). The demo and
    `benchmarks/demo_quality.py` use this one rule.
    """
    stripped = text.strip()
    if not stripped:
        return None
    loop = _loop(stripped)
    if loop is not None:
        return f"repeats {loop[0]!r} {loop[1]} times"
    visible = [c for c in stripped if not c.isspace()]
    letters = sum(c.isalpha() for c in visible)
    if letters * 2 < len(visible):
        return f"only {letters} of {len(visible)} characters are letters"
    return None
