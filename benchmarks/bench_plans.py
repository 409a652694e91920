"""Plan benchmark: a plan run as a graph against the reason-act loop (and LangGraph's
plan-and-execute shape) on a parallelisable task.

The task: three independent lookups (tools sleeping 0.2 s each) and a combining step; the model
is scripted at 200 ms per call (`ScriptedModel(latency=0.2)`, through litellm like a provider).

- kaizen plan: `strategy="plan"`: one planning call, the three lookups at once (the workflow
  runs them concurrently), the synthesis call. Expected: about 0.6 s, 2 model calls.
- kaizen loop, 1 tool/turn: the reason-act loop as ReAct runs it (the LLMCompiler paper's
  baseline): a turn per lookup, then `complete`. Expected: about 1.4 s, 4 model calls.
- kaizen loop, 3 tools/turn: the same loop when the model asks for the three lookups in one
  turn (Kaizen runs them at once). Expected: about 0.6 s, 2 model calls; shown for honesty: a
  model that batches tool calls gets the same latency from the loop.
- langgraph plan-and-execute: the tutorial's shape (planner -> execute one step -> replanner,
  until the replanner answers), the model a function sleeping 200 ms. Steps run one at a time.

Target: plan <= 0.6x the 1-tool/turn loop's wall time. The "units" column is the number of
model calls. Timings share the machine with other work: expect noise of tens of ms.

Run: `.bench-venv/bin/python benchmarks/bench_plans.py [--quick]`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, TypedDict

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    KAIZEN,
    Report,
    Row,
    Target,
    bench_main,
    collect_workers,
    quiet_peers,
    skipped,
    sort_rows,
    timed_row,
    try_import,
)

SLEEP = 0.2  # each lookup
LATENCY = 0.2  # each model call
CITIES = ("Paris", "Rome", "Oslo")
QUESTION = "Which of Paris, Rome and Oslo is warmest?"

PLAN = "plan vs loop (3 lookups + combine)"
LOOP_SEQ = "loop, 1 tool per turn"
LOOP_PAR = "loop, 3 tools in one turn"
CASES = (PLAN, LOOP_SEQ, LOOP_PAR)
IMPL_ORDER = (KAIZEN, "langgraph")
TARGETS = {PLAN: Target("≤ 0.6x loop (≈ 0.84 s)", 0.84, "seconds")}


def lookup(city: str) -> dict[str, Any]:
    """Look up a city's temperature (slowly)."""
    time.sleep(SLEEP)
    return {"city": city, "temp": len(city) * 3}


class State(TypedDict, total=False):
    """LangGraph plan-and-execute's state (module level: LangGraph reads its annotations)."""

    question: str
    plan: list[str]
    past_steps: list[tuple[str, Any]]
    response: str


# --- Kaizen --------------------------------------------------------------------------------------


def kaizen_rows(quick: bool) -> list[Row]:
    import kaizen
    from kaizen.testing import ScriptedModel

    reps = 3 if quick else 7
    answer = {"answer": "Paris"}
    plan = {
        "steps": [
            {"id": f"s{i}", "tool": "lookup", "arguments": {"city": city}}
            for i, city in enumerate(CITIES)
        ]
    }

    def planning(messages: list[dict[str, Any]]) -> Any:
        return plan if "You plan" in str(messages[0]["content"]) else answer

    def one_per_turn(messages: list[dict[str, Any]]) -> Any:
        done = sum(1 for m in messages if m.get("role") == "tool")
        if done < len(CITIES):
            return ScriptedModel.tool_call("lookup", {"city": CITIES[done]})
        return answer

    def all_in_one(messages: list[dict[str, Any]]) -> Any:
        if any(m.get("role") == "tool" for m in messages):
            return answer
        return ScriptedModel.tool_calls([("lookup", {"city": city}) for city in CITIES])

    def agent(script: Any, **config: Any) -> Any:
        model = ScriptedModel(script, latency=LATENCY)
        return model, kaizen.create_agent(
            "bench", "question -> answer", {"model": model, **config}, tools=[lookup]
        )

    rows = []
    for case, script, config in (
        (PLAN, planning, {"strategy": "plan"}),
        (LOOP_SEQ, one_per_turn, {}),
        (LOOP_PAR, all_in_one, {}),
    ):
        model, runner = agent(script, **config)
        first = runner.execute(question=QUESTION)
        calls = len(model.calls)
        row = timed_row(
            case,
            KAIZEN,
            lambda runner=runner: runner.execute(question=QUESTION),
            reps=reps,
            check=lambda r: r.success and r.answer == "Paris" and len(r.tool_calls) == 3,
            note=f"{calls} model calls, stop_reason={first.stop_reason}",
        )
        rows.append(row)
    return rows


# --- LangGraph plan-and-execute ------------------------------------------------------------------


def langgraph_rows(quick: bool) -> list[Row]:
    from langgraph.graph import END, START, StateGraph

    reps = 3 if quick else 7
    calls = [0]

    def model(kind: str, state: dict[str, Any]) -> Any:
        """A model answering in 200 ms: a plan, or (replanner) the rest of it or the answer."""
        calls[0] += 1
        time.sleep(LATENCY)
        if kind == "plan":
            return list(CITIES)
        return state["plan"][1:] if len(state["plan"]) > 1 else "Paris"

    def plan_step(state: State) -> State:
        return {"plan": model("plan", dict(state)), "past_steps": []}

    def execute_step(state: State) -> State:
        city = state["plan"][0]
        return {"past_steps": [*state.get("past_steps", []), (city, lookup(city))]}

    def replan_step(state: State) -> State:
        decided = model("replan", dict(state))
        return {"response": decided} if isinstance(decided, str) else {"plan": decided}

    def should_end(state: State) -> str:
        return END if state.get("response") else "agent"

    graph = StateGraph(State)
    graph.add_node("planner", plan_step)
    graph.add_node("agent", execute_step)
    graph.add_node("replan", replan_step)
    graph.add_edge(START, "planner")
    graph.add_edge("planner", "agent")
    graph.add_edge("agent", "replan")
    graph.add_conditional_edges("replan", should_end, ["agent", END])
    app = graph.compile()

    def run() -> Any:
        return app.invoke({"question": QUESTION})

    calls[0] = 0
    run()
    per_run = calls[0]
    return [
        timed_row(
            PLAN,
            "langgraph",
            run,
            reps=reps,
            check=lambda r: r.get("response") == "Paris" and len(r["past_steps"]) == 3,
            note=f"{per_run} model calls, steps one at a time",
        )
    ]


def worker_rows(name: str, quick: bool) -> list[Row]:
    quiet_peers()
    module = {KAIZEN: "kaizen.plans", "langgraph": "langgraph.graph"}[name]
    missing = try_import(module)
    if missing:
        return [skipped(PLAN, name, missing)]
    return {KAIZEN: kaizen_rows, "langgraph": langgraph_rows}[name](quick)


def build_report(quick: bool) -> Report:
    report = Report("bench_plans: a plan as a graph vs the reason-act loop", "", [], TARGETS)
    collect_workers(report, __file__, (KAIZEN, "langgraph"), quick, CASES)
    sort_rows(report, CASES, IMPL_ORDER)
    return report


if __name__ == "__main__":
    bench_main(__doc__, worker_rows, build_report)
