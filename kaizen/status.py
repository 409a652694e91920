"""The statuses of a node and of a run (`NodeStatus`, `RunStatus`).

A bottom-layer type: the runtime sets them (`kaizen.runtime.record` re-exports them), the store
keeps them (`kaizen.store.runs`), observers and pictures read them.
"""

from __future__ import annotations

import enum

__all__ = ["NodeStatus", "RunStatus"]


class NodeStatus(enum.StrEnum):
    PENDING = "pending"  # never started
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"  # routing, a failed or skipped upstream, or the budget
    CANCELLED = "cancelled"  # stopped while running (fail-fast, Ctrl-C, a cancelled task)


class RunStatus(enum.StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"  # every node completed or was skipped by routing
    FAILED = "failed"  # a node failed, or part of the run was refused by its budget
    CANCELLED = "cancelled"
