"""The node-type registry: the names `WorkflowBuilder.add_node("TypeName", ...)` understands.

Built-in types register when `kaizen.nodes` is imported; users register their own with
`register_node_type(MyNode)` or the `@register_node_type` class decorator, and every `@node`
function registers itself under its name.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import TypeVar, overload

from kaizen import seams
from kaizen.errors import UnknownNodeTypeError
from kaizen.nodes.base import Node

__all__ = [
    "close_node_type_names",
    "get_node_type",
    "node_types",
    "register_node_type",
    "unregister_node_type",
]

N = TypeVar("N", bound=type[Node])

_REGISTRY: dict[str, type[Node]] = {}

# Node types defined by higher layers (`AgentNode`, `LLMAgentNode`) are loaded through the seam
# `kaizen.seams.node_types` the first time a lookup misses or the full list is asked for:
# `add_node("AgentNode", ...)` works without importing the agent layer first, and
# `kaizen.nodes` never names it.
_higher_types_loaded = False


def _load_lazy_modules() -> bool:
    """Load the node types of the higher layers, once; True the first time."""
    global _higher_types_loaded
    if _higher_types_loaded:
        return False
    _higher_types_loaded = True
    seams.node_types.get()()
    return True


@overload
def register_node_type(cls: N, name: str | None = None, *, replace: bool = False) -> N: ...
@overload
def register_node_type(
    cls: None = None, name: str | None = None, *, replace: bool = False
) -> Callable[[N], N]: ...
def register_node_type(
    cls: N | None = None, name: str | None = None, *, replace: bool = False
) -> N | Callable[[N], N]:
    """Register a `Node` subclass under `name` (default: its `node_type()`), and return it.

    Usable as a call, as `@register_node_type` or as `@register_node_type(name="Alias")`.
    Registering another class under a taken name is an error unless `replace=True`; the same
    class (or a redefinition of it from the same module, as when a notebook cell re-runs)
    simply replaces the entry.
    """
    if cls is None:
        return lambda klass: register_node_type(klass, name, replace=replace)
    if not (isinstance(cls, type) and issubclass(cls, Node)):
        raise TypeError(f"register_node_type() needs a Node subclass, got {cls!r}")
    if name is not None and (not isinstance(name, str) or not name):
        raise ValueError(f"a node type name must be a non-empty string, got {name!r}")
    type_name = name or cls.node_type()
    existing = _REGISTRY.get(type_name)
    if existing is not None and not replace and not _same_definition(existing, cls):
        raise ValueError(
            f"node type {type_name!r} is already registered to "
            f"{existing.__module__}.{existing.__qualname__}; choose another name or pass "
            "replace=True"
        )
    if name is not None and "type_name" not in cls.__dict__:
        cls.type_name = name
    _REGISTRY[type_name] = cls
    return cls


def _same_definition(a: type[Node], b: type[Node]) -> bool:
    return a is b or (a.__module__ == b.__module__ and a.__qualname__ == b.__qualname__)


def unregister_node_type(name: str) -> None:
    """Forget the type registered under `name` (a no-op when there is none)."""
    _REGISTRY.pop(name, None)


def get_node_type(name: str) -> type[Node]:
    """The class registered under `name`; `UnknownNodeTypeError` suggests close names."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        pass
    if _load_lazy_modules() and isinstance(name, str) and name in _REGISTRY:
        return _REGISTRY[name]
    raise UnknownNodeTypeError(name, close_node_type_names(name))


def node_types() -> dict[str, type[Node]]:
    """A snapshot of the registry: type name -> class."""
    _load_lazy_modules()
    return dict(_REGISTRY)


def close_node_type_names(name: object, limit: int = 5) -> list[str]:
    """Registered names that look like `name` (case-insensitive matches first)."""
    if not isinstance(name, str):
        return []
    lowered = name.lower()
    exact_case = [known for known in _REGISTRY if known.lower() == lowered]
    by_lower = {known.lower(): known for known in _REGISTRY}
    close = difflib.get_close_matches(lowered, list(by_lower), n=limit, cutoff=0.6)
    substring = [k for k in _REGISTRY if lowered and (lowered in k.lower() or k.lower() in lowered)]
    ordered = [*exact_case, *(by_lower[c] for c in close), *sorted(substring)]
    return list(dict.fromkeys(ordered))[:limit]
