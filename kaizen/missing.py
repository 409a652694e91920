"""`MISSING`: the marker for "no default" shared by signature fields and node ports.

It lives below both `kaizen.signatures` and `kaizen.nodes` so that neither imports the other for it:
a port built from a signature field keeps the field's `MISSING` and is required for the same reason.
"""

from __future__ import annotations

from typing import ClassVar, Final


class _Missing:
    """Marks a field or port with no default (it is required). A singleton that is falsy."""

    _instance: ClassVar[_Missing | None] = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "MISSING"  # pickles as the module-level singleton


MISSING: Final = _Missing()

__all__ = ["MISSING"]
