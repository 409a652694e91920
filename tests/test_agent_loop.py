"""The reason-act loop: tools in turns, `complete`, termination enforcement, limits, and bad
input of every kind that must never crash a run. Models are `ScriptedModel`s through litellm."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import pytest

import kaizen
from kaizen import LocalRuntime, WorkflowBuilder
from kaizen.errors import AgentLimitError, BudgetExceededError
from kaizen.runtime.hooks import ToolCallFinishHook, ToolCallStartHook
from kaizen.runtime.record import ToolCallRecord
from kaizen.testing import ScriptedModel

SIGNATURE = "question -> answer: str"


@kaizen.tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def agent_with(model: ScriptedModel, *tools: Any, **config: Any) -> kaizen.Agent:
    return kaizen.Agent("calc", SIGNATURE, {"model": model, **config}, tools=tools or [add])


def test_a_tool_turn_then_complete_gives_typed_outputs_and_the_tool_calls() -> None:
    model = ScriptedModel(
        [
            ScriptedModel.tool_call("add", {"a": 2, "b": 3}),
            ScriptedModel.tool_call("complete", {"answer": "5"}),
        ]
    )
    result = agent_with(model).execute(question="2+3?")
    assert result.success and result.answer == "5"
    assert result.stop_reason == "completed"
    [call] = result.tool_calls
    assert (call.name, call.arguments, call.output, call.error) == (
        "add",
        {"a": 2, "b": 3},
        "5",
        None,
    )
    assert call.started > 0 and call.duration >= 0
    first, second = model.calls
    assert first.tools == ["add", "complete"] and first.tool_choice == "auto"
    assert first.response_format is None  # the output schema travels as complete's parameters
    assert second.messages[-1] == {
        "role": "tool",
        "tool_call_id": call.call_id,
        "name": "add",
        "content": "5",
    }
    assert second.messages[-2]["tool_calls"][0]["function"] == {
        "name": "add",
        "arguments": '{"a": 2, "b": 3}',
    }


def test_a_dict_reply_is_a_complete_call() -> None:
    model = ScriptedModel([{"answer": "done"}])
    result = agent_with(model).execute(question="?")
    assert (result.answer, result.stop_reason, result.tool_calls) == ("done", "completed", [])


def test_several_calls_in_one_turn_run_concurrently() -> None:
    barrier = threading.Barrier(3, timeout=5)  # only passes if all three run at once

    @kaizen.tool
    def meet(name: str) -> str:
        """Wait for the others."""
        barrier.wait()
        return name

    model = ScriptedModel(
        [
            ScriptedModel.tool_calls([("meet", {"name": n}) for n in "abc"]),
            {"answer": "met"},
        ]
    )
    result = agent_with(model, meet).execute(question="?")
    assert [c.output for c in sorted(result.tool_calls, key=lambda c: c.call_id)] == ["a", "b", "c"]
    assert all(c.error is None for c in result.tool_calls)


def test_async_tools_run_concurrently_on_the_loop() -> None:
    arrived: list[str] = []
    everyone = asyncio.Event()

    @kaizen.tool
    async def gather(name: str) -> str:
        """Wait for the others."""
        arrived.append(name)
        if len(arrived) == 3:
            everyone.set()
        await asyncio.wait_for(everyone.wait(), 5)
        return name

    model = ScriptedModel(
        [ScriptedModel.tool_calls([("gather", {"name": n}) for n in "xyz"]), {"answer": "ok"}]
    )
    result = asyncio.run(agent_with(model, gather).execute_async(question="?"))
    assert result.success and sorted(c.output or "" for c in result.tool_calls) == ["x", "y", "z"]


def test_tool_calls_keep_to_the_runtimes_concurrency() -> None:
    lock = threading.Lock()
    running = peak = 0

    @kaizen.tool
    def work(n: int) -> int:
        """Work."""
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return n

    model = ScriptedModel(
        [ScriptedModel.tool_calls([("work", {"n": n}) for n in range(6)]), {"answer": "ok"}]
    )
    agent = agent_with(model, work)
    agent._runtime = LocalRuntime(max_concurrency=2)
    assert agent.execute(question="?").success
    assert peak == 2


# -- bad input never crashes a run ----------------------------------------------------------------


def run_one_bad_call(
    tool: kaizen.Tool, arguments: Any, name: str | None = None
) -> tuple[ToolCallRecord, ScriptedModel]:
    model = ScriptedModel([ScriptedModel.tool_call(name or tool.name, arguments), {"answer": "ok"}])
    result = agent_with(model, tool).execute(question="?")
    assert result.success and result.answer == "ok"  # the run went on after the error
    [record] = result.tool_calls
    assert record.output is None and record.error
    # the model saw the error as the tool's result
    assert model.calls[1].messages[-1]["content"] == f"ERROR: {record.error}"
    return record, model


def test_a_tool_that_raises_is_a_tool_error() -> None:
    @kaizen.tool
    def broken(x: int) -> int:
        """Breaks."""
        raise RuntimeError(f"no luck with {x}")

    record, _ = run_one_bad_call(broken, {"x": 1})
    assert record.error == "tool 'broken' raised RuntimeError: no luck with 1"


def test_a_tool_that_hangs_times_out_as_a_tool_error() -> None:
    release = threading.Event()

    @kaizen.tool(timeout=0.2)
    def hang() -> str:
        """Hangs."""
        release.wait(10)
        return "late"

    try:
        record, _ = run_one_bad_call(hang, {})
    finally:
        release.set()
    assert "did not finish in time (over its 0.2 s timeout)" in record.error


def test_an_async_tool_that_hangs_times_out_too() -> None:
    @kaizen.tool(timeout=0.2)
    async def hang() -> str:
        """Hangs."""
        await asyncio.sleep(10)
        return "late"

    model = ScriptedModel([ScriptedModel.tool_call("hang", {}), {"answer": "ok"}])
    result = asyncio.run(agent_with(model, hang).execute_async(question="?"))
    assert "over its 0.2 s timeout" in (result.tool_calls[0].error or "")


def test_an_unserialisable_result_is_a_tool_error() -> None:
    @kaizen.tool
    def opaque() -> object:
        """Returns something odd."""
        return object()

    record, _ = run_one_bad_call(opaque, {})
    assert "cannot be sent to the model" in record.error


def test_wrong_arguments_are_a_tool_error_naming_each_field() -> None:
    record, _ = run_one_bad_call(add, {"a": "two", "c": 1})
    assert record.error.startswith("tool 'add': invalid arguments: ")
    assert (
        "a: " in record.error
        and "b: missing" in record.error
        and "c: not a parameter" in record.error
    )


def test_an_unknown_tool_is_a_tool_error_listing_the_tools() -> None:
    record, _ = run_one_bad_call(add, {}, name="multiply")
    assert "no tool named 'multiply'; the tools are: add" in record.error


def test_invalid_json_arguments_are_a_tool_error() -> None:
    record, _ = run_one_bad_call(add, '{"a": 1,')
    assert "not valid JSON" in record.error
    assert record.arguments == '{"a": 1,'  # what the model sent, kept as text


def test_an_invalid_complete_goes_back_as_a_tool_error() -> None:
    model = ScriptedModel(
        [
            ScriptedModel.tool_call("complete", {"wrong": 1}),
            ScriptedModel.tool_call("complete", {"answer": "fine"}),
        ]
    )
    result = agent_with(model).execute(question="?")
    assert result.answer == "fine" and result.stop_reason == "completed"
    error = model.calls[1].messages[-1]
    assert error["role"] == "tool" and error["name"] == "complete"
    assert error["content"].startswith("ERROR: complete:") and "answer" in error["content"]


# -- termination ---------------------------------------------------------------------------------


def test_a_turn_without_a_tool_call_gets_a_reminder() -> None:
    model = ScriptedModel(["Thinking about it.", {"answer": "x"}])
    result = agent_with(model).execute(question="?")
    assert (result.answer, result.stop_reason) == ("x", "completed_after_reminder")
    assert "call the tool `complete`" in model.calls[1].messages[-1]["content"]
    assert model.calls[1].messages[-2] == {"role": "assistant", "content": "Thinking about it."}


def test_after_the_reminders_one_call_is_forced_to_complete() -> None:
    model = ScriptedModel(["one", "two", "three", {"answer": "forced"}])
    result = agent_with(model, max_termination_attempts=2).execute(question="?")
    assert (result.answer, result.stop_reason) == ("forced", "forced_completion")
    assert model.calls[-1].tool_choice == {"type": "function", "function": {"name": "complete"}}
    assert [c.tool_choice for c in model.calls[:-1]] == ["auto"] * 3


def test_when_even_the_forced_call_fails_the_outputs_are_extracted() -> None:
    model = ScriptedModel(["one", "two", "still text", '{"answer": "from the trajectory"}'])
    result = agent_with(model, max_termination_attempts=1).execute(question="?")
    assert (result.answer, result.stop_reason) == ("from the trajectory", "extracted")
    extraction = model.calls[-1]
    assert extraction.tools == [] and extraction.response_format is not None
    assert (
        "[assistant] one" in extraction.last_message
        and "give the final answer now" in extraction.last_message
    )


def test_max_iterations_returns_what_was_done() -> None:
    model = ScriptedModel(
        lambda messages: ScriptedModel.tool_call("add", {"a": len(messages), "b": 1})
    )
    result = agent_with(model, max_iterations=3).execute(question="?")
    assert not result.success and result.stop_reason == "max_iterations"
    assert len(result.tool_calls) == 3 and all(c.output for c in result.tool_calls)
    assert isinstance(result.error, AgentLimitError)
    assert "max_iterations" in str(result.error)
    assert len(model.calls) == 3


def test_on_limit_raise_raises_with_the_trajectory() -> None:
    model = ScriptedModel(
        lambda messages: ScriptedModel.tool_call("add", {"a": len(messages), "b": 1})
    )
    with pytest.raises(AgentLimitError) as caught:
        agent_with(model, max_iterations=2, on_limit="raise").execute(question="?")
    error = caught.value
    assert error.stop_reason == "max_iterations" and error.agent == "calc"
    assert len(error.tool_calls) == 2
    assert error.trajectory[0]["role"] == "system" and error.trajectory[-1]["role"] == "tool"


def test_the_same_call_three_times_in_a_row_is_a_loop() -> None:
    model = ScriptedModel(lambda messages: ScriptedModel.tool_call("add", {"b": 1, "a": 1}))
    result = agent_with(model).execute(question="?")
    assert result.stop_reason == "loop_detected" and not result.success
    assert len(result.tool_calls) == 2  # the third identical call never ran


def test_tool_retry_budgets_are_cumulative_and_never_reset_by_a_success() -> None:
    outcomes = iter([RuntimeError("1"), "ok", RuntimeError("2")])

    @kaizen.tool(retries=1)
    def flaky(n: int) -> str:
        """Sometimes works."""
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    model = ScriptedModel(
        [ScriptedModel.tool_call("flaky", {"n": n}) for n in range(3)] + [{"answer": "x"}]
    )
    result = agent_with(model, flaky).execute(question="?")
    assert result.stop_reason == "error" and not result.success
    assert "failed 2 times, more than its 1 allowed retries" in str(result.error)
    assert [c.error is None for c in result.tool_calls] == [False, True, False]


def test_the_run_wide_retry_budget_counts_every_tool() -> None:
    model = ScriptedModel([ScriptedModel.tool_call("nope", {"n": n}) for n in range(4)])
    result = agent_with(model, max_tool_retries=2).execute(question="?")
    assert result.stop_reason == "error" and "more than the 2 allowed" in str(result.error)


def test_the_budget_stops_the_loop_and_keeps_the_work() -> None:
    model = ScriptedModel(
        lambda messages: ScriptedModel.tool_call("add", {"a": len(messages), "b": 1})
    )
    agent = agent_with(model)
    agent._runtime = LocalRuntime(budget=kaizen.Budget(max_tokens=1))
    result = agent.execute(question="?")
    assert result.stop_reason == "budget" and not result.success
    assert len(result.tool_calls) == 1  # the first turn's call: the budget refused the second
    with pytest.raises(AgentLimitError) as caught:
        agent_raise = agent_with(model, on_limit="raise")
        agent_raise._runtime = LocalRuntime(budget=kaizen.Budget(max_tokens=1))
        agent_raise.execute(question="?")
    assert caught.value.stop_reason == "budget"
    assert isinstance(caught.value, AgentLimitError) and not isinstance(
        caught.value, BudgetExceededError
    )


# -- the JSON protocol (models without native tool calling) ---------------------------------------


def test_the_json_protocol_runs_the_same_loop() -> None:
    model = ScriptedModel([ScriptedModel.tool_call("add", {"a": 1, "b": 1}), {"answer": "2"}])
    result = agent_with(model, tool_protocol="json").execute(question="1+1?")
    assert (result.answer, result.stop_reason) == ("2", "completed")
    assert result.tool_calls[0].output == "2"
    first, second = model.calls
    assert first.tools == []  # no native tools: a schema-constrained reply instead
    schema = first.response_format["json_schema"]["schema"]
    assert [branch["properties"]["tool"]["const"] for branch in schema["anyOf"]] == [
        "add",
        "complete",
    ]
    assert "add: Add two integers." in first.messages[0]["content"]
    assert second.messages[-1] == {"role": "user", "content": "Result of add: 2"}


def test_the_json_protocol_reports_calls_that_are_not_calls() -> None:
    model = ScriptedModel(['{"tool": 5}', {"answer": "ok"}])
    result = agent_with(model, tool_protocol="json").execute(question="?")
    assert result.answer == "ok"
    assert "not a valid tool call" in model.calls[1].messages[-1]["content"]


def test_the_embedded_model_uses_the_json_protocol_by_default() -> None:
    agent = kaizen.Agent("a", SIGNATURE, {"model": "local/smollm2"}, tools=[add])
    assert agent.settings().tool_protocol == "json"
    assert agent_with(ScriptedModel([])).settings().tool_protocol == "native"


# -- observing -------------------------------------------------------------------------------------


def test_every_tool_call_is_a_hook_moment_and_in_the_run_record() -> None:
    seen: list[tuple[str, str, str]] = []

    class Watch(ToolCallStartHook, ToolCallFinishHook):
        def on_tool_call_start(self, event: kaizen.ToolCallStarted) -> None:
            seen.append(("start", event.node_id, event.tool))

        def on_tool_call_finish(self, event: kaizen.ToolCallFinished) -> None:
            seen.append(("finish", event.node_id, event.record.output or ""))

    model = ScriptedModel([ScriptedModel.tool_call("add", {"a": 1, "b": 2}), {"answer": "3"}])
    agent = agent_with(model)
    builder = WorkflowBuilder("w")
    builder.add_agent(agent, "solver")
    results, _ = LocalRuntime(hooks=[Watch()]).execute(builder.build(), {"question": "?"})
    assert results["solver"]["answer"] == "3"
    assert seen == [("start", "solver", "add"), ("finish", "solver", "3")]


def test_the_record_keeps_tool_calls_and_the_stop_reason() -> None:
    model = ScriptedModel([ScriptedModel.tool_call("add", {"a": 1, "b": 2}), "hm", {"answer": "3"}])
    runtime = LocalRuntime()
    builder = WorkflowBuilder("w")
    builder.add_agent(agent_with(model), "solver")
    _, run_id = runtime.execute(builder.build(), {"question": "?"})
    node_run = runtime.get_record(run_id).nodes["solver"]
    assert node_run.stop_reason == "completed_after_reminder"
    assert [c.name for c in node_run.tool_calls] == ["add"]
    assert (
        json.loads(json.dumps(runtime.get_record(run_id).to_dict()))["nodes"]["solver"][
            "tool_calls"
        ][0]["output"]
        == "3"
    )


def test_an_agent_that_hits_a_limit_fails_its_node_in_a_graph() -> None:
    model = ScriptedModel(
        lambda messages: ScriptedModel.tool_call("add", {"a": len(messages), "b": 1})
    )
    builder = WorkflowBuilder("w")
    builder.add_agent(agent_with(model, max_iterations=2), "solver")
    runtime = LocalRuntime(failure_policy="continue")
    results, run_id = runtime.execute(builder.build(), {"question": "?"})
    node_run = runtime.get_record(run_id).nodes["solver"]
    assert "solver" not in results
    assert node_run.status == "failed" and node_run.stop_reason == "max_iterations"
    assert "AgentLimitError" in (node_run.error or "")


def test_add_tool_offers_a_tool_from_the_next_run() -> None:
    model = ScriptedModel([{"answer": "a"}, {"answer": "b"}])
    agent = kaizen.Agent("grow", SIGNATURE, {"model": model}, tools=[add])

    def shout(text: str) -> str:
        """Shout."""
        return text.upper()

    agent.execute(question="?")
    agent.add_tool(shout)
    agent.execute(question="?")
    assert model.calls[0].tools == ["add", "complete"]
    assert model.calls[1].tools == ["add", "shout", "complete"]
    assert [t.name for t in agent.tools] == ["add", "shout"]


def test_create_agent_takes_tools() -> None:
    model = ScriptedModel([{"answer": "ok"}])
    agent = kaizen.create_agent("with-tools", SIGNATURE, {"model": model}, tools=[add])
    assert agent.execute(question="?").answer == "ok"
    assert model.calls[0].tools == ["add", "complete"]


# -- tools in the store: recorded, replayed, memoized ----------------------------------------------


def counting_tool(calls: list[int], *, deterministic: bool = False) -> kaizen.Tool:
    def lookup(n: int) -> str:
        """Look n up."""
        calls.append(n)
        return f"value {n}"

    return kaizen.Tool(lookup, deterministic=deterministic)


def one_agent_workflow(tool: kaizen.Tool) -> kaizen.Workflow:
    """An agent that calls `lookup` on 1 and 2 in one turn, then answers."""
    model = ScriptedModel(
        lambda messages: (
            ScriptedModel.tool_calls([("lookup", {"n": n}) for n in (1, 2)])
            if messages[-1]["role"] != "tool"
            else {"answer": messages[-1]["content"]}
        )
    )
    builder = WorkflowBuilder("recorded")
    builder.add_agent(kaizen.Agent("solver", SIGNATURE, {"model": model}, tools=[tool]), "solver")
    return builder.build()


def test_a_recorded_run_replays_its_tool_calls_without_running_the_tools(tmp_path: Any) -> None:
    calls: list[int] = []
    path = tmp_path / "k.db"
    workflow = one_agent_workflow(counting_tool(calls))
    results, run_id = LocalRuntime(record=path).execute(workflow, {"question": "?"})
    assert sorted(calls) == [1, 2]
    replayed, _ = kaizen.replay(run_id, workflow, path=path)
    assert replayed == results
    assert sorted(calls) == [1, 2]  # the replay served the recorded outputs


def test_deterministic_tools_are_memoized(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAIZEN_HOME", str(tmp_path))
    calls: list[int] = []
    tool = counting_tool(calls, deterministic=True)
    for _ in range(2):
        LocalRuntime().execute(one_agent_workflow(tool), {"question": "?"})
    assert sorted(calls) == [1, 2]  # the second run's calls came from the memo
    plain: list[int] = []
    for _ in range(2):
        LocalRuntime().execute(one_agent_workflow(counting_tool(plain)), {"question": "?"})
    assert sorted(plain) == [1, 1, 2, 2]


def test_async_tools_work_from_sync_execute_and_inside_a_running_loop() -> None:
    @kaizen.tool
    async def later(n: int) -> int:
        """Wait a moment."""
        await asyncio.sleep(0.01)
        return n + 1

    def run() -> kaizen.ExecutionResult:
        model = ScriptedModel([ScriptedModel.tool_call("later", {"n": 1}), {"answer": "2"}])
        return agent_with(model, later).execute(question="?")

    assert run().tool_calls[0].output == "2"

    async def inside_a_loop() -> kaizen.ExecutionResult:  # a notebook cell calling execute()
        return run()

    assert asyncio.run(inside_a_loop()).tool_calls[0].output == "2"
