"""`Tool`: a typed Python function a model may call, and the `@tool` decorator that makes one.

A tool wraps any callable (a function, a bound method, a `functools.partial`, an object with
``__call__``) and knows its name, its description and the JSON Schema of its parameters (both
read by `kaizen.tools.schema`). `Tool.validate` checks a model's arguments before the call and
returns them converted to the annotated types; `Tool.invoke` / `Tool.ainvoke` call the function
(a sync function called from async code runs in a worker thread; an async one called from sync
code runs on an event loop of its own). `serialize_result` turns a
return value into the text the model reads: strings as they are; pydantic models, dataclasses,
lists, dicts and other JSON-able values as JSON.

Errors are `ToolArgumentError` (arguments that do not fit, each problem named by its field) and
`ToolResultError` (a value that cannot be serialised); the loop turns them, and anything the
function raises, into a tool-error message the model sees (`kaizen.tools.runner`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

import pydantic
from pydantic import BaseModel

from kaizen.aio import NEED_LOOP, run_blocking, running_loop
from kaizen.errors import ConfigError, KaizenError
from kaizen.tools.schema import Parameters, ToolArgumentError, parse_docstring, readable_name

__all__ = [
    "Tool",
    "ToolArgumentError",
    "ToolResultError",
    "serialize_result",
    "tool",
]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
_F = TypeVar("_F", bound=Callable[..., Any])


# whether a call needs a person's approval: always, never, or decided from its arguments
Approval = bool | Callable[[Mapping[str, Any]], bool]


class ToolResultError(KaizenError):
    """A tool returned a value that cannot be turned into text for the model."""


class Tool:
    """A function a model may call: ``Tool(func, name=..., description=..., timeout=...,
    retries=..., deterministic=...)``.

    - `timeout` (seconds, None: no limit) bounds one call; a call that runs over is a tool error
      the model sees (a sync function keeps running in its thread; its result is dropped).
    - `retries` is how many failed calls of this tool an agent's run tolerates in total (bad
      arguments, raised errors, timeouts); the count is cumulative and never reset by a success.
      When it is used up the agent stops with ``stop_reason == "error"``.
    - `deterministic=True` declares that equal arguments give equal results (a cache may memoise).
    - `requires_approval`: True (every call), or a function of the validated arguments saying
      whether this call needs one. A call that needs approval pauses the agent before it runs
      (a `kaizen.interrupt` of kind "approval" carrying the tool name and arguments): a person
      approves it, rejects it with a reason the model reads, or replaces its arguments
      (docs/human-in-the-loop.md).
    """

    __slots__ = (
        "_parameters",
        "description",
        "deterministic",
        "func",
        "is_async",
        "name",
        "parameters",
        "requires_approval",
        "retries",
        "timeout",
    )

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout: float | None = None,
        retries: int = 2,
        deterministic: bool = False,
        parameters: Mapping[str, Any] | None = None,
        requires_approval: Approval = False,
    ) -> None:
        if not callable(func):
            raise TypeError(f"a tool wraps a function, not {type(func).__name__}")
        name = name or readable_name(func)
        if not name:
            raise ConfigError(
                f"{func!r} has no name a tool can take (a functools.partial); pass name=..."
            )
        if not _NAME.fullmatch(name):
            raise ConfigError(
                f"tool name {name!r} is not valid: use letters, digits, '_' or '-' (at most 64, "
                "not starting with a digit); pass name=..."
            )
        if timeout is not None and timeout <= 0:
            raise ConfigError(f"tool {name!r}: timeout must be positive seconds, not {timeout}")
        if retries < 0:
            raise ConfigError(f"tool {name!r}: retries must be 0 or more, not {retries}")
        self.func = func
        self.name = name
        self.timeout = timeout
        self.retries = retries
        self.deterministic = deterministic
        if not isinstance(requires_approval, bool) and not callable(requires_approval):
            raise ConfigError(
                f"tool {name!r}: requires_approval is True, False or a function of the call's "
                f"arguments, not {type(requires_approval).__name__}"
            )
        self.requires_approval = requires_approval
        self.is_async = _is_async(func)
        if parameters is not None:  # a schema from elsewhere (MCP): validated as JSON Schema
            self._parameters: Parameters | None = None
            self.parameters = dict(parameters)
            summary = parse_docstring(inspect.getdoc(func) or "")[0]
        else:
            self._parameters = Parameters.of(func, name)
            self.parameters = self._parameters.schema
            summary = self._parameters.summary
        self.description = description if description is not None else summary

    def __repr__(self) -> str:
        return f"Tool({self.name!r})"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function directly, as if it were not a tool."""
        return self.func(*args, **kwargs)

    def needs_approval(self, arguments: Mapping[str, Any]) -> bool:
        """Whether the call with these (validated) arguments must be approved first."""
        decide = self.requires_approval
        if isinstance(decide, bool):
            return decide
        return bool(decide(arguments))

    def spec(self) -> dict[str, Any]:
        """The OpenAI / litellm ``tools`` entry for this tool."""
        function: dict[str, Any] = {"name": self.name, "parameters": self.parameters}
        if self.description:
            function["description"] = self.description
        return {"type": "function", "function": function}

    def validate(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments converted to the annotated types, or `ToolArgumentError` naming every
        field that does not fit."""
        if not isinstance(arguments, Mapping):
            raise ToolArgumentError(
                self.name, [f"arguments must be a JSON object, got {type(arguments).__name__}"]
            )
        if self._parameters is None:
            return _validate_json_schema(self.name, self.parameters, arguments)
        return self._parameters.validate(self.name, arguments)

    def invoke(self, arguments: Mapping[str, Any]) -> Any:
        """Call the tool with validated `arguments` in this thread (an async tool runs on an
        event loop of its own, in another thread when one is running here)."""
        if self.is_async:
            return run_blocking(self._on_a_loop(arguments))
        return self.func(**arguments)

    async def ainvoke(self, arguments: Mapping[str, Any]) -> Any:
        """Call the tool with validated `arguments` on the running loop (a sync tool runs in a
        worker thread)."""
        if self.is_async:
            return await self._call_async(arguments)
        return await asyncio.to_thread(functools.partial(self.func, **arguments))

    async def _on_a_loop(self, arguments: Mapping[str, Any]) -> Any:
        if running_loop() is None:  # stepped by hand (run_blocking): ask for a loop at once
            await NEED_LOOP
        return await self._call_async(arguments)

    async def _call_async(self, arguments: Mapping[str, Any]) -> Any:
        result = self.func(**arguments)
        if inspect.isawaitable(result):
            result = await result
        return result


@overload
def tool(func: _F, /) -> Tool: ...


@overload
def tool(
    *, name: str | None = None, description: str | None = None, timeout: float | None = None,
    retries: int = 2, deterministic: bool = False, requires_approval: Approval = False,
) -> Callable[[_F], Tool]: ...  # fmt: skip


def tool(
    func: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    retries: int = 2,
    deterministic: bool = False,
    requires_approval: Approval = False,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a typed function a `Tool`: ``@kaizen.tool`` or ``@kaizen.tool(timeout=5)``;
    ``@kaizen.tool(requires_approval=True)`` for one a person approves call by call."""

    def make(function: Callable[..., Any]) -> Tool:
        return Tool(
            function, name=name, description=description, timeout=timeout, retries=retries,
            deterministic=deterministic, requires_approval=requires_approval,
        )  # fmt: skip

    return make if func is None else make(func)


# -- arguments ---------------------------------------------------------------------------------


def _validate_json_schema(
    name: str, schema: Mapping[str, Any], arguments: Mapping[str, Any]
) -> dict[str, Any]:
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    problems = [
        f"{'.'.join(str(p) for p in error.absolute_path) or '(arguments)'}: {error.message}"
        for error in validator.iter_errors(dict(arguments))
    ]
    if problems:
        raise ToolArgumentError(name, problems)
    return dict(arguments)


def _is_async(func: Callable[..., Any]) -> bool:
    while isinstance(func, functools.partial):
        func = func.func
    if inspect.iscoroutinefunction(func):
        return True
    if isinstance(func, type) or inspect.isroutine(func):
        return False
    return inspect.iscoroutinefunction(type(func).__call__)  # an object with async __call__


# -- results -------------------------------------------------------------------------------------


def serialize_result(tool_name: str, value: Any) -> str:
    """The text a model reads for a tool's return value (see the module docstring)."""
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    try:
        return json.dumps(value, ensure_ascii=False, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise ToolResultError(
            f"tool {tool_name!r} returned a {type(value).__name__} that cannot be sent to the "
            f"model ({exc}); return str, a pydantic model, a dataclass or JSON-able values"
        ) from None


def _json_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    try:
        return pydantic.TypeAdapter(type(value)).dump_python(value, mode="json")
    except Exception:
        raise TypeError(f"{type(value).__name__} is not JSON serializable") from None
