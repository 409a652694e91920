"""Lifecycle hooks: the moments a user's hook sees, in order, per runtime, per run and per
agent; hooks that raise are recorded and never leave the run half-updated; vetoes refuse calls."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import kaizen
from kaizen import (
    LocalRuntime,
    ModelCallFinishHook,
    ModelCallStartHook,
    NodeFinishHook,
    NodeRetryHook,
    NodeSkipHook,
    NodeStartHook,
    RunFinishHook,
    RunStartHook,
    WorkflowBuilder,
    moments,
)
from kaizen.errors import VetoError
from kaizen.runtime import EventKind, NodeStatus, RunEvent, RunStatus
from kaizen.testing import ScriptedModel
from kaizen.workflow import Workflow


class Log(
    RunStartHook,
    RunFinishHook,
    NodeStartHook,
    NodeFinishHook,
    NodeSkipHook,
    NodeRetryHook,
    ModelCallStartHook,
    ModelCallFinishHook,
):
    """Writes down every moment it sees."""

    def __init__(self, name: str = "log") -> None:
        self.name = name
        self.seen: list[tuple[Any, ...]] = []

    def on_run_start(self, event: moments.RunStarted) -> None:
        self.seen.append(("run_start", event.workflow.name))

    def on_run_finish(self, event: moments.RunFinished) -> None:
        self.seen.append(("run_finish", str(event.status)))

    def on_node_start(self, event: moments.NodeStarted) -> None:
        self.seen.append(("node_start", event.node_id))

    def on_node_finish(self, event: moments.NodeFinished) -> None:
        outputs = dict(event.outputs or {})
        self.seen.append(("node_finish", event.node_id, str(event.status), outputs))

    def on_node_skip(self, event: moments.NodeSkipped) -> None:
        self.seen.append(("node_skip", event.node_id))

    def on_node_retry(self, event: moments.NodeRetrying) -> None:
        self.seen.append(("node_retry", event.node_id, event.attempt))

    def on_model_call_start(self, event: moments.ModelCallStarted) -> None:
        self.seen.append(("model_call_start", event.node_id))

    def on_model_call_finish(self, event: moments.ModelCallFinished) -> None:
        reply = event.reply is not None
        self.seen.append(("model_call_finish", event.node_id, event.usage.calls, reply))

    def moments(self, kind: str) -> list[tuple[Any, ...]]:
        return [s for s in self.seen if s[0] == kind]


def chain() -> Workflow:
    def inc(x: int) -> int:
        return x + 1

    def double(result: int) -> int:
        return 2 * result

    wb = WorkflowBuilder("chain")
    wb.add_node(inc, "inc")
    wb.add_node(double, "double")
    wb.add_connection("inc", "double")
    return wb.build()


def test_a_runtime_hook_sees_every_moment_in_order() -> None:
    log = Log()
    LocalRuntime(hooks=[log]).execute(chain(), {"x": 1})
    assert log.seen == [
        ("run_start", "chain"),
        ("node_start", "inc"),
        ("node_finish", "inc", "completed", {"result": 2}),
        ("node_start", "double"),
        ("node_finish", "double", "completed", {"result": 4}),
        ("run_finish", "completed"),
    ]


def test_hooks_for_one_run_and_added_later() -> None:
    runtime = LocalRuntime()
    once, always = Log("once"), Log("always")
    runtime.execute(chain(), {"x": 1}, hooks=[once])
    remove = runtime.add_hook(always)
    runtime.execute(chain(), {"x": 1})
    remove()
    runtime.execute(chain(), {"x": 1})
    assert len(once.moments("run_start")) == 1
    assert len(always.moments("run_start")) == 1


def test_retries_skips_and_failures_are_moments_too() -> None:
    calls = [0]

    def flaky() -> int:
        calls[0] += 1
        if calls[0] < 3:
            raise ConnectionError("flaky")
        return 1

    def broken() -> int:
        raise ValueError("broken")

    wb = WorkflowBuilder()
    wb.add_node(flaky, "flaky", retries=3)
    wb.add_node(broken, "broken")
    wb.add_node(lambda result: result, "after")
    wb.add_connection("broken", "after")
    log = Log()
    LocalRuntime(failure_policy="continue", hooks=[log]).execute(wb.build())
    assert log.moments("node_retry") == [("node_retry", "flaky", 1), ("node_retry", "flaky", 2)]
    assert ("node_finish", "broken", "failed", {}) in log.seen
    assert log.moments("node_skip") == [("node_skip", "after")]
    assert log.seen[-1] == ("run_finish", "failed")


class Broken(NodeFinishHook, RunFinishHook):
    name = "broken-hook"

    def on_node_finish(self, event: moments.NodeFinished) -> None:
        raise RuntimeError("hook bug")

    def on_run_finish(self, event: moments.RunFinished) -> None:
        raise KeyError("also broken")


def test_a_hook_that_raises_is_recorded_and_the_run_is_whole(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = Log()
    results, record = LocalRuntime(hooks=[Broken(), log]).execute_with_record(chain(), {"x": 1})
    assert results["double"] == {"result": 4}
    assert record.status is RunStatus.COMPLETED
    assert all(n.status is NodeStatus.COMPLETED and n.finished for n in record.nodes.values())
    assert [(e.hook, e.moment, e.node_id) for e in record.hook_errors] == [
        ("broken-hook", "node_finish", "inc"),
        ("broken-hook", "node_finish", "double"),
        ("broken-hook", "run_finish", None),
    ]
    assert record.hook_errors[0].error == "RuntimeError: hook bug"
    assert len(log.moments("node_finish")) == 2  # the hook after the broken one still ran
    assert "broken-hook failed on node_finish of node 'inc'" in caplog.text


def test_an_object_that_is_no_hook_is_refused_at_once() -> None:
    with pytest.raises(TypeError, match="not a lifecycle hook"):
        LocalRuntime(hooks=[object()])
    with pytest.raises(TypeError, match="not a lifecycle hook"):
        kaizen.create_agent("qa", "question -> answer", hooks=[print])


def test_an_agents_hooks_see_its_own_node_and_model_calls_only() -> None:
    model = ScriptedModel(lambda messages: {"answer": "a"})
    mine = Log("mine")
    watched = kaizen.create_agent("watched", "question -> answer", {"model": model}, hooks=[mine])
    other_model = ScriptedModel(lambda messages: {"question": "q"})
    other = kaizen.create_agent("other", "answer -> question", {"model": other_model})
    wb = WorkflowBuilder()
    wb.add_agent(watched, "watched")
    wb.add_agent(other, "other")
    wb.add_connection("watched", "other")
    LocalRuntime().execute(wb.build(), {"question": "q"})
    assert [s[:2] for s in mine.seen] == [
        ("node_start", "watched"),
        ("model_call_start", "watched"),
        ("model_call_finish", "watched"),
        ("node_finish", "watched"),
    ]
    assert mine.moments("model_call_finish") == [("model_call_finish", "watched", 1, True)]
    watched.execute(question="again")  # the agent's own runs too
    assert len(mine.moments("model_call_finish")) == 2


class Refuse(ModelCallStartHook):
    def __init__(self, error: Exception) -> None:
        self.error = error

    def on_model_call_start(self, event: moments.ModelCallStarted) -> None:
        raise self.error


def test_a_veto_refuses_the_call_and_a_plain_error_does_not() -> None:
    model = ScriptedModel(lambda messages: {"answer": "a"})
    refused = kaizen.create_agent(
        "refused", "question -> answer", {"model": model}, hooks=[Refuse(VetoError("not now"))]
    )
    with pytest.raises(VetoError, match="not now"):
        refused.execute(question="q")
    assert model.calls == []
    buggy = kaizen.create_agent(
        "buggy", "question -> answer", {"model": model}, hooks=[Refuse(ValueError("oops"))]
    )
    result = buggy.execute(question="q")
    assert result.answer == "a"
    record = buggy.runtime.get_record(result.metadata.run_id)
    assert [e.moment for e in record.hook_errors] == ["model_call_start"]


def test_a_model_call_inside_a_function_node_is_counted_and_observed() -> None:
    from kaizen.llm import complete

    model = ScriptedModel(["hello"])

    def ask(prompt: str) -> str:
        return complete([{"role": "user", "content": prompt}], model=model).text

    wb = WorkflowBuilder()
    wb.add_node(ask, "ask")
    log = Log()
    _, record = LocalRuntime(hooks=[log]).execute_with_record(wb.build(), {"prompt": "hi"})
    assert record.nodes["ask"].usage.calls == 1 and record.usage.total_tokens > 0
    assert log.moments("model_call_finish") == [("model_call_finish", "ask", 1, True)]


def test_cancelled_nodes_are_reported_as_such() -> None:
    async def slow() -> int:
        await asyncio.sleep(5)
        return 1

    def boom() -> int:
        time.sleep(0.05)
        raise RuntimeError("boom")

    wb = WorkflowBuilder()
    wb.add_node(slow, "slow")
    wb.add_node(boom, "boom")
    events: list[RunEvent] = []
    with pytest.raises(kaizen.NodeExecutionError):
        LocalRuntime().execute(wb.build(), on_event=events.append)
    kinds = {(e.kind, e.node_id) for e in events}
    assert (EventKind.NODE_CANCELLED, "slow") in kinds
    assert (EventKind.NODE_FAILED, "boom") in kinds
    assert events[-1].kind is EventKind.RUN_FINISHED


def test_the_record_is_kept_without_building_run_or_node_events() -> None:
    from kaizen.moments import MOMENTS, ToolCallFinished
    from kaizen.runtime.hooks import HookSet
    from kaizen.runtime.record import RunRecord
    from kaizen.runtime.recorder import Recorder

    # a run's own hooks are its recorder: the driver builds an event only for a moment some
    # hook hears, so a run without hooks builds none for its run and node moments
    own = HookSet([Recorder(RunRecord("r", "w", started=0.0))])
    heard = {moment for moment in MOMENTS if own.observes(moment)}
    assert heard == {moments.ModelCallFinished, ToolCallFinished}
    _, record = LocalRuntime().execute_with_record(chain(), {"x": 1})
    assert [n.status for n in record.nodes.values()] == [NodeStatus.COMPLETED] * 2
    assert record.status is RunStatus.COMPLETED and record.finished is not None


def test_subscribers_and_sse_frames_see_what_each_moment_publishes() -> None:
    from kaizen.runtime.hooks import MomentHook
    from kaizen.serve.sse import frame

    class Every(MomentHook):
        def __init__(self) -> None:
            self.events: list[moments.Moment] = []

        def hears(self, moment: type[moments.Moment]) -> bool:
            return True

        def on_moment(self, event: moments.Moment) -> None:
            self.events.append(event)

    every, subscribed = Every(), []
    LocalRuntime(hooks=[every]).execute(chain(), {"x": 1}, on_event=subscribed.append)
    driven = [e for e in every.events if e.on_driver]
    assert [e.kind for e in subscribed] == [
        "run_started", "node_started", "node_finished", "node_started", "node_finished",
        "run_finished",
    ]  # fmt: skip
    for event, run_event in zip(driven, subscribed, strict=True):
        kind, data = frame(event) or ("", {})  # what `kaizen serve` sends
        assert (kind, data.pop("run_id"), data.pop("node_id", None)) == (
            run_event.kind, run_event.run_id, run_event.node_id,
        )  # fmt: skip
        sent_at = data.pop("time")
        assert data == run_event.data
        if run_event.node_id is not None:  # a node moment's own time, not when it was sent
            assert sent_at == run_event.time
