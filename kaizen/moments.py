"""The moments of a run as typed events, and the plain types they carry.

One frozen dataclass per moment. The runtime builds one when something listens (a lifecycle
hook, `kaizen.runtime.hooks`) and hands the same object to every listener: the user's hooks,
budgets, metrics, tracing, progress, the event subscribers (`RunEvent`), the stream
(`kaizen.stream`: `ContentDelta` is `ChunkReceived`, `ToolStart` is `ToolCallStarted`,
`ToolComplete` is `ToolCallFinished`), the SSE frames of `kaizen serve`, and Ray's relay, which
ships them from workers to the driver.

    RunStarted          a run begins, before any node          RunFinished       it ended, last
    NodeStarted         a node begins                          NodeRetrying      it will try again
    NodeSkipped         routing, a failed upstream, a budget   NodeFinished      completed, failed
                                                                                 or cancelled
    NodeWaiting         paused for a person (interrupts)      NodeResumed       runs again with
                                                                                 their answers
    ModelCallStarted    before a model call (may be vetoed)    ModelCallFinished after it
    ToolCallStarted     before a tool call (may be vetoed)     ToolCallFinished  after it
    ChunkReceived       a piece of streamed reply text         BreakerChanged    a model's circuit
                                                                                 breaker moved

A moment is one class here, and adding one is adding its class: its `moment` name says which
hook method hears it (``on_<moment>``), `on_driver` whether it arrives on the runtime's driver
thread (run and node moments, in order; `InNode` moments come from the thread that runs a
node), `vetoable` whether a hook may refuse it, and `published()` what event subscribers
(`RunEvent`, kind an `EventKind`) and SSE clients see of it (None: nothing). `MOMENTS` lists
every class that names a moment; relays, subscribers and SSE frames take them all as they come,
and a hook hears a new moment by defining its ``on_<moment>`` method (a typed base class in
`kaizen.runtime.hooks` is a convenience, not a requirement).

This module sits at the bottom of the package (beside `kaizen.errors`), so model calls, tools
and stores can build events without importing the runtime; it also owns the plain types the
events carry (`Usage`, `ToolCallRecord`, `NodeStatus`, `RunStatus`, re-exported by
`kaizen.runtime.record`) and `EventKind` (re-exported by `kaizen.runtime.events`).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from time import time as now
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

if TYPE_CHECKING:
    from kaizen.interrupts import Interrupt
    from kaizen.runtime.record import RunRecord
    from kaizen.workflow.workflow import Workflow

__all__ = [
    "MOMENTS",
    "BreakerChanged",
    "ChunkReceived",
    "EventKind",
    "InNode",
    "ModelCallFinished",
    "ModelCallStarted",
    "Moment",
    "NodeFinished",
    "NodeMoment",
    "NodeResumed",
    "NodeRetrying",
    "NodeSkipped",
    "NodeStarted",
    "NodeStatus",
    "NodeWaiting",
    "Published",
    "RunFinished",
    "RunStarted",
    "RunStatus",
    "ToolCallFinished",
    "ToolCallRecord",
    "ToolCallStarted",
    "Usage",
]


class NodeStatus(enum.StrEnum):
    PENDING = "pending"  # never started
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"  # routing, a failed or skipped upstream, or the budget
    CANCELLED = "cancelled"  # stopped while running (fail-fast, Ctrl-C, a cancelled task)
    WAITING = "waiting"  # paused for a person (kaizen.interrupts); resumed with answers


class RunStatus(enum.StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"  # every node completed or was skipped by routing
    FAILED = "failed"  # a node failed, or part of the run was refused by its budget
    CANCELLED = "cancelled"
    WAITING = "waiting"  # a node waits for a person; neither failed nor cancelled


@dataclass(slots=True)
class Usage:
    """Model usage: tokens and cost in USD, summed over calls. `cache_hits` counts the calls
    the model-call cache answered (they cost nothing)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    calls: int = 0
    cache_hits: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def since(self, before: Usage) -> Usage:
        """What was added to this usage after the snapshot `before` was taken."""
        return Usage(
            self.prompt_tokens - before.prompt_tokens,
            self.completion_tokens - before.completion_tokens,
            self.cost - before.cost,
            self.calls - before.calls,
            self.cache_hits - before.cache_hits,
        )

    def add(self, other: Usage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cost += other.cost
        self.calls += other.calls
        self.cache_hits += other.cache_hits


@dataclass(slots=True)
class ToolCallRecord:
    """One tool call an agent's model asked for, and what came of it."""

    call_id: str
    name: str
    arguments: Any  # the parsed arguments, or the text the model sent when it was not JSON
    output: str | None = None  # what the model was shown (None when the call failed)
    error: str | None = None  # the tool error the model was shown instead
    started: float = 0.0  # time.time()
    duration: float = 0.0  # seconds

    @property
    def ok(self) -> bool:
        return self.error is None


class EventKind(enum.StrEnum):
    """The kinds of `RunEvent` subscribers get: what run and node moments publish."""

    RUN_STARTED = "run_started"
    NODE_STARTED = "node_started"
    NODE_RETRYING = "node_retrying"
    NODE_FINISHED = "node_finished"
    NODE_FAILED = "node_failed"
    NODE_CANCELLED = "node_cancelled"
    NODE_SKIPPED = "node_skipped"
    INTERRUPT = "interrupt"  # a node paused for a person: its interrupts
    NODE_RESUMED = "node_resumed"  # it runs again with the answers
    RUN_FINISHED = "run_finished"


class Published(NamedTuple):
    """What subscribers and SSE clients see of a moment: its kind (an `EventKind` for run and
    node moments, ``content``, ``tool_start``, ``tool_complete`` for the stream's), when it
    happened (None: not timed) and its JSON-ready details."""

    kind: str
    time: float | None
    data: dict[str, Any]


# -- the moments -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Moment:
    """Something that happened during run `run_id`; the base of every event."""

    moment: ClassVar[str] = ""  # hooks hear it in their `on_<moment>` method
    on_driver: ClassVar[bool] = True  # arrives on the driver thread, in order (else `InNode`)
    vetoable: ClassVar[bool] = False  # a hook raising `VetoError` refuses what it announces

    run_id: str

    def published(self) -> Published | None:
        """What subscribers (`RunEvent`) and SSE clients see of this moment; None: nothing."""
        return None


@dataclass(frozen=True, slots=True)
class NodeMoment(Moment):
    """A moment of node `node_id` (for an agent run alone: the agent's name)."""

    node_id: str


@dataclass(frozen=True, slots=True)
class InNode(NodeMoment):
    """A moment inside a running node: it arrives from the thread that runs the node,
    possibly from several nodes at once."""

    on_driver: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class RunStarted(Moment):
    """A run begins, before any node: its `workflow` and the `record` it fills in."""

    moment: ClassVar[str] = "run_start"

    workflow: Workflow
    record: RunRecord  # filled in as the run goes

    def published(self) -> Published:
        data = {"workflow": self.workflow.name, "nodes": len(self.workflow.nodes)}
        return Published(EventKind.RUN_STARTED, now(), data)


@dataclass(frozen=True, slots=True)
class RunFinished(Moment):
    """The run ended (last): its status, its record, and what stopped it (if anything)."""

    moment: ClassVar[str] = "run_finish"

    status: RunStatus
    record: RunRecord
    error: BaseException | None  # what stopped the run, if anything did

    def published(self) -> Published:
        data = {"status": str(self.status), "summary": self.record.summary()}
        return Published(EventKind.RUN_FINISHED, now(), data)


@dataclass(frozen=True, slots=True)
class NodeStarted(NodeMoment):
    """Node `node_id` began its first attempt at `time`."""

    moment: ClassVar[str] = "node_start"

    node_type: str
    attempt: int
    time: float

    def published(self) -> Published:
        data = {"node_type": self.node_type, "attempt": self.attempt}
        return Published(EventKind.NODE_STARTED, self.time, data)


@dataclass(frozen=True, slots=True)
class NodeRetrying(NodeMoment):
    """Attempt `attempt` of the node failed with `error`; the next begins after `wait` s."""

    moment: ClassVar[str] = "node_retry"

    attempt: int  # the attempt that failed
    error: BaseException
    wait: float  # seconds before the next attempt

    def published(self) -> Published:
        data = {"attempt": self.attempt, "error": _text(self.error), "wait": self.wait}
        return Published(EventKind.NODE_RETRYING, now(), data)


@dataclass(frozen=True, slots=True)
class NodeSkipped(NodeMoment):
    """The node will not run: routing, a failed or skipped upstream, or the budget."""

    moment: ClassVar[str] = "node_skip"

    reason: str
    time: float

    def published(self) -> Published:
        return Published(EventKind.NODE_SKIPPED, self.time, {"reason": self.reason})


@dataclass(frozen=True, slots=True)
class NodeWaiting(NodeMoment):
    """The node paused for a person (`kaizen.interrupt`, a tool that needs approval): its
    `interrupts`, each with a run-unique id to answer; `state`, what the node saved to continue
    from (an agent's trajectory). The node is WAITING; its dependants wait with it."""

    moment: ClassVar[str] = "node_wait"

    interrupts: tuple[Interrupt, ...]
    state: Any
    time: float

    def published(self) -> Published:
        return Published(
            EventKind.INTERRUPT,
            self.time,
            {"interrupts": [interrupt_json(i) for i in self.interrupts]},
        )


@dataclass(frozen=True, slots=True)
class NodeResumed(NodeMoment):
    """A node that waited for a person runs again: `answered`, the interrupts answered for
    it since it paused (each with its answer, who gave it and when)."""

    moment: ClassVar[str] = "node_resume"

    answered: tuple[Interrupt, ...]
    time: float

    def published(self) -> Published:
        answered = [interrupt_json(i) for i in self.answered]
        return Published(EventKind.NODE_RESUMED, self.time, {"answered": answered})


def interrupt_json(interrupt: Interrupt) -> dict[str, Any]:
    """What a client is shown of an interrupt (the SSE frame, `kaizen runs show`)."""
    return {
        "id": interrupt.id,
        "node_id": interrupt.node_id,
        "index": interrupt.index,
        "kind": interrupt.kind,
        "payload": _jsonable(interrupt.payload),
        "schema": _jsonable(interrupt.schema),
        "tool": interrupt.tool,
        "args": _jsonable(interrupt.args),
        "created_at": interrupt.created_at,
        "answered": interrupt.answered,
        "answer": _jsonable(interrupt.answer),
        "answered_by": interrupt.answered_by,
        "answered_at": interrupt.answered_at,
    }


_FINISHED_KIND = {
    NodeStatus.COMPLETED: EventKind.NODE_FINISHED,
    NodeStatus.FAILED: EventKind.NODE_FAILED,
    NodeStatus.CANCELLED: EventKind.NODE_CANCELLED,
}


@dataclass(frozen=True, slots=True)
class NodeFinished(NodeMoment):
    """The node ended: COMPLETED with `outputs`, FAILED with `error`, or CANCELLED."""

    moment: ClassVar[str] = "node_finish"

    status: NodeStatus  # COMPLETED, FAILED or CANCELLED
    outputs: Mapping[str, Any] | None  # a completed node's
    error: BaseException | None
    started: float | None
    finished: float
    attempts: int

    @property
    def duration(self) -> float | None:
        return None if self.started is None else self.finished - self.started

    def published(self) -> Published:
        data: dict[str, Any] = {"duration": self.duration, "attempt": self.attempts}
        if self.error is not None:
            data["error"] = _text(self.error)
        return Published(_FINISHED_KIND[self.status], self.finished, data)


@dataclass(frozen=True, slots=True)
class ModelCallStarted(InNode):
    """A model call is about to be made (a hook may refuse it: `VetoError`)."""

    moment: ClassVar[str] = "model_call_start"
    vetoable: ClassVar[bool] = True

    model: str
    messages: Sequence[Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class ModelCallFinished(InNode):
    """A model call ended: what it used and cost, its reply (or its error)."""

    moment: ClassVar[str] = "model_call_finish"

    model: str  # "" for usage a node counted itself (`NodeContext.add_usage`)
    usage: Usage
    latency: float  # seconds
    reply: Any  # the `ModelReply`; None when the call failed
    error: BaseException | None


@dataclass(frozen=True, slots=True)
class ToolCallStarted(InNode):
    """A tool call begins; in a stream, `ToolStart`."""

    moment: ClassVar[str] = "tool_call_start"
    vetoable: ClassVar[bool] = True

    tool: str
    arguments: Any  # parsed, or the text the model sent when it was not JSON
    call_id: str

    @property
    def name(self) -> str:
        """The tool's name (`tool`)."""
        return self.tool

    def published(self) -> Published:
        data = {"tool": self.tool, "call_id": self.call_id, "arguments": _jsonable(self.arguments)}
        return Published("tool_start", None, data)


@dataclass(frozen=True, slots=True)
class ToolCallFinished(InNode):
    """A tool call ended; in a stream, `ToolComplete`. `output` (what the model reads) or
    `error` (the tool error it reads instead) and `duration` come from `record`."""

    moment: ClassVar[str] = "tool_call_finish"

    tool: str
    call_id: str
    record: ToolCallRecord

    @property
    def name(self) -> str:
        return self.tool

    @property
    def output(self) -> str | None:
        return self.record.output

    @property
    def error(self) -> str | None:
        return self.record.error

    @property
    def duration(self) -> float:
        return self.record.duration

    def published(self) -> Published:
        data = {"tool": self.tool, "call_id": self.call_id, "output": self.output,
                "error": self.error, "duration": self.duration}  # fmt: skip
        return Published("tool_complete", None, data)


@dataclass(frozen=True, slots=True)
class ChunkReceived(InNode):
    """A piece of a model's streamed reply text; in a stream, `ContentDelta`."""

    moment: ClassVar[str] = "chunk"

    chunk: str

    @property
    def text(self) -> str:
        return self.chunk

    def published(self) -> Published:
        return Published("content", None, {"text": self.chunk})


@dataclass(frozen=True, slots=True)
class BreakerChanged(InNode):
    """A model's circuit breaker changed state during a call of node `node_id`."""

    moment: ClassVar[str] = "breaker_change"

    model: str
    state: Any  # the `kaizen.llm.resilience.BreakerState` now
    previous: str  # the name of the state before


MOMENTS: tuple[type[Moment], ...] = tuple(
    value
    for value in list(globals().values())
    if isinstance(value, type) and issubclass(value, Moment) and value.moment
)
"""Every moment: each class above that names one, in the order they are defined."""


def _set_slots_directly(cls: type[Moment]) -> None:
    """Give `cls` an `__init__` that sets each slot through its descriptor. A frozen
    dataclass's own goes through `object.__setattr__` field by field, twice as slow, and the
    driver builds a `NodeStarted` and a `NodeFinished` per node whenever a hook hears them.
    Generated like the dataclass's own; the event stays frozen."""
    names = [f.name for f in fields(cls)]
    setters: dict[str, Any] = {f"_set_{name}": getattr(cls, name).__set__ for name in names}
    body = "".join(f"    _set_{name}(self, {name})\n" for name in names)
    exec(f"def __init__(self, {', '.join(names)}):\n{body}", setters)
    init = setters["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = cls.__init__.__doc__
    cls.__init__ = init  # type: ignore[method-assign]


for _moment in MOMENTS:
    _set_slots_directly(_moment)


def _text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return str(value)
    return value
