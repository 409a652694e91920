"""Pauses for a person: `interrupt(...)`, what a paused node hands its caller, and the answers
it resumes with.

A node (a function node, a tool, an agent's loop) pauses by raising `NodePaused` with one or
more `InterruptRequest`s and, optionally, a JSON-able `state` to continue from. The runtime
catches it in the one place a node's attempt ends (`kaizen.runtime.attempt`), marks the node
`waiting` (not failed, under every failure policy), stores each request as an `Interrupt` with
a run-unique id, and ends the run `waiting` once nothing else can run. Resuming with answers
re-runs the waiting node from its start inside `resuming(answers, state)`: the k-th
`interrupt(...)` call of that node returns the k-th answer instead of pausing, and
`resumption().state` gives back what the pause saved (an agent's loop keeps its trajectory
there, so an approved tool call runs without asking the model again).

Interrupts are numbered per node, in the order the node asks (`index` 0, 1, ...), across
resumes; an interrupt's id is ``"<node_id>/<index>"``, the same on every re-run. A node that
does side effects before an `interrupt(...)` runs them again on resume: key them by the run id
and that interrupt id to make them idempotent.

This module sits at the bottom of the package (beside `kaizen.moments`), so tools, agents and
the runtime all use it without importing each other.
"""

from __future__ import annotations

import contextvars
import dataclasses
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "APPROVAL_SCHEMA",
    "ApprovalDecision",
    "Interrupt",
    "InterruptRequest",
    "NodePaused",
    "Resumption",
    "ask_approval",
    "enter_attempt",
    "interrupt",
    "interrupt_id",
    "leave_attempt",
    "resuming",
    "resumption",
]

InterruptKind = Literal["input", "approval"]

# The shape of an answer to an approval: True / False, or an object saying so, with a reason the
# model reads when it is refused and arguments that replace the ones asked for.
APPROVAL_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "boolean"},
        {"enum": ["approve", "approved", "reject", "rejected"]},
        {
            "type": "object",
            "properties": {
                "approved": {"type": "boolean"},
                "reason": {"type": "string"},
                "args": {"type": "object"},
                "by": {"type": "string"},
            },
            "required": ["approved"],
            "additionalProperties": False,
        },
    ]
}


def interrupt_id(node_id: str, index: int) -> str:
    """The run-unique id of a node's `index`-th interrupt."""
    return f"{node_id}/{index}"


@dataclass(frozen=True)
class InterruptRequest:
    """What a pausing node asks: `payload` (any JSON value) for the person, the optional JSON
    `schema` its answer must match, and, for a tool approval, the tool and its arguments."""

    index: int
    payload: Any
    schema: Mapping[str, Any] | None = None
    kind: InterruptKind = "input"
    tool: str | None = None
    args: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Interrupt:
    """One pause of one node, as the run record and `record.interrupts` show it."""

    id: str
    node_id: str
    index: int
    payload: Any
    schema: Mapping[str, Any] | None = None
    kind: InterruptKind = "input"
    tool: str | None = None
    args: Mapping[str, Any] | None = None
    created_at: float = 0.0
    answer: Any = None
    answered: bool = False
    answered_by: str | None = None
    answered_at: float | None = None

    @classmethod
    def of(cls, node_id: str, request: InterruptRequest, created_at: float) -> Interrupt:
        asked = {f.name: getattr(request, f.name) for f in dataclasses.fields(request)}
        return cls(interrupt_id(node_id, request.index), node_id, created_at=created_at, **asked)


class NodePaused(BaseException):
    """Raised inside a node to pause it for a person. A `BaseException`, as
    `asyncio.CancelledError` is, so a tool's or a user's `except Exception` does not swallow the
    pause; only the runtime catches it."""

    def __init__(self, requests: tuple[InterruptRequest, ...], state: Any = None) -> None:
        if not requests:
            raise ValueError("NodePaused needs at least one InterruptRequest")
        self.requests = tuple(requests)
        self.state = state
        super().__init__(f"paused for {len(requests)} interrupt(s)")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.requests, self.state))  # travels back from a Ray worker


@dataclass
class Resumption:
    """The answers a node (re-)runs with: by interrupt index, the state its last pause saved,
    and how many interrupts this attempt has asked so far (`next_index`)."""

    answers: dict[int, Any] = field(default_factory=dict)
    state: Any = None
    asked: int = 0

    def next_index(self) -> int:
        """Number the next interrupt this attempt asks."""
        index = self.asked
        self.asked += 1
        return index

    def answer(self, index: int) -> tuple[bool, Any]:
        """(True, answer) when interrupt `index` has been answered, else (False, None)."""
        if index in self.answers:
            return True, self.answers[index]
        return False, None


