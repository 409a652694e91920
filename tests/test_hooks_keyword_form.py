"""Hooks written in the deprecated keyword-argument form keep working for one release: they hear
every moment with the same names and values an event-form hook reads off the event, and their
class is warned about once."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import pytest

import kaizen
from kaizen import LocalRuntime, WorkflowBuilder, moments
from kaizen.interrupts import Interrupt
from kaizen.moments import MOMENTS, Moment
from kaizen.runtime import NodeStatus, RunRecord, RunStatus
from kaizen.runtime.hooks import HookSet, MomentHook
from kaizen.testing import ScriptedModel


class KeywordLog:
    """Every moment, in the keyword-argument form (each method spells its arguments out, as
    hooks written before events did)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def on_run_start(self, *, run_id: str, workflow: Any, record: Any) -> None:
        self.seen.append(("run_start", {"run_id": run_id, "workflow": workflow, "record": record}))

    def on_run_finish(self, *, run_id: str, status: Any, record: Any, error: Any) -> None:
        moment = {"run_id": run_id, "status": status, "record": record, "error": error}
        self.seen.append(("run_finish", moment))

    def on_node_start(self, **moment: Any) -> None:
        self.seen.append(("node_start", moment))

    def on_node_retry(self, **moment: Any) -> None:
        self.seen.append(("node_retry", moment))

    def on_node_skip(self, *, run_id: str, node_id: str, reason: str, time: float) -> None:
        moment = {"run_id": run_id, "node_id": node_id, "reason": reason, "time": time}
        self.seen.append(("node_skip", moment))

    def on_node_finish(self, **moment: Any) -> None:
        self.seen.append(("node_finish", moment))

    def on_node_wait(self, **moment: Any) -> None:
        self.seen.append(("node_wait", moment))

    def on_node_resume(self, **moment: Any) -> None:
        self.seen.append(("node_resume", moment))

    def on_model_call_start(self, **moment: Any) -> None:
        self.seen.append(("model_call_start", moment))

    def on_model_call_finish(self, **moment: Any) -> None:
        self.seen.append(("model_call_finish", moment))

    def on_tool_call_start(self, **moment: Any) -> None:
        self.seen.append(("tool_call_start", moment))

    def on_tool_call_finish(self, **moment: Any) -> None:
        self.seen.append(("tool_call_finish", moment))

    def on_chunk(self, *, run_id: str, node_id: str, chunk: str) -> None:
        self.seen.append(("chunk", {"run_id": run_id, "node_id": node_id, "chunk": chunk}))

    def on_breaker_change(self, **moment: Any) -> None:
        self.seen.append(("breaker_change", moment))


class EventLog(MomentHook):
    """Every moment, as events: what the keyword form must match."""

    def __init__(self) -> None:
        self.seen: list[Moment] = []

    def hears(self, moment: type[Moment]) -> bool:
        return True

    def on_moment(self, event: Moment) -> None:
        self.seen.append(event)


def as_keywords(event: Moment) -> tuple[str, dict[str, Any]]:
    fields = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
    return event.moment, fields


def one_node() -> kaizen.Workflow:
    wb = WorkflowBuilder("one")
    wb.add_node(lambda: 1, "one")
    return wb.build()


