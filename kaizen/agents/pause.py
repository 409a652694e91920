"""An agent's loop paused for a person, and continued: tool approvals and the saved trajectory.

When a turn's tool calls include one whose tool needs approval (`Tool.requires_approval`), the
loop asks for every such call before any of that turn's calls run (`approvals`): one interrupt
of kind "approval" per call, carrying the tool name and the arguments, numbered in the order
the model asked. Unanswered ones pause the node (`NodePaused`) with the loop's trajectory as
its saved state (`LoopState`: the conversation, the tool calls so far, the counters, the calls
of the paused turn, and the index its approvals were numbered from). Resumed, the loop restores
that state and goes straight to the paused turn: the model is not asked again, and an approved
call runs with exactly the arguments the person saw (or the ones they gave instead); a rejected
call is answered, for the model, with the person's reason. A tool that calls
`kaizen.interrupt(...)` itself pauses the loop the same way, and its turn runs again on resume.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from kaizen.agents.result import ExecutionReport, ExecutionResult, PausedAgent
from kaizen.errors import (
    AgentWaitingError,
    InterruptAnswerError,
    RunNotWaitingError,
    UnknownInterruptError,
)
from kaizen.interrupts import (
    APPROVAL_SCHEMA,
    ApprovalDecision,
    InterruptRequest,
    NodePaused,
    resumption,
)
from kaizen.llm.transport import ToolCallRequest
from kaizen.runtime.context import current_node_context
from kaizen.runtime.record import ToolCallRecord
from kaizen.store.interrupts import check_answer
from kaizen.tools.runner import parse_arguments
from kaizen.tools.schema import ToolArgumentError

if TYPE_CHECKING:
    from kaizen.agents.agent import Agent
    from kaizen.interrupts import Interrupt
    from kaizen.tools.tool import Tool

__all__ = [
    "LoopState",
    "approvals",
    "paused",
    "restored",
    "resumed_answers",
    "waiting_result",
]

_MARK = "kaizen.agent-loop/1"  # what a saved state of this loop says it is


@dataclass
class LoopState:
    """What a paused loop saved: everything `act` needs to continue the paused turn."""

    messages: list[dict[str, Any]]
    records: list[ToolCallRecord]
    turns: int
    reminders: int
    last_call: tuple[str, str] | None
    repeats: int
    failures: dict[str, int]
    failed_total: int
    pending: list[ToolCallRequest] = field(default_factory=list)  # the paused turn's calls
    complete_errors: list[ToolCallRecord] = field(default_factory=list)
    first_index: int = 0  # the paused turn's first interrupt index

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": _MARK,
            "messages": self.messages,
            "records": [asdict(r) for r in self.records],
            "turns": self.turns,
            "reminders": self.reminders,
            "last_call": list(self.last_call) if self.last_call else None,
            "repeats": self.repeats,
            "failures": self.failures,
            "failed_total": self.failed_total,
            "pending": [
                {"id": c.id, "name": c.name, "arguments": c.arguments} for c in self.pending
            ],
            "complete_errors": [asdict(r) for r in self.complete_errors],
            "first_index": self.first_index,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LoopState:
        last = data.get("last_call")
        return cls(
            messages=[dict(m) for m in data["messages"]],
            records=[ToolCallRecord(**r) for r in data["records"]],
            turns=int(data["turns"]),
            reminders=int(data["reminders"]),
            last_call=(str(last[0]), str(last[1])) if last else None,
            repeats=int(data["repeats"]),
            failures={str(k): int(v) for k, v in data["failures"].items()},
            failed_total=int(data["failed_total"]),
            pending=[ToolCallRequest(c["id"], c["name"], c["arguments"]) for c in data["pending"]],
            complete_errors=[ToolCallRecord(**r) for r in data["complete_errors"]],
            first_index=int(data["first_index"]),
        )


def restored() -> LoopState | None:
    """The state a paused loop saved, when this attempt resumes one (else None)."""
    current = resumption()
    state = current.state if current is not None else None
    if not isinstance(state, Mapping) or state.get("kind") != _MARK:
        return None
    saved = LoopState.from_json(state)
    assert current is not None
    current.asked = saved.first_index  # the paused turn's interrupts keep their numbers
    return saved


def paused(pause: NodePaused, state: LoopState) -> NodePaused:
    """The same pause, carrying the loop's state."""
    return NodePaused(pause.requests, state.to_json())


