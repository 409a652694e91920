"""Schema bounding for the embedded model: JSON it can finish within its token budget.

A json_schema ``response_format`` becomes a grammar that constrains decoding. Before that,
`bounded_schema` tightens the schema so the JSON can close within the token budget (strings get
a ``maxLength``, arrays a ``maxItems``, numbers inside [0, 1] a small set of values). The reply
is re-serialised as strict JSON (`normalise_json`: the grammar lets raw control characters into
strings), and a string that ran into its cap is cut back to its last whole sentence (or word,
then "…", `end_cleanly`), so no answer ends mid-word.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "ARRAY_CAP",
    "CAP_SLACK",
    "PROSE_MIN_LENGTH",
    "STRING_CAP",
    "TOOL_CALL_FORMAT",
    "asks_for_a_tool_call",
    "bounded_schema",
    "end_cleanly",
    "normalise_json",
    "requested_schema",
]

STRING_CAP = 100  # characters, for schema strings that set no maxLength
#: A string whose schema asks for at least this many characters is prose (an argument, a
#: rationale): its grammar also makes it start like a sentence (see `bounded_schema`).
PROSE_MIN_LENGTH = 10
ARRAY_CAP = 4  # items, for schema arrays that set no maxItems


#: The name a ``json_schema`` response format carries when it asks for a tool call (the JSON tool
#: protocol, `kaizen.agents.loop.JsonProtocol`): the embedded model lets such a reply copy its
#: prompt, and `ScriptedModel` tells such calls apart by it.
TOOL_CALL_FORMAT = "tool_call"


def asks_for_a_tool_call(response_format: Any) -> bool:
    """Whether an OpenAI-style ``response_format`` asks for a tool call (`TOOL_CALL_FORMAT`)."""
    if not isinstance(response_format, Mapping):
        return False
    inner = response_format.get("json_schema")
    return isinstance(inner, Mapping) and inner.get("name") == TOOL_CALL_FORMAT


def requested_schema(response_format: Any) -> dict[str, Any] | None:
    """The JSON Schema in an OpenAI-style (or llama-style) ``response_format``, if any."""
    if not isinstance(response_format, Mapping):
        return None
    inner = response_format.get("json_schema")
    if response_format.get("type") == "json_schema" and isinstance(inner, Mapping):
        schema = inner.get("schema")
        return dict(schema) if isinstance(schema, Mapping) else {"type": "object"}
    schema = response_format.get("schema")
    if isinstance(schema, Mapping):
        return dict(schema)
    return {"type": "object"} if response_format.get("type") == "json_object" else None


def bounded_schema(
    schema: Mapping[str, Any], string_cap: int = STRING_CAP, array_cap: int = ARRAY_CAP
) -> dict[str, Any]:
    """A copy of `schema` whose strings and arrays are bounded, so generated JSON can close, and
    whose numbers bounded within [0, 1] (a confidence, a probability) are the multiples of 0.05
    in their range (a small grammar): llama.cpp's grammars cannot bound a number, and the small
    model otherwise writes a confidence as a percentage (100.0) about a third of the time.
    A string that asks for at least `PROSE_MIN_LENGTH` characters is prose: its grammar (a
    pattern) also makes it start with a letter and keeps quotes, backslashes and control
    characters out, so ``1.1.1.1`` or ``][`` cannot stand in for a sentence."""
    bounded = copy.deepcopy(dict(schema))

    def visit(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                visit(item)
            return
        if not isinstance(node, dict):
            return
        kinds = node.get("type")
        kinds = kinds if isinstance(kinds, list) else [kinds]
        if "string" in kinds and not ({"enum", "const", "format", "pattern"} & node.keys()):
            low = int(node.get("minLength", 0))
            node["maxLength"] = max(low, min(int(node.get("maxLength", string_cap)), string_cap))
            if low >= PROSE_MIN_LENGTH and kinds == ["string"]:
                _prose(node, low, node["maxLength"])
        if "array" in kinds:
            node["maxItems"] = min(int(node.get("maxItems", array_cap)), array_cap)
        if kinds == ["number"] and (choices := _unit_interval(node)) is not None:
            node.clear()
            node["enum"] = choices
            return
        for value in node.values():
            if isinstance(value, dict | list):
                visit(value)

    visit(bounded)
    return bounded


def _prose(node: dict[str, Any], low: int, high: int) -> None:
    """A prose string's grammar: it starts with a letter (or an opening quote or bracket) and
    holds no quote, backslash or control character, so a sampling loop of digits and dots or
    a stray bracket cannot stand in for a sentence."""
    node.pop("minLength", None)
    node.pop("maxLength", None)
    node["pattern"] = f"^[A-Za-z'(][^\"\\\\\\x00-\\x1f]{{{low - 1},{high - 1}}}$"


def _unit_interval(node: Mapping[str, Any]) -> list[float] | None:
    """The multiples of 0.05 a number schema inside [0, 1] allows (its bounds inclusive or not),
    or None when the schema is not bounded inside [0, 1] on both sides."""
    low = node.get("minimum", node.get("exclusiveMinimum"))
    high = node.get("maximum", node.get("exclusiveMaximum"))
    if not isinstance(low, int | float) or not isinstance(high, int | float):
        return None
    if not 0 <= low < high <= 1:
        return None
    choices = []
    for twentieth in range(21):
        value = twentieth / 20
        if value < low or value > high:
            continue
        if value == node.get("exclusiveMinimum") or value == node.get("exclusiveMaximum"):
            continue
        choices.append(value)
    return choices or None


def normalise_json(text: str, string_cap: int = 0) -> str | None:
    """`text` as strict JSON (raw control characters in strings escaped), or None if invalid.
    Strings that ran into `string_cap` end cleanly (`end_cleanly`)."""
    try:
        data = json.loads(text, strict=False)
    except ValueError:
        return None
    if string_cap:
        data = _trim_capped(data, string_cap)
    return json.dumps(data, ensure_ascii=False)


_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")
_ENDS_A_SENTENCE = re.compile(r"[.!?…]['\")\]]*\s*$")


def end_cleanly(text: str) -> str:
    """`text`, cut off by a length cap, shortened to its last whole sentence, or else to its
    last whole word followed by an ellipsis: never a word cut in half."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    if ends and ends[-1] >= len(text) * 0.4:
        return text[: ends[-1]]
    head = text.rstrip()
    if " " not in head:
        return head
    head = head[: head.rfind(" ")].rstrip(" ,;:-")
    return head + "…"


#: How close to its cap a string counts as cut off (at most a tenth of the cap): the grammar
#: admits a token only if all its characters fit, so a string stopped by the cap can end a few
#: characters short of it.
CAP_SLACK = 8


def _trim_capped(value: Any, cap: int) -> Any:
    if isinstance(value, str):
        near = len(value) >= cap - min(CAP_SLACK, cap // 10)
        reached = near and not _ENDS_A_SENTENCE.search(value)
        return end_cleanly(value) if reached else value
    if isinstance(value, list):
        return [_trim_capped(item, cap) for item in value]
    if isinstance(value, dict):
        return {key: _trim_capped(item, cap) for key, item in value.items()}
    return value
