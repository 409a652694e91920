"""Agents created without a signature take any keyword inputs and return any fields (issue 21
item 7): the ADR's "Direct Execution Pattern" as written,

    agent = kaizen.create_agent("assistant", {"model": ...})
    result = agent.execute(task="Summarize this document", document=doc_content)
    print(result.summary)

Each input is rendered as a named field; the reply is read as a JSON object of whatever fields
the model gives, `result` being the default output (so `result.result` always exists). Agents
with a signature stay strict.
"""

from __future__ import annotations

import asyncio
import json

import pytest

import kaizen
from kaizen import InputValidationError, WorkflowBuilder
from kaizen.runtime.stream import Done
from kaizen.testing import ScriptedModel

DOCUMENT = "Kaizen runs typed agents as nodes of a workflow graph, concurrently."


def user_message(model: ScriptedModel, number: int = 0) -> str:
    return str(model.calls[number].messages[-1]["content"])


def test_the_adr_direct_execution_pattern_as_written() -> None:
    model = ScriptedModel([{"result": "Summarized.", "summary": "Typed agents, run as a graph."}])
    agent = kaizen.create_agent("assistant", {"model": model})
    result = agent.execute(task="Summarize this document", document=DOCUMENT)
    assert result.summary == "Typed agents, run as a graph."
    assert result.result == "Summarized."
    assert result.data == {"result": "Summarized.", "summary": "Typed agents, run as a graph."}
    prompt = user_message(model)
    assert "task:\nSummarize this document" in prompt
    assert f"document:\n{DOCUMENT}" in prompt  # each input is a named field
    schema = model.calls[0].response_format["json_schema"]["schema"]  # type: ignore[index]
    assert schema["required"] == ["result"]
    assert schema["additionalProperties"] == {"type": "string"}  # extra fields may come
    system = str(model.calls[0].messages[0]["content"])
    assert "`document`" in system and "`result`" in system


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ({"summary": "only a summary"}, "only a summary"),  # no `result`: the first text given
        ("A plain text answer.", "A plain text answer."),  # no JSON at all: the whole reply
        ({"result": "r", "count": 3, "tags": ["a"]}, "r"),  # any JSON values, as they came
    ],
)
def test_result_is_the_default_output_whatever_the_reply(reply: object, expected: str) -> None:
    model = ScriptedModel([reply])
    agent = kaizen.create_agent("assistant", {"model": model})
    result = agent.execute(task="Do it", notes="n")
    assert result.result == expected
    if isinstance(reply, dict):
        for name, value in reply.items():
            if name != "result":
                assert getattr(result, name) == value


def test_any_keyword_inputs_without_a_task() -> None:
    model = ScriptedModel([{"result": "fine", "title": "A title"}])
    agent = kaizen.create_agent("assistant", {"model": model})
    result = agent.execute(document=DOCUMENT, audience={"level": "beginner"})
    assert result.title == "A title"
    prompt = user_message(model)
    assert f"document:\n{DOCUMENT}" in prompt
    assert json.dumps({"level": "beginner"}) in prompt
    assert "task:" not in prompt


def test_no_inputs_at_all_is_still_a_clear_error() -> None:
    model = ScriptedModel([{"result": "never"}])
    agent = kaizen.create_agent("assistant", {"model": model})
    with pytest.raises(InputValidationError, match="task"):
        agent.execute()
    with pytest.raises(InputValidationError, match="result"):
        agent.execute(task="t", result="an input named like the output")
    assert model.calls == []


def test_an_agent_with_a_signature_stays_strict() -> None:
    model = ScriptedModel([{"answer": "a", "extra": "dropped"}])
    agent = kaizen.create_agent("qa", "question -> answer", {"model": model})
    with pytest.raises(InputValidationError, match="document"):
        agent.execute(question="q", document=DOCUMENT)
    result = agent.execute(question="q")
    assert result.data == {"answer": "a"}
    assert "extra" not in result
    schema = model.calls[0].response_format["json_schema"]["schema"]  # type: ignore[index]
    assert schema["additionalProperties"] is False


def test_async_and_streamed_execution_take_any_inputs_too() -> None:
    model = ScriptedModel(lambda messages: {"result": "ok", "summary": "s"})
    agent = kaizen.create_agent("assistant", {"model": model})
    result = asyncio.run(agent.execute_async(task="Summarize", document=DOCUMENT))
    assert result.summary == "s"
    events = list(agent.stream_sync(task="Summarize", document=DOCUMENT))
    done = events[-1]
    assert isinstance(done, Done) and done.result.summary == "s"


def test_in_a_workflow_the_agent_keeps_its_ports() -> None:
    model = ScriptedModel([{"result": "from the graph", "summary": "s"}])
    agent = kaizen.create_agent("researcher", {"model": model})
    node = agent.to_workflow_node("step")
    assert list(node.inputs) == ["task", "context"] and list(node.outputs) == ["result"]
    builder = WorkflowBuilder("w")
    builder.add_node_instance(node)
    results, _ = kaizen.LocalRuntime().execute(builder.build(), {"step": {"task": "t"}})
    assert results["step"]["result"] == "from the graph"


def test_an_agent_with_tools_takes_any_inputs_and_answers_in_its_ports() -> None:
    from kaizen.agents.freeform import FREE_FORM_REPLY

    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    model = ScriptedModel([ScriptedModel.tool_call("add", {"a": 1, "b": 2}), {"result": "3"}])
    agent = kaizen.create_agent("calc", {"model": model}, tools=[add])
    result = agent.execute(task="Add the numbers", numbers="1 and 2")
    assert result.result == "3" and [call.name for call in result.tool_calls] == ["add"]
    first = model.calls[0].messages
    assert any("numbers:\n1 and 2" in str(m.get("content")) for m in first)
    assert all(FREE_FORM_REPLY not in str(m.get("content")) for m in first)  # the loop's rules
