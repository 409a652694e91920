"""Supervisor-worker pattern: plan, parallel workers, skipped workers, review and revision."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kaizen.agents import create_agent
from kaizen.patterns import create_supervisor_agent
from kaizen.patterns.delegation import AssignNode, match_worker
from kaizen.runtime import LocalRuntime, NodeStatus, RunRecord
from kaizen.testing import ScriptedModel
from kaizen.workflow import WorkflowBuilder

Messages = list[dict[str, Any]]
WORKERS = ["researcher", "writer", "coder"]


def team_script(
    plan: Any,
    review: dict[str, Any] | None = None,
    fail: frozenset[str] = frozenset(),
) -> ScriptedModel:
    """Supervisor steps are told apart by their instructions, workers by their persona."""

    def reply(messages: Messages) -> Any:
        system = str(messages[0]["content"])
        user = str(messages[-1]["content"])
        if "Split the task into subtasks and assign" in system:
            return {"assignments": plan}
        if "Split the task into a few" in system:
            return {"subtasks": plan}
        if "Review the workers' results" in system:
            return review or {"approved": True, "revisions": []}
        if "Combine the workers' results" in system:
            return {"answer": "final: " + " | ".join(sorted(user.splitlines()))}
        persona = system.rsplit("\n\n", 1)[-1].split(":")[0].lower()
        for worker in [*WORKERS, "programmer"]:
            if worker in persona:
                if worker in fail:
                    return 500
                revised = "Revise your work" in user
                return {"result": f"{worker} {'revised' if revised else 'first'} result"}
        raise AssertionError(f"unscripted request: {system[:80]!r}")

    return ScriptedModel(reply)


def run(builder: WorkflowBuilder, **parameters: Any) -> tuple[dict[str, Any], RunRecord]:
    runtime = LocalRuntime(failure_policy="continue")
    results, run_id = runtime.execute(builder.build(), parameters=parameters or None)
    return results, runtime.get_record(run_id)


PLAN = [
    {"worker": "researcher", "subtask": "find three facts"},
    {"worker": "The Writer", "subtask": "write the summary"},
]


def test_graph_plan_workers_results_synthesis() -> None:
    wf = create_supervisor_agent(
        "manager", {"workers": WORKERS, "task": "t", "model": team_script(PLAN)}
    ).build()
    assert set(wf.nodes) == {
        "task",
        "manager/team",
        "manager/plan",
        "manager/assign",
        *(f"manager/{w}" for w in WORKERS),
        "manager/results",
        "manager/synthesize",
    }
    edges = {(c.source, c.source_port, c.target, c.target_port) for c in wf.connections}
    for w in WORKERS:
        assert ("manager/assign", w, f"manager/{w}", "task") in edges
        assert (f"manager/{w}", "result", "manager/results", w) in edges
    assert ("manager/plan", "assignments", "manager/assign", "assignments") in edges
    assert ("manager/results", "results", "manager/synthesize", "results") in edges
    # the workers depend only on the assignment, so they run in parallel
    assert {p for w in WORKERS for p in wf.graph.predecessors(f"manager/{w}")} == {"manager/assign"}


def test_assigned_workers_run_on_their_subtask_and_the_rest_are_skipped_visibly() -> None:
    model = team_script(PLAN)
    results, record = run(
        create_supervisor_agent("manager", {"workers": WORKERS, "model": model}),
        task="Write a brief on solar power",
    )
    plan_prompt = next(c for c in model.calls if "assign" in str(c.messages[0]["content"]))
    user = plan_prompt.messages[-1]["content"]
    assert "Write a brief on solar power" in user and "coder: You are a programmer" in user
    worker_prompts = {
        c.messages[-1]["content"] for c in model.calls if "You are a" in c.messages[0]["content"]
    }
    assert any("find three facts" in p for p in worker_prompts)
    assert any("write the summary" in p for p in worker_prompts)
    assert results["manager/assign"]["unassigned"] == ["coder"]
    coder = record.nodes["manager/coder"]
    assert coder.status is NodeStatus.SKIPPED and "manager/assign.coder" in (
        coder.skip_reason or ""
    )
    assert results["manager/results"]["missing"] == ["coder"]
    answer = results["manager/synthesize"]["answer"]
    assert "researcher first result" in answer and "writer first result" in answer
    assert record.status == "completed"


def test_round_robin_deals_the_subtasks_in_turn() -> None:
    model = team_script(["a", "b", "c", "d"])
    results, _ = run(
        create_supervisor_agent(
            "lead",
            {"workers": WORKERS, "task_allocation": "round_robin", "task": "t", "model": model},
        )
    )
    assert results["lead/assign"]["tasks"] == {"researcher": "a\nd", "writer": "b", "coder": "c"}
    assert results["lead/assign"]["unassigned"] == []


def test_quality_control_revises_only_the_named_workers() -> None:
    review = {"approved": False, "revisions": [{"worker": "writer", "feedback": "shorter"}]}
    model = team_script(PLAN, review)
    results, record = run(
        create_supervisor_agent(
            "manager",
            {"workers": WORKERS, "quality_control": True, "task": "t", "model": model},
        )
    )
    assert results["manager/revise"]["requested"] == ["writer"]
    revision_prompt = next(
        c.messages[-1]["content"]
        for c in model.calls
        if "Revise your work" in c.messages[-1]["content"]
    )
    assert "write the summary" in revision_prompt and "shorter" in revision_prompt
    assert "writer first result" in revision_prompt
    assert record.nodes["manager/writer/revised"].status is NodeStatus.COMPLETED
    for skipped in ("manager/researcher/revised", "manager/coder/revised"):
        assert record.nodes[skipped].status is NodeStatus.SKIPPED
    assert results["manager/final_results"]["by_worker"] == {
        "researcher": "researcher first result",
        "writer": "writer revised result",
    }
    assert "writer revised result" in results["manager/synthesize"]["answer"]


def test_an_approving_review_asks_for_no_revision() -> None:
    model = team_script(PLAN, {"approved": True, "revisions": []})
    results, record = run(
        create_supervisor_agent(
            "manager", {"workers": WORKERS, "quality_control": True, "task": "t", "model": model}
        )
    )
    assert results["manager/revise"]["requested"] == []
    assert all(record.nodes[f"manager/{w}/revised"].status is NodeStatus.SKIPPED for w in WORKERS)
    assert "writer first result" in results["manager/synthesize"]["answer"]


def test_a_failed_worker_is_reported_missing_and_synthesis_goes_on() -> None:
    model = team_script(PLAN, fail=frozenset({"writer"}))
    results, record = run(
        create_supervisor_agent(
            "manager",
            {"workers": WORKERS, "task": "t", "model": model, "agent_config": {"retries": 0}},
        )
    )
    assert record.nodes["manager/writer"].status is NodeStatus.FAILED
    assert results["manager/results"]["missing"] == ["writer", "coder"]
    assert record.status == "failed"


def test_a_plan_naming_no_worker_fails_the_assign_step_clearly() -> None:
    model = team_script([{"worker": "astronaut", "subtask": "fly"}])
    _, record = run(create_supervisor_agent("m", {"workers": WORKERS, "task": "t", "model": model}))
    assign = record.nodes["m/assign"]
    assert assign.status is NodeStatus.FAILED and "no subtask to any worker" in (assign.error or "")


def test_worker_agents_and_config_errors() -> None:
    model = team_script([{"worker": "helper", "subtask": "help"}])
    helper = create_agent(
        "helper",
        signature="task -> result",
        config={"model": ScriptedModel(lambda m: {"result": "ok"})},
    )
    results, _ = run(
        create_supervisor_agent("m", {"workers": [helper], "task": "t", "model": model})
    )
    assert results["m/results"]["by_worker"] == {"helper": "ok"}
    with pytest.raises(ValueError, match="unknown config key"):
        create_supervisor_agent("m", {"workers": WORKERS, "qc": True})
    with pytest.raises(ValueError, match="workers"):
        create_supervisor_agent("m", {"workers": []})
    with pytest.raises(ValueError, match="task_allocation"):
        create_supervisor_agent("m", {"workers": WORKERS, "task_allocation": "random"})
    no_task = create_agent("quiet", signature="question -> answer")
    with pytest.raises(ValueError, match="'task: str'"):
        create_supervisor_agent("m", {"workers": [no_task]})


def test_supervisor_renders(tmp_path: Path) -> None:
    wf = create_supervisor_agent(
        "manager", {"workers": WORKERS, "quality_control": True, "model": team_script(PLAN)}
    ).build()
    svg = wf.render(tmp_path / "supervisor.svg").read_text()
    for text in ("manager/plan", "manager/review", "revision", "manager/synthesize"):
        assert text in svg


def test_worker_names_in_a_plan_are_matched_leniently() -> None:
    workers = {"researcher": "researcher", "data_analyst": "Data Analyst"}
    assert match_worker("Researcher", workers) == "researcher"
    assert match_worker("the researcher", workers) == "researcher"
    assert match_worker("data analyst", workers) == "data_analyst"
    assert match_worker("researcehr", workers) == "researcher"  # a close misspelling
    assert match_worker("astronaut", workers) is None


@given(
    subtasks=st.lists(st.text(alphabet="abc ", min_size=1, max_size=5), max_size=12),
    n_workers=st.integers(1, 5),
)
def test_round_robin_deals_every_subtask_once_and_evenly(
    subtasks: list[str], n_workers: int
) -> None:
    workers = {f"w{i}": f"w{i}" for i in range(n_workers)}
    node = AssignNode("assign", {"workers": workers, "mode": "round_robin"})
    real = [s.strip() for s in subtasks if s.strip()]
    if not real:
        with pytest.raises(ValueError, match="no subtask"):
            node.run(subtasks=subtasks)
        return
    out = node.run(subtasks=subtasks)
    dealt = [part for key in workers if key in out for part in out[key].split("\n")]
    assert sorted(dealt) == sorted(real)
    counts = [len(out[key].split("\n")) if key in out else 0 for key in workers]
    assert max(counts) - min(counts) <= 1
    assert out["unassigned"] == [key for key in workers if key not in out]
