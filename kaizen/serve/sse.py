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

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from kaizen.moments import Moment
from kaizen.store.db import Store
from kaizen.store.served import load_served_events, load_served_run

if TYPE_CHECKING:
    from kaizen.serve.run import ServedRun

__all__ = [
    "KEEPALIVE",
    "STORED_POLL_SECONDS",
    "encode_event",
    "frame",
    "live_events",
    "parse_last_event_id",
    "stored_frames",
]  # fmt: skip

KEEPALIVE = b": keepalive\n\n"
STORED_POLL_SECONDS = 0.25  # how often the events of another process's run are looked for


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


async def stored_frames(
    store: Store, run_id: str, after: int, keepalive: float
) -> AsyncIterator[bytes]:
    """The events of a run this process does not hold: from the store, followed until the run
    ends (another worker process, or another server, may be running it). A store that hears
    other processes (Postgres' LISTEN/NOTIFY) wakes this at each new event; otherwise it looks
    every `STORED_POLL_SECONDS`."""
    sent = after
    idle = 0.0
    with store.follow("kaizen_served", run_id) as news:  # before the first read: none missed
        while True:
            row = await asyncio.to_thread(load_served_run, store, run_id)
            events = await asyncio.to_thread(load_served_events, store, run_id, sent)
            for event in events:
                yield encode_event(event.seq, event.kind, event.data)
                sent = event.seq
            if row is None or row.is_finished or (row.status == "waiting" and not events):
                return  # (a waiting run's stream ends too: reconnect to follow its resume)
            if events:
                idle = 0.0
            elif idle >= keepalive:
                idle = 0.0
                yield KEEPALIVE
            started = time.monotonic()
            await news.wait(STORED_POLL_SECONDS)
            idle += time.monotonic() - started


async def live_events(
    run: ServedRun, after: int, keepalive: float, committed: Callable[[], Awaitable[None]]
) -> AsyncIterator[tuple[int, str, str] | None]:
    """A live run's events after the `after`-th, `(seq, kind, JSON)`, None after `keepalive`
    idle seconds; until it ends or waits. Only once committed (group commit), so a client
    never saw an event a worker that took the run over would number again."""
    sent = after
    while True:
        changed = run.changed()
        fresh = run.events[sent:]
        if fresh:
            await committed()
        for event in fresh:
            yield event
            sent = event[0]
        if (run.is_finished or run.status == "waiting" or run.lost) and sent >= len(run.events):
            return  # (a waiting run's stream ends: a client reconnecting follows the store)
        try:
            await asyncio.wait_for(changed.wait(), keepalive)
        except TimeoutError:
            yield None
