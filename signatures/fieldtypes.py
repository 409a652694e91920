"""The types a signature field may have: the safe whitelist, the model registry, normalization.

Types named in a string spec are resolved here from a fixed whitelist (builtins, the `typing`
aliases, `Literal`, unions) plus pydantic models registered by name; nothing is ever `eval`-ed.
Every annotation, from either form, is normalized to one canonical object (`List[str]` becomes
`list[str]`, `Optional[int]` and `int | None` become `typing.Optional[int]`) so that equal
signatures compare equal, and `format_type` writes it back in the syntax the parser reads.
"""

from __future__ import annotations

import types as _pytypes
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union

from pydantic import BaseModel

from kaizen.text import type_name

#: Plain type names usable in a spec, and the object each stands for.
SCALARS: dict[str, Any] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "bytes": bytes,
    "Any": Any,
    "None": type(None),
}

#: Generic container names (builtin and `typing` spelling) and the builtin they normalize to.
CONTAINERS: dict[str, type] = {
    "list": list,
    "List": list,
    "dict": dict,
    "Dict": dict,
    "set": set,
    "Set": set,
    "frozenset": frozenset,
    "FrozenSet": frozenset,
    "tuple": tuple,
    "Tuple": tuple,
}

#: Special forms that take bracketed arguments.
SPECIAL_FORMS = ("Optional", "Union", "Literal")

_registry: dict[str, type[BaseModel]] = {}
_registry_version = 0  # bumped on each registration, so cached parses never see a stale registry


def registry_version() -> int:
    """A number that changes whenever the registry does (part of the parse cache key)."""
    return _registry_version


def register_type(model: type[BaseModel], name: str | None = None) -> type[BaseModel]:
    """Make a pydantic model usable by `name` (default: its class name) in every string spec.

    Returns the model, so it can be used as a class decorator. Registering another model under a
    taken name replaces it; builtin type names cannot be taken.
    """
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(f"register_type expects a pydantic BaseModel subclass, got {model!r}")
    key = name if name is not None else model.__name__
    if not key.isidentifier():
        raise ValueError(f"type name must be an identifier, got {key!r}")
    if key in SCALARS or key in CONTAINERS or key in SPECIAL_FORMS:
        raise ValueError(f"{key!r} is a builtin signature type name; register the model as another")
    global _registry_version
    _registry[key] = model
    _registry_version += 1
    return model


def registered_types() -> dict[str, type[BaseModel]]:
    """A copy of the global name -> model registry."""
    return dict(_registry)


def lookup_model(name: str, types: Mapping[str, type] | None) -> type | None:
    """The model called `name`, per-call `types` first, then the registry; None when unknown."""
    if types is not None and name in types:
        return types[name]
    return _registry.get(name)


def known_type_names(types: Mapping[str, type] | None) -> list[str]:
    """Every name a spec may use as a type (for "did you mean" suggestions)."""
    names = [*SCALARS, *CONTAINERS, *SPECIAL_FORMS, *_registry]
    if types:
        names.extend(types)
    return names


class UnsupportedTypeError(Exception):
    """Raised by `normalize` for an annotation outside the whitelist (callers re-raise nicely)."""


def make_union(members: list[Any]) -> Any:
    """`Union[...]` of the members, flattened and deduplicated; a single member stays itself."""
    if len(members) == 1:
        return members[0]
    return Union[tuple(members)]  # noqa: UP007 - the canonical form is typing.Union


def normalize(annotation: Any) -> Any:
    """The canonical form of a supported annotation, or `UnsupportedTypeError` saying why not."""
    if annotation is None or annotation is type(None):
        return type(None)
    if annotation is Any or annotation in (str, int, float, bool, bytes):
        return annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if annotation in (list, dict, set, frozenset, tuple):
        return annotation
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        for value in args:
            if not isinstance(value, str | int | bool) and value is not None:
                raise UnsupportedTypeError(
                    f"Literal values must be str, int, bool or None, got {value!r}"
                )
        return Literal[args]
    if origin is Union or origin is _pytypes.UnionType:
        return make_union([normalize(arg) for arg in args])
    if origin in (list, dict, set, frozenset, tuple):
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return tuple[normalize(args[0]), ...]  # type: ignore[misc]
        if origin is tuple and args == ((),):
            return tuple[()]
        expected = {list: 1, set: 1, frozenset: 1, dict: 2}.get(origin)
        if expected is not None and len(args) != expected:
            raise UnsupportedTypeError(
                f"{origin.__name__}[...] takes {expected} type argument(s), got {len(args)}"
            )
        return origin[tuple(normalize(arg) for arg in args)]
    raise UnsupportedTypeError(
        f"{annotation!r} is not a supported signature type (use str, int, float, bool, bytes, "
        "list/dict/set/tuple of them, Optional, Union, Literal, Any or a pydantic model)"
    )


def format_type(annotation: Any, types: Mapping[str, type] | None = None) -> str:
    """Write a normalized annotation in spec syntax (`list[str]`, `int | None`, `Literal['a']`);
    pydantic models by the name they are registered under (or given as in `types`)."""

    def name_of(cls: type) -> str | None:
        if issubclass(cls, BaseModel):
            return _model_name(cls, types)
        return None

    return type_name(annotation, name_of)


def _model_name(model: type[BaseModel], types: Mapping[str, type] | None) -> str:
    if types:
        for name, candidate in types.items():
            if candidate is model:
                return name
    for name, candidate in _registry.items():
        if candidate is model:
            return name
    return model.__name__


def accepts_str(annotation: Any) -> bool:
    """Whether a string value is a valid value as is (so a JSON-looking string is not decoded)."""
    if annotation is str or annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin is Union or origin is _pytypes.UnionType:
        return any(accepts_str(arg) for arg in typing.get_args(annotation))
    if origin is Literal:
        return any(isinstance(v, str) for v in typing.get_args(annotation))
    return False


def accepts_object(annotation: Any) -> bool:
    """Whether a JSON object can be a value of this type (dict, pydantic model, Any)."""
    if annotation is Any or annotation is dict:
        return True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    origin = typing.get_origin(annotation)
    if origin is dict:
        return True
    if origin is Union or origin is _pytypes.UnionType:
        return any(accepts_object(arg) for arg in typing.get_args(annotation))
    return False


def base_kinds(annotation: Any) -> set[str]:
    """Coarse kinds of a type, ignoring None: 'number', 'sized', 'str' (for constraint checks)."""
    origin = typing.get_origin(annotation)
    if origin is Union or origin is _pytypes.UnionType:
        kinds: set[str] = set()
        for arg in typing.get_args(annotation):
            if arg is not type(None):
                kinds |= base_kinds(arg)
        return kinds
    target = origin if origin is not None else annotation
    if target in (int, float):
        return {"number"}
    if target is str:
        return {"str", "sized"}
    if target in (list, dict, set, frozenset, tuple, bytes):
        return {"sized"}
    if target is Any:
        return {"number", "str", "sized"}
    return set()
