"""Compile signature fields into pydantic models and the output JSON Schema.

Models are cached by their fields, so equal signatures (and signatures sharing an input or output
side) share one model class. Model attributes are the field names; a name a `BaseModel` already
uses (`json`, `schema`, `model_config`) becomes `<name>_` with the field name as its alias, so
every field name works and validation always goes by field name.
"""

from __future__ import annotations

import functools
import types
import typing
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from kaizen.missing import MISSING

from .fields import SignatureField

# protected_namespaces=(): a field may be called `model_name`; clashing names are aliased below
_CONFIG = ConfigDict(extra="ignore", arbitrary_types_allowed=False, protected_namespaces=())
_TAKEN = frozenset(dir(BaseModel))


def attribute_name(name: str) -> str:
    """The model attribute that holds field `name`: the name itself, unless a pydantic model
    already uses it (`json`, `copy`, `model_dump`, ...); then `name_` (aliased to `name`)."""
    attribute = name
    while attribute in _TAKEN:
        attribute += "_"
    return attribute


@functools.lru_cache(maxsize=1024)
def build_model(title: str, fields: tuple[SignatureField, ...]) -> type[BaseModel]:
    """A pydantic model with one attribute per field, carrying constraints and defaults."""
    definitions: dict[str, Any] = {}
    for f in fields:
        extra: dict[str, Any] = dict(f.constraints)
        if f.description:
            extra["description"] = f.description
        attribute = attribute_name(f.name)
        if attribute != f.name:
            extra["alias"] = f.name
        if f.default is MISSING:
            info = Field(title=f.name, **extra)
        else:
            info = Field(default=f.default, title=f.name, **extra)
        definitions[attribute] = (f.type, info)
    model: type[BaseModel] = create_model(title, __config__=_CONFIG, **definitions)
    return model


def values_of(instance: BaseModel, names: tuple[str, ...]) -> dict[str, Any]:
    """`{field name: value}` of a validated model instance, in field order."""
    return {name: getattr(instance, attribute_name(name)) for name in names}


def output_schema(fields: tuple[SignatureField, ...], title: str) -> dict[str, Any]:
    """The JSON Schema of the outputs: every field required, no additional properties.

    Written directly from the (whitelisted) field types, which is far cheaper than pydantic's
    generator; pydantic models inside are described by pydantic, hoisted into `$defs`. Should
    two different models share a name, pydantic's generator is used for the whole schema.
    """
    defs: dict[str, Any] = {}
    try:
        properties = {f.name: _field_schema(f, defs) for f in fields}
    except _NameClash:
        schema = build_model(title, fields).model_json_schema(by_alias=True)
        schema["title"] = title
        schema["required"] = list(schema.get("properties", {}))
        schema["additionalProperties"] = False
        return schema
    schema = {
        "title": title,
        "type": "object",
        "properties": properties,
        "required": [f.name for f in fields],
        "additionalProperties": False,
    }
    if defs:
        schema["$defs"] = defs
    return schema


class _NameClash(Exception):
    pass


_LENGTH_KEYWORDS = {
    "str": ("minLength", "maxLength"),
    "array": ("minItems", "maxItems"),
    "object": ("minProperties", "maxProperties"),
}
_NUMBER_KEYWORDS = {
    "ge": "minimum",
    "le": "maximum",
    "gt": "exclusiveMinimum",
    "lt": "exclusiveMaximum",
    "multiple_of": "multipleOf",
}


def _field_schema(f: SignatureField, defs: dict[str, Any]) -> dict[str, Any]:
    schema = {"title": f.name, **type_schema(f.type, defs)}
    if f.description:
        schema["description"] = f.description
    for key, value in f.constraints.items():
        if key in _NUMBER_KEYWORDS:
            schema[_NUMBER_KEYWORDS[key]] = value
        elif key == "pattern":
            schema["pattern"] = value
        else:
            index = 0 if key == "min_length" else 1
            for kind in _json_kinds(f.type):
                schema[_LENGTH_KEYWORDS[kind][index]] = value
    return schema


def _json_kinds(annotation: Any) -> list[str]:
    """Which length keywords apply: 'str' (str, bytes), 'array', 'object'."""
    origin = typing.get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        kinds: list[str] = []
        for arg in typing.get_args(annotation):
            kinds.extend(k for k in _json_kinds(arg) if k not in kinds)
        return kinds
    target = origin or annotation
    if target in (str, bytes):
        return ["str"]
    if target in (list, set, frozenset, tuple):
        return ["array"]
    if target is dict:
        return ["object"]
    if target is Any:
        return ["str", "array", "object"]
    return []


