"""The agent-execution ADR's contract, run as the ADR writes it (../shared/seeds/001_*.txt).

Each test is a passage of the ADR with `ScriptedModel` as the model. Where the ADR gives no model
at all (role-name patterns), the scripted model's name is `KAIZEN_MODEL`, so the line runs exactly
as written. Where a passage only calls methods (layer 4: monitor, optimizer, audit, access
policy), the test goes on to check what those calls did.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import kaizen
from kaizen import LocalRuntime, WorkflowBuilder
from kaizen.errors import ApprovalRequired
from kaizen.testing import ScriptedModel

Messages = list[dict[str, Any]]

# One reply fits every signature these passages use: the output model ignores extra fields.
EVERYTHING = {
    "answer": "yes",
    "confidence": 0.9,
    "rationale": "it follows",
    "result": "done",
    "summary": "short",
    "findings": "F",
    "key_points": ["a", "b"],
    "argument": "a point",
    "position": "for",
    "verdict": "adopt it",
    "assignments": [{"worker": "researcher", "subtask": "look it up"}],
    "subtasks": ["look it up"],
    "approved": True,
    "revisions": [],
}


def answers(messages: Messages) -> dict[str, Any]:
    return EVERYTHING


@pytest.fixture
def model(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedModel]:
    scripted = ScriptedModel(answers)
    monkeypatch.setenv("KAIZEN_MODEL", scripted.model_name)  # for lines that name no model
    yield scripted


@pytest.fixture
def runtime() -> LocalRuntime:
    return LocalRuntime(failure_policy="continue")


# -- layer 1: direct execution ------------------------------------------------------------------


def test_direct_execution_with_the_default_signature(model: ScriptedModel) -> None:
    agent = kaizen.create_agent("researcher", config={"model": model})
    result = agent.execute(
        task="Research machine learning trends", context={"focus": "enterprise applications"}
    )
    assert result.result == "done"
    assert result.success is True and result.error is None


def test_a_dict_in_the_signatures_place_is_the_config(model: ScriptedModel) -> None:
    agent = kaizen.create_agent("assistant", {"model": model})
    result = agent.execute(task="Summarize this document")
    assert result.result == "done"
    assert agent.config.model is model


def test_signature_based_execution_is_typed(model: ScriptedModel) -> None:
    signature = kaizen.create_signature("question: str -> answer: str, confidence: float")
    agent = kaizen.create_agent("qa_agent", signature=signature)  # the model: KAIZEN_MODEL
    result = agent.execute(question="What is machine learning?")
    assert (result.answer, result.confidence) == ("yes", 0.9)
    assert isinstance(result.confidence, float)


def test_execution_result_carries_success_error_data_and_metadata(model: ScriptedModel) -> None:
    signature = kaizen.create_signature("document: str -> summary: str, key_points: list[str]")
    agent = kaizen.create_agent("summarizer", signature=signature, config={"model": model})
    result = agent.execute(document="A long text.")
    assert result.success and result.error is None
    assert result.data == {"summary": "short", "key_points": ["a", "b"]}
    print(result.summary, result.key_points)
    metadata = result.metadata
    assert metadata.execution_time > 0 and metadata["execution_time"] == metadata.execution_time
    assert metadata.token_usage["total_tokens"] == (
        metadata.token_usage["prompt_tokens"] + metadata.token_usage["completion_tokens"]
    )
    assert metadata.cost == 0.0  # a scripted model is free


def test_a_failed_execution_is_raised_or_returned_as_configured(model: ScriptedModel) -> None:
    down = ScriptedModel([RuntimeError("provider down")])
    agent = kaizen.create_agent("qa", "question -> answer", {"model": down, "retries": 0})
    with pytest.raises(kaizen.ModelError, match="provider down"):
        agent.execute(question="q")
    down = ScriptedModel([RuntimeError("provider down")])
    config = {"model": down, "retries": 0, "raise_on_error": False}
    result = kaizen.create_agent("qa", "question -> answer", config).execute(question="q")
    assert result.success is False
    assert isinstance(result.error, kaizen.ModelError) and "provider down" in str(result.error)
    assert result.data == {} and result.metadata.run_id
    with pytest.raises(AttributeError, match="this execution failed"):
        _ = result.answer
    with pytest.raises(kaizen.InputValidationError):  # caller mistakes always raise
        kaizen.create_agent("qa", "question -> answer", config).execute(nope="q")


def test_stateful_execution_with_memory(
    model: ScriptedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The ADR calls execute(task=...) on the agent it made last; `task` is the input of an agent
    # made without a signature, so this is that agent.
    monkeypatch.setenv("KAIZEN_HOME", str(tmp_path))
    agent = kaizen.create_agent("qa_agent")
    agent.enable_memory(provider="vector_db")
    agent.execute(task="Remember: User prefers technical details")
    agent.execute(task="Explain neural networks")  # Uses remembered context
    assert "User prefers technical details" in model.calls[-1].messages[0]["content"]


# -- layer 2: workflow integration --------------------------------------------------------------


def test_an_agent_becomes_a_node_or_a_workflow(model: ScriptedModel) -> None:
    signature = kaizen.create_signature("question: str -> answer: str, confidence: float")
    agent = kaizen.create_agent("processor", signature=signature)
    workflow = WorkflowBuilder()
    agent_node = agent.to_workflow_node("processing_step")
    workflow.add_node_instance(agent_node)
    assert list(workflow.build().nodes) == ["processing_step"]

    runtime = LocalRuntime()
    agent_workflow = agent.to_workflow()
    results, run_id = runtime.execute(agent_workflow.build(), parameters={"question": "q"})
    assert results["processor"] == {"answer": "yes", "confidence": 0.9}
    assert runtime.get_record(run_id).status == "completed"


def test_agents_and_functions_in_one_workflow(model: ScriptedModel) -> None:
    research_agent = kaizen.create_agent("research", "task -> findings: str, answer: str")
    analysis_agent = kaizen.create_agent("analysis", "findings: str -> summary: str")

    def to_markdown(text: str) -> str:
        return f"**{text}**"

    wf = WorkflowBuilder()
    wf.add_agent(research_agent, "research")
    wf.add_node_instance(analysis_agent.to_workflow_node("analysis"))
    wf.add_node("FunctionNode", "format", {"function": to_markdown})
    wf.add_connection("research", "analysis")  # ports matched by name
    wf.add_connection("analysis", "summary", "format", "text")  # explicit ports
    results, run_id = LocalRuntime().execute(wf.build(), parameters={"research": {"task": "..."}})
    assert results["format"] == {"result": "**short**"} and run_id


# -- layer 3: multi-agent coordination ----------------------------------------------------------


def test_debate_of_role_names_as_written(model: ScriptedModel, runtime: LocalRuntime) -> None:
    debate_result = kaizen.create_debate_workflow(
        agents=["optimist", "pessimist", "moderator"], topic="AI adoption strategy", rounds=3
    )
    results, _ = runtime.execute(debate_result.build())
    assert results["moderator"]["position"] == "for"


def test_debate_of_agents_that_know_nothing_of_debates(
    model: ScriptedModel, runtime: LocalRuntime
) -> None:
    optimist = kaizen.create_agent("optimist", "topic -> argument")
    pessimist = kaizen.create_agent("pessimist", "topic -> argument")
    moderator = kaizen.create_agent("moderator", "topic -> verdict, confidence: float")
    debate = kaizen.create_debate_workflow(
        agents=[optimist, pessimist, moderator],
        topic="Should we adopt AI in healthcare?",
        rounds=3,
    )
    results, run_id = runtime.execute(debate.build())
    assert results["moderator"] == {"verdict": "adopt it", "confidence": 0.9}
    assert runtime.get_record(run_id).status == "completed"
    # later rounds heard the earlier arguments (as said: issue 26 drops the "name:" line a small
    # model copies), and the moderator the last round's, with who said them
    round3 = [c for c in model.calls if "previous_arguments" in str(c.messages)]
    assert round3 and '["a point", "a point"]' in str(round3[-1].messages)
    judged = [c for c in model.calls if "arguments" in str(c.messages) and c not in round3]
    assert judged and "optimist: a point" in str(judged[-1].messages)
    assert optimist.signature.input_names == ("topic",)  # the user's agents are untouched


def test_pipeline_of_roles_with_per_step_config(
    model: ScriptedModel, runtime: LocalRuntime
) -> None:
    pipeline = kaizen.create_pipeline(
        [
            ("data_collector", {"source": "web"}),
            ("analyzer", {"depth": "detailed"}),
            ("reporter", {"format": "executive_summary"}),
        ]
    )
    results, _ = runtime.execute(pipeline.build(), parameters={"task": "AI in healthcare"})
    assert results["reporter"] == {"result": "done"}
    first = next(c for c in model.calls if "web" in str(c.messages))
    assert "source" in str(first.messages)  # the step's config reached its agent


def test_pipeline_of_agents_with_per_step_config(
    model: ScriptedModel, runtime: LocalRuntime
) -> None:
    research_agent = kaizen.create_agent("research_agent")
    analysis_agent = kaizen.create_agent("analysis_agent", "task, previous_result -> result")
    summary_agent = kaizen.create_agent("summary_agent", "previous_result, context: dict -> result")
    pipeline = kaizen.create_pipeline(
        [
            (research_agent, {"focus": "technical"}),
            (analysis_agent, {}),
            (summary_agent, {"format": "executive"}),
        ]
    )
    results, _ = runtime.execute(pipeline.build(), parameters={"task": "AI in healthcare"})
    assert results["summary_agent"] == {"result": "done"}


def test_consensus_as_written(model: ScriptedModel, runtime: LocalRuntime) -> None:
    consensus = kaizen.create_consensus_workflow(
        agents=["expert1", "expert2", "expert3"],
        decision_criteria="majority_vote",
        confidence_threshold=0.8,
    )
    final_decision = runtime.execute(consensus.build(), parameters={"question": "Adopt AI?"})
    results, _ = final_decision
    assert results["consensus"]["reached"] is True

    expert1, expert2, expert3 = (
        kaizen.create_agent(name, "question -> answer, confidence: float")
        for name in ("expert1", "expert2", "expert3")
    )
    consensus = kaizen.create_consensus_workflow(
        agents=[expert1, expert2, expert3],
        decision_criteria="weighted_vote",
        confidence_threshold=0.85,
    )
    final_decision = runtime.execute(consensus.build(), parameters={"question": "Adopt AI?"})
    assert final_decision[0]["consensus"]["decision"] == "yes"


def test_supervisor_as_written(model: ScriptedModel, runtime: LocalRuntime) -> None:
    supervisor = kaizen.create_supervisor_agent(
        "manager",
        {
            "workers": ["researcher", "analyst", "writer"],
            "task_allocation": "automatic",
            "quality_control": True,
        },
    )
    results, _ = runtime.execute(supervisor.build(), parameters={"task": "Report on AI"})
    assert results["manager/synthesize"]["answer"] == "yes"


def test_a_pattern_draws_before_it_runs(model: ScriptedModel, tmp_path: Path) -> None:
    debate = kaizen.create_debate_workflow(
        agents=["optimist", "pessimist", "moderator"], topic="AI", rounds=3
    )
    path = debate.build().render(tmp_path / "debate.svg")
    assert path.read_text().lstrip().startswith(("<?xml", "<svg", "<!DOCTYPE"))


# -- layer 4: enterprise execution management (its own issue) -----------------------------------


def test_execution_monitoring(model: ScriptedModel) -> None:
    agent = kaizen.create_agent("researcher")
    execution_monitor = agent.get_execution_monitor()
    execution_monitor.enable_real_time_tracking()
    execution_monitor.set_performance_alerts(latency_threshold=5000)
    assert agent.get_execution_monitor() is execution_monitor  # one monitor per agent

    assert agent.execute(task="Survey AI agents").result == "done"
    summary = execution_monitor.summary()
    assert (summary["runs"], summary["calls"], summary["errors"]) == (1, 1, 0)
    assert summary["models"][model.model_name]["calls"] == 1
    assert summary["tokens"]["total"] > 0 and summary["cost"] == 0.0
    assert execution_monitor.alerts == []  # well under 5 s: no latency alert


def test_execution_optimization(model: ScriptedModel) -> None:
    agent = kaizen.create_agent("researcher")
    optimizer = agent.get_execution_optimizer()
    optimizer.enable_auto_optimization()
    optimizer.set_optimization_targets(["latency", "accuracy", "cost"])
    assert optimizer.targets == ("latency", "accuracy", "cost")
    assert optimizer.suggestions() == [] and optimizer.applied == []  # no evidence yet

    for _ in range(3):  # the same prompt again and again: caching is the safe suggestion
        agent.execute(task="Survey AI agents")
    [suggestion] = optimizer.suggestions()
    assert (suggestion.kind, suggestion.applied) == ("cache", True)
    assert "caching enabled for agent 'researcher'" in optimizer.applied[0]


def test_security_and_audit(
    model: ScriptedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAIZEN_HOME", str(tmp_path))  # the audit file and the approvals
    agent = kaizen.create_agent("researcher")
    audit = agent.enable_audit_logging()
    agent.set_access_policy("team_lead_approval_required")
    assert audit.path == tmp_path / "audit.jsonl"

    with pytest.raises(ApprovalRequired, match="team_lead's approval") as caught:
        agent.execute(task="Survey AI agents")
    assert caught.value.agent == "researcher"
    assert model.calls == []  # refused before any model call
    entries = [json.loads(line) for line in audit.path.read_text().splitlines()]
    assert [(e["action"], e["decision"]) for e in entries] == [
        ("access", "ApprovalRequired"),
        ("execute", "failed: ApprovalRequired"),
    ]
