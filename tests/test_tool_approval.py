"""Tools that need a person's approval, and agents that pause for one.

Cases after the peers' own suites (the OpenAI Agents SDK's `needs_approval` tools and
`RunState` approve / reject; pydantic-ai's `requires_approval` and deferred tool results):
approve, reject with a reason the model reads, replaced arguments, a per-call decision, several
calls pending in one turn, raising instead of returning, async, a tool asking a question itself,
and the same agent as a node of a checkpointed workflow resumed from the store."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import kaizen
from kaizen import LocalRuntime, WorkflowBuilder
from kaizen.errors import (
    AgentWaitingError,
    InterruptAnswerError,
    RunNotWaitingError,
    UnknownInterruptError,
)
from kaizen.testing import ScriptedModel

SENT: list[tuple[str, str]] = []
PAID: list[int] = []


@pytest.fixture(autouse=True)
def _clear() -> None:
    SENT.clear()
    PAID.clear()


@kaizen.tool(requires_approval=True)
def send_email(to: str, body: str) -> str:
    """Send an email."""
    SENT.append((to, body))
    return f"sent to {to}"


@kaizen.tool(requires_approval=lambda args: args["amount"] > 100)
def pay(amount: int) -> str:
    """Pay an amount."""
    PAID.append(amount)
    return f"paid {amount}"


def _mailer(*replies: Any, **config: Any) -> tuple[Any, ScriptedModel]:
    model = ScriptedModel(list(replies))
    agent = kaizen.create_agent(
        "mailer", "task -> answer", {"model": model, **config}, tools=[send_email, pay]
    )
    return agent, model


EMAIL = ScriptedModel.tool_call("send_email", {"to": "ann@example.com", "body": "hello"})


def test_a_call_that_needs_approval_pauses_before_it_runs() -> None:
    agent, model = _mailer(EMAIL, {"answer": "done"})
    result = agent.execute(task="email ann")
    assert result.stop_reason == "waiting" and not result.success and result.error is None
    (asked,) = result.interrupts
    assert (asked.id, asked.kind, asked.tool) == ("mailer/0", "approval", "send_email")
    assert asked.args == {"to": "ann@example.com", "body": "hello"}
    assert SENT == [] and len(model.calls) == 1
    with pytest.raises(AttributeError, match="waits for a person"):
        _ = result.answer


def test_approved_the_call_runs_with_the_arguments_seen_and_the_model_is_not_asked_again() -> None:
    agent, model = _mailer(EMAIL, {"answer": "done"})
    waiting = agent.execute(task="email ann")
    result = agent.resume(waiting, {"mailer/0": True})
    assert result.success and result.answer == "done"
    assert SENT == [("ann@example.com", "hello")]
    assert len(model.calls) == 2  # the first turn's call, and the one after the tool's result
    assert [c.name for c in result.tool_calls] == ["send_email"]


def test_rejected_the_model_reads_the_reason_and_the_tool_never_runs() -> None:
    agent, model = _mailer(EMAIL, {"answer": "not sent"})
    waiting = agent.execute(task="email ann")
    result = agent.resume(waiting, {0: {"approved": False, "reason": "not to ann"}})
    assert result.answer == "not sent" and SENT == []
    tool_message = model.calls[-1].messages[-1]
    assert tool_message["role"] == "tool" and "rejected" in tool_message["content"]
    assert "not to ann" in tool_message["content"]
    assert result.tool_calls[0].error is not None and result.tool_calls[0].output is None


def test_an_approval_may_replace_the_arguments_and_they_are_checked_first() -> None:
    agent, _ = _mailer(EMAIL, {"answer": "done"})
    waiting = agent.execute(task="email ann")
    with pytest.raises(InterruptAnswerError, match="send_email"):
        agent.resume(waiting, {"mailer/0": {"approved": True, "args": {"to": 3}}})
    assert waiting.paused is not None  # refused before anything ran: still resumable
    fixed = {"to": "bob@example.com", "body": "hello"}
    result = agent.resume(waiting, {"mailer/0": {"approved": True, "args": fixed}})
    assert result.success and SENT == [("bob@example.com", "hello")]
    assert result.tool_calls[0].arguments == fixed


def test_the_decision_can_be_per_call_and_only_those_calls_wait() -> None:
    both = ScriptedModel.tool_calls([("pay", {"amount": 50}), ("pay", {"amount": 500})])
    agent, _ = _mailer(both, {"answer": "paid"})
    waiting = agent.execute(task="pay")
    assert [(i.tool, i.args) for i in waiting.interrupts] == [("pay", {"amount": 500})]
    assert PAID == []  # nothing of the turn runs before its approvals are in
    result = agent.resume(waiting, {"mailer/0": "approve"})
    assert sorted(PAID) == [50, 500] and result.answer == "paid"


def test_several_pending_calls_some_approved_some_rejected() -> None:
    calls = ScriptedModel.tool_calls(
        [("send_email", {"to": "a@x.io", "body": "1"}), ("send_email", {"to": "b@x.io",
                                                                        "body": "2"})]
    )  # fmt: skip
    agent, _ = _mailer(calls, {"answer": "half"})
    waiting = agent.execute(task="two emails")
    assert [i.id for i in waiting.interrupts] == ["mailer/0", "mailer/1"]
    partly = agent.resume(waiting, {"mailer/1": False})
    assert partly.stop_reason == "waiting" and [i.id for i in partly.interrupts] == ["mailer/0"]
    result = agent.resume(partly, {"mailer/0": True})
    assert SENT == [("a@x.io", "1")] and result.answer == "half"
    outcome = {r.arguments["to"]: r.error is None for r in result.tool_calls}
    assert outcome == {"a@x.io": True, "b@x.io": False}  # b's rejection is in the record too


def test_on_interrupt_raise_raises_with_the_result_to_resume() -> None:
    agent, _ = _mailer(EMAIL, {"answer": "done"}, on_interrupt="raise")
    with pytest.raises(AgentWaitingError) as caught:
        agent.execute(task="email ann")
    assert "send_email" in str(caught.value) and caught.value.interrupts[0].id == "mailer/0"
    assert agent.resume(caught.value.result, {"mailer/0": True}).answer == "done"


def test_a_resume_that_cannot_be_taken_is_refused_before_anything_runs() -> None:
    agent, _ = _mailer(EMAIL, {"answer": "done"})
    waiting = agent.execute(task="email ann")
    with pytest.raises(UnknownInterruptError, match="mailer/0"):
        agent.resume(waiting, {"mailer/5": True})
    with pytest.raises(InterruptAnswerError):
        agent.resume(waiting, {"mailer/0": "maybe"})
    agent.resume(waiting, {"mailer/0": True})
    with pytest.raises(RunNotWaitingError, match="resumed already"):
        agent.resume(waiting, {"mailer/0": True})
    assert SENT == [("ann@example.com", "hello")]  # once


def test_async_execute_and_resume() -> None:
    agent, model = _mailer(EMAIL, {"answer": "done"})

    async def go() -> Any:
        waiting = await agent.execute_async(task="email ann")
        assert waiting.stop_reason == "waiting"
        return await agent.resume_async(waiting, {"mailer/0": True})

    result = asyncio.run(go())
    assert result.answer == "done" and SENT == [("ann@example.com", "hello")]
    assert len(model.calls) == 2


@kaizen.tool
def ask_user(question: str) -> str:
    """Ask the user a question."""
    return str(kaizen.interrupt({"question": question}))


def test_a_tool_asking_a_question_pauses_the_loop_and_gets_the_answer() -> None:
    model = ScriptedModel(
        [ScriptedModel.tool_call("ask_user", {"question": "which city?"}), {"answer": "Oslo"}]
    )
    agent = kaizen.create_agent("guide", "task -> answer", {"model": model}, tools=[ask_user])
    waiting = agent.execute(task="plan a trip")
    (asked,) = waiting.interrupts
    assert asked.kind == "input" and asked.payload == {"question": "which city?"}
    result = agent.resume(waiting, {"guide/0": "Oslo"})
    assert result.answer == "Oslo" and len(model.calls) == 2
    assert result.tool_calls[0].output == "Oslo"


def test_in_a_checkpointed_workflow_the_pause_is_stored_and_resumed_from_the_store(
    store_location: str,
    tmp_path: Path,
) -> None:
    agent, model = _mailer(EMAIL, {"answer": "done"})

    def build() -> Any:
        wf = WorkflowBuilder("mail")
        wf.add_node_instance(agent.to_workflow_node("mail"))
        return wf.build()

    store = store_location
    _, record = LocalRuntime(checkpoint=store).execute_with_record(build(), {"mail": {"task": "x"}})
    assert record.status == "waiting" and record.interrupts[0].tool == "send_email"
    results, done = LocalRuntime(checkpoint=store).resume_with_record(
        record.run_id, build(), answers={"mail/0": True}, by="ann"
    )
    assert done.status == "completed" and results["mail"] == {"answer": "done"}
    assert SENT == [("ann@example.com", "hello")] and len(model.calls) == 2
    assert done.interrupts[0].answered_by == "ann"


def test_requires_approval_must_be_a_bool_or_a_function() -> None:
    def echo(x: str) -> str:
        return x

    with pytest.raises(kaizen.ConfigError, match="requires_approval"):
        kaizen.tool(requires_approval="yes")(echo)  # type: ignore[arg-type]
