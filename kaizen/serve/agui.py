"""AG-UI on `kaizen serve`: a run's own events as the Agent User Interaction protocol's (1.0).

`POST /ag-ui` (`kaizen.serve.app`) takes a ``RunAgentInput``, starts a run of the served target
(or, with ``resume`` entries, answers the interrupts a waiting run asked and continues it) and
streams the run's events translated here. The translation is I/O-free: `AguiStream` is fed the
run's native events (``kind``, data) in order and returns the AG-UI events to send, built from
the ``ag-ui-protocol`` package's types (extra ``ag-ui``) and encoded by its `EventEncoder`.

    run_started, then the first event       RUN_STARTED, STATE_SNAPSHOT
    node_started / node_resumed              STEP_STARTED (node id), STATE_DELTA
    node_finished, _failed, _cancelled       (an open text message ends) STEP_FINISHED, STATE_DELTA
    content (streamed model text)            TEXT_MESSAGE_START once per node, _CONTENT
    tool_start                               TOOL_CALL_START, _ARGS (the arguments as JSON), _END
    tool_complete                            TOOL_CALL_RESULT (the output, or the error)
    interrupt (a node waits for a person)    STEP_FINISHED, then at the end RUN_FINISHED with
                                             the interrupt outcome (ids ``<run>:<interrupt>``)
    done: completed / cancelled / failed     RUN_FINISHED (result: the results) / RUN_FINISHED
                                             (cancelled outcome) / RUN_ERROR

The state is ``{"run_id": ..., "status": ..., "nodes": {node_id: status}}``; its deltas are
RFC 6902 patches. Inputs (`inputs_of`): ``forwardedProps.inputs`` when given, else ``state``
when its keys are the target's inputs, else the last user message's text for a target with one
input. A resume names the Kaizen run in each interrupt id, so any worker can continue it.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from ag_ui.core import (
    EventType,
    Interrupt,
    RunAgentInput,
    RunErrorEvent,
    RunFinishedCancelledOutcome,
    RunFinishedEvent,
    RunFinishedInterruptOutcome,
    RunStartedEvent,
    StateDeltaEvent,
    StateSnapshotEvent,
    StepFinishedEvent,
    StepStartedEvent,
    TextMessageContentEvent,
    TextMessageEndEvent,
    TextMessageStartEvent,
    ToolCallArgsEvent,
    ToolCallEndEvent,
    ToolCallResultEvent,
    ToolCallStartEvent,
)
from ag_ui.core.events import BaseEvent
from ag_ui.encoder import EventEncoder

__all__ = [
    "PROTOCOL_VERSION",
    "AguiInputError",
    "AguiStream",
    "answers_of",
    "encode",
    "inputs_of",
    "parse_input",
]

PROTOCOL_VERSION = "1.0"
_ENCODER = EventEncoder()
_STEP_ENDS = {"node_finished": "completed", "node_failed": "failed", "node_cancelled": "cancelled"}


class AguiInputError(ValueError):
    """A ``RunAgentInput`` this server cannot run: `problems` as (field, what is wrong)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{f}: {m}" for f, m in problems))


def parse_input(body: Any) -> RunAgentInput:
    """The ``RunAgentInput`` in a request body (camelCase, as the protocol writes it)."""
    from pydantic import ValidationError

    try:
        return RunAgentInput.model_validate(body)
    except ValidationError as exc:
        problems = [(".".join(str(p) for p in e["loc"]) or "body", e["msg"]) for e in exc.errors()]
        raise AguiInputError(problems) from None


def inputs_of(request: RunAgentInput, schema: dict[str, Any]) -> dict[str, Any]:
    """The run's inputs (see the module docstring); `schema`: the target's request schema."""
    names = list((schema.get("properties") or {}).keys())
    forwarded = request.forwarded_props
    if isinstance(forwarded, dict) and isinstance(forwarded.get("inputs"), dict):
        return dict(forwarded["inputs"])
    state = request.state
    if isinstance(state, dict) and state and set(state) <= set(names):
        return dict(state)
    said = [m for m in request.messages if getattr(m, "role", None) == "user"]
    text = _text_of(said[-1]) if said else None
    required = list(schema.get("required") or ())
    wanted = required if len(required) == 1 else names if len(names) == 1 else []
    if text is not None and len(wanted) == 1:
        return {wanted[0]: text}
    known = ", ".join(names) or "none"
    why = (
        f"cannot tell the target's inputs ({known}) from this input: give them as "
        "forwardedProps.inputs or as state, or serve a target with one input, which the last "
        "user message fills"
    )
    raise AguiInputError([("messages", why)])


