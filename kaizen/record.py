"""What a run did: `RunRecord` (per-node status, timings, attempts, usage, errors) and `RunEvent`s.

The runtime fills these in as it goes; renderers draw them (`record.render("run.svg")`).
Times are `time.time()` seconds (wall clock), so records from different processes line up.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from kaizen.workflow import Workflow


class NodeStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


class RunStatus(enum.StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"  # every node completed or was skipped by routing
    FAILED = "failed"  # at least one node failed
    CANCELLED = "cancelled"


@dataclass
class Usage:
    """Model usage: tokens and cost in USD, summed over calls."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    calls: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: Usage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cost += other.cost
        self.calls += other.calls


@dataclass
class NodeRun:
    """One node's part of a run."""

    node_id: str
    node_type: str
    status: NodeStatus = NodeStatus.PENDING
    started: float | None = None
    finished: float | None = None
    attempts: int = 0
    error: str | None = None  # "ExcType: message" of the final failure
    skip_reason: str | None = None  # why it was skipped (routing, failed upstream, budget)
    usage: Usage = field(default_factory=Usage)

    @property
    def duration(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started


@dataclass
class RunRecord:
    """A whole run: status, timings, every node's `NodeRun`, and total usage."""

    run_id: str
    workflow_name: str
    started: float
    finished: float | None = None
    status: RunStatus = RunStatus.RUNNING
    nodes: dict[str, NodeRun] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)

    def by_status(self, status: NodeStatus) -> list[str]:
        return [n.node_id for n in self.nodes.values() if n.status is status]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (used for results files and checkpoints)."""
        from dataclasses import asdict

        return asdict(self)

    def render(self, path: str | Path, workflow: Workflow | None = None) -> Path:
        """Draw the run as SVG: the status-coloured graph (given `workflow`) above the timeline."""
        from kaizen.render_run import render_run

        return render_run(self, path, workflow)

    def _repr_svg_(self) -> str:
        from kaizen.timeline import timeline_svg

        return timeline_svg(self)


class EventKind(enum.StrEnum):
    RUN_STARTED = "run_started"
    NODE_STARTED = "node_started"
    NODE_RETRYING = "node_retrying"
    NODE_FINISHED = "node_finished"
    NODE_FAILED = "node_failed"
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