def one_of_each() -> list[Moment]:
    workflow = one_node()
    record = RunRecord("r", "w", started=1.0)
    tool = moments.ToolCallRecord("c1", "add", {"a": 1}, output="2", started=3.0, duration=0.5)
    failure = ConnectionError("flaky")
    asked = Interrupt("ask/0", "ask", 0, {"question": "ok?"}, created_at=4.5)
    return [
        moments.RunStarted("r", workflow, record),
        moments.NodeStarted("r", "n", "FunctionNode", 1, 2.0),
        moments.NodeRetrying("r", "n", 1, failure, 0.25),
        moments.ModelCallStarted("r", "n", "m", [{"role": "user", "content": "hi"}]),
        moments.ChunkReceived("r", "n", "he"),
        moments.BreakerChanged("r", "n", "m", object(), "closed"),
        moments.ModelCallFinished("r", "n", "m", moments.Usage(3, 4, 0.01, 1), 0.5, None, failure),
        moments.ToolCallStarted("r", "n", "add", {"a": 1}, "c1"),
        moments.ToolCallFinished("r", "n", "add", "c1", tool),
        moments.NodeFinished("r", "n", NodeStatus.COMPLETED, {"result": 1}, None, 2.0, 3.0, 2),
        moments.NodeSkipped("r", "after", "upstream failed", 4.0),
        moments.NodeWaiting("r", "ask", (asked,), {"saved": 1}, 4.5),
        moments.NodeResumed("r", "ask", (asked,), 4.6),
        moments.RunFinished("r", RunStatus.FAILED, record, failure),
    ]


def test_every_moment_reaches_a_keyword_form_hook_with_the_same_values() -> None:
    events = one_of_each()
    assert {type(e) for e in events} == set(MOMENTS)
    old = KeywordLog()
    with pytest.warns(DeprecationWarning, match="KeywordLog takes moments as keyword"):
        hooks = HookSet([old])
    for event in events:
        assert hooks.observes(type(event))
        hooks.fire(event)
    assert old.seen == [as_keywords(e) for e in events]
    for (_, heard), event in zip(old.seen, events, strict=True):  # the very objects, not copies
        assert all(value is getattr(event, name) for name, value in heard.items())


@kaizen.tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def test_a_keyword_form_hook_hears_a_real_run_as_an_event_form_hook_does() -> None:
    model = ScriptedModel(
        [
            ScriptedModel.reply("Adding."),
            ScriptedModel.tool_call("add", {"a": 1, "b": 2}),
            ScriptedModel.tool_call("complete", {"answer": "3"}),
        ]
    )
    calc = kaizen.Agent("calc", "question -> answer: str", {"model": model}, tools=[add])
    attempts = [0]

    def flaky(answer: str) -> str:
        attempts[0] += 1
        if attempts[0] < 2:
            raise ConnectionError("flaky")
        return answer

    def broken(answer: str) -> str:
        raise ValueError("broken")

    wb = WorkflowBuilder("run")
    wb.add_agent(calc, "calc")
    wb.add_node(flaky, "flaky", retries=2)
    wb.add_node(broken, "broken")
    wb.add_node(lambda result: result, "after")
    wb.add_connection("calc", "answer", "flaky", "answer")
    wb.add_connection("calc", "answer", "broken", "answer")
    wb.add_connection("broken", "after")
    old, new = KeywordLog(), EventLog()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        runtime = LocalRuntime(failure_policy="continue", hooks=[old, new])
    runtime.execute(wb.build(), {"question": "1 + 2?"})
    heard = {name for name, _ in old.seen}
    assert heard >= {"run_start", "node_start", "node_retry", "node_skip", "node_finish",
                     "model_call_start", "model_call_finish", "tool_call_start",
                     "tool_call_finish", "chunk", "run_finish"}  # fmt: skip
    assert old.seen == [as_keywords(e) for e in new.seen]


def test_the_keyword_form_is_warned_about_once_per_class() -> None:
    class Late(kaizen.NodeFinishHook):
        def on_node_finish(self, *, node_id: str, **moment: Any) -> None:
            self.node_id = node_id

    with pytest.warns(DeprecationWarning, match="Late takes moments as keyword arguments"):
        LocalRuntime(hooks=[Late()])
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        hook = Late()
        LocalRuntime(hooks=[hook]).execute(one_node())
    assert hook.node_id == "one"


def test_an_event_form_hook_is_not_warned_about() -> None:
    class Now(kaizen.NodeFinishHook):
        def on_node_finish(self, event: moments.NodeFinished) -> None:
            self.status = event.status

    hook = Now()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        LocalRuntime(hooks=[hook]).execute(one_node())
    assert hook.status is NodeStatus.COMPLETED
