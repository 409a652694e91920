"""`NodeContext`: what a running node can learn about its run, and `current_node_context()`.

The runtime sets a context variable while a node runs (in the worker thread for sync nodes, in
the task for async ones; the caller's own context variables are visible too), so code deep inside
a node (an agent's model call) can find its run and fire the model and tool moments of the
lifecycle hooks without being handed anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from kaizen.runtime.hooks import HookSet
from kaizen.runtime.record import RunRecord, Usage

__all__ = ["HasNodeContext", "NodeContext", "current_node_context", "node_context_var"]


class HasNodeContext(Protocol):
    """What the runtime puts in `node_context_var`: something that makes the node's context
    when it is first asked for (most nodes never ask, and then nothing is made)."""

    @property
    def context(self) -> NodeContext: ...


node_context_var: ContextVar[HasNodeContext | None] = ContextVar(
    "kaizen_node_context", default=None
)


@dataclass(slots=True)
class NodeContext:
    """One attempt of one node in one run."""

    run_id: str
    node_id: str
    attempt: int
    record: RunRecord
    hooks: HookSet  # the run's hooks plus the node's own (an agent's)

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
        self.hooks.fire(
            "model_call_start",
            run_id=self.run_id,
            node_id=self.node_id,
            model=model,
            messages=messages,
        )

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
        self.hooks.fire(
            "model_call_finish",
            run_id=self.run_id,
            node_id=self.node_id,
            model=model,
            usage=usage,
            latency=latency,
            reply=reply,
            error=error,
        )

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
    return None if holder is None else holder.context
