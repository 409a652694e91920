"""What a run did: `RunRecord` (per-node status, timings, attempts, usage, errors, hook failures).

The `Recorder` hook (`kaizen.runtime.recorder`) fills a record in as the run goes; renderers draw
it (`record.render("run.svg")`, through `kaizen.seams.drawing`). Times are `time.time()` seconds
(wall clock), so records from different processes line up. A record holds no secrets: errors
are `"Type: message"` strings, and model usage is counts and cost. `NodeStatus`, `RunStatus`,
`Usage` and `ToolCallRecord` live in `kaizen.moments` (the events carry them) and are
importable from here too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from kaizen import seams
from kaizen.interrupts import Interrupt
from kaizen.moments import NodeStatus, RunStatus, ToolCallRecord, Usage

if TYPE_CHECKING:
    from pathlib import Path

    from kaizen.workflow.workflow import Workflow

__all__ = [
    "HookError",
    "ModelCallSpan",
    "NodeRun",
    "NodeStatus",
    "RunRecord",
    "RunStatus",
    "ToolCallRecord",
    "Usage",
]


@dataclass(slots=True)
class ModelCallSpan:
    """One model call a node made: when it began and ended, and how much of that it spent
    waiting for the model (a queue: the embedded model's free sequence, a rate limit) rather
    than generating. Retries and waits between attempts count as generation time."""

    model: str
    started: float
    finished: float
    queue_time: float = 0.0
    failed: bool = False
    # the models tried before `model` answered, each with why it did not: [model, reason]
    fallbacks: list[list[str]] = field(default_factory=list)

    @property
    def generation_started(self) -> float:
        return min(self.started + self.queue_time, self.finished)

    @property
    def generation_time(self) -> float:
        return self.finished - self.generation_started


@dataclass(slots=True)
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
    tool_calls: list[ToolCallRecord] = field(default_factory=list)  # an agent's, in order
    stop_reason: str | None = None  # why an agent's reason-act loop stopped
    restored: bool = False  # completed in an earlier attempt at the run (resume): not run again
    model_calls: list[ModelCallSpan] = field(default_factory=list)
    # what the node decided along the way, JSON-ready dicts with a "kind" (a planning agent's
    # plans, rejected plans, recovery decisions and checks: docs/plans.md)
    notes: list[dict[str, Any]] = field(default_factory=list)
    # where it ran, "host:pid", when not in the runtime's own process (a Ray worker)
    worker: str | None = None

    @property
    def duration(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started


@dataclass(frozen=True)
class HookError:
    """A lifecycle hook raised: which hook, at which moment (and node), and what it raised.

    The run went on without that hook's effect; its own state was updated first."""

    hook: str
    moment: str
    error: str  # "ExcType: message"
    node_id: str | None = None


@dataclass
class RunRecord:
    """A whole run: status, timings, every node's `NodeRun`, total usage, and hook failures."""

    run_id: str
    workflow_name: str
    started: float
    finished: float | None = None
    status: RunStatus = RunStatus.RUNNING
    nodes: dict[str, NodeRun] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    hook_errors: list[HookError] = field(default_factory=list)
    # every pause of the run, answered or not, in the order asked (kaizen.interrupts)
    interrupts: list[Interrupt] = field(default_factory=list)

    @property
    def open_interrupts(self) -> list[Interrupt]:
        """The interrupts still waiting for an answer."""
        return [i for i in self.interrupts if not i.answered]

    def by_status(self, status: NodeStatus | str) -> list[str]:
        """The ids of the nodes with `status` (a `NodeStatus` or its value, "skipped")."""
        return [n.node_id for n in self.nodes.values() if n.status == status]

    def summary(self) -> str:
        """`run 'abc': 3 completed, 1 failed, 2 never ran`."""
        counts: dict[str, int] = {}
        for node_run in self.nodes.values():
            name = "never ran" if node_run.status is NodeStatus.PENDING else str(node_run.status)
            counts[name] = counts.get(name, 0) + 1
        parts = ", ".join(f"{n} {name}" for name, n in counts.items())
        return f"run {self.run_id!r}: {parts or 'no nodes'}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (used for results files)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRecord:
        """The record `to_dict` (or the store's JSON of it) describes. Fields it does not know
        are left out, fields it lacks take their defaults, so records written by another
        version of Kaizen still read."""

        def made(kind: type[Any], values: Any) -> Any:
            known = {f.name for f in fields(kind)}
            return kind(**{k: v for k, v in dict(values or {}).items() if k in known})

        def node(values: Mapping[str, Any]) -> NodeRun:
            run = made(NodeRun, values)
            run.status = NodeStatus(values.get("status", "pending"))
            run.usage = made(Usage, values.get("usage"))
            run.tool_calls = [made(ToolCallRecord, c) for c in values.get("tool_calls") or ()]
            run.model_calls = [made(ModelCallSpan, c) for c in values.get("model_calls") or ()]
            run.notes = list(values.get("notes") or ())
            return run

        record = made(cls, data)
        record.status = RunStatus(data.get("status", "running"))
        record.nodes = {str(k): node(v) for k, v in dict(data.get("nodes") or {}).items()}
        record.usage = made(Usage, data.get("usage"))
        record.hook_errors = [made(HookError, e) for e in data.get("hook_errors") or ()]
        record.interrupts = [made(Interrupt, i) for i in data.get("interrupts") or ()]
        return record

    def render(self, path: str | Path, workflow: Workflow | None = None) -> Path:
        """Draw the run as SVG: the status-coloured graph (given `workflow`) above the timeline.
        The drawing is `kaizen.render`'s, a layer above, reached through `kaizen.seams`."""
        return seams.drawing.get().render_run(self, path, workflow)

    def _repr_svg_(self) -> str:
        return seams.drawing.get().timeline_svg(self)
