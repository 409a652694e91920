"""Turn a model's raw reply into a signature's typed outputs, or a correction to send back.

Extraction, in order: the reply as JSON; the contents of ``` code fences; every balanced `{...}`
in the text (prose before and after is ignored). Each candidate is decoded as JSON, then with
trailing commas removed, then as a Python literal (single quotes, True/None); the first object
holding an output field wins. Values are then coerced by the output model in pydantic's lax mode
("0.93" -> 0.93), after decoding JSON text given for a non-string field ('["a", "b"]' -> list).

A signature with one output also accepts a bare value: when the reply holds no JSON object, the
whole reply (code fences and a JSON string's quotes removed) is that output's value, so "Paris"
parses for `-> answer: str` and "0.93" for `-> score: float`; for a non-string output a reply
that is a JSON array or scalar is decoded first (`[{"a": 1}]` for `list[dict[str, int]]`).
A JSON object without the output's key is taken as the value only when the output's type is
an object (dict, model or Any).
"""

from __future__ import annotations

import ast
import json
import re
import warnings
from collections.abc import Iterator
from typing import Any

from pydantic import ValidationError

from kaizen.errors import OutputParseError

from .compile import describe_problem, friendly_errors, values_of
from .fieldtypes import accepts_object, accepts_str
from .signature import Signature

_FENCE = re.compile(r"```[ \t]*([\w+-]*)[ \t]*\n?(.*?)```", re.DOTALL)
_UNDECODABLE: Any = object()  # what _decode returns for text that is no JSON or Python literal
_CLOSING = "Reply with only a JSON object matching the schema."


def parse_output(signature: Signature, raw: str) -> dict[str, Any]:
    """The typed output values `{name: value}` (in field order) found in `raw`.

    Raises `OutputParseError(raw=..., errors=[(field, message), ...])`; its text is a correction
    worded for the model ("Your previous reply was not valid: field `confidence`: expected a
    number, got 'high'. Reply with only a JSON object matching the schema.").
    """
    if not isinstance(raw, str):
        raise TypeError(f"parse_output expects the reply text as a str, got {type(raw).__name__}")
    outputs = signature.output_fields
    names = signature.output_names
    found = extract_object(raw, names)
    data: dict[str, Any]
    if found is not None and (len(outputs) > 1 or names[0] in found):
        data = found
    elif len(outputs) == 1:
        only = outputs[0]
        whole = _UNDECODABLE if accepts_str(only.type) else _decode(_unfence(raw))
        if whole is not _UNDECODABLE and not isinstance(whole, dict):
            data = {only.name: whole}  # a bare JSON array or scalar, e.g. [{"a": 1}]
        elif found is None:
            data = {only.name: _bare_value(raw, only.type)}
        elif accepts_object(only.type):
            data = {only.name: found}
        else:
            data = found
    else:
        problem = "no JSON object was found" if raw.strip() else "the reply was empty"
        raise OutputParseError(_correction([(None, problem)]), raw=raw, errors=[(None, problem)])

    for f in outputs:
        value = data.get(f.name)
        if isinstance(value, str) and not accepts_str(f.type):
            data[f.name] = _decode_embedded(value)
    try:
        instance = signature.output_model.model_validate(data)
    except ValidationError as exc:
        errors: list[tuple[str | None, str]] = list(friendly_errors(exc, outputs))
        raise OutputParseError(_correction(errors), raw=raw, errors=errors) from None
    return values_of(instance, names)


def extract_object(raw: str, names: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """The JSON object in `raw` (see the module docstring), or None when there is none."""
    text = raw.strip()
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except ValueError:
            pass
        else:
            if isinstance(value, dict):
                return value
    first: dict[str, Any] | None = None
    for region in [*(m.group(2) for m in _FENCE.finditer(raw)), raw]:
        for start, end in _object_spans(region):
            value = _decode(region[start:end])
            if not isinstance(value, dict):
                continue
            if not names or any(name in value for name in names):
                return value
            if first is None:
                first = value
    return first


def _object_spans(text: str) -> list[tuple[int, int]]:
    """Spans of balanced top-level `{...}`, skipping braces inside string literals."""
    spans: list[tuple[int, int]] = []
    start = text.find("{")
    while start != -1:
        end = _match_brace(text, start)
        if end is None:
            start = text.find("{", start + 1)
            continue
        spans.append((start, end))
        start = text.find("{", end)
    return spans


def _match_brace(text: str, start: int) -> int | None:
    depth = 0
    # an apostrophe inside prose-like JSON ("it's") must not open a string
    for index, char, in_code in _scan_literals(text, start, prose_apostrophes=True):
        if not in_code:
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return index + 1
    return None


def _decode(text: str) -> Any:
    """JSON, then JSON without trailing commas, then a Python literal; `_UNDECODABLE` if none."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    repaired = _strip_trailing_commas(text)
    try:
        return json.loads(repaired)
    except ValueError:
        pass
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ast.literal_eval(repaired)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return _UNDECODABLE


def _strip_trailing_commas(text: str) -> str:
    """Remove commas directly before `}` or `]` (outside string literals)."""
    out: list[str] = []
    for index, char, in_code in _scan_literals(text, 0, prose_apostrophes=False):
        if in_code and char == "," and text[index + 1 :].lstrip()[:1] in ("}", "]"):
            continue
        out.append(char)
    return "".join(out)


def _scan_literals(
    text: str, start: int, *, prose_apostrophes: bool
) -> Iterator[tuple[int, str, bool]]:
    """`(index, char, in_code)` for each character of `text` from `start`; `in_code` is False
    inside a string literal (quotes included), where `\\` escapes the next character.

    With `prose_apostrophes`, an apostrophe opens a string only right after a delimiter.
    """
    quote = ""
    escaped = False
    for index in range(start, len(text)):
        char = text[index]
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
            yield index, char, False
        elif char in "\"'" and (
            char == '"'
            or not prose_apostrophes
            or text[index - 1 : index] in ("", "{", "[", ",", ":", " ", "\n")
        ):
            quote = char
            yield index, char, False
        else:
            yield index, char, True


def _unfence(raw: str) -> str:
    """The reply stripped, and without a code fence wrapping all of it."""
    text = raw.strip()
    fence = _FENCE.fullmatch(text)
    return text if fence is None else fence.group(2).strip()


def _bare_value(raw: str, annotation: Any) -> Any:
    text = _unfence(raw)
    if accepts_str(annotation):
        if len(text) >= 2 and text[0] == text[-1] == '"':
            try:
                decoded = json.loads(text)
            except ValueError:
                return text
            return decoded if isinstance(decoded, str) else text
        return text
    decoded = _decode(text)
    return text if decoded is _UNDECODABLE else decoded


def _decode_embedded(value: str) -> Any:
    """A JSON array/object written as a string, decoded; anything else unchanged."""
    stripped = value.strip()
    if stripped[:1] in ("[", "{"):
        decoded = _decode(stripped)
        if decoded is not _UNDECODABLE:
            return decoded
    return value


def _correction(errors: list[tuple[str | None, str]]) -> str:
    details = "; ".join(describe_problem(field, message) for field, message in errors)
    return f"Your previous reply was not valid: {details}. {_CLOSING}"
