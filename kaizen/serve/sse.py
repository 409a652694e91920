"""Server-Sent Events as `kaizen serve` writes them, and the event data of a served run.

One event per run event, its ``id`` the event's number within the run (from 1), so a client
that reconnects with ``Last-Event-ID: n`` gets every event after the n-th:

    id: 3
    event: node_finished
    data: {"run_id": "...", "node_id": "qa", "time": 1760000000.1, "duration": 0.2, ...}

Comments (``: keepalive``) keep idle connections open through proxies. A frame is what a
lifecycle moment publishes (`kaizen.moments`, `Moment.published`). The kinds are the
runtime's `EventKind`s (``run_started``, ``node_started``, ``node_retrying``, ``node_finished``,
``node_failed``, ``node_cancelled``, ``node_skipped``, ``run_finished``), the stream's
(``content``, ``tool_start``, ``tool_complete``), and last ``done``: the run's status, results
and error.
"""

from __future__ import annotations

import json
from typing import Any

from kaizen.moments import Moment

__all__ = ["KEEPALIVE", "encode_event", "frame", "parse_last_event_id"]

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


def frame(event: Moment) -> tuple[str, dict[str, Any]] | None:
    """`(kind, data)` of the frame a moment is sent as (`Moment.published`: the same kind and
    details a `RunEvent` subscriber sees), or None for a moment clients are not sent."""
    published = event.published()
    if published is None:
        return None
    kind, time, details = published
    data: dict[str, Any] = {"run_id": event.run_id}
    if time is not None:
        data["time"] = time
    node_id = getattr(event, "node_id", None)
    if node_id is not None:
        data["node_id"] = node_id
    data.update(details)
    return str(kind), data


def dumps(value: Any) -> str:
    """Compact JSON; values JSON cannot hold become their `str`."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