_resumption: contextvars.ContextVar[Resumption | None] = contextvars.ContextVar(
    "kaizen_resumption", default=None
)


@contextmanager
def resuming(answers: Mapping[int, Any] | None = None, state: Any = None) -> Iterator[Resumption]:
    """Run a node attempt with these answers (by interrupt index) and saved state at hand."""
    current = Resumption(dict(answers or {}), state)
    token = _resumption.set(current)
    try:
        yield current
    finally:
        _resumption.reset(token)


def enter_attempt(
    resume: tuple[Mapping[int, Any], Any] | None = None,
) -> contextvars.Token[Resumption | None]:
    """Begin a node attempt: its `interrupt(...)` calls number from 0 and find the answers (by
    index) and saved state of `resume`, if the attempt resumes a pause. The runtime calls this
    (and `leave_attempt`) around every attempt; `resuming` is the same as a context manager."""
    if resume is None:
        return _resumption.set(Resumption())
    answers, state = resume
    return _resumption.set(Resumption(dict(answers), state))


def leave_attempt(token: contextvars.Token[Resumption | None]) -> None:
    _resumption.reset(token)


def resumption() -> Resumption | None:
    """The answers of the node attempt running in this context (None outside a pausable
    node)."""
    return _resumption.get()


def interrupt(payload: Any, *, schema: Mapping[str, Any] | None = None) -> Any:
    """Pause this node and hand `payload` (any JSON value: a question, a draft to approve) to
    the caller; on resume, return the answer given for it.

    The node re-runs from its start when resumed, so this call returns the answer the second
    time round; code before it runs twice (make its side effects idempotent). `schema` is a
    JSON schema the answer must match: a resume with an answer of another shape is refused
    before anything is stored.
    """
    return _ask(lambda index: InterruptRequest(index, payload, dict(schema) if schema else None))


def ask_approval(
    payload: Any, *, tool: str | None = None, args: Mapping[str, Any] | None = None
) -> ApprovalDecision:
    """Pause this node for an approval (an interrupt of kind "approval", answered in the shapes
    of `APPROVAL_SCHEMA`); on resume, the decision. `tool` and `args` say what the approval is
    for when it is a tool call. Outside a node, as `interrupt`."""
    asked = dict(args) if args is not None else None
    answer = _ask(
        lambda index: InterruptRequest(index, payload, APPROVAL_SCHEMA, "approval", tool, asked)
    )
    return ApprovalDecision.parse(answer)


def _ask(request: Callable[[int], InterruptRequest]) -> Any:
    """The answer to this node's next interrupt, or `NodePaused` with `request(index)`."""
    current = _resumption.get()
    if current is None:
        raise RuntimeError(
            "kaizen.interrupt() was called outside a node: call it inside a function node or a "
            "tool that a Kaizen runtime runs (runtime.execute, agent.execute)"
        )
    index = current.next_index()
    known, value = current.answer(index)
    if known:
        return value
    raise NodePaused((request(index),))


@dataclass(frozen=True)
class ApprovalDecision:
    """An answer to a tool approval: approved or not, why, by whom, and replacement arguments."""

    approved: bool
    reason: str | None = None
    args: Mapping[str, Any] | None = None
    by: str | None = None

    @classmethod
    def parse(cls, answer: Any) -> ApprovalDecision:
        """Read an answer given for an approval interrupt (shapes: `APPROVAL_SCHEMA`). The
        answer was checked against the schema at resume; this raises ValueError for anything
        else."""
        if isinstance(answer, ApprovalDecision):
            return answer
        if isinstance(answer, bool):
            return cls(answer)
        if isinstance(answer, str) and answer in ("approve", "approved", "reject", "rejected"):
            return cls(answer.startswith("approve"))
        if isinstance(answer, Mapping) and isinstance(answer.get("approved"), bool):
            args = answer.get("args")
            return cls(
                bool(answer["approved"]),
                reason=answer.get("reason"),
                args=dict(args) if isinstance(args, Mapping) else None,
                by=answer.get("by"),
            )
        raise ValueError(
            f"an approval answer is true/false, 'approve'/'reject', or "
            f'{{"approved": bool, "reason": str, "args": {{...}}}}; got {answer!r}'
        )
