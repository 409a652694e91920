"""`Recorder`: what writes a run's `RunRecord`, registered first on every run.

Run and node moments are the driver's own: it tells the recorder directly (`node_started`,
`node_finished`, `node_skipped`, `run_finished`) before any hook hears of them, and builds no
event for the record's sake. Model-call and tool-call moments come from the threads that run
nodes, as events to the recorder's hook methods; usage is added under a lock (correct by
construction: no caller has to pass one in).
"""

from __future__ import annotations

import threading
from time import time as now

from kaizen.moments import ModelCallFinished, NodeStatus, RunStatus, ToolCallFinished
from kaizen.runtime.hooks import ModelCallFinishHook, ToolCallFinishHook
from kaizen.runtime.record import ModelCallSpan, RunRecord

__all__ = ["Recorder"]


class Recorder(ModelCallFinishHook, ToolCallFinishHook):
    """Keeps `record` up to date: node statuses, times, attempts, errors, usage, each model
    call's span (queue time apart from generation time), tool calls."""

    name = "kaizen.recorder"

    def __init__(self, record: RunRecord) -> None:
        self.record = record
        self._usage_lock = threading.Lock()

    # -- the driver's moments (its thread, in order) ---------------------------------------------

    def node_started(self, node_id: str, time: float) -> None:
        node_run = self.record.nodes[node_id]
        node_run.status = NodeStatus.RUNNING
        node_run.started = time
        node_run.attempts = 1

    def node_finished(
        self,
        node_id: str,
        status: NodeStatus,
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
            node_run.error = f"{type(error).__name__}: {error}"

    def node_skipped(self, node_id: str, reason: str, time: float) -> None:
        node_run = self.record.nodes[node_id]
        node_run.status = NodeStatus.SKIPPED
        node_run.skip_reason = reason
        node_run.finished = time

    def run_finished(self, status: RunStatus) -> None:
        self.record.finished = now()
        self.record.status = status

    # -- moments inside nodes (any thread) -------------------------------------------------------

    def on_model_call_finish(self, event: ModelCallFinished) -> None:
        node_run = self.record.nodes.get(event.node_id)
        finished = now()
        answered_by = getattr(event.reply, "model", None)
        span = ModelCallSpan(
            model=answered_by if isinstance(answered_by, str) and answered_by else event.model,
            started=finished - event.latency,
            finished=finished,
            queue_time=float(getattr(event.reply, "queue_time", 0.0) or 0.0),
            failed=event.error is not None,
            fallbacks=[[str(m), str(why)] for m, why in getattr(event.reply, "fallbacks", ())],
        )
        with self._usage_lock:
            if node_run is not None:
                node_run.usage.add(event.usage)
                if event.model:  # a node counting usage itself (`add_usage`) made no timed call
                    node_run.model_calls.append(span)
            self.record.usage.add(event.usage)

    def on_tool_call_finish(self, event: ToolCallFinished) -> None:
        node_run = self.record.nodes.get(event.node_id)
        if node_run is not None:
            with self._usage_lock:
                node_run.tool_calls.append(event.record)
