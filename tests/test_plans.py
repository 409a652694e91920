"""Plans that run as graphs (`config={"strategy": "plan"}`, `kaizen.compile_plan`).

The model is a `ScriptedModel` answering by what is asked (planner, recovery, step check,
completion check, synthesis), so concurrent steps cannot reorder its script; tools are real
Python functions run by the real runtime.
"""

from __future__ import annotations

import asyncio
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import kaizen
from kaizen import LocalRuntime, PlanError
from kaizen.errors import AgentLimitError
from kaizen.plans import Plan, check_plan
from kaizen.plans.plan import resolve
from kaizen.testing import ScriptedModel

QUESTION = "question -> answer"


def lookup(city: str) -> dict[str, Any]:
    """Look up a city's temperature."""
    return {"city": city, "temp": len(city)}


def double(value: int) -> int:
    """Double a number."""
    return value * 2


TOOLS = [lookup, double]


class Script:
    """Replies by kind of request, each kind's list consumed in order (the last one repeats)."""

    def __init__(self, **replies: list[Any]) -> None:
        self.replies = {kind: list(items) for kind, items in replies.items()}
        self.asked: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, messages: list[dict[str, Any]]) -> Any:
        system = str(messages[0]["content"])
        kind = (
            "plan" if "You plan how to reach a goal" in system
            else "recovery" if "A step of a plan failed" in system
            else "check" if "matches what was expected" in system
            else "complete" if "completes a goal" in system
            else "answer"
        )  # fmt: skip
        with self._lock:
            self.asked.append(kind)
            items = self.replies[kind]
            return items.pop(0) if len(items) > 1 else items[0]

    def count(self, kind: str) -> int:
        return self.asked.count(kind)


def planner(script: Script, tools: list[Callable[..., Any]] = TOOLS, **config: Any) -> Any:
    model = ScriptedModel(script)
    return kaizen.create_agent(
        "planner", QUESTION, config={"model": model, "strategy": "plan", **config}, tools=tools
    )


def steps(*items: dict[str, Any]) -> dict[str, Any]:
    return {"steps": list(items)}


ANSWER = {"answer": "done"}


# -- the happy path -------------------------------------------------------------------------


def three_lookups_meeting_at_a_barrier() -> tuple[Callable[..., Any], dict[str, Any]]:
    barrier = threading.Barrier(3, timeout=10)

    def fetch(city: str) -> dict[str, Any]:
        """Fetch a city (waits until all three fetches run at once)."""
        barrier.wait()  # BrokenBarrierError unless the three steps run at the same time
        return {"city": city, "temp": len(city)}

    plan = steps(
        {"id": "a", "tool": "fetch", "arguments": {"city": "Paris"}},
        {"id": "b", "tool": "fetch", "arguments": {"city": "Rome"}},
        {"id": "c", "tool": "fetch", "arguments": {"city": "Oslo"}},
    )
    return fetch, plan


def test_independent_steps_run_at_once_and_the_synthesis_types_the_outputs() -> None:
    fetch, plan = three_lookups_meeting_at_a_barrier()
    script = Script(plan=[plan], answer=[{"answer": "Paris is warmest"}])
    agent = planner(script, tools=[fetch])
    result = agent.execute(question="Which is warmest?")
    assert result.success and result.answer == "Paris is warmest"
    assert result.stop_reason == "completed"
    assert sorted(c.name for c in result.tool_calls) == ["fetch"] * 3
    assert all(c.ok for c in result.tool_calls)
    assert result.run.status == "completed"
    assert sorted(result.run.nodes) == ["a", "b", "c", "synthesize"]
    assert script.asked == ["plan", "answer"]
    assert result.metadata.attempts == 2  # the plan and the synthesis count for the agent


def test_execute_async_runs_the_plan_on_the_event_loop() -> None:
    fetch, plan = three_lookups_meeting_at_a_barrier()
    agent = planner(Script(plan=[plan], answer=[ANSWER]), tools=[fetch])
    result = asyncio.run(agent.execute_async(question="Which is warmest?"))
    assert result.answer == "done"
    assert result.run.by_status("completed") == ["a", "b", "c", "synthesize"]


def test_references_become_connections_and_carry_typed_values() -> None:
    plan = steps(
        {"id": "a", "tool": "lookup", "arguments": {"city": "Paris"}},
        {"id": "b", "tool": "double", "arguments": {"value": "${a.temp}"}},
        {"id": "c", "tool": "lookup", "arguments": {"city": "${a.city} and ${b}"}},
    )
    agent = planner(Script(plan=[plan], answer=[ANSWER]))
    result = agent.execute(question="q")
    edges = set(result.plan.graph.edges)
    assert {("a", "b"), ("a", "c"), ("b", "c")} <= edges
    outputs = {c.call_id.split("-")[0]: c for c in result.tool_calls}
    assert outputs["b"].arguments == {"value": 5}  # a whole reference keeps its type
    assert outputs["b"].output == "10"
    assert outputs["c"].arguments == {"city": "Paris and 10"}