def _text_of(message: Any) -> str | None:
    content = getattr(message, "content", None)
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: the text ones, joined
        parts = [getattr(p, "text", None) for p in content]
        return "".join(p for p in parts if isinstance(p, str)) or None
    return None


def answers_of(request: RunAgentInput) -> tuple[str, dict[str, Any], bool]:
    """From a resume: (the Kaizen run it continues, {interrupt id: answer}, cancelled?)."""
    runs: set[str] = set()
    answers: dict[str, Any] = {}
    cancelled = False
    for entry in request.resume or ():
        run_id, sep, interrupt_id = entry.interrupt_id.partition(":")
        if not sep or not interrupt_id:
            why = (
                f"{entry.interrupt_id!r} is not an interrupt this server asked (they look like "
                "'<run id>:<node>/<n>', as RUN_FINISHED's interrupt outcome gave them)"
            )
            raise AguiInputError([("resume.interruptId", why)])
        runs.add(run_id)
        if entry.status == "cancelled":
            cancelled = True
        else:
            answers[interrupt_id] = entry.payload
    if len(runs) != 1:
        raise AguiInputError([("resume", "every entry must answer interrupts of one run")])
    return runs.pop(), answers, cancelled


def encode(event: BaseEvent) -> bytes:
    return _ENCODER.encode(event).encode()


