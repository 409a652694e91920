"""Tool-loop benchmark: the reason-act loop's own cost per turn, and three independent tools in
one turn, beside pydantic-ai and DSPy ReAct on the same scripted task.

Cases:
- loop turn, 0 ms model: an agent that calls a no-op tool for TURNS turns, then finishes; the
  figure is per turn. Kaizen's model is a `ScriptedModel` (answered in-process, no litellm);
  pydantic-ai's a `FunctionModel` (no HTTP, no litellm); DSPy's `ReAct` a `DummyLM`. The floor row
  is what a turn cannot avoid in Kaizen: one bare `kaizen.llm.complete` call to the same
  scripted model plus one direct call of the tool, so "kaizen loop overhead" = turn - floor is
  what the loop adds (prompting, tool specs, parsing and validating calls, running tools, hooks,
  the record). Target: <= 1 ms per turn.
- 3 tools x 0.2 s, one turn: the model asks for three independent tools in one turn, each
  sleeping 0.2 s, then finishes. Target: <= 0.25 s for the whole execution (the calls run at
  once). DSPy's ReAct calls one tool per step, so it takes three turns.

Run: `.bench-venv/bin/python benchmarks/bench_tools.py [--quick]`.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    FLOOR,
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

TURNS = 10
SLEEP = 0.2
QUESTION = "What is 2 + 3?"

TURN = "loop turn, 0 ms model"
OVERHEAD = "kaizen loop overhead"
PARALLEL = f"3 tools x {SLEEP * 1000:.0f} ms, one turn"
PARALLEL_ASYNC = f"3 async tools x {SLEEP * 1000:.0f} ms, one turn"
CASES = (TURN, OVERHEAD, PARALLEL, PARALLEL_ASYNC)
IMPL_ORDER = (KAIZEN, FLOOR, "pydantic-ai", "dspy")
TARGETS = {
    OVERHEAD: Target("≤ 1 ms/turn", 1000.0),
    PARALLEL: Target("≤ 0.25 s", 0.25, "seconds"),
    PARALLEL_ASYNC: Target("≤ 0.25 s", 0.25, "seconds"),
}


def noop(n: int) -> int:
    """Return n."""
    return n


def slow(n: int) -> int:
    """Sleep, then return n."""
    time.sleep(SLEEP)
    return n


async def aslow(n: int) -> int:
    """Sleep without blocking, then return n."""
    await asyncio.sleep(SLEEP)
    return n


# --- Kaizen --------------------------------------------------------------------------------------


def kaizen_rows(quick: bool) -> list[Row]:
    import kaizen
    from kaizen.llm import complete
    from kaizen.testing import ScriptedModel

    reps = 5 if quick else 15

    def looping(messages: list[dict[str, Any]]) -> Any:
        turns = sum(1 for m in messages if m.get("role") == "tool")
        if turns < TURNS:
            return ScriptedModel.tool_call("noop", {"n": turns})
        return {"answer": "5"}

    model = ScriptedModel(looping)
    config = {"model": model, "max_iterations": TURNS + 1}
    agent = kaizen.create_agent("looper", "question -> answer", config, tools=[noop])

    def run_loop() -> Any:
        return agent.execute(question=QUESTION)

    floor_model = ScriptedModel(lambda messages: ScriptedModel.tool_call("noop", {"n": 1}))
    messages = [{"role": "user", "content": QUESTION}]
    tools = [t.spec() for t in agent.tools]

    def floor() -> None:
        for n in range(TURNS + 1):
            complete(messages, model=floor_model, tools=tools)
            noop(n)

    rows = [
        timed_row(
            TURN,
            KAIZEN,
            run_loop,
            units=TURNS + 1,
            reps=reps,
            check=lambda r: r.success and len(r.tool_calls) == TURNS,
        ),
        timed_row(TURN, FLOOR, floor, units=TURNS + 1, reps=reps, note="complete() + tool"),
    ]
    turn, base = rows
    if turn.per_unit_us is not None and base.per_unit_us is not None:
        own = turn.per_unit_us - base.per_unit_us
        rows.append(Row(OVERHEAD, KAIZEN, own * (TURNS + 1) / 1e6, own, turn.reps, "turn - floor"))

    three = [("slow", {"n": n}) for n in range(3)]
    parallel_model = ScriptedModel(
        lambda messages: (
            ScriptedModel.tool_calls(three)
            if not any(m.get("role") == "tool" for m in messages)
            else {"answer": "done"}
        )
    )
    sync_agent = kaizen.create_agent(
        "par", "question -> answer", {"model": parallel_model}, tools=[slow]
    )
    async_model = ScriptedModel(
        lambda messages: (
            ScriptedModel.tool_calls([("aslow", a) for _, a in three])
            if not any(m.get("role") == "tool" for m in messages)
            else {"answer": "done"}
        )
    )
    async_agent = kaizen.create_agent(
        "apar", "question -> answer", {"model": async_model}, tools=[aslow]
    )

    async def run_async_agent() -> Any:
        return await async_agent.execute_async(question=QUESTION)

    rows.append(
        timed_row(
            PARALLEL,
            KAIZEN,
            lambda: sync_agent.execute(question=QUESTION),
            reps=reps,
            check=lambda r: r.success and len(r.tool_calls) == 3,
            note="sync tools, execute()",
        )
    )
    rows.append(
        timed_row(
            PARALLEL_ASYNC,
            KAIZEN,
            run_async_agent,
            reps=reps,
            is_async=True,
            check=lambda r: r.success and len(r.tool_calls) == 3,
            note="async tools, execute_async()",
        )
    )
    return rows


# --- pydantic-ai ---------------------------------------------------------------------------------


def pydantic_ai_rows(quick: bool) -> list[Row]:
    from pydantic_ai import Agent
    from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart, ToolReturnPart
    from pydantic_ai.models.function import AgentInfo, FunctionModel

    reps = 5 if quick else 15

    def returns(messages: list[Any]) -> int:
        return sum(
            1 for m in messages for p in getattr(m, "parts", ()) if isinstance(p, ToolReturnPart)
        )

    def looping(messages: list[Any], info: AgentInfo) -> ModelResponse:
        done = returns(messages)
        if done < TURNS:
            return ModelResponse(parts=[ToolCallPart("noop", {"n": done})])
        return ModelResponse(parts=[TextPart("5")])

    agent = Agent(FunctionModel(looping), tools=[noop])

    def three_then_done(messages: list[Any], info: AgentInfo, name: str) -> ModelResponse:
        if returns(messages) == 0:
            return ModelResponse(parts=[ToolCallPart(name, {"n": n}) for n in range(3)])
        return ModelResponse(parts=[TextPart("done")])

    sync_agent = Agent(FunctionModel(lambda m, i: three_then_done(m, i, "slow")), tools=[slow])
    async_agent = Agent(FunctionModel(lambda m, i: three_then_done(m, i, "aslow")), tools=[aslow])

    async def run_async() -> Any:
        return await async_agent.run(QUESTION)

    return [
        timed_row(
            TURN,
            "pydantic-ai",
            lambda: agent.run_sync(QUESTION),
            units=TURNS + 1,
            reps=reps,
            check=lambda r: r.output == "5",
            note="FunctionModel",
        ),
        timed_row(
            PARALLEL,
            "pydantic-ai",
            lambda: sync_agent.run_sync(QUESTION),
            reps=reps,
            check=lambda r: r.output == "done",
            note="sync tools, run_sync()",
        ),
        timed_row(
            PARALLEL_ASYNC,
            "pydantic-ai",
            run_async,
            reps=reps,
            is_async=True,
            check=lambda r: r.output == "done",
            note="async tools, run()",
        ),
    ]


# --- DSPy ReAct ----------------------------------------------------------------------------------


def dspy_rows(quick: bool) -> list[Row]:
    import dspy
    from dspy.utils import DummyLM

    reps = 3 if quick else 7

    def script(tool: str, steps: int) -> list[dict[str, Any]]:
        answers = [
            {"next_thought": "use the tool", "next_tool_name": tool, "next_tool_args": {"n": n}}
            for n in range(steps)
        ]
        answers.append({"next_thought": "done", "next_tool_name": "finish", "next_tool_args": {}})
        answers.append({"reasoning": "done", "answer": "5"})
        return answers

    def run(tool: Any, steps: int) -> Any:
        react = dspy.ReAct("question -> answer", tools=[tool], max_iters=steps + 2)
        with dspy.context(lm=DummyLM(script(tool.__name__, steps))):
            return react(question=QUESTION)

    return [
        timed_row(
            TURN,
            "dspy",
            lambda: run(noop, TURNS),
            units=TURNS + 1,
            reps=reps,
            check=lambda r: r.answer == "5",
            note=f"ReAct, DummyLM ({TURNS} tool steps + finish + extract)",
        ),
        timed_row(
            PARALLEL,
            "dspy",
            lambda: run(slow, 3),
            reps=reps,
            check=lambda r: r.answer == "5",
            note="ReAct calls one tool per step",
        ),
    ]


def worker_rows(name: str, quick: bool) -> list[Row]:
    quiet_peers()
    module = {KAIZEN: "kaizen.tools", "pydantic-ai": "pydantic_ai", "dspy": "dspy"}[name]
    missing = try_import(module)
    if missing:
        return [skipped("*", name, missing)]
    return {KAIZEN: kaizen_rows, "pydantic-ai": pydantic_ai_rows, "dspy": dspy_rows}[name](quick)


def build_report(quick: bool) -> Report:
    report = Report("bench_tools: the reason-act loop", "µs/turn", [], TARGETS)
    collect_workers(report, __file__, (KAIZEN, "pydantic-ai", "dspy"), quick, CASES)
    sort_rows(report, CASES, IMPL_ORDER)
    return report


if __name__ == "__main__":
    bench_main(__doc__, worker_rows, build_report)
