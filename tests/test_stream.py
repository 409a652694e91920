"""Streaming: `agent.stream`, `agent.stream_sync` and `LocalRuntime.stream` yield typed events as
the run happens, and end with `Done` or `Failed`."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import kaizen
from kaizen import ContentDelta, Done, LocalRuntime, ToolComplete, ToolStart, WorkflowBuilder
from kaizen.errors import ModelError, ParameterError
from kaizen.runtime.stream import Failed, StreamEvent
from kaizen.testing import ScriptedModel


@kaizen.tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def calculator(model: ScriptedModel, name: str = "calc", **config: Any) -> kaizen.Agent:
    return kaizen.Agent(name, "question -> answer: str", {"model": model, **config}, tools=[add])


def script() -> ScriptedModel:
    return ScriptedModel(
        [
            ScriptedModel.reply("Adding now."),  # text first, then a turn with tool calls
            ScriptedModel.tool_calls([("add", {"a": 1, "b": 2}), ("add", {"a": 3, "b": 4})]),
            ScriptedModel.tool_call("complete", {"answer": "3 and 7"}),
        ]
    )


async def collect(events: Any) -> list[StreamEvent]:
    return [event async for event in events]


def check_events(events: list[StreamEvent], node_id: str = "calc") -> None:
    text = "".join(e.text for e in events if isinstance(e, ContentDelta))
    assert text.startswith("Adding now.")
    starts = [e for e in events if isinstance(e, ToolStart)]
    completes = [e for e in events if isinstance(e, ToolComplete)]
    assert [(s.name, s.arguments) for s in starts] == [
        ("add", {"a": 1, "b": 2}),
        ("add", {"a": 3, "b": 4}),
    ]
    assert sorted(c.output or "" for c in completes) == ["3", "7"]
    assert {c.call_id for c in completes} == {s.call_id for s in starts}
    for complete in completes:  # each call completes after it starts
        start_at = next(
            i
            for i, e in enumerate(events)
            if isinstance(e, ToolStart) and e.call_id == complete.call_id
        )
        assert events.index(complete) > start_at
    assert all(getattr(e, "node_id", node_id) == node_id for e in events[:-1])
    done = events[-1]
    assert isinstance(done, Done) and done.result.answer == "3 and 7"
    assert done.run_id == done.result.metadata.run_id


def test_agent_stream_yields_text_tool_calls_and_done() -> None:
    check_events(asyncio.run(collect(calculator(script()).stream(question="?"))))


def test_agent_stream_sync_yields_the_same() -> None:
    check_events(list(calculator(script()).stream_sync(question="?")))


def test_streamed_model_calls_are_streams_only_when_someone_listens() -> None:
    model = script()
    calculator(model).execute(question="?")
    assert all("stream" not in call.params for call in model.calls)
    model = script()
    list(calculator(model).stream_sync(question="?"))
    assert all(call.params.get("stream") for call in model.calls)


def test_a_failing_agent_ends_its_stream_with_error() -> None:
    model = ScriptedModel([400])
    events = list(calculator(model).stream_sync(question="?"))
    assert len(events) == 1 and isinstance(events[-1], Failed)
    assert isinstance(events[-1].error, ModelError)


def test_a_limit_ends_the_stream_with_done_and_a_failed_result() -> None:
    model = ScriptedModel(
        lambda messages: ScriptedModel.tool_call("add", {"a": len(messages), "b": 0})
    )
    events = list(calculator(model, max_iterations=2).stream_sync(question="?"))
    done = events[-1]
    assert isinstance(done, Done) and not done.result.success
    assert done.result.stop_reason == "max_iterations"
    assert sum(isinstance(e, ToolComplete) for e in events) == 2


def test_bad_inputs_raise_before_the_stream_starts() -> None:
    with pytest.raises(kaizen.InputValidationError):
        calculator(script()).stream_sync()


def test_plain_agents_stream_their_reply_text() -> None:
    model = ScriptedModel([{"answer": "streamed"}])
    agent = kaizen.Agent("plain", "question -> answer: str", {"model": model})
    events = list(agent.stream_sync(question="?"))
    assert (
        "".join(e.text for e in events if isinstance(e, ContentDelta)) == '{"answer": "streamed"}'
    )
    assert events[-1].result.answer == "streamed"  # type: ignore[union-attr]


def test_leaving_an_async_stream_early_cancels_the_run() -> None:
    release = threading.Event()
    model = ScriptedModel(
        [
            ScriptedModel.reply("slow start", latency=0),
            ScriptedModel.reply({"answer": "x"}, latency=5),
        ]
    )

    async def first_event() -> StreamEvent:
        events = calculator(model, max_termination_attempts=1).stream(question="?")
        async for event in events:
            await events.aclose()  # type: ignore[attr-defined]
            return event
        raise AssertionError("no event")

    event = asyncio.run(asyncio.wait_for(first_event(), 3))
    release.set()
    assert isinstance(event, ContentDelta)


def two_agents() -> kaizen.Workflow:
    builder = WorkflowBuilder("two")
    builder.add_agent(calculator(script(), "first"), "first")
    builder.add_agent(calculator(script(), "second"), "second")
    return builder.build()


def test_runtime_stream_tags_every_event_with_its_node() -> None:
    events = asyncio.run(collect(LocalRuntime().stream(two_agents(), {"question": "?"})))
    done = events[-1]
    assert isinstance(done, Done) and done.node_id is None and done.run_id
    assert done.result["first"]["answer"] == done.result["second"]["answer"] == "3 and 7"
    for node in ("first", "second"):
        mine = [e for e in events[:-1] if e.node_id == node]  # type: ignore[union-attr]
        assert sum(isinstance(e, ToolStart) for e in mine) == 2
        assert "".join(e.text for e in mine if isinstance(e, ContentDelta)).startswith(
            "Adding now."
        )
    sync_events = list(LocalRuntime().stream_sync(two_agents(), {"question": "?"}))
    assert isinstance(sync_events[-1], Done)


def test_runtime_stream_checks_parameters_first() -> None:
    builder = WorkflowBuilder("one")
    builder.add_agent(calculator(script()), "calc")
    with pytest.raises(ParameterError):
        LocalRuntime().stream_sync(builder.build(), {"nope": 1})


def test_text_and_tool_calls_in_one_streamed_turn_keep_both() -> None:
    model = ScriptedModel(
        [
            ScriptedModel.tool_calls([("add", {"a": 2, "b": 2})], text="First some words, then"),
            {"answer": "4"},
        ]
    )
    events = list(calculator(model).stream_sync(question="?"))
    assert (
        "".join(e.text for e in events if isinstance(e, ContentDelta)) == "First some words, then"
    )
    [start] = [e for e in events if isinstance(e, ToolStart)]
    assert (start.name, start.arguments) == ("add", {"a": 2, "b": 2})
    done = events[-1]
    assert isinstance(done, Done) and done.result.stop_reason == "completed"  # no reminder needed
    assert model.calls[1].messages[-2]["content"] == "First some words, then"


def test_stream_events_are_the_moments_hooks_hear() -> None:
    from kaizen.moments import ChunkReceived, Moment, ToolCallFinished, ToolCallStarted
    from kaizen.runtime.hooks import MomentHook

    class Heard(MomentHook):
        def __init__(self) -> None:
            self.events: list[Moment] = []

        def hears(self, moment: type[Moment]) -> bool:
            return moment in (ChunkReceived, ToolCallStarted, ToolCallFinished)

        def on_moment(self, event: Moment) -> None:
            self.events.append(event)

    assert (ContentDelta, ToolStart, ToolComplete) == (
        ChunkReceived,
        ToolCallStarted,
        ToolCallFinished,
    )
    wb = WorkflowBuilder()
    wb.add_agent(calculator(script()), "calc")
    heard = Heard()
    events = list(LocalRuntime().stream_sync(wb.build(), {"question": "?"}, hooks=[heard]))
    done = events[-1]
    assert isinstance(done, Done)
    streamed = [e for e in events if not isinstance(e, Done)]
    assert len(streamed) == len(heard.events) and streamed
    assert all(e is h for e, h in zip(streamed, heard.events, strict=True))
    assert {e.run_id for e in heard.events} == {done.run_id}
    assert done.result["calc"]["answer"] == "3 and 7"


def test_the_old_name_of_a_failed_runs_last_event_still_matches_it() -> None:
    """`kaizen.Error` was renamed `kaizen.Failed` (an event, not an exception); code that
    matches on the old name keeps working for one release."""
    event = kaizen.Failed(ValueError("boom"), node_id="n")
    assert kaizen.Error is kaizen.Failed and isinstance(event, kaizen.Error)
    match event:
        case kaizen.Error(error=error):
            assert str(error) == "boom"
        case _:
            raise AssertionError("the old name no longer matches")
