"""Tool runs (`kaizen.tools.runner.tool_calls`, one flow with two drivers): whatever a tool raises,
its own `TimeoutError` included, is a tool error the model reads, on every path (sync, async,
async and sync streams, plan steps); the tool's `timeout` is told apart from a tool's own
`TimeoutError`; both drivers give the same records. Issue 21 item 1, issue 20 item 5."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import kaizen
from kaizen import Done, LocalRuntime, ToolComplete
from kaizen.flow import Call, Each, EffectTimeout, Flow, run_async, run_sync
from kaizen.llm.transport import ToolCallRequest
from kaizen.runtime.stream import StreamEvent
from kaizen.testing import ScriptedModel
from kaizen.tools.runner import arun_calls, run_calls


@kaizen.tool
async def fetch(url: str) -> str:
    """Fetch a page (its server never answers within the client's own deadline)."""
    never = asyncio.Event()
    await asyncio.wait_for(never.wait(), timeout=0.01)  # the client's deadline: TimeoutError
    return "page"


@kaizen.tool(timeout=30)
async def fetch_bounded(url: str) -> str:
    """The same, with a tool timeout far longer than the tool's own deadline."""
    raise TimeoutError(f"{url} did not answer")


@kaizen.tool(timeout=30)
def fetch_sync(url: str) -> str:
    """A sync client whose own deadline runs out."""
    raise TimeoutError(f"{url} did not answer")


OWN_TIMEOUTS = [fetch, fetch_bounded, fetch_sync]


def agent_for(tool: kaizen.Tool) -> tuple[kaizen.Agent, ScriptedModel]:
    model = ScriptedModel(
        [ScriptedModel.tool_call(tool.name, {"url": "http://slow"}), {"answer": "gave up"}]
    )
    agent = kaizen.Agent("reader", "question -> answer: str", {"model": model}, tools=[tool])
    return agent, model


def told_the_model(model: ScriptedModel, tool: kaizen.Tool) -> None:
    """The second model call reads the tool error for the call."""
    message = model.calls[1].messages[-1]
    assert message["role"] == "tool" and message["name"] == tool.name
    assert message["content"].startswith(f"ERROR: tool {tool.name!r} raised TimeoutError")


def check_result(result: Any, model: ScriptedModel, tool: kaizen.Tool) -> None:
    assert result.success and result.answer == "gave up"
    [record] = result.tool_calls
    assert record.output is None
    assert f"tool {tool.name!r} raised TimeoutError" in (record.error or "")
    assert "did not finish in time" not in (record.error or "")  # not the tool's timeout
    told_the_model(model, tool)


@pytest.mark.parametrize("tool", OWN_TIMEOUTS, ids=lambda t: t.name)
def test_a_tools_own_timeout_error_is_a_tool_error_in_execute(tool: kaizen.Tool) -> None:
    agent, model = agent_for(tool)
    check_result(agent.execute(question="?"), model, tool)


@pytest.mark.parametrize("tool", OWN_TIMEOUTS, ids=lambda t: t.name)
def test_a_tools_own_timeout_error_is_a_tool_error_in_execute_async(tool: kaizen.Tool) -> None:
    # before the fix: UnboundLocalError from the runner's `except TimeoutError` branch
    agent, model = agent_for(tool)
    check_result(asyncio.run(agent.execute_async(question="?")), model, tool)


def stream_checks(events: list[StreamEvent], model: ScriptedModel, tool: kaizen.Tool) -> None:
    [complete] = [e for e in events if isinstance(e, ToolComplete)]
    assert complete.output is None and "raised TimeoutError" in (complete.error or "")
    done = events[-1]
    assert isinstance(done, Done)
    check_result(done.result, model, tool)


@pytest.mark.parametrize("tool", OWN_TIMEOUTS, ids=lambda t: t.name)
def test_a_tools_own_timeout_error_completes_the_call_in_a_stream(tool: kaizen.Tool) -> None:
    agent, model = agent_for(tool)

    async def collect() -> list[StreamEvent]:
        return [event async for event in agent.stream(question="?")]

    stream_checks(asyncio.run(collect()), model, tool)


@pytest.mark.parametrize("tool", OWN_TIMEOUTS, ids=lambda t: t.name)
def test_a_tools_own_timeout_error_completes_the_call_in_a_sync_stream(tool: kaizen.Tool) -> None:
    agent, model = agent_for(tool)
    stream_checks(list(agent.stream_sync(question="?")), model, tool)


@pytest.mark.parametrize("tool", OWN_TIMEOUTS, ids=lambda t: t.name)
@pytest.mark.parametrize("sync", [True, False], ids=["sync", "async"])
def test_a_plan_step_whose_tool_times_out_on_its_own_fails_the_step_with_the_reason(
    tool: kaizen.Tool, sync: bool
) -> None:
    plan = [{"id": "page", "tool": tool.name, "arguments": {"url": "http://slow"}}]
    workflow = kaizen.compile_plan(plan, [tool], sync=sync).build()
    with pytest.raises(kaizen.KaizenError, match="raised TimeoutError") as caught:
        LocalRuntime().execute(workflow)
    assert "UnboundLocalError" not in str(caught.value)


# -- both drivers, one flow ------------------------------------------------------------------


def a_turn(release: threading.Event) -> tuple[list[ToolCallRequest], dict[str, kaizen.Tool]]:
    @kaizen.tool
    def ok(n: int) -> int:
        """Doubles."""
        return 2 * n

    @kaizen.tool
    def boom(n: int) -> int:
        """Raises."""
        raise RuntimeError(f"no {n}")

    @kaizen.tool(timeout=0.05)
    def slow(n: int) -> int:
        """Runs past its timeout (until the test ends)."""
        release.wait(10)
        return n

    tools = {t.name: t for t in (ok, boom, slow, fetch_bounded)}
    requests = [
        ToolCallRequest("1", "ok", '{"n": 2}'),
        ToolCallRequest("2", "boom", '{"n": 3}'),
        ToolCallRequest("3", "slow", '{"n": 4}'),
        ToolCallRequest("4", "fetch_bounded", '{"url": "u"}'),
        ToolCallRequest("5", "missing", "{}"),
        ToolCallRequest("6", "ok", '{"n": "x"}'),
        ToolCallRequest("7", "ok", "not json"),
    ]
    return requests, tools


def test_both_drivers_give_the_same_records_in_the_order_asked() -> None:
    release = threading.Event()
    try:
        requests, tools = a_turn(release)
        sync = run_calls(requests, tools, context=None, max_concurrency=3)
        requests, tools = a_turn(release)
        done = asyncio.run(arun_calls(requests, tools, context=None, max_concurrency=3))
    finally:
        release.set()

    def seen(records: list[Any]) -> list[tuple[str, str | None, str | None]]:
        return [(r.call_id, r.output, r.error) for r in records]

    assert seen(sync) == seen(done)
    outputs = {r.call_id: r.output for r in sync}
    errors = {r.call_id: r.error or "" for r in sync}
    assert [r.call_id for r in sync] == [str(n) for n in range(1, 8)]
    assert outputs["1"] == "4"
    assert "raised RuntimeError: no 3" in errors["2"]
    assert "did not finish in time (over its 0.05 s timeout)" in errors["3"]
    assert "raised TimeoutError: u did not answer" in errors["4"]
    assert "no tool named 'missing'" in errors["5"]
    assert "n: Input should be a valid integer" in errors["6"]
    assert "not valid JSON" in errors["7"]


# -- the effects the runner is written with (`kaizen.flow`) ----------------------------------


async def _never(**_: Any) -> str:
    await asyncio.Event().wait()
    return "never"


async def _raises_timeout(**_: Any) -> str:
    raise TimeoutError("its own")


def _block(release: Any) -> str:
    release.wait(10)
    return "late"


def _sync_raises_timeout(**_: Any) -> str:
    raise TimeoutError("its own")


def outcome(call: Call) -> Flow[str]:
    try:
        value = yield call
    except EffectTimeout as exc:
        return f"deadline: {exc}"
    except TimeoutError as exc:
        return f"own: {exc}"
    return str(value)


@pytest.mark.parametrize("drive", ["sync", "async"])
def test_a_call_past_its_timeout_is_told_apart_from_its_own_timeout_error(drive: str) -> None:
    release = threading.Event()
    try:
        late = Call(_block, _never, {"release": release} if drive == "sync" else {}, timeout=0.05)
        own = Call(_sync_raises_timeout, _raises_timeout, {}, timeout=30)
        fast = Call(lambda: "fast", _fast, {})
        flows = [outcome(late), outcome(own), outcome(fast)]
        each = Each(flows, limit=3)

        def all_of() -> Flow[list[str]]:
            return (yield each)

        results = run_sync(all_of()) if drive == "sync" else asyncio.run(run_async(all_of()))
    finally:
        release.set()
    assert results == ["deadline: over its 0.05 s timeout", "own: its own", "fast"]


async def _fast() -> str:
    return "fast"


class Gauge:
    """How many calls run at once, and the most seen."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = self.most = 0

    def __enter__(self) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def __exit__(self, *_: object) -> None:
        with self.lock:
            self.now -= 1


@pytest.mark.parametrize("drive", ["sync", "async"])
def test_each_keeps_to_its_limit(drive: str) -> None:
    gauge = Gauge()
    both = threading.Event()  # set when two calls run at once: the first waits for it

    def work_sync() -> int:
        with gauge:
            if gauge.now == 2:
                both.set()
            both.wait(10)
            return 1

    async def work_async() -> int:
        with gauge:
            for _ in range(5):
                await asyncio.sleep(0)
            return 1

    def one() -> Flow[int]:
        return (yield Call(work_sync, work_async, {}))

    def all_of() -> Flow[list[int]]:
        return (yield Each([one() for _ in range(8)], limit=2))

    results = run_sync(all_of()) if drive == "sync" else asyncio.run(run_async(all_of()))
    assert results == [1] * 8
    assert gauge.most == 2
