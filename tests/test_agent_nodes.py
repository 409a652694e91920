"""Agents as workflow nodes: ports, builders, type-checked connections, concurrency, real HTTP."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from kaizen.agents import AgentNode, LLMAgentNode, create_agent
from kaizen.errors import InputValidationError, WorkflowValidationError
from kaizen.nodes import get_node_type
from kaizen.runtime import LocalRuntime
from kaizen.testing import ScriptedModel
from kaizen.workflow import WorkflowBuilder


def test_node_ports_are_the_signature_fields() -> None:
    agent = create_agent(
        "qa",
        "question: str, style: str = 'plain' -> answer: str, confidence: float",
        {"model": ScriptedModel([])},
    )
    node = agent.to_workflow_node("ask")
    assert isinstance(node, AgentNode) and node.id == "ask"
    assert node.inputs["question"].required
    assert not node.inputs["style"].required and node.inputs["style"].default == "plain"
    assert node.outputs["confidence"].type is float
    assert node.is_async


def test_agents_connect_in_a_builder_and_run() -> None:
    research = create_agent(
        "research", "task: str -> findings: str", {"model": ScriptedModel([{"findings": "F"}])}
    )
    summary_model = ScriptedModel([{"summary": "S", "score": 2}])
    summary = create_agent(
        "summary", "findings: str -> summary: str, score: float", {"model": summary_model}
    )
    builder = WorkflowBuilder("research")
    builder.add_agent(research, "research")
    builder.add_node_instance(summary.to_workflow_node("summary"))
    builder.add_connection("research", "summary")
    results, _ = LocalRuntime().execute(
        builder.build(), parameters={"research": {"task": "ML trends"}}
    )
    assert results["summary"] == {"summary": "S", "score": 2.0}
    assert isinstance(results["summary"]["score"], float)
    assert "F" in json.dumps(summary_model.calls[0].messages)


def test_type_mismatched_agent_connection_fails_at_build() -> None:
    numbers = create_agent("numbers", "task: str -> count: list[int]", {"model": "x/y"})
    text = create_agent("text", "count: bool -> summary: str", {"model": "x/y"})
    builder = WorkflowBuilder("bad")
    builder.add_agent(numbers, "numbers")
    builder.add_agent(text, "text")
    builder.add_connection("numbers", "count", "text", "count")
    with pytest.raises(WorkflowValidationError, match="count"):
        builder.build()


def test_to_workflow_is_a_one_node_builder() -> None:
    agent = create_agent("solo", "question -> answer", {"model": ScriptedModel([{"answer": "A"}])})
    workflow = agent.to_workflow().build()
    assert list(workflow.nodes) == ["solo"]
    results, _ = LocalRuntime().execute(workflow, parameters={"solo": {"question": "q"}})
    assert results["solo"] == {"answer": "A"}


def test_llm_agent_node_by_type_name() -> None:
    model = ScriptedModel([{"answer": "by name"}])
    assert get_node_type("LLMAgentNode") is LLMAgentNode
    assert get_node_type("AgentNode") is AgentNode
    builder = WorkflowBuilder("typed")
    builder.add_node(
        "LLMAgentNode",
        "ask",
        {"model": model, "signature": "question -> answer", "instructions": "Be brief."},
    )
    results, _ = LocalRuntime().execute(builder.build(), parameters={"ask": {"question": "q"}})
    assert results["ask"] == {"answer": "by name"}
    assert "Be brief." in json.dumps(model.calls[0].messages)


def test_llm_agent_node_rejects_unknown_config_keys() -> None:
    builder = WorkflowBuilder("typed")
    with pytest.raises(Exception, match="temprature"):
        builder.add_node("LLMAgentNode", "ask", {"signature": "q -> a", "temprature": 1})
        builder.build()


def test_agent_node_validates_inputs_from_upstream() -> None:
    model = ScriptedModel([{"answer": "never"}])
    node = create_agent("n", "count: int -> answer", {"model": model}).to_workflow_node()
    with pytest.raises(InputValidationError, match="count"):
        node.run(count="not a number")
    assert model.calls == []
    assert node.run(count="3") == {"answer": "never"}


def test_twenty_agents_in_one_workflow_run_concurrently() -> None:
    model = ScriptedModel(lambda messages: {"answer": "ok"}, latency=0.2)
    builder = WorkflowBuilder("fan")
    for i in range(20):
        agent = create_agent(f"a{i}", "question -> answer", {"model": model})
        builder.add_agent(agent, f"a{i}")
    runtime = LocalRuntime()
    parameters: dict[str, Any] = {f"a{i}": {"question": f"q{i}"} for i in range(20)}
    results, run_id = runtime.execute(builder.build(), parameters=parameters)
    assert all(results[f"a{i}"] == {"answer": "ok"} for i in range(20))
    nodes = runtime.get_record(run_id).nodes.values()
    last_start = max(n.started for n in nodes if n.started is not None)
    first_end = min(n.finished for n in nodes if n.finished is not None)
    assert last_start < first_end  # every agent was in flight before any finished


def test_agent_reasks_over_real_http(fault_server: Any) -> None:
    fault_server.inject("schema_violation")
    agent = create_agent(
        "remote",
        "question: str -> answer: str, confidence: float",
        {
            "model": "openai/test-model",
            "api_base": fault_server.base_url,
            "api_key": "test",
            "structured_output": "json_schema",
        },
    )
    result = agent.execute(question="What is ML?")
    assert isinstance(result.confidence, float)
    assert result.metadata["attempts"] == 2
    requests = [r for r in fault_server.requests if r.body is not None]
    assert len(requests) == 2
    reask = requests[1].body["messages"]
    assert reask[-2]["role"] == "assistant" and reask[-1]["role"] == "user"


def test_agents_in_an_async_workflow() -> None:
    model = ScriptedModel(lambda messages: {"answer": "x"})
    agent = create_agent("aw", "question -> answer", {"model": model})

    async def go() -> dict[str, Any]:
        results, _ = await LocalRuntime().execute_async(
            agent.to_workflow().build(), parameters={"aw": {"question": "q"}}
        )
        return results

    assert asyncio.run(go()) == {"aw": {"answer": "x"}}


def test_budget_stops_an_agent_before_its_next_model_call() -> None:
    from kaizen.runtime import Budget, NodeStatus

    model = ScriptedModel(["not json", {"answer": "too late", "score": 1.0}])
    agent = create_agent("spender", "question -> answer, score: float", {"model": model})
    runtime = LocalRuntime(budget=Budget(max_tokens=1), failure_policy="continue")
    results, run_id = runtime.execute(
        agent.to_workflow().build(), parameters={"spender": {"question": "q"}}
    )
    assert "spender" not in results
    assert len(model.calls) == 1  # the re-ask was never sent
    record = runtime.get_record(run_id)
    assert record.nodes["spender"].status is NodeStatus.SKIPPED
    assert "budget" in (record.nodes["spender"].skip_reason or "")
    assert record.usage.total_tokens > 1