_SCALAR_SCHEMAS: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    bytes: {"type": "string", "format": "binary"},
    type(None): {"type": "null"},
    Any: {},
    list: {"type": "array", "items": {}},
    set: {"type": "array", "items": {}, "uniqueItems": True},
    frozenset: {"type": "array", "items": {}, "uniqueItems": True},
    tuple: {"type": "array", "items": {}},
    dict: {"type": "object", "additionalProperties": True},
}


def type_schema(annotation: Any, defs: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of one normalized annotation; nested models are added to `defs`."""
    scalar = _SCALAR_SCHEMAS.get(annotation)
    if scalar is not None:
        return dict(scalar)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _model_ref(annotation, defs)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        json_types = {_literal_type(v) for v in args}
        schema: dict[str, Any] = {"const": args[0]} if len(args) == 1 else {"enum": list(args)}
        if len(json_types) == 1:
            schema["type"] = json_types.pop()
        return schema
    if origin is Union or origin is types.UnionType:
        return {"anyOf": [type_schema(arg, defs) for arg in args]}
    if origin is list:
        return {"type": "array", "items": type_schema(args[0], defs)}
    if origin in (set, frozenset):
        return {"type": "array", "items": type_schema(args[0], defs), "uniqueItems": True}
    if origin is dict:
        return {"type": "object", "additionalProperties": type_schema(args[1], defs)}
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": type_schema(args[0], defs)}
        if args == ((),) or not args:
            return {"type": "array", "maxItems": 0}
        return {
            "type": "array",
            "prefixItems": [type_schema(arg, defs) for arg in args],
            "minItems": len(args),
            "maxItems": len(args),
        }
    raise TypeError(f"no JSON Schema for {annotation!r}")  # normalize() admits nothing else


def _literal_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return "integer" if isinstance(value, int) else "string"


@functools.lru_cache(maxsize=256)
def _model_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/$defs/{model}")
    return schema


def _model_ref(model: type[BaseModel], defs: dict[str, Any]) -> dict[str, Any]:
    schema = dict(_model_schema(model))
    nested = schema.pop("$defs", {})
    name = model.__name__
    for key, value in [*nested.items(), (name, schema)]:
        if key in defs and defs[key] != value:
            raise _NameClash(key)
        defs[key] = value
    return {"$ref": f"#/$defs/{name}"}


_EXPECTED = {
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "int_parsing": "expected an integer",
    "int_type": "expected an integer",
    "int_from_float": "expected a whole number",
    "bool_parsing": "expected true or false",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "bytes_type": "expected a string",
    "list_type": "expected a list (a JSON array)",
    "tuple_type": "expected a list (a JSON array)",
    "set_type": "expected a list (a JSON array)",
    "frozen_set_type": "expected a list (a JSON array)",
    "dict_type": "expected an object",
    "model_type": "expected an object",
    "model_attributes_type": "expected an object",
    "none_required": "expected null",
}


def friendly_errors(
    error: ValidationError, fields: tuple[SignatureField, ...]
) -> list[tuple[str, str]]:
    """`(field, message)` per pydantic error, in plain words ("expected a number, got 'high'")."""
    result: list[tuple[str, str]] = []
    for item in error.errors(include_url=False):
        loc = item.get("loc", ())
        field = str(loc[0]) if loc else (fields[0].name if len(fields) == 1 else "")
        path = "".join(f"[{part!r}]" if isinstance(part, int) else f".{part}" for part in loc[1:])
        kind = item.get("type", "")
        if kind == "missing":
            message = "is missing" if not path else f"{path[1:]} is missing"
        else:
            expected = _EXPECTED.get(kind) or _lower_first(item.get("msg", "is invalid"))
            where = f"at {path[1:] if path.startswith('.') else path}: " if path else ""
            message = f"{where}{expected}, got {_show(item.get('input'))}"
        result.append((field, message))
    return result


def describe_problem(field: str | None, message: str) -> str:
    """One problem as a phrase: "field `x` is missing", "field `y`: expected a number, got 'a'"."""
    if not field:
        return message
    if message.startswith("is ") or message.endswith(" is missing"):
        return f"field `{field}` {message}"
    return f"field `{field}`: {message}"


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