def _pointer(key: str) -> str:
    """A JSON Pointer reference token (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")


def _patch(op: str, path: str, value: Any) -> Any:
    """A one-operation RFC 6902 patch (the event's model validates it into its own types)."""
    return [{"op": op, "path": path, "value": value}]


def _ms(moment: Any = None) -> int:
    return int((moment if isinstance(moment, int | float) else time.time()) * 1000)


@dataclass
class AguiStream:
    """One AG-UI response: the run's native events in, AG-UI events out (see the module
    docstring). `run_id`: the Kaizen run (interrupt ids carry it)."""

    request: RunAgentInput
    run_id: str
    nodes: dict[str, str] = field(default_factory=dict)
    _open_steps: set[str] = field(default_factory=set)
    _messages: dict[str, str] = field(default_factory=dict)  # node -> its open text message
    _interrupts: list[dict[str, Any]] = field(default_factory=list)
    _started: bool = False
    _ended: bool = False

    def start(self) -> list[BaseEvent]:
        """RUN_STARTED (echoing the input) and the first state."""
        self._started = True
        return [
            RunStartedEvent(
                type=EventType.RUN_STARTED,
                thread_id=self.request.thread_id,
                run_id=self.request.run_id,
                protocol_version=PROTOCOL_VERSION,
                input=self.request,
                timestamp=_ms(),
            ),
            StateSnapshotEvent(
                type=EventType.STATE_SNAPSHOT,
                snapshot={"run_id": self.run_id, "status": "running", "nodes": dict(self.nodes)},
            ),
        ]

    def feed(self, kind: str, data: dict[str, Any]) -> list[BaseEvent]:
        """The AG-UI events for one native event of the run."""
        if self._ended:
            return []
        node = str(data.get("node_id", ""))
        when = _ms(data.get("time"))
        if kind in ("node_started", "node_resumed"):
            return self._step_start(node, when)
        if kind in _STEP_ENDS:
            return self._step_end(node, _STEP_ENDS[kind], when)
        if kind == "content":
            return self._text(node, str(data.get("text") or ""))
        if kind == "tool_start":
            return self._tool_start(node, data)
        if kind == "tool_complete":
            result = data.get("output") if data.get("error") is None else data.get("error")
            return [
                ToolCallResultEvent(
                    type=EventType.TOOL_CALL_RESULT,
                    message_id=f"tool-{uuid.uuid4().hex}",
                    tool_call_id=str(data.get("call_id")),
                    content=str(result or ""),
                    role="tool",
                )
            ]
        if kind == "interrupt":
            self._interrupts += list(data.get("interrupts") or ())
            return self._step_end(node, "waiting", when)
        if kind == "done":
            return self.end(str(data.get("status")), data.get("results"), data.get("error"))
        return []

    def end(self, status: str, results: Any = None, error: Any = None) -> list[BaseEvent]:
        """The run's last events: open messages and steps closed, then how it ended."""
        if self._ended:
            return []
        events: list[BaseEvent] = []
        for node in list(self._messages):
            events += self._close_text(node)
        for node in sorted(self._open_steps):
            events += self._step_end(node, "cancelled" if status == "cancelled" else status, None)
        self._ended = True
        events.append(
            StateDeltaEvent(
                type=EventType.STATE_DELTA,
                delta=_patch("replace", "/status", status),
            )
        )
        if status == "failed":
            events.append(
                RunErrorEvent(
                    type=EventType.RUN_ERROR,
                    message=str(error or "the run failed"),
                    code="failed",
                    timestamp=_ms(),
                )
            )
        elif status == "cancelled":
            events.append(self._finished(outcome=RunFinishedCancelledOutcome(type="cancelled")))
        elif status == "waiting" and self._interrupts:
            asked = [self._interrupt(i) for i in self._interrupts if not i.get("answered")]
            outcome = RunFinishedInterruptOutcome(type="interrupt", interrupts=asked)
            events.append(self._finished(outcome=outcome))
        else:
            events.append(self._finished(result=results))
        return events

    # -- the parts ---------------------------------------------------------------------------------

    def _finished(self, **how: Any) -> RunFinishedEvent:
        """RUN_FINISHED for this request's thread and run (`how`: its result or outcome)."""
        return RunFinishedEvent(
            type=EventType.RUN_FINISHED, thread_id=self.request.thread_id,
            run_id=self.request.run_id, timestamp=_ms(), **how,
        )  # fmt: skip

    def _status(self, node: str, status: str) -> StateDeltaEvent:
        op = "replace" if node in self.nodes else "add"
        self.nodes[node] = status
        return StateDeltaEvent(
            type=EventType.STATE_DELTA, delta=_patch(op, f"/nodes/{_pointer(node)}", status)
        )

    def _step_start(self, node: str, when: int) -> list[BaseEvent]:
        if node in self._open_steps:  # another attempt of a step still open
            return []
        self._open_steps.add(node)
        return [
            StepStartedEvent(type=EventType.STEP_STARTED, step_name=node, timestamp=when),
            self._status(node, "running"),
        ]

    def _step_end(self, node: str, status: str, when: int | None) -> list[BaseEvent]:
        events: list[BaseEvent] = list(self._close_text(node))
        if node in self._open_steps:
            self._open_steps.discard(node)
            events.append(
                StepFinishedEvent(
                    type=EventType.STEP_FINISHED, step_name=node, timestamp=when or _ms()
                )
            )
        events.append(self._status(node, status))
        return events

    def _text(self, node: str, text: str) -> list[BaseEvent]:
        if not text:
            return []
        events: list[BaseEvent] = []
        message = self._messages.get(node)
        if message is None:
            message = self._messages[node] = f"msg-{uuid.uuid4().hex}"
            events.append(
                TextMessageStartEvent(
                    type=EventType.TEXT_MESSAGE_START, message_id=message, role="assistant"
                )
            )
        events.append(
            TextMessageContentEvent(
                type=EventType.TEXT_MESSAGE_CONTENT, message_id=message, delta=text
            )
        )
        return events

    def _close_text(self, node: str) -> list[BaseEvent]:
        message = self._messages.pop(node, None)
        if message is None:
            return []
        return [TextMessageEndEvent(type=EventType.TEXT_MESSAGE_END, message_id=message)]

    def _tool_start(self, node: str, data: dict[str, Any]) -> list[BaseEvent]:
        call = str(data.get("call_id"))
        events: list[BaseEvent] = list(self._close_text(node))  # a call ends the text before it
        events += [
            ToolCallStartEvent(
                type=EventType.TOOL_CALL_START,
                tool_call_id=call,
                tool_call_name=str(data.get("tool")),
            ),
            ToolCallArgsEvent(
                type=EventType.TOOL_CALL_ARGS,
                tool_call_id=call,
                delta=json.dumps(data.get("arguments"), default=str),
            ),
            ToolCallEndEvent(type=EventType.TOOL_CALL_END, tool_call_id=call),
        ]
        return events

    def _interrupt(self, asked: dict[str, Any]) -> Interrupt:
        payload = asked.get("payload")
        message = payload if isinstance(payload, str) else json.dumps(payload, default=str)
        if asked.get("tool"):
            message = f"approve {asked['tool']}({json.dumps(asked.get('args'), default=str)})"
        schema = asked.get("schema")
        return Interrupt(
            id=f"{self.run_id}:{asked['id']}",
            reason="approval" if asked.get("kind") == "approval" else "input",
            message=message,
            response_schema=schema if isinstance(schema, dict) else None,
        )
