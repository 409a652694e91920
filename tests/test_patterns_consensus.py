"""Consensus pattern: parallel agents into an aggregator; rules end to end, failures, quorum."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kaizen.agents import create_agent
from kaizen.patterns import ConsensusResult, create_consensus_workflow
from kaizen.runtime import LocalRuntime, NodeStatus, RunRecord
from kaizen.testing import ScriptedModel
from kaizen.workflow import WorkflowBuilder

Messages = list[dict[str, Any]]


def voters(answers: dict[str, Any]) -> ScriptedModel:
    """Role-name voters: the persona in the system message picks the reply (an int: HTTP error)."""

    def reply(messages: Messages) -> Any:
        persona = str(messages[0]["content"]).rsplit("\n\n", 1)[-1].split(":")[0].lower()
        for role, answer in answers.items():
            if role in persona:
                return answer
        raise AssertionError(f"no scripted answer for {persona!r}")

    return ScriptedModel(reply)


def vote(answer: str, confidence: float = 0.9) -> dict[str, Any]:
    return {"answer": answer, "confidence": confidence, "rationale": f"because {answer}"}


def run(builder: WorkflowBuilder, **parameters: Any) -> tuple[dict[str, Any], RunRecord]:
    runtime = LocalRuntime(failure_policy="continue")
    results, run_id = runtime.execute(builder.build(), parameters=parameters or None)
    return results, runtime.get_record(run_id)


ROLES = ["economist", "engineer", "ethicist"]


def test_graph_is_a_fan_out_into_one_aggregator() -> None:
    builder = create_consensus_workflow(ROLES, question="Ship it?", model=voters({}))
    wf = builder.build()
    assert set(wf.nodes) == {"question", *ROLES, "consensus"}
    edges = {(c.source, c.source_port, c.target, c.target_port) for c in wf.connections}
    for role in ROLES:
        assert ("question", "value", role, "question") in edges
        for field in ("answer", "confidence", "rationale"):
            assert (role, field, "consensus", f"{role}__{field}") in edges
    assert set(wf.graph.predecessors("consensus")) == set(ROLES)
    assert wf.nodes["consensus"].accepts_partial_inputs


def test_majority_vote_end_to_end_with_what_each_agent_saw() -> None:
    model = voters({"economist": vote("Yes"), "engineer": vote("yes."), "ethicist": vote("No")})
    builder = create_consensus_workflow(ROLES, "majority_vote", 0.8, model=model)
    results, record = run(builder, question="Should we ship on Friday?")
    assert record.status == "completed"
    assert len(model.calls) == 3
    assert all("Should we ship on Friday?" in c.messages[-1]["content"] for c in model.calls)
    result = results["consensus"]["result"]
    assert isinstance(result, ConsensusResult)
    assert result.reached and result.decision == "Yes"
    assert results["consensus"]["decision"] == "Yes" and results["consensus"]["reached"] is True
    assert result.agreement == pytest.approx(2 / 3)
    assert [(v.agent, v.answer) for v in result.votes] == [
        ("economist", "Yes"),
        ("engineer", "yes."),
        ("ethicist", "No"),
    ]
    assert [v.agent for v in result.dissent] == ["ethicist"]
    assert result.votes[0].rationale == "because Yes"
    json.loads(result.model_dump_json())


@pytest.mark.parametrize(
    ("rule", "answers", "weights", "decision", "reached"),
    [
        ("unanimous", ["yes", "yes", "yes"], None, "yes", True),
        ("unanimous", ["yes", "yes", "no"], None, "yes", False),
        ("weighted_vote", ["no", "yes", "yes"], {"economist": 5}, "no", True),
        ("weighted_vote", ["no", "yes", "yes"], None, "yes", True),
        ("average_confidence", ["no", "yes", "yes"], None, "yes", True),
    ],
)
def test_every_rule_end_to_end(
    rule: str, answers: list[str], weights: dict[str, float] | None, decision: str, reached: bool
) -> None:
    model = voters({role: vote(a) for role, a in zip(ROLES, answers, strict=True)})
    builder = create_consensus_workflow(
        ROLES, rule, 0.5, question="q", weights=weights, model=model
    )
    result = run(builder)[0]["consensus"]["result"]
    assert (result.rule, result.decision, result.reached) == (rule, decision, reached)


def test_low_confidence_is_not_consensus() -> None:
    model = voters({role: vote("yes", 0.4) for role in ROLES})
    result = run(
        create_consensus_workflow(ROLES, confidence_threshold=0.8, question="q", model=model)
    )[0]["consensus"]["result"]
    assert result.decision == "yes" and not result.reached
    assert "threshold" in result.reason


def test_failed_agents_below_quorum_are_never_success() -> None:
    model = voters({"economist": vote("yes"), "engineer": 500, "ethicist": 503})
    builder = create_consensus_workflow(
        ROLES, question="q", model=model, agent_config={"retries": 0}
    )
    results, record = run(builder)
    result = results["consensus"]["result"]
    assert not result.reached and results["consensus"]["reached"] is False
    assert result.quorum == 2
    assert {f.agent for f in result.failures} == {"engineer", "ethicist"}
    assert all("500" in f.error or "503" in f.error for f in result.failures)
    assert "quorum" in result.reason
    assert record.nodes["engineer"].status is NodeStatus.FAILED
    assert record.nodes["consensus"].status is NodeStatus.COMPLETED
    assert record.status == "failed"


def test_every_agent_failed_still_reports_and_never_succeeds() -> None:
    model = voters({role: 500 for role in ROLES})
    results, _ = run(
        create_consensus_workflow(ROLES, question="q", model=model, agent_config={"retries": 0})
    )
    result = results["consensus"]["result"]
    assert not result.reached and results["consensus"]["reached"] is False
    assert result.decision is None and result.votes == []
    assert sorted(f.agent for f in result.failures) == sorted(ROLES)
    assert all("500" in f.error for f in result.failures)


def test_a_failure_above_quorum_is_reported_beside_the_decision() -> None:
    model = voters({"economist": vote("yes"), "engineer": vote("yes"), "ethicist": 500})
    result = run(
        create_consensus_workflow(ROLES, question="q", model=model, agent_config={"retries": 0})
    )[0]["consensus"]["result"]
    assert result.reached and [f.agent for f in result.failures] == ["ethicist"]
    strict = create_consensus_workflow(
        ROLES, question="q", quorum=3, model=model, agent_config={"retries": 0}
    )
    assert not run(strict)[0]["consensus"]["result"].reached


def test_options_constrain_role_agents_and_duplicates_get_unique_names() -> None:
    model = ScriptedModel(lambda m: vote("agree"))
    builder = create_consensus_workflow(
        ["expert", "expert", "expert"], question="q", options=["agree", "disagree"], model=model
    )
    results, _ = run(builder)
    assert [v.agent for v in results["consensus"]["result"].votes] == [
        "expert_1",
        "expert_2",
        "expert_3",
    ]
    schema = json.dumps(model.calls[0].response_format)
    assert "disagree" in schema  # the answer is an enum in the structured-output request


def test_agent_objects_vote_with_their_own_fields() -> None:
    yes = create_agent(
        "yes_bot",
        signature="question -> decision: str, confidence: float",
        config={"model": ScriptedModel(lambda m: {"decision": "go", "confidence": 0.9})},
    )
    sure = create_agent(
        "sure_bot",
        signature="question -> answer",
        config={"model": ScriptedModel(lambda m: {"answer": "go"})},
    )
    result = run(create_consensus_workflow([yes, sure], question="q"))[0]["consensus"]["result"]
    assert result.reached and result.decision == "go"
    assert [v.confidence for v in result.votes] == [0.9, 1.0]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="decision_criteria"):
        create_consensus_workflow(ROLES, "plurality")
    with pytest.raises(ValueError, match="quorum"):
        create_consensus_workflow(ROLES, quorum=4)
    with pytest.raises(ValueError, match="unknown agent"):
        create_consensus_workflow(ROLES, "weighted_vote", weights={"nobody": 2})
    with pytest.raises(ValueError, match="confidence_threshold"):
        create_consensus_workflow(ROLES, confidence_threshold=80)


def test_consensus_renders(tmp_path: Path) -> None:
    wf = create_consensus_workflow(ROLES, question="q", model=voters({})).build()
    svg = wf.render(tmp_path / "consensus.svg").read_text()
    assert "consensus" in svg and "ethicist" in svg
