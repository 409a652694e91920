"""The run event stream: `RunEvent`s for subscribers (`runtime.subscribe`, `on_event=`), as a hook.

Each subscriber is wrapped in its own `EventCallback` hook, so a subscriber that raises is
recorded in the run's `hook_errors` under its own name and the others still get every event.
A `RunEvent` is what a run or node moment publishes (`kaizen.moments`, `Moment.published`: the
same kinds and details `kaizen serve` sends as SSE frames); they are delivered on the driver
thread, in order: `RUN_STARTED`, per node `NODE_STARTED` → (`NODE_RETRYING`)* →
`NODE_FINISHED` | `NODE_FAILED` | `NODE_CANCELLED`, or `NODE_SKIPPED`, and last `RUN_FINISHED`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from time import time as now
from typing import Any

from kaizen.moments import EventKind, Moment
from kaizen.runtime.hooks import MomentHook

__all__ = ["EventCallback", "EventKind", "RunEvent"]


@dataclass(frozen=True, slots=True)
class RunEvent:
    """One thing that happened during a run, streamed to subscribers as it happens."""

    kind: EventKind
    run_id: str
    time: float
    node_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


class EventCallback(MomentHook):
    """Turns run and node moments into `RunEvent`s for one `callback(event)`."""

    def __init__(self, callback: Callable[[RunEvent], None]) -> None:
        self.callback = callback
        self.name = getattr(callback, "__qualname__", None) or repr(callback)

    def hears(self, moment: type[Moment]) -> bool:
        return moment.on_driver

    def on_moment(self, event: Moment) -> None:
        published = event.published()
        if published is None:
            return
        kind, time, data = published
        node_id: str | None = getattr(event, "node_id", None)
        when = now() if time is None else time
        self.callback(RunEvent(EventKind(kind), event.run_id, when, node_id, data))
