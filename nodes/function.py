"""Python functions as nodes: `FunctionNode` (config `{"function": f}`) and the `@node` decorator.

Ports come from the function's annotations:

- every named parameter is an input port of the annotated type (`Any` when unannotated); a
  parameter with a default is an optional port. `*args` / `**kwargs` are not ports, and
  positional-only parameters are refused (nodes pass inputs by name).
  `Annotated[T, "text"]` gives the port a description.
- outputs: when the return annotation is a `TypedDict`, or outputs are declared with
  `@node(outputs=...)`, each key is an output port and the function must return a dict of them
  (a key left out is *not produced*: whatever depends on it is skipped). Otherwise the return
  value, whatever it is (a plain `dict` included), is the single output `result`.

Sync functions run in the runtime's worker threads, `async def` functions on its event loop.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import typing
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, ClassVar, Generic, ParamSpec, TypeVar, cast, overload

from kaizen.nodes.base import MISSING, Node, Port
from kaizen.nodes.registry import register_node_type

__all__ = ["RESULT", "FunctionNode", "NodeFunction", "node", "ports_from_callable"]

RESULT = "result"

P = ParamSpec("P")
R = TypeVar("R")

OutputSpec = Iterable[str] | Mapping[str, Any]
PortPair = tuple[tuple[Port, ...], tuple[Port, ...]]
# (inputs, outputs, whether it returns a dict of named outputs, whether it is async)
_Ports = tuple[tuple[Port, ...], tuple[Port, ...], bool, bool]

_PORT_CACHE: weakref.WeakKeyDictionary[Callable[..., Any], _Ports] = weakref.WeakKeyDictionary()


def ports_from_callable(fn: Callable[..., Any], outputs: OutputSpec | None = None) -> PortPair:
    """`(input_ports, output_ports)` of a callable, read from its annotations (see module doc)."""
    ins, outs, _, _ = _ports(fn, outputs)
    return ins, outs


def _ports(fn: Callable[..., Any], outputs: OutputSpec | None) -> _Ports:
    if outputs is not None:
        return _inputs_of(fn), _declared_outputs(fn, outputs), True, _is_async_callable(fn)
    try:
        return _PORT_CACHE[fn]
    except (KeyError, TypeError):
        pass
    outs, named = _annotated_outputs(fn)
    ports = _inputs_of(fn), outs, named, _is_async_callable(fn)
    with contextlib.suppress(TypeError):  # not weak-referenceable: builtins, some objects
        _PORT_CACHE[fn] = ports
    return ports


def _signature(fn: Callable[..., Any]) -> inspect.Signature:
    try:
        return inspect.signature(fn, eval_str=True)
    except (NameError, TypeError, SyntaxError):  # a forward reference that does not resolve
        return inspect.signature(fn)


def _inputs_of(fn: Callable[..., Any]) -> tuple[Port, ...]:
    ports = []
    for param in _signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.kind is param.POSITIONAL_ONLY:
            raise TypeError(
                f"parameter {param.name!r} of {_describe(fn)} is positional-only; nodes pass "
                "inputs by name, so make it a regular parameter"
            )
        annotation = Any if param.annotation is param.empty else param.annotation
        port_type, description = _split_annotated(annotation)
        default = MISSING if param.default is param.empty else param.default
        ports.append(Port(param.name, port_type, default, description))
    return tuple(ports)


def _declared_outputs(fn: Callable[..., Any], outputs: OutputSpec) -> tuple[Port, ...]:
    if isinstance(outputs, str):
        raise TypeError(f"outputs= of {_describe(fn)} must be names or a mapping, not a str")
    if isinstance(outputs, Mapping):
        return tuple(Port(name, *_split_annotated(tp)) for name, tp in outputs.items())
    return tuple(Port(name) for name in outputs)


def _annotated_outputs(fn: Callable[..., Any]) -> tuple[tuple[Port, ...], bool]:
    returned = _signature(fn).return_annotation
    if returned is inspect.Signature.empty:
        returned = Any
    returned, description = _split_annotated(returned)
    if typing.is_typeddict(returned):
        try:
            fields = typing.get_type_hints(returned)
        except (NameError, TypeError):
            fields = dict(returned.__annotations__)
        return tuple(Port(name, *_split_annotated(tp)) for name, tp in fields.items()), True
    return (Port(RESULT, returned, MISSING, description),), False


def _split_annotated(annotation: Any) -> tuple[Any, str]:
    if typing.get_origin(annotation) is typing.Annotated:
        base, *extras = typing.get_args(annotation)
        text = next((extra for extra in extras if isinstance(extra, str)), "")
        return base, text
    return annotation, ""


def _describe(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def _is_async_callable(fn: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - callable objects with async __call__
    return call is not None and inspect.iscoroutinefunction(call)


class FunctionNode(Node):
    """Runs a Python callable. Config: `{"function": callable}`, plus values for its inputs.

    Only callables are accepted: a string of code is refused (write a function, or `@node` one).
    """

    config_keys: ClassVar[frozenset[str] | None] = frozenset({"function"})
    # set on the classes `@node` makes: the function is fixed and "function" is not a setting
    bound_function: ClassVar[Callable[..., Any] | None] = None
    declared_named: ClassVar[bool] = False
    bound_is_async: ClassVar[bool] = False

    def make_ports(self) -> tuple[Iterable[Port], Iterable[Port]]:
        cls = type(self)
        fn = cls.bound_function or self._function_from_config()
        self.function: Callable[..., Any] = fn
        if cls.bound_function is not None:  # an @node class: ports were read once, at decoration
            ins, outs, named = cls.input_ports, cls.output_ports, cls.declared_named
            self._async = cls.bound_is_async
        else:
            ins, outs, named, self._async = _ports(fn, None)
        self._named_outputs = frozenset(p.name for p in outs) if named else None
        return ins, outs

    def _function_from_config(self) -> Callable[..., Any]:
        if "function" not in self.config:
            raise ValueError(
                f"FunctionNode {self.id!r} needs config {{'function': <callable>}}; "
                f"got keys {sorted(self.config)}"
            )
        fn = self.config["function"]
        if isinstance(fn, str):
            raise TypeError(
                f"FunctionNode {self.id!r}: 'function' is a string; code strings are not run. "
                "Pass a Python callable (or decorate a function with @node)"
            )
        if not callable(fn):
            raise TypeError(f"FunctionNode {self.id!r}: 'function' must be callable, got {fn!r}")
        return fn

    @property
    def is_async(self) -> bool:
        return self._async

    def run(self, **inputs: Any) -> dict[str, Any]:
        if self._async:  # called directly rather than by a runtime
            import asyncio

            return asyncio.run(self.arun(**inputs))
        if self._named_outputs is None:  # the common case, inlined: nodes run in hot loops
            return {RESULT: self.function(**inputs)}
        return self._outputs(self.function(**inputs))

    async def arun(self, **inputs: Any) -> dict[str, Any]:
        if not self._async:
            return self._outputs(self.function(**inputs))
        value = await cast(Awaitable[Any], self.function(**inputs))
        if self._named_outputs is None:  # the common case, inlined: nodes run in hot loops
            return {RESULT: value}
        return self._outputs(value)

    def _outputs(self, value: Any) -> dict[str, Any]:
        if self._named_outputs is None:
            return {RESULT: value}
        if not isinstance(value, Mapping):
            raise TypeError(
                f"node {self.id!r}: {_describe(self.function)} declares outputs "
                f"{sorted(self._named_outputs)} and must return a dict of them, "
                f"got {type(value).__name__}"
            )
        unknown = [key for key in value if key not in self._named_outputs]
        if unknown:
            raise ValueError(
                f"node {self.id!r}: {_describe(self.function)} returned unknown output(s) "
                f"{unknown}; its outputs are {sorted(self._named_outputs)}"
            )
        return dict(value)


class NodeFunction(Generic[P, R]):
    """What `@node` returns: still callable as the function, and usable as a node type.

    `builder.add_node(fn, "id")` and `builder.add_node("fn_name", "id")` both work;
    `fn.node_class` is the registered `FunctionNode` subclass and `fn.type_name` its name.
    """

    def __init__(self, fn: Callable[P, R], node_class: type[FunctionNode]) -> None:
        self.__wrapped__ = fn
        self.node_class = node_class
        self.type_name = node_class.node_type()
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.__wrapped__(*args, **kwargs)

    @property
    def input_ports(self) -> tuple[Port, ...]:
        return self.node_class.input_ports

    @property
    def output_ports(self) -> tuple[Port, ...]:
        return self.node_class.output_ports

    def __repr__(self) -> str:
        return f"<node type {self.type_name!r} from {_describe(self.__wrapped__)}>"


@overload
def node(fn: Callable[P, R], /) -> NodeFunction[P, R]: ...
@overload
def node(
    *, name: str | None = None, outputs: OutputSpec | None = None, replace: bool = False
) -> Callable[[Callable[P, R]], NodeFunction[P, R]]: ...
def node(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    outputs: OutputSpec | None = None,
    replace: bool = False,
) -> NodeFunction[P, R] | Callable[[Callable[P, R]], NodeFunction[P, R]]:
    """Make a typed function (sync or async) a node type, registered under its name or `name`.

    `outputs=("a", "b")` or `outputs={"a": int, "b": str}` declares named outputs (the function
    returns a dict of them); a `TypedDict` return annotation does the same.
    """
    if fn is None:
        return lambda f: _node_function(f, name, outputs, replace)
    return _node_function(fn, name, outputs, replace)


def _node_function(
    fn: Callable[P, R], name: str | None, outputs: OutputSpec | None, replace: bool
) -> NodeFunction[P, R]:
    if isinstance(fn, NodeFunction):
        fn = fn.__wrapped__
    if not callable(fn):
        raise TypeError(f"@node decorates a function, got {fn!r}")
    type_name = name or getattr(fn, "__name__", None)
    if not type_name:
        raise TypeError(f"@node cannot name {fn!r}; pass @node(name=...)")
    ins, outs, named, is_async = _ports(fn, outputs)
    doc = inspect.getdoc(fn) or f"Node running {_describe(fn)}."
    namespace: dict[str, Any] = {
        "__doc__": doc,
        "__module__": getattr(fn, "__module__", __name__),
        "__qualname__": getattr(fn, "__qualname__", type_name),
        "type_name": type_name,
        "bound_function": staticmethod(fn),
        "declared_named": named,
        "bound_is_async": is_async,
        "input_ports": ins,
        "output_ports": outs,
        "config_keys": frozenset(),
    }
    node_class = cast(type[FunctionNode], type(type_name, (FunctionNode,), namespace))
    register_node_type(node_class, type_name, replace=replace)
    return NodeFunction(fn, node_class)
