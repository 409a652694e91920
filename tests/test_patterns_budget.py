"""Pattern budgets: a ceiling stops new model calls; the record says what did not run and why."""

from __future__ import annotations

from typing import Any

import pytest

from kaizen.patterns import create_consensus_workflow, create_debate_workflow
from kaizen.runtime import Budget, LocalRuntime, NodeStatus
from kaizen.testing import ScriptedModel

Messages = list[dict[str, Any]]


def debate_model() -> ScriptedModel:
    def reply(messages: Messages) -> Any:
        if "rule on the topic" in str(messages[0]["content"]):
            return {"position": "for", "rationale": "r", "confidence": 0.5}
        # a pessimist is bound to "against" (kaizen.patterns.debate.SIDES)
        side = "against" if "AGAINST" in str(messages[0]["content"]) else "for"
        return {"position": side, "argument": "a", "confidence": 0.5}

    return ScriptedModel(reply)


def test_a_pattern_budget_stops_the_debate_after_the_first_round() -> None:
    model = debate_model()
    # enough for round 1 to start (the ceiling is checked before each call), not for more
    builder = create_debate_workflow(
        ["optimist", "pessimist", "skeptic"], topic="t", rounds=3, model=model, max_tokens=1
    )
    assert isinstance(builder.budget, Budget)
    runtime = LocalRuntime(failure_policy="continue", max_concurrency=1)
    results, run_id = runtime.execute(builder.build())
    record = runtime.get_record(run_id)
    first_round = [record.nodes[f"round1/{d}"].status for d in ("optimist", "pessimist", "skeptic")]
    assert first_round.count(NodeStatus.COMPLETED) == 1
    assert len(model.calls) == 1  # nothing after the ceiling was reached
    budget_skips = [
        n.node_id
        for n in record.nodes.values()
        if n.status is NodeStatus.SKIPPED and "budget exceeded" in (n.skip_reason or "")
    ]
    assert len([n for n in budget_skips if n.startswith("round1/")]) == 2
    assert record.nodes["moderator"].status is NodeStatus.SKIPPED
    assert "moderator" not in results
    assert record.status == "failed"  # a run cut short by its budget is not a success
    assert builder.budget.used.calls == 1


def test_a_budgeted_consensus_is_not_reached_and_names_the_agents_cut_off() -> None:
    model = ScriptedModel(lambda m: {"answer": "yes", "confidence": 0.9, "rationale": "r"})
    budget = Budget(max_tokens=1)
    builder = create_consensus_workflow(
        ["economist", "engineer", "ethicist"], question="q", model=model, budget=budget
    )
    runtime = LocalRuntime(failure_policy="continue", max_concurrency=1)
    results, _ = runtime.execute(builder.build())
    result = results["consensus"]["result"]
    assert not result.reached
    assert len(result.votes) == 1 and len(result.failures) == 2
    assert all("budget exceeded" in f.error for f in result.failures)
    assert budget.used.total_tokens > 0


def test_the_runtime_budget_takes_precedence_and_a_roomy_budget_changes_nothing() -> None:
    model = debate_model()
    builder = create_debate_workflow(
        ["optimist", "pessimist"], topic="t", rounds=2, model=model, max_tokens=10_000_000
    )
    own = Budget(max_tokens=1)
    runtime = LocalRuntime(failure_policy="continue", max_concurrency=1, budget=own)
    runtime.execute(builder.build())
    assert len(model.calls) == 1 and own.used.calls == 1
    assert builder.budget.used.calls == 0
    results, _ = LocalRuntime().execute(builder.build())
    assert results["moderator"]["position"] == "for"
    assert builder.budget.used.calls == 5


def test_budget_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="either"):
        create_debate_workflow(["optimist", "pessimist"], budget=Budget(1), max_tokens=5)
    with pytest.raises(TypeError, match="Budget"):
        create_debate_workflow(["optimist", "pessimist"], budget=100)  # type: ignore[arg-type]