def test_depends_on_orders_steps_without_data() -> None:
    order: list[str] = []

    def note(label: str) -> str:
        """Note a label."""
        order.append(label)
        return label

    plan = steps(
        {"id": "late", "tool": "note", "arguments": {"label": "late"}, "depends_on": ["early"]},
        {"id": "early", "tool": "note", "arguments": {"label": "early"}},
    )
    result = planner(Script(plan=[plan], answer=[ANSWER]), tools=[note]).execute(question="q")
    assert order == ["early", "late"]
    assert ("early", "late") in set(result.plan.graph.edges)


def test_the_plan_renders_as_svg_and_the_notes_hold_it() -> None:
    plan = steps({"id": "a", "tool": "lookup", "arguments": {"city": "Paris"}})
    agent = planner(Script(plan=[plan], answer=[ANSWER]))
    result = agent.execute(question="q")
    svg = result.plan._repr_svg_()
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg") and "synthesize" in svg and ">a<" in svg
    notes = agent.runtime.get_record(result.metadata.run_id).nodes["planner"].notes
    assert [n["kind"] for n in notes] == ["plan", "run"]
    assert notes[0]["plan"]["steps"][0]["tool"] == "lookup"
    assert notes[1]["run_id"] == result.run.run_id


# -- bad plans ------------------------------------------------------------------------------

GOOD = steps({"id": "a", "tool": "lookup", "arguments": {"city": "Paris"}})

BAD_PLANS = {
    "unknown tool": (
        steps({"id": "a", "tool": "weather", "arguments": {}}),
        "there is no tool 'weather'",
    ),
    "arguments failing the tool's schema": (
        steps({"id": "a", "tool": "double", "arguments": {"value": "many"}}),
        "value",
    ),
    "reference to a missing step": (
        steps({"id": "a", "tool": "lookup", "arguments": {"city": "${nowhere.city}"}}),
        "no step has that id",
    ),
    "depends_on a missing step": (
        steps({"id": "a", "tool": "lookup", "arguments": {"city": "x"}, "depends_on": ["z"]}),
        "no step has that id",
    ),
    "cycle": (
        steps(
            {"id": "a", "tool": "lookup", "arguments": {"city": "${b.city}"}},
            {"id": "b", "tool": "lookup", "arguments": {"city": "${a.city}"}},
        ),
        "cycle",
    ),
    "repeated id": (
        steps(
            {"id": "a", "tool": "lookup", "arguments": {"city": "x"}},
            {"id": "a", "tool": "lookup", "arguments": {"city": "y"}},
        ),
        "ids must differ",
    ),
    "not a plan": ("I would look things up.", "not a JSON object"),
}


@pytest.mark.parametrize("kind", sorted(BAD_PLANS))
def test_a_bad_plan_goes_back_with_its_problems_and_a_good_one_runs(kind: str) -> None:
    bad, problem = BAD_PLANS[kind]
    script = Script(plan=[bad, GOOD], answer=[ANSWER])
    agent = planner(script)
    result = agent.execute(question="q")
    assert result.success and result.answer == "done"
    assert script.count("plan") == 2
    notes = agent.runtime.get_record(result.metadata.run_id).nodes["planner"].notes
    rejected = [n for n in notes if n["kind"] == "rejected_plan"]
    assert len(rejected) == 1 and any(problem in p for p in rejected[0]["problems"])


def test_every_problem_of_a_plan_is_sent_back_at_once() -> None:
    bad = steps(
        {"id": "a", "tool": "weather", "arguments": {}},
        {"id": "b", "tool": "double", "arguments": {"value": "many"}},
        {"id": "c", "tool": "lookup", "arguments": {"city": "${nowhere}"}},
    )
    model = ScriptedModel(Script(plan=[bad, GOOD], answer=[ANSWER]))
    agent = kaizen.create_agent(
        "p", QUESTION, config={"model": model, "strategy": "plan"}, tools=TOOLS
    )
    agent.execute(question="q")
    second = model.calls[1].messages[-1]["content"]
    assert "'weather'" in second and "step 'b'" in second and "${nowhere}" in second


def test_a_planner_that_never_gives_a_valid_plan_stops_after_max_plan_attempts() -> None:
    bad, _ = BAD_PLANS["cycle"]
    script = Script(plan=[bad])
    agent = planner(script, max_plan_attempts=2)
    result = agent.execute(question="q")
    assert not result.success and result.stop_reason == "invalid_plan"
    assert isinstance(result.error, AgentLimitError) and "cycle" in str(result.error)
    assert script.asked == ["plan", "plan"]
    with pytest.raises(AgentLimitError, match="invalid_plan"):
        planner(Script(plan=[bad]), max_plan_attempts=1, on_limit="raise").execute(question="q")


