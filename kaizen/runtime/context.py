"""`NodeContext`: what a running node can learn about its run, and `current_node_context()`.

The runtime sets a context variable while a node runs (in the worker thread for sync nodes, in
the task for async ones; the caller's own context variables are visible too), so code deep inside
a node (an agent's model call) can find its run and fire the model and tool moments of the
lifecycle hooks without being handed anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kaizen.call_context import HasCallContext as HasNodeContext
from kaizen.call_context import node_context_var
from kaizen.moments import (
    ChunkReceived,
    ModelCallFinished,
    ModelCallStarted,
    Moment,
    ToolCallFinished,
    ToolCallRecord,
    ToolCallStarted,
    Usage,
)
from kaizen.runtime.hooks import HookSet
from kaizen.runtime.record import RunRecord

__all__ = ["HasNodeContext", "NodeContext", "current_node_context", "node_context_var"]


@dataclass(slots=True)
class NodeContext:
    """One attempt of one node in one run (what a model call sees of it is
    `kaizen.call_context.CallContext`; the context variable lives there too)."""

    run_id: str
    node_id: str
    attempt: int
    record: RunRecord
    hooks: HookSet  # the run's hooks plus the node's own (an agent's)
    max_concurrency: int = 32  # the run's bound, which a node's own concurrency keeps to too

    @property
    def idempotency_key(self) -> str:
        """``run_id:node_id:attempt``: the same whenever this attempt of this node runs again
        (a resumed run re-runs the nodes that had not finished), so side effects keyed on it
        happen once."""
        return f"{self.run_id}:{self.node_id}:{self.attempt}"

    def model_call_started(
        self, *, model: str = "", messages: Sequence[Mapping[str, Any]] = ()
    ) -> None:
        """Fire `on_model_call_start`; raises the `VetoError` of a hook refusing the call
        (`BudgetExceededError` when the run's budget is used up)."""
        if self.hooks.observes(ModelCallStarted):
            self.hooks.fire(ModelCallStarted(self.run_id, self.node_id, model, messages))

    def model_call_finished(
        self,
        *,
        usage: Usage,
        model: str = "",
        latency: float = 0.0,
        reply: Any = None,
        error: BaseException | None = None,
    ) -> None:
        """Fire `on_model_call_finish`: the record and the budget count `usage` from it."""
        event = ModelCallFinished(self.run_id, self.node_id, model, usage, latency, reply, error)
        self.hooks.fire(event)  # the run's recorder always hears it

    def tool_call_started(self, *, tool: str, arguments: Any, call_id: str) -> None:
        """Fire `on_tool_call_start`; raises the `VetoError` of a hook refusing the call."""
        if self.hooks.observes(ToolCallStarted):
            self.hooks.fire(ToolCallStarted(self.run_id, self.node_id, tool, arguments, call_id))

    def tool_call_finished(self, record: ToolCallRecord) -> None:
        """Fire `on_tool_call_finish` (the run record keeps `record`)."""
        event = ToolCallFinished(self.run_id, self.node_id, record.name, record.call_id, record)
        self.hooks.fire(event)

    def fire(self, event: Moment) -> None:
        """Tell this node's hooks of `event` (any other moment inside the node)."""
        if self.hooks.observes(type(event)):
            self.hooks.fire(event)

    def note_stop_reason(self, reason: str) -> None:
        """Record why an agent's loop stopped (`NodeRun.stop_reason`)."""
        node_run = self.record.nodes.get(self.node_id)
        if node_run is not None:
            node_run.stop_reason = reason

    def note(self, entry: Mapping[str, Any]) -> None:
        """Record a decision the node made (`NodeRun.notes`; keep `entry` JSON-ready)."""
        node_run = self.record.nodes.get(self.node_id)
        if node_run is not None:
            node_run.notes.append(dict(entry))

    @property
    def wants_chunks(self) -> bool:
        """Whether any hook listens to streamed text (if none, the model call need not stream)."""
        return self.hooks.observes(ChunkReceived)

    def chunk(self, text: str) -> None:
        """Fire `on_chunk` with a piece of streamed reply text."""
        if self.hooks.observes(ChunkReceived):
            self.hooks.fire(ChunkReceived(self.run_id, self.node_id, text))

    # The short forms, for nodes that call models themselves.
    def check_budget(self) -> None:
        """Before a model call: raises `BudgetExceededError` when the budget is used up."""
        self.model_call_started()

    def add_usage(self, usage: Usage) -> None:
        """After a model call: count its usage for this node and the run, charge the budget."""
        self.model_call_finished(usage=usage)


def current_node_context() -> NodeContext | None:
    """The context of the node running in this thread or task, or None outside any node."""
    holder = node_context_var.get()
    if holder is None:
        return None
    context: NodeContext = holder.context
    return context
