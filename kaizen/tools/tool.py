"""`Tool`: a typed Python function a model may call, and the `@tool` decorator that makes one.

A tool knows its name, its description (the docstring's text before its sections) and the JSON
Schema of its parameters (from the type hints, through pydantic; each parameter's description from
the docstring's ``Args:`` section). `Tool.validate` checks a model's arguments before the call and
returns them converted to the annotated types; `Tool.invoke` / `Tool.ainvoke` call the function
(a sync function called from async code runs in a worker thread). `serialize_result` turns a
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
from typing import Any, TypeVar, get_type_hints, overload

import pydantic
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from kaizen.aio import NEED_LOOP, run_blocking, running_loop
from kaizen.errors import ConfigError, KaizenError

__all__ = [
    "Tool",
    "ToolArgumentError",
    "ToolResultError",
    "serialize_result",
    "tool",
]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
_F = TypeVar("_F", bound=Callable[..., Any])


class ToolArgumentError(KaizenError):
    """A model's arguments do not fit a tool's parameters (`problems`: one line per field)."""

    def __init__(self, tool: str, problems: list[str]) -> None:
        self.tool = tool
        self.problems = problems
        super().__init__(f"tool {tool!r}: invalid arguments: " + "; ".join(problems))


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
    """

    __slots__ = (
        "_arguments_model",
        "description",
        "deterministic",
        "func",
        "is_async",
        "name",
        "parameters",
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
    ) -> None:
        if not callable(func):
            raise TypeError(f"a tool wraps a function, not {type(func).__name__}")
        name = name or getattr(func, "__name__", None)
        if not name or not _NAME.fullmatch(name):
            raise ConfigError(
                f"tool name {name!r} is not valid: use letters, digits, '_' or '-' (at most 64, "
                "not starting with a digit); pass name=..."
            )
        if timeout is not None and timeout <= 0:
            raise ConfigError(f"tool {name!r}: timeout must be positive seconds, not {timeout}")
        if retries < 0:
            raise ConfigError(f"tool {name!r}: retries must be 0 or more, not {retries}")
        summary, arg_docs = parse_docstring(inspect.getdoc(func) or "")
        self.func = func
        self.name = name
        self.description = description if description is not None else summary
        self.timeout = timeout
        self.retries = retries
        self.deterministic = deterministic
        self.is_async = _is_async(func)
        if parameters is not None:  # a schema from elsewhere (MCP): validated as JSON Schema
            self._arguments_model: type[BaseModel] | None = None
            self.parameters = dict(parameters)
        else:
            self._arguments_model = arguments_model(func, name, arg_docs)
            self.parameters = parameters_schema(self._arguments_model)

    def __repr__(self) -> str:
        return f"Tool({self.name!r})"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function directly, as if it were not a tool."""
        return self.func(*args, **kwargs)

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
        if self._arguments_model is None:
            return _validate_json_schema(self.name, self.parameters, arguments)
        try:
            model = self._arguments_model.model_validate(dict(arguments))
        except ValidationError as exc:
            raise ToolArgumentError(self.name, _problems(exc)) from None
        return {key: getattr(model, key) for key in type(model).model_fields}

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
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    retries: int = 2,
    deterministic: bool = False,
) -> Callable[[_F], Tool]: ...


def tool(
    func: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    retries: int = 2,
    deterministic: bool = False,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a typed function a `Tool`: ``@kaizen.tool`` or ``@kaizen.tool(timeout=5)``."""

    def make(function: Callable[..., Any]) -> Tool:
        return Tool(
            function,
            name=name,
            description=description,
            timeout=timeout,
            retries=retries,
            deterministic=deterministic,
        )

    return make if func is None else make(func)


# -- the parameters' schema ----------------------------------------------------------------------

_SECTION = re.compile(
    r"^(Args|Arguments|Parameters|Returns|Return|Raises|Yields|Examples?|Notes?)\s*:\s*$"
)
_ARG_LINE = re.compile(r"^(\*{0,2}\w+)\s*(?:\(([^)]*)\))?\s*:\s*(.*)$")


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The description (text before the first section) and each parameter's description from a
    Google-style ``Args:`` section (``name: text`` or ``name (type): text``, continuation lines
    indented further)."""
    lines = doc.splitlines()
    summary: list[str] = []
    args: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    indent: int | None = None
    for line in lines:
        stripped = line.strip()
        heading = _SECTION.match(stripped)
        if heading and (len(line) - len(line.lstrip())) == 0:
            section, current, indent = heading.group(1), None, None
            continue
        if section is None:
            summary.append(line)
            continue
        if section not in ("Args", "Arguments", "Parameters") or not stripped:
            continue
        depth = len(line) - len(line.lstrip())
        if indent is None:
            indent = depth
        match = _ARG_LINE.match(stripped)
        if depth <= indent and match:
            current = match.group(1).lstrip("*")
            args[current] = match.group(3).strip()
        elif current is not None:
            args[current] = f"{args[current]} {stripped}".strip()
    return "\n".join(summary).strip(), args


def arguments_model(
    func: Callable[..., Any], name: str, descriptions: Mapping[str, str]
) -> type[BaseModel]:
    """A pydantic model of `func`'s parameters (unannotated ones take any JSON value)."""
    try:
        hints = get_type_hints(func, include_extras=True)
    except Exception as exc:  # a forward reference that does not resolve
        raise ConfigError(f"tool {name!r}: cannot read its type hints: {exc}") from exc
    fields: dict[str, Any] = {}
    for parameter in inspect.signature(func).parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if parameter.kind is parameter.POSITIONAL_ONLY:
            raise ConfigError(
                f"tool {name!r}: parameter {parameter.name!r} is positional-only; models pass "
                "arguments by name"
            )
        annotation = hints.get(parameter.name, Any)
        default = ... if parameter.default is parameter.empty else parameter.default
        info = pydantic.Field(default, description=descriptions.get(parameter.name))
        fields[parameter.name] = (annotation, info)
    try:
        return create_model(
            f"{name}_arguments",
            __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=False),
            **fields,
        )
    except Exception as exc:  # a type pydantic cannot describe
        raise ConfigError(f"tool {name!r}: its parameters cannot be described: {exc}") from exc


def parameters_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema of a tool's arguments, without pydantic's titles (noise for a model)."""
    schema = model.model_json_schema()
    _drop_titles(schema)
    schema.setdefault("properties", {})
    schema["additionalProperties"] = False
    return schema


def _drop_titles(node: Any) -> None:
    if isinstance(node, dict):
        node.pop("title", None)
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                for item in value.values():
                    _drop_titles(item)
            else:
                _drop_titles(value)
    elif isinstance(node, list):
        for item in node:
            _drop_titles(item)


def _problems(exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(arguments)"
        if error["type"] == "extra_forbidden":
            problems.append(f"{where}: not a parameter of this tool")
        elif error["type"] == "missing":
            problems.append(f"{where}: missing (required)")
        else:
            problems.append(f"{where}: {error['msg']} (got {error.get('input')!r})")
    return problems


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
    if inspect.iscoroutinefunction(func):
        return True
    # a callable object whose __call__ is async, or a functools.partial of an async function
    inner = getattr(func, "func", None) or type(func).__call__
    return inspect.iscoroutinefunction(inner)


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
