"""`SignatureField` (one typed input or output) and the `InputField` / `OutputField` declarations.

Constraints (`ge`, `le`, `gt`, `lt`, `multiple_of`, `min_length`, `max_length`, `pattern`) are
checked here against the field's type, so a spec that could never validate fails at creation.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kaizen.missing import MISSING

from .fieldtypes import base_kinds

NUMERIC_CONSTRAINTS = ("ge", "le", "gt", "lt", "multiple_of")
LENGTH_CONSTRAINTS = ("min_length", "max_length")
CONSTRAINTS = (*NUMERIC_CONSTRAINTS, *LENGTH_CONSTRAINTS, "pattern")


@dataclass(frozen=True, slots=True)
class SignatureField:
    """One input or output of a signature. `default` is `MISSING` when the field is required."""

    name: str
    type: Any = str
    description: str = ""
    default: Any = field(default=MISSING, hash=False)
    constraints: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def required(self) -> bool:
        return self.default is MISSING


@dataclass(frozen=True, slots=True)
class FieldDeclaration:
    """What `InputField(...)` / `OutputField(...)` put in a class body (read by `Signature`)."""

    kind: str  # "input" or "output"
    description: str
    default: Any
    constraints: Mapping[str, Any]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # Reached as `QA.signature()` when a class signature has a field named `signature`.
        raise TypeError(
            "this is a field declaration, not a method: a class signature with a field named "
            "like a Signature method hides that method; use kaizen.create_signature(TheClass)"
        )


def InputField(desc: str = "", default: Any = MISSING, **constraints: Any) -> Any:
    """Declare an input of a class signature; `default` makes it optional.

    Constraints: ge, le, gt, lt, multiple_of (numbers), min_length, max_length, pattern.
    """
    return FieldDeclaration("input", desc, default, dict(constraints))


def OutputField(desc: str = "", **constraints: Any) -> Any:
    """Declare an output of a class signature (constraints as for `InputField`)."""
    return FieldDeclaration("output", desc, MISSING, dict(constraints))


def constraint_problem(annotation: Any, constraints: Mapping[str, Any]) -> str | None:
    """Why these constraints cannot apply to this type, or None when they are fine."""
    kinds = base_kinds(annotation)
    for key, value in constraints.items():
        if key not in CONSTRAINTS:
            return f"unknown constraint {key!r} (known: {', '.join(CONSTRAINTS)})"
        if key in NUMERIC_CONSTRAINTS:
            if isinstance(value, bool) or not isinstance(value, int | float):
                return f"constraint {key!r} needs a number, got {value!r}"
            if not math.isfinite(value):
                return f"constraint {key!r} needs a finite number, got {value!r}"
            if "number" not in kinds:
                return f"constraint {key!r} applies to int or float fields only"
        elif key in LENGTH_CONSTRAINTS:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                return f"constraint {key!r} needs a non-negative integer, got {value!r}"
            if "sized" not in kinds:
                return f"constraint {key!r} applies to str, bytes and collection fields only"
        else:
            if not isinstance(value, str):
                return f"constraint 'pattern' needs a regular expression string, got {value!r}"
            try:
                re.compile(value)
            except re.error as exc:
                return f"constraint 'pattern' is not a valid regular expression: {exc}"
            if "str" not in kinds:
                return "constraint 'pattern' applies to str fields only"
    return None
