"""`Recorder`: the hook that writes a run's `RunRecord`, registered first on every run.

Node moments arrive on the driver thread in order; model-call moments may come from several
worker threads at once, so usage is added under a lock (correct by construction: no caller has
to pass one in).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from time import time as now
from typing import Any

from kaizen.runtime.hooks import (
    ModelCallFinishHook,
    NodeFinishHook,
    NodeSkipHook,
    NodeStartHook,
    RunFinishHook,
    ToolCallFinishHook,
)
from kaizen.runtime.record import (
    ModelCallSpan,
    NodeStatus,
    RunRecord,
    RunStatus,
    ToolCallRecord,
    Usage,
)

__all__ = ["Recorder"]


class Recorder(
    NodeStartHook,
    NodeFinishHook,
    NodeSkipHook,
    ModelCallFinishHook,
    ToolCallFinishHook,
    RunFinishHook,
):
    """Keeps `record` up to date: node statuses, times, attempts, errors, usage, each model
    call's span (queue time apart from generation time), tool calls."""

    name = "kaizen.recorder"

    def __init__(self, record: RunRecord) -> None:
        self.record = record
        self._usage_lock = threading.Lock()

    def on_node_start(
        self, *, run_id: str, node_id: str, node_type: str, attempt: int, time: float
    ) -> None:
        node_run = self.record.nodes[node_id]
        node_run.status = NodeStatus.RUNNING
        node_run.started = time
        node_run.attempts = attempt

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
        node_run = self.record.nodes[node_id]
        node_run.status = status
        if started is not None:
            node_run.started = started
        node_run.finished = finished
        node_run.attempts = attempts
        if error is not None:
            node_run.error = error if isinstance(error, str) else f"{type(error).__name__}: {error}"

    def on_node_skip(self, *, run_id: str, node_id: str, reason: str, time: float) -> None:
        node_run = self.record.nodes[node_id]
        node_run.status = NodeStatus.SKIPPED
        node_run.skip_reason = reason
        node_run.finished = time

    def on_model_call_finish(
        self,
        *,
        run_id: str,
        node_id: str,
        model: str,
        usage: Usage,
        latency: float,
        reply: Any,
        error: BaseException | None,
    ) -> None:
        node_run = self.record.nodes.get(node_id)
        finished = now()
        span = ModelCallSpan(
            model=model,
            started=finished - latency,
            finished=finished,
            queue_time=float(getattr(reply, "queue_time", 0.0) or 0.0),
            failed=error is not None,
        )
        with self._usage_lock:
            if node_run is not None:
                node_run.usage.add(usage)
                if model:  # a node counting usage itself (`add_usage`) made no timed call
                    node_run.model_calls.append(span)
            self.record.usage.add(usage)

    def on_tool_call_finish(
        self, *, run_id: str, node_id: str, tool: str, call_id: str, record: ToolCallRecord
    ) -> None:
        node_run = self.record.nodes.get(node_id)
        if node_run is not None:
            with self._usage_lock:
                node_run.tool_calls.append(record)

    def on_run_finish(
        self,
        *,
        run_id: str,
        status: RunStatus,
        record: RunRecord,
        error: BaseException | None,
    ) -> None:
        record.finished = now()
        record.status = status