def approvals(
    calls: Sequence[ToolCallRequest], tools: Mapping[str, Tool], state: LoopState
) -> tuple[list[ToolCallRequest], list[ToolCallRecord]]:
    """Ask for the approvals this turn's `calls` need (see the module docstring). Returns the
    calls to run (an approved call with the arguments the person gave, if any) and the records
    of rejected calls (their error is what the model reads); raises `NodePaused` with `state`
    while an approval is unanswered."""
    current = resumption()
    if current is not None:
        state.first_index = current.asked  # (a tool's own interrupt numbers from here too)
    needs = [call for call in calls if _needs_approval(call, tools)]
    if not needs:
        return list(calls), []
    if current is None:
        raise RuntimeError(
            "a tool that needs approval was called outside a Kaizen runtime: run the agent "
            "with agent.execute() or in a workflow"
        )
    decisions: dict[str, ApprovalDecision] = {}
    unanswered: list[InterruptRequest] = []
    for call in needs:
        index = current.next_index()
        known, answer = current.answer(index)
        if known:
            decisions[call.id] = ApprovalDecision.parse(answer)
            continue
        arguments = parse_arguments(call.arguments)
        payload = {
            "question": f"Approve the call of tool {call.name!r}?",
            "tool": call.name,
            "args": arguments,
        }
        unanswered.append(InterruptRequest(index, payload, APPROVAL_SCHEMA, "approval",
                                           call.name, arguments))  # fmt: skip
    if unanswered:
        raise NodePaused(tuple(unanswered), state.to_json())
    runnable: list[ToolCallRequest] = []
    rejected: list[ToolCallRecord] = []
    context = current_node_context()
    for call in calls:
        decision = decisions.get(call.id)
        if decision is None:
            runnable.append(call)
        elif not decision.approved:
            reason = f": {decision.reason}" if decision.reason else ""
            who = f" ({decision.by})" if decision.by else ""
            rejected.append(
                ToolCallRecord(
                    call.id,
                    call.name,
                    parse_arguments(call.arguments),
                    error=f"The user{who} rejected this call of {call.name!r}{reason}. Do not "
                    "call it again with these arguments; go on without it or ask differently.",
                )
            )
            if context is not None:  # the hooks and the record hear of it like any call
                context.tool_call_finished(rejected[-1])
        elif decision.args is not None:
            runnable.append(ToolCallRequest(call.id, call.name, json.dumps(dict(decision.args))))
        else:
            runnable.append(call)
    return runnable, rejected


def _needs_approval(call: ToolCallRequest, tools: Mapping[str, Tool]) -> bool:
    """The call names a tool that needs approval for these arguments (a call that cannot run
    at all, bad arguments or an unknown tool, needs none: it fails as it would)."""
    tool = tools.get(call.name)
    if tool is None or tool.requires_approval is False:
        return False
    try:
        arguments = tool.validate(parse_arguments(call.arguments))
    except (ValueError, ToolArgumentError):
        return False
    return tool.needs_approval(arguments)


# -- a direct `agent.execute` that paused, and `agent.resume` ----------------------------------


