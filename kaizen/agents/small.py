"""What an agent with tools does differently on the embedded model (a ``local/...`` model).

A 135M model loses the question in the full tool-calling prompt and answers at once, often with
the question's own numbers; measured on `benchmarks/bench_local_tools.py`, it called no tool at
all. `kaizen.agents.loop.JsonProtocol` (with ``compact=True``) uses instead:

- `compact_note`: the protocol in a few lines: each tool as ``name(arg: type, ...)`` and its
  description, `complete` likewise, and one worked example on a tool that is not in the list
  (the grammar admits only listed names, so the example cannot be copied);
- `SMALL_MODEL_USER_TEMPLATE`: the user message holds the inputs alone;
- `answer_that_reads_as_one`: `complete`'s free string outputs must start with a letter, a digit
  or a minus (the model otherwise "answers" ``}}`` or ``.15.0``).

Every other model gets the full prompt and each tool's JSON Schema (docs/models.md lists the
differences). Tried and measured worse: a lookup example instead of the arithmetic one (35 %
correct tool use instead of 50 %), and a second example of completing at once (15 %: the model
then completes at once for every task).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kaizen.tools.toolset import COMPLETE

if TYPE_CHECKING:
    from kaizen.tools.tool import Tool

__all__ = ["SMALL_MODEL_USER_TEMPLATE", "answer_that_reads_as_one", "compact_note"]

SMALL_MODEL_USER_TEMPLATE = """{% for field in inputs %}
{{ field.name }}: {{ field.value }}
{% endfor %}"""

ANSWER_PATTERN = r'^[A-Za-z0-9-][^"\\\x00-\x1f]{0,99}$'
_NOT_FREE = frozenset({"enum", "const", "pattern", "format"})


def compact_note(tools: Sequence[Tool], output_schema: Mapping[str, Any]) -> str:
    """The JSON tool protocol for the embedded model, in a few lines (see the module docstring)."""
    lines = ["Reply with one JSON object: a tool call. The tools:"]
    for found in tools:
        about = f": {found.description}" if found.description else ""
        lines.append(f"- {found.name}({_argument_list(found.parameters)}){about}")
    lines.append(f"- {COMPLETE}({_argument_list(output_schema)}): give the final answer.")
    lines.append(
        'Example. Question: "What is 5 squared?" Reply: {"tool": "square", "arguments": {"x": 5}}'
    )
    lines.append(
        f"Use a tool when the question needs one; then call {COMPLETE} with its result. "
        f"When no tool is needed, call {COMPLETE} at once."
    )
    return "\n".join(lines)


def answer_that_reads_as_one(call: dict[str, Any]) -> dict[str, Any]:
    """`complete`'s call schema with its free top-level string outputs made to hold an answer:
    the first character a letter, a digit or a minus, no quote, backslash or control character,
    at most 100 characters."""
    arguments = dict(call["properties"]["arguments"])
    arguments["properties"] = {
        name: {"type": "string", "pattern": ANSWER_PATTERN}
        if isinstance(spec, Mapping)
        and spec.get("type") == "string"
        and not (_NOT_FREE & spec.keys())
        else spec
        for name, spec in (arguments.get("properties") or {}).items()
    }
    return {**call, "properties": {**call["properties"], "arguments": arguments}}


def _argument_list(schema: Mapping[str, Any]) -> str:
    """``a: number, b: number``: a tool's (or `complete`'s) arguments in one short line."""
    properties = schema.get("properties") or {}
    return ", ".join(
        f"{name}: {spec.get('type', 'any') if isinstance(spec, Mapping) else 'any'}"
        for name, spec in properties.items()
    )
