"""Middleware (kaizen.runtime.middleware): ordered by priority around nodes and model calls;
changes requests, answers instead of the model or the node, refuses with a reason."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

import kaizen
from kaizen import LocalRuntime, Middleware, ModelCallRequest, NodeCall, WorkflowBuilder
from kaizen.errors import VetoError
from kaizen.llm.call import ModelReply
from kaizen.testing import ScriptedModel


class Trace(Middleware):
    """Writes down the order in which it is asked."""

    def __init__(self, name: str, log: list[str], priority: int = 100) -> None:
        self.name = name
        self.log = log
        self.priority = priority

    def before_node(self, call: NodeCall) -> Mapping[str, Any] | None:
        self.log.append(f"{self.name}:before_node:{call.node_id}")
        return None

    def after_node(self, call: NodeCall, outputs: dict[str, Any]) -> Mapping[str, Any] | None:
        self.log.append(f"{self.name}:after_node:{call.node_id}")
        return None

    def before_model_call(self, call: ModelCallRequest) -> Any:
        self.log.append(f"{self.name}:before_model")
        return None

    def after_model_call(self, call: ModelCallRequest, reply: Any) -> Any:
        self.log.append(f"{self.name}:after_model")
        return None


def test_middleware_runs_by_priority_before_and_in_reverse_after() -> None:
    log: list[str] = []
    model = ScriptedModel(lambda messages: {"answer": "a"})
    agent = kaizen.create_agent("qa", "question -> answer", {"model": model})
    agent.add_middleware(Trace("late", log, priority=50))
    agent.add_middleware(Trace("early", log, priority=10))
    agent.add_middleware(Trace("tie", log, priority=50))  # same priority: registration order
    assert agent.execute(question="q").answer == "a"
    assert log == [
        "early:before_node:qa",
        "late:before_node:qa",
        "tie:before_node:qa",
        "early:before_model",
        "late:before_model",
        "tie:before_model",
        "tie:after_model",
        "late:after_model",
        "early:after_model",
        "tie:after_node:qa",
        "late:after_node:qa",
        "early:after_node:qa",
    ]


class Redact(Middleware):
    """Changes the request: rewrites the user's text and the temperature."""

    def before_model_call(self, call: ModelCallRequest) -> Any:
        assert "api_key" not in call.options  # credentials stay out of middleware's sight
        for message in call.messages:
            content = message.get("content")
            if isinstance(content, str):
                message["content"] = content.replace("4111-1111", "[card]")
        call.options["temperature"] = 0.0
        return None


def test_a_middleware_changes_the_request_the_model_receives() -> None:
    model = ScriptedModel(lambda messages: {"answer": "ok"})
    agent = kaizen.create_agent("pay", "question -> answer", {"model": model, "api_key": "sk-x"})
    agent.add_middleware(Redact())
    agent.execute(question="charge card 4111-1111")
    sent = " ".join(str(m.get("content")) for m in model.calls[0].messages)
    assert "4111-1111" not in sent and "[card]" in sent
    assert model.calls[0].params.get("temperature") == 0.0


class Canned(Middleware):
    """Answers without calling the model."""

    def before_model_call(self, call: ModelCallRequest) -> Any:
        return ModelReply(text='{"answer": "canned"}', model=call.model, attempts=0)


def test_a_middleware_answers_instead_of_the_model() -> None:
    model = ScriptedModel(lambda messages: {"answer": "from the model"})
    agent = kaizen.create_agent("qa", "question -> answer", {"model": model})
    log: list[str] = []
    agent.add_middleware(Trace("outer", log, priority=1))
    agent.add_middleware(Canned())
    agent.add_middleware(Trace("inner", log, priority=1000))
    assert agent.execute(question="q").answer == "canned"
    assert model.calls == []
    assert "inner:before_model" not in log and "outer:after_model" in log


class Refuse(Middleware):
    def before_node(self, call: NodeCall) -> Mapping[str, Any] | None:
        if "drop table" in str(call.inputs.get("question", "")).lower():
            raise VetoError(f"node {call.node_id!r}: SQL in the question is not allowed")
        return None


def test_a_middleware_vetoes_with_a_reason_before_any_model_call() -> None:
    model = ScriptedModel(lambda messages: {"answer": "a"})
    agent = kaizen.create_agent("qa", "question -> answer", {"model": model})
    agent.add_middleware(Refuse())
    with pytest.raises(VetoError, match="SQL in the question"):
        agent.execute(question="DROP TABLE users")
    assert model.calls == []
    assert agent.execute(question="fine").answer == "a"


class Shout(Middleware):
    """Around nodes: changes inputs, and the outputs of one node type."""

    def before_node(self, call: NodeCall) -> Mapping[str, Any] | None:
        if "text" in call.inputs:
            call.inputs["text"] = call.inputs["text"] + "!"
        return None

    def after_node(self, call: NodeCall, outputs: dict[str, Any]) -> Mapping[str, Any] | None:
        return {port: str(value).upper() for port, value in outputs.items()}


