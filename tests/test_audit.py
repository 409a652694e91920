"""The hash-chained audit log and access policies (kaizen.observe), on ScriptedModel."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import kaizen
from kaizen import LocalRuntime, WorkflowBuilder
from kaizen.cli.app import app
from kaizen.errors import AccessDeniedError, ApprovalRequired, AuditChainError
from kaizen.observe.audit import verify
from kaizen.store.runs import load_run
from kaizen.testing import ScriptedModel

SECRET = "sk-live-THISISASECRETKEY1234567890"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KAIZEN_HOME", str(tmp_path))
    return tmp_path


def audited(tmp_path: Path) -> Path:
    path = tmp_path / "audit.jsonl"
    model = ScriptedModel(lambda messages: {"answer": "fine"})
    agent = kaizen.create_agent("qa", "question -> answer", {"model": model, "api_key": SECRET})
    agent.enable_audit_logging(path)
    agent.set_access_policy("allow_all")
    for n in range(3):
        agent.execute(question=f"my key is {SECRET}, question {n}")
    return path


def test_entries_chain_and_hold_no_secrets(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    path = audited(home)
    text = path.read_text()
    assert SECRET not in text and "THISISASECRET" not in text
    entries = [json.loads(line) for line in text.splitlines()]
    assert {e["action"] for e in entries} == {"access", "model_call", "execute"}
    assert all(e["input_hash"] is None or len(e["input_hash"]) == 64 for e in entries)
    assert verify(path) == len(entries) == 9


@pytest.mark.parametrize("tamper", ["edit", "delete", "reorder"])
def test_verify_finds_an_edited_deleted_or_reordered_entry(home: Path, tamper: str) -> None:
    path = audited(home)
    lines = path.read_text().splitlines()
    if tamper == "edit":
        entry = json.loads(lines[2])
        entry["decision"] = "allow"
        lines[2] = json.dumps(entry, sort_keys=True)
    elif tamper == "delete":
        del lines[2]
    else:
        lines[2], lines[3] = lines[3], lines[2]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(AuditChainError) as broken:
        verify(path)
    assert broken.value.line == 3
    result = CliRunner().invoke(app, ["audit", "verify", str(path)])
    assert result.exit_code == 1 and "audit.jsonl:3" in result.output


def test_a_denial_fails_with_the_reason_and_per_user_rules(home: Path) -> None:
    model = ScriptedModel(lambda messages: {"answer": "a"})
    agent = kaizen.create_agent("qa", "question -> answer", {"model": model})
    agent.set_access_policy(kaizen.per_user({"alice": {"models": [model.model_name]}}))
    with kaizen.acting_as("alice"):
        assert agent.execute(question="q").answer == "a"
    with kaizen.acting_as("mallory"), pytest.raises(AccessDeniedError, match="no access rule"):
        agent.execute(question="q")
    assert len(model.calls) == 1


def test_a_users_budget_is_charged_per_execution_and_then_denies(home: Path) -> None:
    model = ScriptedModel(lambda messages: {"answer": "a"})
    agent = kaizen.create_agent("metered", "question -> answer", {"model": model})
    bob_budget = kaizen.Budget(max_tokens=150)
    agent.set_access_policy(
        kaizen.per_user({"bob": {"budget": bob_budget}, "carol": {"models": [model.model_name]}})
    )
    with kaizen.acting_as("bob"):
        agent.execute(question="first")
        assert bob_budget.used.total_tokens > 0 and bob_budget.used.calls == 1
        while bob_budget.exceeded() is None:  # charged once per execution
            agent.execute(question="more")
        calls = len(model.calls)
        with pytest.raises(AccessDeniedError, match="used up their budget"):
            agent.execute(question="one too many")
        assert len(model.calls) == calls  # denied before any model call
    with kaizen.acting_as("carol"):  # other users are not charged to bob's budget
        assert agent.execute(question="q").answer == "a"
    with pytest.raises(kaizen.ConfigError, match=r"must be a kaizen\.Budget"):
        kaizen.per_user({"dave": {"budget": 10}})


def test_approval_pauses_a_workflow_and_approve_resumes_it(home: Path) -> None:
    model = ScriptedModel(lambda messages: {"answer": "approved answer"})
    agent = kaizen.create_agent("sensitive", "question -> answer", {"model": model})
    agent.set_access_policy("team_lead_approval_required")
    with pytest.raises(ApprovalRequired, match="team_lead"):
        agent.execute(question="q")  # a direct execute raises
    builder = WorkflowBuilder("gated")
    builder.add_node("ConstantNode", "ask", {"value": "q"})
    builder.add_agent(agent, "gate")
    builder.add_connection("ask", "value", "gate", "question")
    workflow = builder.build()
    runtime = LocalRuntime(checkpoint=True, failure_policy="continue")
    results, run_id = runtime.execute(workflow)
    assert "gate" not in results and load_run(runtime.store, run_id).status == "waiting_approval"
    assert model.calls == []
    cli = CliRunner().invoke(app, ["approve", run_id, "gate", "--by", "dana"])
    assert cli.exit_code == 0, cli.output
    results, _ = runtime.resume(run_id, workflow)
    assert results["gate"]["answer"] == "approved answer"
    assert load_run(runtime.store, run_id).status == "completed"


# -- issue 21 item 8: one run, one store, for every row that belongs to it ----------------------


def gated_workflow(agent: kaizen.Agent) -> kaizen.Workflow:
    builder = WorkflowBuilder("gated")
    builder.add_node("ConstantNode", "ask", {"value": "q"})
    builder.add_agent(agent, "gate")
    builder.add_connection("ask", "value", "gate", "question")
    return builder.build()


def test_a_pending_approval_lives_in_the_store_of_its_run(
    store_location: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KAIZEN_HOME", raising=False)
    monkeypatch.chdir(tmp_path)  # the default store would be ./.kaizen/kaizen.db
    path = store_location
    model = ScriptedModel(lambda messages: {"answer": "approved answer"})
    agent = kaizen.create_agent("sensitive", "question -> answer", {"model": model})
    agent.set_access_policy("team_lead_approval_required")
    workflow = gated_workflow(agent)
    runtime = LocalRuntime(checkpoint=path, failure_policy="continue")
    _, run_id = runtime.execute(workflow)
    assert load_run(runtime.store, run_id).status == "waiting_approval"
    cli = CliRunner().invoke(app, ["approve", run_id, "gate", "--by", "dana", "--store", str(path)])
    assert cli.exit_code == 0, cli.output
    results, _ = runtime.resume(run_id, workflow)
    assert results["gate"]["answer"] == "approved answer"
    assert not (tmp_path / ".kaizen").exists()  # nothing of this run went anywhere else


def answer_a(messages: object) -> dict[str, str]:
    return {"answer": "a"}


def test_layer_4_is_hooks_attached_with_add_hook_and_travels_with_the_agent(home: Path) -> None:
    import pickle

    model = ScriptedModel(answer_a)
    agent = kaizen.create_agent("gated", "question -> answer", {"model": model})
    audit = kaizen.AuditLog("gated", home / "audit.jsonl")
    agent.add_hook(audit)
    agent.add_hook(kaizen.AccessPolicy("deny_all"))
    with pytest.raises(AccessDeniedError, match="denies every execution"):
        agent.execute(question="q")
    assert model.calls == []
    # the policy's decision went to the audit log the agent carries
    entries = [json.loads(line) for line in (home / "audit.jsonl").read_text().splitlines()]
    assert [(e["action"], e["decision"]) for e in entries] == [
        ("access", "AccessDeniedError"),
        ("execute", "failed: AccessDeniedError"),
    ]
    assert agent.enable_audit_logging() is audit  # the agent's own, not a second one

    agent.set_access_policy("allow_all")  # replaces the policy it had
    assert sum(isinstance(h, kaizen.AccessPolicy) for h in agent.hooks) == 1
    assert agent.execute(question="q").answer == "a"

    monitor = agent.get_execution_monitor()
    assert agent.get_execution_monitor() is monitor
    travelled = pickle.loads(pickle.dumps(agent))  # to a worker process, a Ray actor
    assert type(travelled.get_execution_monitor()) is kaizen.ExecutionMonitor
    assert [type(h).__name__ for h in travelled.hooks] == [
        "AuditLog", "AccessPolicy", "ExecutionMonitor"
    ]  # fmt: skip
    copy = agent.with_signature("question -> answer, note")  # keeps its gates too
    copy.set_access_policy("deny_all")
    with pytest.raises(AccessDeniedError):
        copy.execute(question="q")
    assert agent.execute(question="q").answer == "a"  # the original's policy is its own
