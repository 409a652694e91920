"""What a model is told about a tool's parameters, and how its arguments are checked.

`Parameters.of(func, name)` reads any callable a user may hand over as a tool: a function, an
async function, a bound method, a `functools.partial` (the arguments it fixes are not
parameters), or an object with ``__call__`` / ``async def __call__`` (named and described by its
class, its parameters by ``__call__``'s docstring too). From it come:

- the description: the docstring's text before its sections, and each parameter's description
  from its Google (``Args:``), NumPy (``Parameters`` / ``----------``) or Sphinx (``:param x:``)
  section, read by `docstring_parser`; the sections never leak into the description;
- the JSON Schema of the arguments, through pydantic: a default, `Field(...)` as a default
  (required, constraints, description), ``Annotated[T, Field(...)]`` and
  ``Annotated[T, "a description"]``. The first description found wins: a `Field`'s, then an
  ``Annotated`` string, then the docstring's;
- ``**kwargs: T``: other arguments are allowed, each a ``T`` (``additionalProperties``);
  ``*args`` cannot be passed by name, so it is refused when the tool is made, as are
  positional-only parameters.

`Parameters.validate` returns the arguments converted to their types, defaults filled in (what
reaches the function), or raises pydantic's `ValidationError`.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, get_args, get_origin, get_type_hints

import pydantic
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, create_model
from pydantic.fields import FieldInfo

from kaizen.errors import ConfigError, KaizenError

__all__ = ["Parameters", "ToolArgumentError", "parse_docstring", "readable_name"]


_SECTION_FIRST = re.compile(  # ":param", a Google "Args:" heading, or a NumPy underlined one
    r"^\s*(?::\w|(?:Args|Arguments|Parameters|Keyword Args|Returns?|Raises|Yields|Examples?|"
    r"Notes?|Attributes):\s*(?:\n|$)|\w[\w ]*\n\s*-{3,}\s*(?:\n|$))"
)


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The description (the text before the first section) and each parameter's description,
    from a Google, NumPy or Sphinx style docstring (the style is recognised)."""
    import docstring_parser

    if _SECTION_FIRST.match(doc):  # no text before the sections: the parser needs a line
        parsed = docstring_parser.parse(f"-\n\n{doc}")
        parsed.short_description = None
    else:
        parsed = docstring_parser.parse(doc)
    parts = [part for part in (parsed.short_description, parsed.long_description) if part]
    gap = "\n\n" if parsed.blank_after_short_description else "\n"
    arguments = {
        param.arg_name.lstrip("*"): " ".join(
            line.strip() for line in (param.description or "").splitlines() if line.strip()
        )
        for param in parsed.params
    }
    return gap.join(parts).strip(), arguments


def readable_name(func: Callable[..., Any]) -> str | None:
    """The name a callable gives itself: a function's or method's, a callable object's class
    name; None for a `functools.partial` (it needs ``name=``)."""
    name = getattr(func, "__name__", None)
    if isinstance(name, str):
        return name
    if isinstance(func, functools.partial) or inspect.isroutine(func):
        return None
    return type(func).__name__


def _target(func: Callable[..., Any]) -> Callable[..., Any]:
    """The function whose type hints and docstring describe `func`."""
    while isinstance(func, functools.partial):
        func = func.func
    if isinstance(func, type) or inspect.isroutine(func):
        return func
    return type(func).__call__  # a callable object


def _docs(func: Callable[..., Any]) -> tuple[str, dict[str, str]]:
    """The description and the parameters' descriptions of `func`. A callable object is
    described by its class's docstring, else its ``__call__``'s; its parameters by both (the
    ``__call__``'s first)."""
    target = _target(func)
    if target is func or isinstance(func, functools.partial):
        return parse_docstring(inspect.getdoc(target) or "")
    call_summary, call_args = parse_docstring(inspect.cleandoc(target.__doc__ or ""))
    own = type(func).__doc__
    class_summary, class_args = parse_docstring(inspect.cleandoc(own)) if own else ("", {})
    return class_summary or call_summary, {**class_args, **call_args}


class ToolArgumentError(KaizenError):
    """A model's arguments do not fit a tool's parameters (`problems`: one line per field)."""

    def __init__(self, tool: str, problems: list[str]) -> None:
        self.tool = tool
        self.problems = problems
        super().__init__(f"tool {tool!r}: invalid arguments: " + "; ".join(problems))


