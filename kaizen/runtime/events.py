"""The run event stream: `RunEvent`s for subscribers (`runtime.subscribe`, `on_event=`), as a hook.

Each subscriber is wrapped in its own `EventCallback` hook, so a subscriber that raises is
recorded in the run's `hook_errors` under its own name and the others still get every event.
Events follow the run and node moments; they are delivered on the driver thread, in order:
`RUN_STARTED`, per node `NODE_STARTED` → (`NODE_RETRYING`)* → `NODE_FINISHED` | `NODE_FAILED` |
`NODE_CANCELLED`, or `NODE_SKIPPED`, and last `RUN_FINISHED`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from time import time as now
from typing import TYPE_CHECKING, Any

from kaizen.runtime.hooks import (
    NodeFinishHook,
    NodeRetryHook,
    NodeSkipHook,
    NodeStartHook,
    RunFinishHook,
    RunStartHook,
)
from kaizen.runtime.record import NodeStatus, RunRecord, RunStatus

if TYPE_CHECKING:
    from kaizen.workflow.workflow import Workflow

__all__ = ["EventCallback", "EventKind", "RunEvent"]


class EventKind(enum.StrEnum):
    RUN_STARTED = "run_started"
    NODE_STARTED = "node_started"
    NODE_RETRYING = "node_retrying"
    NODE_FINISHED = "node_finished"
    NODE_FAILED = "node_failed"
    NODE_CANCELLED = "node_cancelled"
    NODE_SKIPPED = "node_skipped"
    RUN_FINISHED = "run_finished"


@dataclass(frozen=True, slots=True)
class RunEvent:
    """One thing that happened during a run, streamed to subscribers as it happens."""

    kind: EventKind
    run_id: str
    time: float
    node_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


_FINISHED = {
    NodeStatus.COMPLETED: EventKind.NODE_FINISHED,
    NodeStatus.FAILED: EventKind.NODE_FAILED,
    NodeStatus.CANCELLED: EventKind.NODE_CANCELLED,
}


class EventCallback(
    RunStartHook, NodeStartHook, NodeRetryHook, NodeSkipHook, NodeFinishHook, RunFinishHook
):
    """Turns run and node moments into `RunEvent`s for one `callback(event)`."""

    def __init__(self, callback: Callable[[RunEvent], None]) -> None:
        self.callback = callback
        self.name = getattr(callback, "__qualname__", None) or repr(callback)

    def on_run_start(self, *, run_id: str, workflow: Workflow, record: RunRecord) -> None:
        data = {"workflow": workflow.name, "nodes": len(workflow.nodes)}
        self.callback(RunEvent(EventKind.RUN_STARTED, run_id, now(), None, data))

    def on_node_start(
        self, *, run_id: str, node_id: str, node_type: str, attempt: int, time: float
    ) -> None:
        data = {"node_type": node_type, "attempt": attempt}
        self.callback(RunEvent(EventKind.NODE_STARTED, run_id, time, node_id, data))

    def on_node_retry(
        self, *, run_id: str, node_id: str, attempt: int, error: BaseException, wait: float
    ) -> None:
        data = {"attempt": attempt, "error": f"{type(error).__name__}: {error}", "wait": wait}
        self.callback(RunEvent(EventKind.NODE_RETRYING, run_id, now(), node_id, data))

    def on_node_skip(self, *, run_id: str, node_id: str, reason: str, time: float) -> None:
        self.callback(RunEvent(EventKind.NODE_SKIPPED, run_id, time, node_id, {"reason": reason}))

    def on_node_finish(
        self,
        *,
        run_id: str,
        node_id: str,
        status: NodeStatus,
        outputs: Mapping[str, Any] | None,
        error: BaseException | None,
        started: float | None,
        finished: float,
        attempts: int,
    ) -> None:
        data: dict[str, Any] = {
            "duration": None if started is None else finished - started,
            "attempt": attempts,
        }
        if error is not None:
            data["error"] = f"{type(error).__name__}: {error}"
        self.callback(RunEvent(_FINISHED[status], run_id, finished, node_id, data))

    def on_run_finish(
        self,
        *,
        run_id: str,
        status: RunStatus,
        record: RunRecord,
        error: BaseException | None,
    ) -> None:
        data = {"status": str(status), "summary": record.summary()}
        self.callback(RunEvent(EventKind.RUN_FINISHED, run_id, now(), None, data))
