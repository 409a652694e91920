"""Server-Sent Events as `kaizen serve` writes them, and the event data of a served run.

One event per run event, its ``id`` the event's number within the run (from 1), so a client
that reconnects with ``Last-Event-ID: n`` gets every event after the n-th:

    id: 3
    event: node_finished
    data: {"run_id": "...", "node_id": "qa", "time": 1760000000.1, "duration": 0.2, ...}

Comments (``: keepalive``) keep idle connections open through proxies. The kinds are the
runtime's `EventKind`s (``run_started``, ``node_started``, ``node_retrying``, ``node_finished``,
``node_failed``, ``node_cancelled``, ``node_skipped``, ``run_finished``), the stream's
(``content``, ``tool_start``, ``tool_complete``), and last ``done``: the run's status, results
and error.
"""

from __future__ import annotations

import json
from typing import Any

from kaizen.runtime.events import RunEvent
from kaizen.runtime.stream import ContentDelta, StreamEvent, ToolComplete, ToolStart

__all__ = ["KEEPALIVE", "encode_event", "parse_last_event_id", "run_event_data", "stream_data"]

KEEPALIVE = b": keepalive\n\n"


def encode_event(seq: int, kind: str, data_json: str) -> bytes:
    """One SSE frame (the JSON text holds no newline: `json.dumps` escapes them)."""
    return f"id: {seq}\nevent: {kind}\ndata: {data_json}\n\n".encode()


def parse_last_event_id(value: str | None) -> int:
    """The event number in a ``Last-Event-ID`` header (0: from the start)."""
    if not value:
        return 0
    try:
        return max(0, int(value.strip()))
    except ValueError:
        return 0


def run_event_data(event: RunEvent) -> tuple[str, dict[str, Any]]:
    """`(kind, data)` of a runtime event."""
    data: dict[str, Any] = {"run_id": event.run_id, "time": event.time}
    if event.node_id is not None:
        data["node_id"] = event.node_id
    data.update(event.data)
    return str(event.kind), data


def stream_data(event: StreamEvent, run_id: str) -> tuple[str, dict[str, Any]] | None:
    """`(kind, data)` of a streamed chunk or tool call; None for the stream's own end events
    (the served run sends ``done`` itself)."""
    base: dict[str, Any] = {"run_id": run_id, "node_id": event.node_id}
    if isinstance(event, ContentDelta):
        return "content", {**base, "text": event.text}
    if isinstance(event, ToolStart):
        arguments = _jsonable(event.arguments)
        return "tool_start", {**base, "tool": event.name, "call_id": event.call_id,
                              "arguments": arguments}  # fmt: skip
    if isinstance(event, ToolComplete):
        return "tool_complete", {
            **base, "tool": event.name, "call_id": event.call_id, "output": event.output,
            "error": event.error, "duration": event.duration,
        }  # fmt: skip
    return None


def dumps(value: Any) -> str:
    """Compact JSON; values JSON cannot hold become their `str`."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return str(value)
    return value
