"""Model messages in the shape the OpenTelemetry GenAI conventions record them
(``gen_ai.input.messages``, ``gen_ai.output.messages``): `input_messages`, `output_messages`.

Each message is ``{"role": ..., "parts": [...]}``; an output message also has its
``finish_reason``. Parts are ``{"type": "text", "content": ...}``, ``{"type": "tool_call", "id",
"name", "arguments"}`` (the model asking for a tool) and ``{"type": "tool_call_response", "id",
"response"}`` (what the tool returned). Kaizen's messages are OpenAI-shaped (``content``,
``tool_calls``, ``tool_call_id``); anything else a part may hold is named by its type only.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["input_messages", "output_messages", "response_id"]

# provider finish reasons -> the conventions' values (stop, length, content_filter, tool_call,
# error); unknown ones are kept as they are
_FINISH_REASONS = {"tool_calls": "tool_call", "function_call": "tool_call", "end_turn": "stop"}


def input_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The messages a model was sent, as the conventions' input messages."""
    converted = []
    for message in messages:
        role = str(message.get("role") or "user")
        if role == "tool":
            response = {"type": "tool_call_response", "id": message.get("tool_call_id")}
            parts: list[dict[str, Any]] = [{**response, "response": message.get("content")}]
        else:
            parts = _content_parts(message.get("content"))
        parts += [_tool_call(call) for call in message.get("tool_calls") or ()]
        converted.append({"role": role, "parts": parts})
    return converted


def output_messages(reply: Any) -> list[dict[str, Any]]:
    """A model's reply (a `ModelReply`) as the conventions' output messages: its text and the
    tool calls it asked for, with why it stopped."""
    parts = _content_parts(reply.text)
    calls = list(reply.tool_calls or ())
    parts += [_part(call.id, call.name, call.arguments) for call in calls]
    reason = reply.finish_reason or ("tool_calls" if calls else "stop")
    finish = _FINISH_REASONS.get(str(reason), str(reason))
    return [{"role": "assistant", "parts": parts, "finish_reason": finish}]


def response_id(reply: Any) -> str | None:
    """The provider's id of a reply (``chatcmpl-...``), when it sent one."""
    raw = getattr(reply, "raw_response", None)
    found = raw.get("id") if isinstance(raw, Mapping) else getattr(raw, "id", None)
    return found if isinstance(found, str) and found else None


def _content_parts(content: Any) -> list[dict[str, Any]]:
    if content is None or content == "":
        return []
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    if isinstance(content, Sequence):  # OpenAI content parts
        parts = []
        for item in content:
            kind = item.get("type") if isinstance(item, Mapping) else None
            if kind == "text":
                parts.append({"type": "text", "content": item.get("text", "")})
            else:
                parts.append({"type": str(kind or type(item).__name__)})
        return parts
    return [{"type": "text", "content": str(content)}]


def _tool_call(call: Any) -> dict[str, Any]:
    """An OpenAI-shaped tool call of an assistant message (a dict or an object)."""
    function = _get(call, "function") or {}
    return _part(_get(call, "id"), _get(function, "name"), _get(function, "arguments"))


def _part(call_id: Any, name: Any, arguments: Any) -> dict[str, Any]:
    if isinstance(arguments, str):
        with contextlib.suppress(ValueError):  # invalid JSON is recorded as the model sent it
            arguments = json.loads(arguments)
    return {"type": "tool_call", "id": call_id, "name": name, "arguments": arguments}


def _get(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, Mapping) else getattr(value, key, None)
