"""The planning strategy (agent config ``strategy="plan"``), written once as a flow.

    repeat, at most `max_iterations` rounds:
        ask the model for a plan (structured: `plan_schema`); check it (`check_plan`);
            every problem goes back at once, at most `max_plan_attempts` plans
            -> none valid: stop "invalid_plan"
        compile it (`compile_plan`) and run the workflow on the agent's runtime, as a run of
            its own (`result.run`): independent steps at once; failed steps get recovery
            decisions (`kaizen.plans.nodes`); the synthesis node gives the typed outputs
            a step's recovery chose `fail`              -> stop "step_failed"
            a step failed anyway / its check failed     -> re-plan, with what happened
        with ``validate=True``: is the goal complete? (structured {complete, reason})
            no -> re-plan, with what happened
        -> done: "completed" (first plan) or "completed_after_replan"
    out of rounds -> stop "max_iterations"; the budget refuses a call -> "budget"

A stop raises `AgentLimitError` (`Agent.execute` turns it into a failed result). Every plan,
rejected plan, run, recovery decision and check is a note on the agent's node
(`NodeRun.notes`, JSON-ready dicts with a "kind"); the model calls and tool calls of a plan's
run count for the agent's node too (usage, budget, `result.tool_calls`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel

from kaizen.aio import run_blocking
from kaizen.errors import AgentLimitError, BudgetExceededError, NodeExecutionError, PlanStepError
from kaizen.flow import Call, Flow
from kaizen.llm.call import model_call, prepare
from kaizen.moments import (
    ModelCallFinished,
    ModelCallStarted,
    Moment,
    ToolCallFinished,
    ToolCallStarted,
)
from kaizen.plans.compile import compile_plan
from kaizen.plans.nodes import PlanAgent, yes_or_no
from kaizen.plans.plan import SYNTHESIS, Plan, plan_schema, read_plan
from kaizen.runtime.context import NodeContext, current_node_context
from kaizen.runtime.hooks import MomentHook
from kaizen.runtime.record import RunRecord
from kaizen.store.memory import with_memory_block

if TYPE_CHECKING:
    from kaizen.agents.config import ModelSettings
    from kaizen.runtime.local import LocalRuntime
    from kaizen.signatures import Signature
    from kaizen.tools.tool import Tool
    from kaizen.workflow.workflow import Workflow

__all__ = ["PlanOutcome", "last_plan", "planned", "run_plan", "run_plan_async"]

PLANNER_SYSTEM = """You plan how to reach a goal with tools. Reply with one JSON object \
{"steps": [...]} and nothing else. Each step: {"id": <short id: letters, digits, _>, \
"tool": <a tool name>, "arguments": {<the tool's arguments>}, "depends_on": [<step ids>], \
"expected_output": <optional: what a good result looks like>}.
An argument may use an earlier step's result: "${<step id>}" is its whole result, \
"${<step id>.<field>}" one field of it. Steps that do not need each other's results run at \
the same time, so only make a step wait for what it needs. After the steps, the results are \
combined into the final answer for you: do not add a step for that."""


class _Completion(BaseModel):
    complete: bool
    reason: str = ""


@dataclass
class PlanOutcome:
    """One run of a compiled plan: its workflow, its record, its results, or what failed."""

    workflow: Workflow
    record: RunRecord
    results: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    error: BaseException | None = None


def planned(
    name: str,
    signature: Signature,
    settings: ModelSettings,
    inputs: Mapping[str, Any],
    output_schema: Mapping[str, Any],
    tools: Sequence[Tool],
    runtime: LocalRuntime | None,
    memory_block: str | None = None,
) -> Flow[dict[str, Any]]:
    """The flow of one execution of planning agent `name` (see the module docstring)."""
    context = current_node_context()
    agent = PlanAgent(name, signature, settings, output_schema, inputs)
    if runtime is None:
        from kaizen.runtime.local import LocalRuntime

        runtime = LocalRuntime()
    history: list[str] = []

    def stop(reason: str, message: str) -> AgentLimitError:
        _note_stop(context, reason)
        return AgentLimitError(
            f"agent {name!r} stopped ({reason}): {message}", agent=name, stop_reason=reason
        )

    try:
        for iteration in range(1, settings.max_iterations + 1):
            plan = yield from _make_plan(agent, tools, history, context, memory_block, stop)
            _note(context, {"kind": "plan", "iteration": iteration, "plan": plan.model_dump()})
            options = {"plan": plan, "tools": tools, "agent": agent, "runtime": runtime,
                       "context": context, "name": f"{name}-plan-{iteration}"}  # fmt: skip
            outcome: PlanOutcome = yield Call(run_plan, run_plan_async, options)
            _note_run(context, iteration, outcome)
            failure = outcome.error
            if isinstance(failure, PlanStepError) and failure.outcome == "gave_up":
                raise stop("step_failed", str(failure))
            if failure is not None and not isinstance(failure, PlanStepError):
                raise failure
            plan_text = json.dumps(plan.model_dump(exclude_defaults=True), default=str)
            if failure is not None:
                history.append(f"Plan {iteration}: {plan_text}\nIt failed: {failure}")
                continue
            outputs = dict(outcome.results[SYNTHESIS])
            if settings.validate_plan:
                verdict = yield from _check_completion(agent, plan, outcome, outputs)
                _note(context, {"kind": "completion_check", "iteration": iteration,
                                **verdict.model_dump()})  # fmt: skip
                if not verdict.complete:
                    history.append(
                        f"Plan {iteration}: {plan_text}\nIts answer "
                        f"{json.dumps(outputs, default=str)} does not complete the goal: "
                        f"{verdict.reason}"
                    )
                    continue
            _note_stop(context, "completed" if iteration == 1 else "completed_after_replan")
            return outputs
        raise stop(
            "max_iterations",
            f"{settings.max_iterations} plan(s) ran without reaching the goal (raise config "
            "'max_iterations'); what each did is in the record's notes. Last: "
            + (history[-1] if history else "(none)"),
        )
    except BudgetExceededError:
        _note_stop(context, "budget")
        raise


def _make_plan(
    agent: PlanAgent,
    tools: Sequence[Tool],
    history: Sequence[str],
    context: NodeContext | None,
    memory_block: str | None,
    stop: Any,
) -> Flow[Plan]:
    """A plan that passes `check_plan`, asking again with every problem, or a stop."""
    settings = agent.settings
    catalog = "\n".join(
        f"- {t.name}{': ' + t.description if t.description else ''} Arguments (JSON Schema): "
        f"{json.dumps(t.parameters, separators=(',', ':'))}"
        for t in tools
    )
    wanted = ", ".join(
        f"{f.name} ({getattr(f.type, '__name__', f.type)})" for f in agent.signature.output_fields
    )
    parts = [
        f"Goal:\n{agent.goal()}",
        f"The final answer will have: {wanted}",
        f"Tools:\n{catalog}",
    ]
    if history:
        parts.append(
            "Earlier plans did not reach the goal; make a new plan that does:\n\n"
            + "\n\n".join(history)
        )
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": PLANNER_SYSTEM},
        {"role": "user", "content": "\n\n".join(parts)},
    ]
    messages = with_memory_block(messages, memory_block)
    request = prepare(messages, response_schema=plan_schema(tools), schema_name="plan",
                      **settings.call_options)  # fmt: skip
    problems: list[str] = []
    for attempt in range(1, settings.max_plan_attempts + 1):
        reply = yield from model_call(request)
        plan, problems = read_plan(reply.text, tools)
        if plan is not None and not problems:
            return plan
        _note(context, {"kind": "rejected_plan", "attempt": attempt, "reply": reply.text,
                        "problems": problems})  # fmt: skip
        messages = [
            *messages,
            {"role": "assistant", "content": reply.text},
            {
                "role": "user",
                "content": "This plan cannot run:\n"
                + "\n".join(f"- {p}" for p in problems)
                + '\nReply with a corrected plan, one JSON object {"steps": [...]}.',
            },
        ]
        request = prepare(messages, response_schema=plan_schema(tools), schema_name="plan",
                          **settings.call_options)  # fmt: skip
    raise stop(
        "invalid_plan",
        f"the model gave no plan that can run in {settings.max_plan_attempts} attempt(s) "
        "(raise config 'max_plan_attempts'); the last one's problems: " + "; ".join(problems),
    )


def _check_completion(
    agent: PlanAgent, plan: Plan, outcome: PlanOutcome, outputs: Mapping[str, Any]
) -> Flow[_Completion]:
    """Does the answer complete the goal? (one structured call)"""
    results = "\n".join(
        f"- {step.id} ({step.tool}): "
        + json.dumps(outcome.results.get(step.id, {}).get("result", "(skipped)"), default=str)
        for step in plan.steps
    )
    messages = [
        {
            "role": "system",
            "content": "Judge whether an answer completes a goal. Reply with one JSON object "
            '{"complete": true|false, "reason": "..."}.',
        },
        {
            "role": "user",
            "content": f"Goal:\n{agent.goal()}\n\nSteps taken:\n{results}\n\nAnswer: "
            f"{json.dumps(dict(outputs), default=str)}",
        },
    ]
    found = yield from yes_or_no(agent, messages, "complete", "completion")
    if isinstance(found, str):
        return _Completion(complete=False, reason=found)
    return _Completion(complete=found[0], reason=found[1])


# -- running a plan ---------------------------------------------------------------------------


def run_plan(**options: Any) -> PlanOutcome:
    """The planning flow's sync side: `run_plan_async` with sync nodes, run inline on a loop of
    this thread's own (`kaizen.aio.run_blocking`), as `LocalRuntime.execute` runs."""
    return run_blocking(run_plan_async(**options, sync=True))


async def run_plan_async(
    plan: Plan,
    tools: Sequence[Tool],
    agent: PlanAgent,
    runtime: LocalRuntime,
    context: NodeContext | None,
    name: str,
    *,
    sync: bool = False,
) -> PlanOutcome:
    """Compile `plan` (async nodes, or with `sync` sync ones run inline) and run it on
    `runtime`; a failed run is an outcome too."""
    workflow = compile_plan(plan, tools, agent=agent, check=agent.settings.validate_plan,
                            sync=sync, name=name).build()  # fmt: skip
    run_id = f"{context.run_id}-{name}" if context is not None else None
    try:
        results, record = await runtime.run(
            workflow, run_id=run_id, hooks=_relay(context), inline_allowed=sync
        )
    except NodeExecutionError as exc:
        return _failed(workflow, runtime, exc)
    return PlanOutcome(workflow, record, results)


def _failed(workflow: Workflow, runtime: LocalRuntime, error: NodeExecutionError) -> PlanOutcome:
    cause = error.__cause__ if isinstance(error.__cause__, Exception) else error
    record = runtime.get_record(error.run_id) if error.run_id else None
    assert record is not None, "a failed run carries its id"
    return PlanOutcome(workflow, record, dict(error.results or {}), cause)


class _Relay(MomentHook):
    """In a plan's run: its model and tool calls count for the agent's own node as well (usage,
    budget, the agent's tool calls and metadata)."""

    name = "kaizen.plan-relay"

    def __init__(self, outer: NodeContext) -> None:
        self.outer = outer

    def hears(self, moment: type[Moment]) -> bool:
        return moment in _RELAYED

    def on_moment(self, event: Moment) -> None:
        outer, node_event = self.outer, cast(Any, event)  # every relayed moment is a node's
        outer.fire(dataclasses.replace(node_event, run_id=outer.run_id, node_id=outer.node_id))


_RELAYED = (ModelCallStarted, ModelCallFinished, ToolCallStarted, ToolCallFinished)


def _relay(context: NodeContext | None) -> list[object]:
    return [] if context is None else [_Relay(context)]


def last_plan(
    notes: Sequence[Mapping[str, Any]], agent: Any, inputs: Mapping[str, Any], tools: Sequence[Tool]
) -> tuple[Workflow | None, RunRecord | None]:
    """From a planning agent's notes: its last plan compiled again (the same graph as the one
    that ran) and the record of that plan's run (None when it never ran, or the agent's
    runtime no longer keeps it)."""
    plans = [n for n in notes if n.get("kind") == "plan"]
    runs = [n for n in notes if n.get("kind") == "run"]
    if not plans:
        return None, None
    last = plans[-1]
    helper = PlanAgent.of(agent, inputs)
    name = f"{agent.name}-plan-{last['iteration']}"
    workflow = compile_plan(last["plan"], tools, agent=helper, name=name).build()
    record = None
    if runs and runs[-1]["iteration"] == last["iteration"]:
        try:
            record = agent.runtime.get_record(runs[-1]["run_id"])
        except KeyError:
            record = None
    return workflow, record


def _note_run(context: NodeContext | None, iteration: int, outcome: PlanOutcome) -> None:
    """The run's id and status, then the decisions its steps made (recoveries, checks)."""
    record = outcome.record
    failure = outcome.error
    error = None if failure is None else f"{type(failure).__name__}: {failure}"
    _note(context, {"kind": "run", "iteration": iteration, "run_id": record.run_id,
                    "status": str(record.status), "error": error})  # fmt: skip
    for node_run in record.nodes.values():
        for entry in node_run.notes:
            _note(context, {**entry, "iteration": iteration, "run_id": record.run_id})


def _note(context: NodeContext | None, entry: Mapping[str, Any]) -> None:
    if context is not None:
        context.note(entry)


def _note_stop(context: NodeContext | None, reason: str) -> None:
    if context is not None:
        context.note_stop_reason(reason)