def waiting_result(
    agent: Agent,
    report: ExecutionReport,
    run_id: str,
    execution_time: float,
    values: Mapping[str, Any],
    answers: Mapping[int, Any],
    *,
    asynchronous: bool,
) -> ExecutionResult:
    """The result of an execution that paused: ``stop_reason == "waiting"``, its interrupts,
    and what `resume` continues from; raised as `AgentWaitingError` with the agent config
    ``on_interrupt="raise"``."""
    waiting = report.waiting
    assert waiting is not None
    node_run = agent.runtime.get_record(run_id).nodes.get(agent.name)
    result = ExecutionResult(
        {},
        raw=report.raw,
        metadata=report.metadata(agent.name, run_id, execution_time),
        success=False,
        tool_calls=node_run.tool_calls if node_run is not None else (),
        stop_reason="waiting",
        interrupts=waiting.interrupts,
        paused=PausedAgent(dict(values), dict(answers), waiting.state, asynchronous),
    )
    if agent.settings().on_interrupt == "raise":
        asked = "; ".join(_described(i) for i in waiting.interrupts)
        raise AgentWaitingError(
            f"agent {agent.name!r} waits for a person: {asked}; answer with "
            "agent.resume(error.result, {interrupt_id: answer})",
            agent=agent.name, interrupts=waiting.interrupts, result=result,
        )  # fmt: skip
    return result


def _described(interrupt: Interrupt) -> str:
    if interrupt.kind == "approval" and interrupt.tool:
        return f"{interrupt.id} approves {interrupt.tool}({json.dumps(interrupt.args)})"
    return f"{interrupt.id} asks {json.dumps(interrupt.payload, default=str)}"


def resumed_answers(
    agent: Agent, result: ExecutionResult, answers: Mapping[str | int, Any]
) -> tuple[PausedAgent, dict[int, Any]]:
    """Check `answers` for waiting `result` (by interrupt id or index) before anything runs;
    the paused state and every answer so far, by index. Typed errors, nothing consumed:
    `RunNotWaitingError` (the result does not wait, or was resumed already),
    `UnknownInterruptError`, `InterruptAnswerError` (the wrong shape, or an approval's
    replacement arguments that do not fit the tool)."""
    paused = result.paused
    run_id = str(result.metadata.get("run_id", ""))
    if paused is None:
        status = "resumed already" if result.stop_reason == "waiting" else result.stop_reason
        raise RunNotWaitingError(
            f"agent {agent.name!r}: this result waits for no answer ({status}); resume the "
            "latest result", run_id=run_id, status=str(status),
        )  # fmt: skip
    asked = {i.id: i for i in result.interrupts}
    by_index = {i.index: i for i in result.interrupts}
    chosen: dict[int, Any] = {}
    for key, value in answers.items():
        interrupt = by_index.get(key) if isinstance(key, int) else asked.get(str(key))
        if interrupt is None:
            raise UnknownInterruptError(
                f"agent {agent.name!r}: no interrupt {key!r} waits in this result; the open "
                f"ones are {', '.join(asked) or 'none'}",
                run_id=run_id, interrupt_id=str(key), open=list(asked),
            )  # fmt: skip
        check_answer(run_id, interrupt, value)
        if interrupt.kind == "approval" and interrupt.tool:
            _check_replacement(agent, run_id, interrupt, value)
        chosen[interrupt.index] = value
    return paused, {**paused.answers, **chosen}


def _check_replacement(agent: Agent, run_id: str, interrupt: Interrupt, value: Any) -> None:
    """An approval that replaces the call's arguments gives ones the tool accepts."""
    decision = ApprovalDecision.parse(value)
    if decision.args is None:
        return
    tool = next((t for t in agent.tools if t.name == interrupt.tool), None)
    if tool is None:
        return
    try:
        tool.validate(dict(decision.args))
    except (ValueError, ToolArgumentError) as exc:
        raise InterruptAnswerError(
            f"agent {agent.name!r}: the arguments given for {interrupt.tool!r} in the answer "
            f"to {interrupt.id!r} do not fit the tool: {exc}",
            run_id=run_id, interrupt_id=interrupt.id, problem=str(exc),
        ) from None  # fmt: skip
