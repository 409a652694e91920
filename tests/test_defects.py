"""Defects B1-B12, found by trying Kaizen as a user would (issue 9): each test failed before its
fix."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import re
import threading
import time
from pathlib import Path

import pytest

import kaizen
from kaizen import LocalRuntime, WorkflowBuilder
from kaizen.errors import ModelError, NodeExecutionError
from kaizen.nodes import FunctionNode
from kaizen.runtime import Budget, NodeContext, NodeStatus, Usage, current_node_context
from kaizen.testing import ScriptedModel

ROOT = Path(__file__).resolve().parent.parent


def test_b1_a_providers_own_error_reaches_the_caller() -> None:
    model = ScriptedModel([RuntimeError("provider down")])
    agent = kaizen.create_agent("qa", "question -> answer", {"model": model, "retries": 0})
    with pytest.raises(ModelError) as info:
        agent.execute(question="q")
    assert "provider down" in str(info.value)
    assert "event loop" not in str(info.value)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert str(info.value.__cause__) == "provider down"


def test_b2_model_attributes_are_the_field_names() -> None:
    sig = kaizen.create_signature("question: str -> answer: str, confidence: float")
    outputs = sig.output_model.model_validate({"answer": "x", "confidence": "0.93"})
    assert outputs.confidence == 0.93

    class Example(kaizen.Signature):
        inputs: str = kaizen.InputField(desc="names DSPy's own test suite uses")
        outputs: str = kaizen.OutputField()

    assert kaizen.create_signature(Example).input_names == ("inputs",)


def test_b3_a_node_instance_added_under_another_id_is_that_node() -> None:
    def add(x: int, y: int = 1) -> int:
        return x + y

    wf = WorkflowBuilder()
    wf.add_node(FunctionNode("a", {"function": add}), "b", {"x": 5}, timeout=1)
    workflow = wf.build()
    node = workflow.nodes["b"]
    assert node.id == "b" and node.policy.timeout == 1
    assert workflow.bound_inputs["b"] == {"x": 5}
    results, _ = LocalRuntime().execute(workflow)
    assert results == {"b": {"result": 6}}


def test_b4_an_agent_node_by_type_name_runs_the_agent_given() -> None:
    model = ScriptedModel([{"answer": "from qa"}])
    qa = kaizen.create_agent("qa", "question -> answer", {"model": model})
    wf = WorkflowBuilder()
    wf.add_node("AgentNode", "x", {"agent": qa})
    workflow = wf.build()
    assert workflow.nodes["x"].agent is qa  # type: ignore[attr-defined]
    results, _ = LocalRuntime().execute(workflow, {"x": {"question": "q"}})
    assert results == {"x": {"answer": "from qa"}}
    with pytest.raises(kaizen.WorkflowValidationError, match="cannot change the agent"):
        bad = WorkflowBuilder()
        bad.add_node("AgentNode", "x", {"agent": qa, "temperature": 0.5})
        bad.build()


def test_b5_budgets_survive_add_workflow_and_a_workflow_is_immutable() -> None:
    def spend(text: str) -> str:
        context = current_node_context()
        assert context is not None
        context.check_budget()
        context.add_usage(Usage(prompt_tokens=10, calls=1))
        return text

    inner = WorkflowBuilder("inner", budget=Budget(max_tokens=10))
    inner.add_node(spend, "first")
    inner.add_node(spend, "second")
    inner.add_connection("first", "second")
    outer = WorkflowBuilder("outer")
    outer.add_node(spend, "free")  # the inner budget does not apply out here
    outer.add_workflow(inner, "sub")
    workflow = outer.build()
    assert workflow.scoped_budgets["sub/first"] == (inner.budget,)
    assert "free" not in workflow.scoped_budgets

    runtime = LocalRuntime(failure_policy="continue")
    results, run_id = runtime.execute(workflow, {"text": "t"})
    record = runtime.get_record(run_id)
    assert "free" in results and "sub/first" in results
    assert record.nodes["sub/second"].status is NodeStatus.SKIPPED  # the inner budget held
    assert workflow.budget is None and inner.build().budget is inner.budget

    for name, value in (("name", "other"), ("order", ()), ("nodes", {}), ("budget", None)):
        with pytest.raises(AttributeError, match="immutable"):
            setattr(workflow, name, value)


def test_b6_execute_works_inside_a_running_event_loop() -> None:
    def double(x: int) -> int:
        return 2 * x

    wf = WorkflowBuilder()
    wf.add_node(double, "d")
    workflow = wf.build()

    async def notebook_cell() -> dict[str, dict[str, int]]:
        return LocalRuntime().execute(workflow, {"x": 21})[0]

    assert asyncio.run(notebook_cell()) == {"d": {"result": 42}}


def test_b7_a_budget_exhausted_under_fail_fast_raises_with_what_was_done() -> None:
    model = ScriptedModel(lambda m: {"answer": "a"})
    wf = WorkflowBuilder()
    for name in ("first", "second"):
        wf.add_agent(kaizen.create_agent(name, "question -> answer", {"model": model}), name)
    wf.add_connection("first", "answer", "second", "question")
    runtime = LocalRuntime(budget=Budget(max_tokens=1))
    with pytest.raises(kaizen.BudgetExceededError) as info:
        runtime.execute(wf.build(), {"first": {"question": "q"}})
    assert info.value.node_id == "second" and info.value.results == {"first": {"answer": "a"}}
    assert runtime.last_record is not None and runtime.last_record.status == "failed"


def test_b8_usage_from_many_threads_at_once_is_counted_exactly() -> None:
    barrier = threading.Barrier(8)

    def spend() -> None:
        context = current_node_context()
        assert context is not None
        barrier.wait(timeout=5)  # all eight at once, each from its own worker thread
        for _ in range(200):
            context.add_usage(Usage(prompt_tokens=1, completion_tokens=2, calls=1))

    wf = WorkflowBuilder()
    for i in range(8):
        wf.add_node(spend, f"s{i}")
    _, record = LocalRuntime(max_concurrency=8).execute_with_record(wf.build())
    assert record.usage.calls == 1600 and record.usage.total_tokens == 4800
    assert all(n.usage.calls == 200 for n in record.nodes.values())
    # correct by construction: a node's context holds no lock of its own to get wrong
    assert "usage_lock" not in {f.name for f in dataclasses.fields(NodeContext)}


def test_b9_progress_counts_every_settled_node_cancelled_ones_too() -> None:
    from rich.console import Console

    from kaizen.cli.progress import RunProgress

    def boom() -> None:
        time.sleep(0.05)
        raise RuntimeError("boom")

    async def slow() -> None:
        await asyncio.sleep(5)

    wf = WorkflowBuilder()
    wf.add_node(boom, "boom")
    wf.add_node(slow, "slow")
    workflow = wf.build()
    console = Console(file=io.StringIO(), width=100, force_terminal=False)
    progress = RunProgress(workflow, console, lines=True)
    with progress, pytest.raises(NodeExecutionError):
        LocalRuntime().execute(workflow, hooks=[progress])
    output = console.file.getvalue()  # type: ignore[attr-defined]
    assert re.search(r"failed\s+boom", output) and re.search(r"cancelled\s+slow", output)
    assert progress.running == [] and progress.failed == 1


def test_b10_a_changed_kaizen_model_applies_to_the_next_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = ScriptedModel([{"answer": "first"}])
    second = ScriptedModel([{"answer": "second"}])
    agent = kaizen.create_agent("qa", "question -> answer")
    monkeypatch.setenv("KAIZEN_MODEL", first.model_name)
    assert agent.execute(question="q").answer == "first"
    monkeypatch.setenv("KAIZEN_MODEL", second.model_name)
    assert agent.execute(question="q").answer == "second"
    assert len(first.calls) == len(second.calls) == 1


def test_b11_kaizen_ask_reports_any_failure_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from kaizen.agents.agent import Agent
    from kaizen.cli import app

    def out_of_space(self: Agent, **inputs: object) -> None:
        try:
            raise OSError(28, "No space left on device")
        except OSError as exc:
            raise RuntimeError("could not write the run record") from exc

    monkeypatch.setattr(Agent, "execute", out_of_space)
    model = ScriptedModel([])
    result = CliRunner().invoke(
        app, ["ask", "question -> answer", "--question", "q", "--model", model.model_name]
    )
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "RuntimeError: could not write the run record" in lines[0]
    assert "No space left on device" in lines[0]


def test_b12_every_page_the_docs_and_readme_point_to_exists() -> None:
    link = re.compile(r"\]\((?!https?://|#|mailto:)([^)#\s]+)")
    named = re.compile(r"`([\w./-]+\.md)`")  # a page named in code style counts as a pointer too
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = page.read_text(encoding="utf-8")
        for target in [*link.findall(text), *named.findall(text)]:
            found = [
                path.resolve()
                for path in (page.parent / target, ROOT / target)
                if path.resolve().is_relative_to(ROOT) and path.exists()
            ]
            assert found, f"{page.name} points to {target}, which is not in this repository"