@dataclass(frozen=True)
class Parameters:
    """A tool's parameters: the arguments model, the `**kwargs` type, the JSON Schema, and the
    description read from the docstring."""

    model: type[BaseModel]
    extra: TypeAdapter[dict[str, Any]] | None  # **kwargs: the type of each other argument
    schema: dict[str, Any]
    summary: str

    @classmethod
    def of(cls, func: Callable[..., Any], name: str) -> Parameters:
        summary, docs = _docs(func)
        try:
            hints = get_type_hints(_target(func), include_extras=True)
            signature = inspect.signature(func)
        except Exception as exc:  # a forward reference that does not resolve
            raise ConfigError(f"tool {name!r}: cannot read its parameters: {exc}") from exc
        fields: dict[str, Any] = {}
        extra: TypeAdapter[dict[str, Any]] | None = None
        for parameter in signature.parameters.values():
            annotation = hints.get(parameter.name, Any)
            if parameter.kind is parameter.VAR_POSITIONAL:
                raise ConfigError(
                    f"tool {name!r}: *{parameter.name} cannot be passed: models call tools with "
                    "named arguments; take a list parameter instead"
                )
            if parameter.kind is parameter.POSITIONAL_ONLY:
                raise ConfigError(
                    f"tool {name!r}: parameter {parameter.name!r} is positional-only; models "
                    "pass arguments by name"
                )
            if parameter.kind is parameter.VAR_KEYWORD:
                extra = TypeAdapter(dict[str, annotation])  # type: ignore[valid-type]
                continue
            fields[parameter.name] = (
                annotation,
                _field(annotation, parameter.default, docs.get(parameter.name)),
            )
        try:
            model = create_model(
                f"{name}_arguments",
                __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=False),
                **fields,
            )
            schema = _schema(model, extra)
        except Exception as exc:  # a type pydantic cannot describe
            raise ConfigError(f"tool {name!r}: its parameters cannot be described: {exc}") from exc
        return cls(model, extra, schema, summary)

    def validate(self, tool: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments converted to their types, defaults filled in; `ToolArgumentError`
        naming every argument that does not fit."""
        named = dict(arguments)
        others: dict[str, Any] = {}
        if self.extra is not None:
            known = {f.alias or key for key, f in self.model.model_fields.items()}
            others = {k: named.pop(k) for k in list(named) if k not in known}
        problems: list[str] = []
        values: dict[str, Any] = {}
        try:
            model = self.model.model_validate(named)
            values = {key: getattr(model, key) for key in type(model).model_fields}
        except ValidationError as exc:
            problems += _problems(exc)
        if self.extra is not None:
            try:
                values.update(self.extra.validate_python(others))
            except ValidationError as exc:
                problems += _problems(exc)
        if problems:
            raise ToolArgumentError(tool, problems)
        return values


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


def _field(annotation: Any, default: Any, documented: str | None) -> FieldInfo:
    """The pydantic field of one parameter; the docstring's description only where neither a
    `Field` nor an ``Annotated`` string gives one."""
    metadata = get_args(annotation)[1:] if get_origin(annotation) is Annotated else ()
    inner = [m for m in metadata if isinstance(m, FieldInfo) and m.description]
    said = [m for m in metadata if isinstance(m, str)]
    description = None if inner else (said[-1] if said else documented)
    if isinstance(default, FieldInfo):  # x: int = Field(..., gt=10)
        if default.description is None and description is not None:
            return FieldInfo.merge_field_infos(default, description=description)
        return default
    value = ... if default is inspect.Parameter.empty else default
    if description is None:
        return pydantic.Field(value)
    return pydantic.Field(value, description=description)


def _schema(model: type[BaseModel], extra: TypeAdapter[dict[str, Any]] | None) -> dict[str, Any]:
    """The JSON Schema of the arguments, without pydantic's titles (noise for a model)."""
    schema = model.model_json_schema()
    schema.setdefault("properties", {})
    schema["additionalProperties"] = False
    if extra is not None:
        each = extra.json_schema().get("additionalProperties", True)
        if isinstance(each, dict):
            defs = each.pop("$defs", None) or extra.json_schema().get("$defs")
            if defs:
                schema.setdefault("$defs", {}).update(defs)
        schema["additionalProperties"] = each if each != {} else True
    _drop_titles(schema)
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


def lift_defs(schema: Mapping[str, Any], prefix: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """`schema` without its definitions (``$defs`` or ``definitions``), and those definitions
    renamed ``{prefix}.{name}`` with every local ``$ref`` to them rewritten: so a schema can be
    embedded inside another (the JSON tool protocol's union of calls), its definitions moved to
    the root beside other schemas' without a clash."""
    body = {key: value for key, value in schema.items() if key not in ("$defs", "definitions")}
    found = {**schema.get("definitions", {}), **schema.get("$defs", {})}
    renamed = {f"{prefix}.{name}": value for name, value in found.items()}

    def rewrite(node: Any) -> Any:
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        if not isinstance(node, dict):
            return node
        out = {key: rewrite(value) for key, value in node.items()}
        ref = out.get("$ref")
        if isinstance(ref, str):
            for root in ("#/$defs/", "#/definitions/"):
                if ref.startswith(root) and ref[len(root) :].split("/")[0] in found:
                    out["$ref"] = f"#/$defs/{prefix}.{ref[len(root) :]}"
        return out

    return rewrite(body), rewrite(renamed)