class Cached(Middleware):
    """Answers for a node without running it."""

    priority = 1

    def before_node(self, call: NodeCall) -> Mapping[str, Any] | None:
        return {"result": "from cache"} if call.node_id == "second" else None


def echo(text: str) -> str:
    return text


async def aecho(text: str) -> str:
    await asyncio.sleep(0)
    return text


def two_step(fn: Any) -> kaizen.Workflow:
    wb = WorkflowBuilder()
    wb.add_node(fn, "first")
    wb.add_node(fn, "second")
    wb.add_connection("first", "result", "second", "text")
    return wb.build()


@pytest.mark.parametrize("fn", [echo, aecho], ids=["sync", "async"])
def test_runtime_middleware_wraps_every_node_sync_and_async(fn: Any) -> None:
    runtime = LocalRuntime()
    remove = runtime.add_middleware(Shout())
    results, _ = runtime.execute(two_step(fn), {"first": {"text": "hi"}})
    assert results["first"]["result"] == "HI!"
    assert results["second"]["result"] == "HI!!"  # the first output, one more mark
    remove()
    results, _ = runtime.execute(two_step(fn), {"first": {"text": "hi"}})
    assert results["second"]["result"] == "hi"


def test_a_middleware_answers_for_a_node_and_the_node_does_not_run() -> None:
    ran: list[str] = []

    def record(text: str) -> str:
        ran.append(text)
        return text

    results, _ = LocalRuntime(hooks=[Cached()]).execute(two_step(record), {"first": {"text": "x"}})
    assert results["second"]["result"] == "from cache"
    assert ran == ["x"]


def test_only_middleware_is_accepted_by_add_middleware() -> None:
    with pytest.raises(TypeError, match="not a middleware"):
        LocalRuntime().add_middleware(object())  # type: ignore[arg-type]
    agent = kaizen.create_agent("qa", "question -> answer", {"model": ScriptedModel([])})
    with pytest.raises(TypeError, match="not a middleware"):
        agent.add_middleware(lambda call: None)


class Attempts(Middleware):
    """Writes down every attempt it wraps, and the attempt number the node's context gives."""

    def __init__(self) -> None:
        self.heard: list[tuple[str, str, int, int | None]] = []

    def before_node(self, call: NodeCall) -> Mapping[str, Any] | None:
        context = kaizen.current_node_context()
        self.heard.append(("before", call.node_id, call.attempt, context and context.attempt))
        return None

    def after_node(self, call: NodeCall, outputs: dict[str, Any]) -> Mapping[str, Any] | None:
        self.heard.append(("after", call.node_id, call.attempt, None))
        return None


def failing_once() -> tuple[Any, Any]:
    """A sync and an async node that fail their first attempt (one counter each)."""
    failures: dict[str, int] = {}

    def sync_node(text: str) -> str:
        failures["sync"] = failures.get("sync", 0) + 1
        if failures["sync"] == 1:
            raise ConnectionError("first attempt fails")
        return text

    async def async_node(text: str) -> str:
        await asyncio.sleep(0)
        failures["async"] = failures.get("async", 0) + 1
        if failures["async"] == 1:
            raise ConnectionError("first attempt fails")
        return text

    return sync_node, async_node


@pytest.mark.parametrize(
    ("shape", "is_async", "width", "retries"),
    [
        ("inline", False, 1, 0),
        ("threads", False, 2, 0),
        ("inline async", True, 1, 0),
        ("tasks", True, 2, 0),
        ("supervised sync", False, 1, 1),
        ("supervised async", True, 1, 1),
    ],
)
def test_every_executor_wraps_each_attempt_in_the_middleware_once(
    shape: str, is_async: bool, width: int, retries: int
) -> None:
    """Whichever executor runs a node, each attempt meets the middleware exactly once, with the
    node's context set and the attempt number the context gives."""
    sync_node, async_node = failing_once() if retries else (echo, aecho)
    fn = async_node if is_async else sync_node
    wb = WorkflowBuilder()
    for index in range(width):
        wb.add_node(fn, f"n{index}", retries=retries)
    attempts = Attempts()
    parameters = {f"n{index}": {"text": "hi"} for index in range(width)}
    results, record = LocalRuntime(hooks=[attempts]).execute_with_record(wb.build(), parameters)
    assert results == {f"n{index}": {"result": "hi"} for index in range(width)}
    expected: list[tuple[str, str, int, int | None]] = []
    for index in range(width):
        node = f"n{index}"
        if retries:  # the failed first attempt has no after: the node raised
            expected.append(("before", node, 1, 1))
        last = record.nodes[node].attempts
        assert last == retries + 1
        expected += [("before", node, last, last), ("after", node, last, None)]
    assert sorted(attempts.heard) == sorted(expected)
