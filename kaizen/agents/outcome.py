"""What an agent's execution returns: its typed outputs as an `ExecutionResult`, or a failed
result (or the error raised, as the agent's config asks), with the plan a planning agent ran.

`Agent.execute` runs a one-node workflow; these read that run's record (`agent.runtime`) and
the `ExecutionReport` hook's figures. A paused execution's result is `kaizen.agents.pause`'s.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kaizen.agents.result import ExecutionReport, ExecutionResult
from kaizen.errors import AgentLimitError, BudgetExceededError, KaizenError, NodeExecutionError

if TYPE_CHECKING:
    from kaizen.agents.agent import Agent
    from kaizen.agents.config import ModelSettings
    from kaizen.runtime.record import NodeRun, RunRecord
    from kaizen.workflow.workflow import Workflow

__all__ = ["completed", "failed", "node_run_of", "plan_parts"]


def completed(
    agent: Agent,
    results: Mapping[str, Mapping[str, Any]],
    report: ExecutionReport,
    run_id: str,
    started: float,
    values: Mapping[str, Any],
) -> ExecutionResult:
    outputs = results.get(agent.name)
    if outputs is None:  # skipped (the runtime says why) or never ran
        node_run = agent.runtime.get_record(run_id).nodes.get(agent.name)
        why = node_run.skip_reason or node_run.error if node_run is not None else None
        raise KaizenError(
            f"agent {agent.name!r} produced no result in run {run_id!r}: {why or 'unknown'}"
        )
    metadata = report.metadata(agent.name, run_id, time.perf_counter() - started)
    node_run = node_run_of(agent, run_id)
    plan, plan_run = plan_parts(agent, node_run, values)
    data = dict(outputs)
    if agent.free_form:
        from kaizen.agents.freeform import noted_fields

        data.update(noted_fields(node_run))
    return ExecutionResult(
        data,
        raw=report.raw,
        metadata=metadata,
        tool_calls=node_run.tool_calls if node_run is not None else (),
        stop_reason=(node_run.stop_reason if node_run is not None else None) or "completed",
        plan=plan,
        run=plan_run,
    )


def plan_parts(
    agent: Agent, node_run: NodeRun | None, values: Mapping[str, Any]
) -> tuple[Workflow | None, RunRecord | None]:
    """A planning agent's last plan as a `Workflow` and the `RunRecord` of its run."""
    if node_run is None or not any(n.get("kind") == "plan" for n in node_run.notes):
        return None, None
    from kaizen.plans.strategy import last_plan

    return last_plan(node_run.notes, agent, values, agent.tools_for_run())


def node_run_of(agent: Agent, run_id: str) -> NodeRun | None:
    try:
        return agent.runtime.get_record(run_id).nodes.get(agent.name)
    except KeyError:
        return None


def failed(
    agent: Agent,
    failure: BaseException,
    report: ExecutionReport,
    run_id: str,
    started: float,
    settings: ModelSettings,
    values: Mapping[str, Any],
) -> ExecutionResult:
    error = failure
    if isinstance(failure, NodeExecutionError) and isinstance(failure.__cause__, Exception):
        error = failure.__cause__  # the agent's own error, its chain intact
    node_run = node_run_of(agent, run_id)
    tool_calls = list(node_run.tool_calls) if node_run is not None else []
    if isinstance(error, BudgetExceededError) and agent.has_tools:
        error = AgentLimitError(
            f"agent {agent.name!r} stopped (budget): {error}",
            agent=agent.name,
            stop_reason="budget",
            tool_calls=tool_calls,
        )
    if isinstance(error, AgentLimitError):
        if settings.on_limit == "raise":
            raise error
    elif settings.raise_on_error:
        raise error
    metadata = report.metadata(agent.name, run_id, time.perf_counter() - started)
    plan, plan_run = plan_parts(agent, node_run, values)
    return ExecutionResult(
        {},
        raw=report.raw,
        metadata=metadata,
        success=False,
        error=error,
        tool_calls=tool_calls,
        stop_reason=error.stop_reason if isinstance(error, AgentLimitError) else "error",
        plan=plan,
        run=plan_run,
    )
