"""`NodeContext`: what a running node can learn about its run, and `current_node_context()`.

The runtime sets a context variable while a node runs, in the event loop for async nodes and in
the worker thread for sync ones (the caller's context variables are copied there too), so code deep
inside a node (an agent's model call) can find its run, report usage and respect the budget
without being handed anything.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar
from dataclasses import dataclass, field

from kaizen.budget import Budget
from kaizen.record import NodeRun, RunRecord, Usage

_current: ContextVar[NodeContext | None] = ContextVar("kaizen_node_context", default=None)


@dataclass(slots=True)
class NodeContext:
    """One attempt of one node in one run."""

    run_id: str
    node_id: str
    attempt: int
    node_run: NodeRun
    record: RunRecord
    budget: Budget | None = None
    usage_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_usage(self, usage: Usage) -> None:
        """Count a model call's usage for this node and the run, and charge the budget."""
        with self.usage_lock:
            self.node_run.usage.add(usage)
            self.record.usage.add(usage)
        if self.budget is not None:
            self.budget.charge(usage)

    def check_budget(self) -> None:
        """Raise `BudgetExceededError` if the run's budget is used up; call before a model call."""
        if self.budget is not None:
            self.budget.check()


def current_node_context() -> NodeContext | None:
    """The context of the node running in this thread or task, or None outside any node."""
    return _current.get()
