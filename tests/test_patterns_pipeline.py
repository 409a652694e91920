"""Pipeline pattern: port-to-port chaining by name, per-step config, type checks at build."""

from __future__ import annotations

from pathlib import Path

import pytest

import kaizen
from kaizen.agents import create_agent
from kaizen.errors import WorkflowValidationError
from kaizen.patterns import create_pipeline
from kaizen.runtime import LocalRuntime
from kaizen.testing import ScriptedModel


def test_steps_are_chained_by_port_name_and_data_flows() -> None:
    research_model = ScriptedModel(lambda m: {"findings": ["fact one", "fact two"]})
    summary_model = ScriptedModel(lambda m: {"summary": "two facts", "confidence": 0.9})
    research = create_agent(
        "research", "topic: str, focus: str -> findings: list[str]", {"model": research_model}
    )
    summary = create_agent(
        "summary",
        "topic: str, findings: list[str] -> summary: str, confidence: float",
        {"model": summary_model},
    )
    builder = create_pipeline([(research, {"focus": "technical"}), (summary, {})])
    wf = builder.build()
    edges = {(c.source, c.source_port, c.target, c.target_port) for c in wf.connections}
    assert ("research", "findings", "summary", "findings") in edges
    assert ("research/focus", "value", "research", "focus") in edges
    assert set(wf.open_inputs) == {("research", "topic"), ("summary", "topic")}
    results, _ = LocalRuntime().execute(wf, parameters={"topic": "batteries"})
    assert results["summary"] == {"summary": "two facts", "confidence": 0.9}
    research_prompt = research_model.calls[0].messages[-1]["content"]
    assert "batteries" in research_prompt and "technical" in research_prompt
    summary_prompt = summary_model.calls[0].messages[-1]["content"]
    assert "fact one" in summary_prompt and "batteries" in summary_prompt


def test_per_step_agent_config_is_applied_to_that_step_only() -> None:
    model = ScriptedModel(lambda m: {"answer": "x"})
    first = create_agent("first", "question -> answer", {"model": model, "temperature": 0.1})
    second = create_agent(
        "second", "answer -> verdict", {"model": ScriptedModel(lambda m: {"verdict": "ok"})}
    )
    builder = create_pipeline([(first, {"temperature": 1.5, "max_tokens": 7}), second])
    results, _ = LocalRuntime().execute(builder.build(), parameters={"question": "q"})
    assert results["second"] == {"verdict": "ok"}
    assert model.calls[0].params["temperature"] == 1.5
    assert model.calls[0].params["max_tokens"] == 7
    assert first.config.temperature == 0.1  # the caller's agent is unchanged


def test_role_steps_chain_through_previous_result() -> None:
    model = ScriptedModel(
        lambda m: {"result": "step saw: " + str(m[-1]["content"]).replace("\n", " ")[-30:]}
    )
    builder = create_pipeline(["researcher", "writer", "reviewer"], model=model)
    wf = builder.build()
    edges = {(c.source, c.source_port, c.target, c.target_port) for c in wf.connections}
    assert ("researcher", "result", "writer", "previous_result") in edges
    assert ("writer", "result", "reviewer", "previous_result") in edges
    results, _ = LocalRuntime().execute(wf, parameters={"task": "a haiku"})
    assert len(model.calls) == 3
    assert "a haiku" in model.calls[0].messages[-1]["content"]
    assert "step saw" in model.calls[2].messages[-1]["content"]
    assert set(results) == {"researcher", "writer", "reviewer"}


def test_types_are_checked_at_build() -> None:
    count = create_agent("count", "text -> n: int")
    speak = create_agent("speak", "n: list[str] -> words: str")
    with pytest.raises(WorkflowValidationError, match="type mismatch"):
        create_pipeline([count, speak]).build()


def test_unlinked_steps_and_unknown_config_are_refused() -> None:
    a = create_agent("a", "question -> answer")
    b = create_agent("b", "text -> summary")
    with pytest.raises(ValueError, match="takes none of the earlier steps' outputs"):
        create_pipeline([a, b])
    with pytest.raises(ValueError, match="'focus'"):
        create_pipeline([(a, {"focus": "x"})])
    with pytest.raises(ValueError, match="non-empty list"):
        create_pipeline([])


def test_missing_required_inputs_are_named_at_build() -> None:
    a = create_agent("a", "question, audience -> answer")
    with pytest.raises(WorkflowValidationError, match=r"a\.audience"):
        create_pipeline([a]).build(parameters={"question": "q"})


def test_pipeline_renders(tmp_path: Path) -> None:
    builder = create_pipeline(["researcher", "writer"], model=ScriptedModel([]))
    svg = builder.build().render(tmp_path / "pipeline.svg").read_text()
    assert "researcher" in svg and "previous_result" in svg


def test_the_design_contract_form_puts_extra_step_config_into_the_context() -> None:
    research_model = ScriptedModel(lambda m: {"result": "three trends"})
    summary_model = ScriptedModel(lambda m: {"summary": "one line"})
    research = create_agent("research", config={"model": research_model})  # task, context
    summary = create_agent("summary", "result: str -> summary: str", {"model": summary_model})
    builder = create_pipeline([(research, {"focus": "technical"}), (summary, {})])
    results, _ = LocalRuntime().execute(builder.build(), parameters={"task": "ML trends"})
    assert results["summary"] == {"summary": "one line"}
    research_prompt = research_model.calls[0].messages[-1]["content"]
    assert "technical" in research_prompt and "ML trends" in research_prompt
    assert "three trends" in summary_model.calls[0].messages[-1]["content"]


def test_a_step_configured_in_the_pipeline_keeps_the_agents_hooks() -> None:
    from kaizen.runtime.hooks import NodeFinishHook

    class Seen(NodeFinishHook):
        def __init__(self) -> None:
            self.nodes: list[str] = []

        def on_node_finish(self, event: kaizen.NodeFinished) -> None:
            self.nodes.append(event.node_id)

    seen = Seen()
    model = ScriptedModel(lambda messages: {"result": "r"})
    writer = create_agent("writer", "task -> result", {"model": model}, hooks=[seen])
    pipeline = create_pipeline([(writer, {"temperature": 0.1})])
    LocalRuntime().execute(pipeline.build(), parameters={"task": "t"})
    assert seen.nodes == ["writer"]
    assert model.calls[0].params.get("temperature") == 0.1
