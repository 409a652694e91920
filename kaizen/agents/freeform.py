"""Agents created without a signature: any keyword inputs in, any fields out.

The ADR's direct execution, as written:

    agent = kaizen.create_agent("assistant", {"model": ...})
    result = agent.execute(task="Summarize this document", document=doc_content)
    print(result.summary)

Such an agent's signature is the default one (`task: str, context: dict = {} -> result: str`:
its ports in a workflow). Each execution takes the signature of its call (`call_signature`):
the default fields that were given (all of them when only they were) plus one `Any` field per
other keyword, each rendered as a named field of the prompt. The output schema stays open
(`open_schema`: `result` required, any other field a string), the prompt asks for `result` plus
any field the task names, and `parse_open_output` reads the reply as a JSON object of whatever
fields it holds: `result` is the default output, so `result.result` always exists (the first
text field when the model gave no `result`, the whole reply when it gave no JSON object). A
node returns only its ports; the other fields are noted in its `NodeRun.notes` (`ports_only`)
and `agent.execute()` puts them back into its result (`noted_fields`).

Agents with a signature stay strict: unknown inputs are errors, unknown outputs are dropped.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from kaizen.errors import InputValidationError, OutputParseError, SignatureError
from kaizen.flow import Flow
from kaizen.runtime.context import current_node_context
from kaizen.signatures import Signature, SignatureField, extract_object, parse_output

if TYPE_CHECKING:
    from kaizen.runtime.record import NodeRun

__all__ = [
    "FREE_FORM_REPLY",
    "call_signature",
    "is_open",
    "noted_fields",
    "open_schema",
    "parse_open_output",
    "ports_only",
]

DEFAULT_OUTPUT = "result"

#: What the prompt of an agent without a signature asks for, after its instructions.
FREE_FORM_REPLY = (
    "Reply with a JSON object: your answer in `result`; when the task asks for something by "
    "name (a summary, a title, key points...), also give each as a text field of that name "
    "(`summary`, `title`, `key_points`)."
)


def call_signature(
    signature: Signature, names: Iterable[str] = (), *, open_outputs: bool = True
) -> Signature:
    """The signature of one execution of an agent without a signature, given the names of its
    inputs: the default fields given (all of them when no other input is), one `Any` field per
    other name, and, with `open_outputs` (an agent answering in one call, not acting with tools
    or plans), instructions asking for any fields (`FREE_FORM_REPLY`). Raises
    `InputValidationError` for a name no field may have (one of the outputs, a keyword)."""
    extra = tuple(name for name in names if name not in signature.input_names)
    given = frozenset(names)
    return _call_signature(signature, extra, given if extra else frozenset(), open_outputs)


@functools.lru_cache(maxsize=256)
def _call_signature(
    signature: Signature, extra: tuple[str, ...], given: frozenset[str], open_outputs: bool
) -> Signature:
    kept = [f for f in signature.input_fields if not extra or f.name in given]
    reply = FREE_FORM_REPLY if open_outputs else ""
    instructions = "\n\n".join(filter(None, (signature.instructions, reply)))
    try:
        return Signature(
            [*kept, *(SignatureField(name, Any) for name in extra)],
            signature.output_fields,
            instructions,
        )
    except SignatureError as exc:
        field = exc.field or ""
        raise InputValidationError(
            f"invalid input {field!r} for an agent without a signature: {exc.message} (an "
            f"input may not share its name with an output: {', '.join(signature.output_names)})",
            errors=[(field, exc.message)],
        ) from None


def open_schema(signature: Signature) -> dict[str, Any]:
    """The signature's output JSON Schema, open to more fields: any other field a string (a
    schema the embedded model's grammar can follow; OpenAI's strict mode is off for it)."""
    schema = signature._cache.get("open_schema")
    if schema is None:
        schema = {**signature.output_schema, "additionalProperties": {"type": "string"}}
        signature._cache["open_schema"] = schema
    return schema


def is_open(schema: Mapping[str, Any]) -> bool:
    """Whether an output schema takes fields beyond its own (`open_schema`)."""
    return schema.get("additionalProperties", False) is not False


def parse_open_output(signature: Signature, raw: str) -> dict[str, Any]:
    """The signature's typed outputs from `raw`, plus every other field of its JSON object as
    it came. `result` defaults to the first text field, else to the whole reply."""
    found = extract_object(raw, signature.output_names)
    if found is None:
        if not raw.strip():
            return parse_output(signature, raw)  # the error for an empty reply
        found = {DEFAULT_OUTPUT: raw.strip()}
    if DEFAULT_OUTPUT in signature.output_names and DEFAULT_OUTPUT not in found:
        text = next((v for v in found.values() if isinstance(v, str)), None)
        found = {DEFAULT_OUTPUT: text if text is not None else json.dumps(found), **found}
    declared = {name: found[name] for name in signature.output_names if name in found}
    try:
        typed = parse_output(signature, json.dumps(declared))
    except OutputParseError as exc:
        raise OutputParseError(str(exc), raw=raw, errors=exc.errors) from None
    return {**typed, **{k: v for k, v in found.items() if k not in typed}}


def ports_only(flow: Flow[dict[str, Any]], names: tuple[str, ...]) -> Flow[dict[str, Any]]:
    """`flow`'s outputs named in `names` (the node's ports); the other fields it gave are
    noted in the running node's record (``{"kind": "fields", "fields": {...}}``)."""
    outputs = yield from flow
    extra = {name: value for name, value in outputs.items() if name not in names}
    if not extra:
        return outputs
    context = current_node_context()
    if context is not None:
        context.note({"kind": "fields", "fields": extra})
    return {name: value for name, value in outputs.items() if name in names}


def noted_fields(node_run: NodeRun | None) -> dict[str, Any]:
    """The fields beyond its ports that a node's last execution gave (`ports_only`)."""
    if node_run is None:
        return {}
    for note in reversed(node_run.notes):
        if note.get("kind") == "fields":
            return dict(note.get("fields") or {})
    return {}