@pytest.mark.parametrize("kind", ["unknown tool", "reference to a missing step", "cycle"])
def test_compile_plan_refuses_a_bad_plan_naming_the_problem(kind: str) -> None:
    bad, problem = BAD_PLANS[kind]
    with pytest.raises(PlanError, match=problem) as caught:
        kaizen.compile_plan(bad, TOOLS)
    assert caught.value.problems


# -- recovery -------------------------------------------------------------------------------


class Flaky:
    """A tool failing its first `failures` calls."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.seen: list[str] = []

    def tool(self) -> kaizen.Tool:
        def fetch(city: str) -> str:
            """Fetch a city."""
            self.seen.append(city)
            if len(self.seen) <= self.failures:
                raise ConnectionError(f"{city} unreachable")
            return f"{city}: sunny"

        return kaizen.Tool(fetch)


def spare(city: str) -> str:
    """The spare source."""
    return f"{city}: from the spare"


FETCH = steps({"id": "a", "tool": "fetch", "arguments": {"city": "Paris"}})


def recovering(decisions: list[dict[str, Any]], failures: int = 1, **config: Any) -> Any:
    flaky = Flaky(failures)
    script = Script(plan=[FETCH], recovery=decisions, answer=[ANSWER])
    agent = planner(script, tools=[flaky.tool(), spare], **config)
    return agent, flaky, script


def recoveries(agent: Any, result: Any) -> list[dict[str, Any]]:
    notes = agent.runtime.get_record(result.metadata.run_id).nodes["planner"].notes
    return [n for n in notes if n["kind"] == "recovery"]


def test_recovery_retry_calls_the_tool_again() -> None:
    agent, flaky, _ = recovering([{"action": "retry", "reason": "transient"}])
    result = agent.execute(question="q")
    assert result.success and flaky.seen == ["Paris", "Paris"]
    (decision,) = recoveries(agent, result)
    assert decision["action"] == "retry" and "unreachable" in decision["error"]
    assert result.run.nodes["a"].notes[0]["action"] == "retry"


def test_recovery_retry_modified_uses_the_new_arguments() -> None:
    agent, flaky, _ = recovering(
        [{"action": "retry_modified", "arguments": {"city": "Lyon"}, "reason": "closer"}]
    )
    result = agent.execute(question="q")
    assert flaky.seen == ["Paris", "Lyon"]
    assert [c.ok for c in result.tool_calls] == [False, True]


def test_recovery_alternative_calls_another_tool() -> None:
    agent, _, _ = recovering([{"action": "alternative", "tool": "spare", "reason": "down"}])
    result = agent.execute(question="q")
    assert [c.name for c in result.tool_calls] == ["fetch", "spare"]
    assert result.tool_calls[1].output == "Paris: from the spare"


def test_recovery_skip_drops_the_step_and_what_needs_it() -> None:
    flaky = Flaky(failures=5)
    plan = steps(
        {"id": "a", "tool": "fetch", "arguments": {"city": "Paris"}},
        {"id": "b", "tool": "lookup", "arguments": {"city": "${a}"}},
        {"id": "c", "tool": "lookup", "arguments": {"city": "Rome"}},
    )
    script = Script(plan=[plan], recovery=[{"action": "skip", "reason": "not needed"}],
                    answer=[ANSWER])  # fmt: skip
    agent = planner(script, tools=[flaky.tool(), lookup])
    result = agent.execute(question="q")
    assert result.success
    assert result.run.nodes["b"].status == "skipped"
    assert result.run.nodes["c"].status == "completed"
    assert result.run.nodes["synthesize"].status == "completed"


def test_recovery_fail_stops_the_execution() -> None:
    agent, _, script = recovering([{"action": "fail", "reason": "no way"}])
    result = agent.execute(question="q")
    assert not result.success and result.stop_reason == "step_failed"
    assert "no way" in str(result.error)
    assert "answer" not in script.asked
    assert result.run.nodes["a"].status == "failed"


def test_recovery_is_bounded_per_step_and_then_the_agent_replans() -> None:
    agent, flaky, script = recovering(
        [{"action": "retry", "reason": "again"}], failures=3, max_step_recoveries=2
    )
    result = agent.execute(question="q")
    # plan 1: the call and 2 retries fail; plan 2 (the same plan) succeeds at once
    assert result.success and result.stop_reason == "completed_after_replan"
    assert len(flaky.seen) == 4
    assert script.count("recovery") == 2 and script.count("plan") == 2
    assert len(recoveries(agent, result)) == 2


# -- validation -----------------------------------------------------------------------------


def test_a_failed_expected_output_check_replans_with_the_history() -> None:
    first = steps({"id": "a", "tool": "lookup", "arguments": {"city": "Pa"},
                   "expected_output": "a city of more than 3 letters"})  # fmt: skip
    second = steps({"id": "a", "tool": "lookup", "arguments": {"city": "Paris"},
                    "expected_output": "a city of more than 3 letters"})  # fmt: skip
    script = Script(
        plan=[first, second],
        check=[{"matches": False, "reason": "too short"}, {"matches": True, "reason": "ok"}],
        complete=[{"complete": True, "reason": "answered"}],
        answer=[ANSWER],
    )
    model = ScriptedModel(script)
    config = {"model": model, "strategy": "plan", "validate": True}
    agent = kaizen.create_agent("planner", QUESTION, config=config, tools=TOOLS)
    result = agent.execute(question="q")
    assert result.success and result.stop_reason == "completed_after_replan"
    assert script.asked == ["plan", "check", "plan", "check", "answer", "complete"]
    replan = next(c for c in model.calls[2:] if "Earlier plans" in c.messages[-1]["content"])
    assert "too short" in replan.messages[-1]["content"]


def test_an_incomplete_goal_replans_within_max_iterations() -> None:
    script = Script(plan=[GOOD], complete=[{"complete": False, "reason": "missing Rome"}],
                    answer=[ANSWER])  # fmt: skip
    agent = planner(script, validate=True, max_iterations=2)
    result = agent.execute(question="q")
    assert not result.success and result.stop_reason == "max_iterations"
    assert script.count("plan") == 2 and script.count("complete") == 2
    assert "missing Rome" in str(result.error)


def test_validation_is_off_by_default() -> None:
    plan = steps({"id": "a", "tool": "lookup", "arguments": {"city": "x"}, "expected_output": "?"})
    script = Script(plan=[plan], answer=[ANSWER])
    planner(script).execute(question="q")
    assert script.asked == ["plan", "answer"]


# -- by hand --------------------------------------------------------------------------------


def test_compile_plan_by_hand_runs_on_any_runtime() -> None:
    plan = [
        {"id": "a", "tool": "lookup", "arguments": {"city": "Paris"}},
        {"id": "b", "tool": "double", "arguments": {"value": "${a.temp}"}},
    ]
    builder = kaizen.compile_plan(plan, TOOLS)
    assert sorted(builder.nodes) == ["a", "b"]
    results, _ = LocalRuntime().execute(builder.build())
    assert results["a"]["result"] == {"city": "Paris", "temp": 5}
    assert results["b"]["result"] == 10
    sync_results, _ = LocalRuntime().execute(kaizen.compile_plan(plan, TOOLS, sync=True).build())
    assert sync_results == results


def test_compile_plan_with_an_agent_ends_in_its_typed_outputs() -> None:
    model = ScriptedModel([{"answer": "Paris has 5 letters"}])
    agent = kaizen.create_agent("a", QUESTION, config={"model": model})
    builder = kaizen.compile_plan(GOOD, TOOLS, agent=agent, inputs={"question": "q"})
    results, _ = LocalRuntime().execute(builder.build())
    assert results["synthesize"] == {"answer": "Paris has 5 letters"}
    assert '"temp": 5' in model.calls[0].messages[-1]["content"]


def test_a_step_without_recovery_fails_the_run_naming_the_step() -> None:
    builder = kaizen.compile_plan(FETCH, [Flaky(1).tool()])
    with pytest.raises(kaizen.NodeExecutionError, match="step 'a'"):
        LocalRuntime().execute(builder.build())


# -- the plan as data -----------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(JSON)
def test_a_whole_reference_resolves_to_the_value_itself(value: Any) -> None:
    assert resolve("${s1}", {"s1": value}) == value
    assert resolve({"x": ["${s1.f}"]}, {"s1": {"f": value}}) == {"x": [value]}


@given(st.integers(min_value=2, max_value=6), st.booleans())
def test_check_plan_finds_a_cycle_exactly_when_there_is_one(length: int, closed: bool) -> None:
    ids = [f"s{i}" for i in range(length)]
    chain = [
        {
            "id": step,
            "tool": "lookup",
            "arguments": {"city": f"${{{ids[i - 1]}.city}}" if i else "x"},
        }
        for i, step in enumerate(ids)
    ]
    if closed:  # the first step waits for the last: a cycle through every step
        chain[0] = {**chain[0], "depends_on": [ids[-1]]}
    problems = check_plan(Plan.coerce(chain), [kaizen.Tool(lookup)])
    cycles = [p for p in problems if "cycle" in p]
    assert bool(cycles) == closed
    if closed:
        assert all(step in cycles[0] for step in ids)
