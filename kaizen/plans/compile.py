"""`compile_plan`: a plan -> a `WorkflowBuilder` of step nodes (and, for an agent, its synthesis).

    one StepNode per step (node id = step id, drawn in the group "steps")
    for each step it waits for (references, then depends_on):
        connection  <that step>.result -> <this step>.<that step's id>
    with an agent: a SynthesisNode "synthesize", every step's result connected into it;
        its outputs are the agent's output fields

`build()` validates the graph like any other (it also refuses cycles; `check_plan` has already
named them). Run it on any runtime: each step starts as soon as the steps it waits for finish.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kaizen.errors import PlanError
from kaizen.plans.nodes import PlanAgent, StepNode, SynthesisNode
from kaizen.plans.plan import SYNTHESIS, Plan, check_plan
from kaizen.tools.toolset import ToolLike, collect_tools
from kaizen.workflow.builder import WorkflowBuilder

if TYPE_CHECKING:
    from kaizen.tools.tool import Tool

__all__ = ["compile_plan"]


def compile_plan(
    plan: Plan | Mapping[str, Any] | Sequence[Mapping[str, Any]],
    tools: Iterable[ToolLike],
    *,
    agent: Any = None,
    inputs: Mapping[str, Any] | None = None,
    check: bool = False,
    sync: bool = False,
    name: str = "plan",
) -> WorkflowBuilder:
    """The builder of `plan`'s workflow (see the module docstring). `plan` is a `Plan`, a dict
    ``{"steps": [...]}`` or a list of steps; `tools` are functions, `kaizen.Tool`s or toolsets.

    With `agent` (a `kaizen.Agent`, or a `PlanAgent`) and its `inputs`, failed steps get
    recovery decisions from its model, `check=True` checks each step's `expected_output`, and a
    synthesis node turns the results into the agent's typed outputs. Without one, the results
    are each step's ``result`` output. `sync=True` makes sync nodes (run in worker threads)
    instead of async ones (run on the runtime's event loop).

    Raises `PlanError` listing every problem of a plan that cannot run.
    """
    plan = Plan.coerce(plan)
    found: list[Tool] = collect_tools(tuple(tools))
    problems = check_plan(plan, found)
    if problems:
        raise PlanError(f"plan {name!r} cannot run: " + "; ".join(problems), problems=problems)
    helper = (
        agent
        if isinstance(agent, PlanAgent) or agent is None
        else PlanAgent.of(agent, inputs or {})
    )
    by_name = {t.name: t for t in found}
    builder = WorkflowBuilder(name)
    for step in plan.steps:
        node = StepNode(step, by_name, helper, check=check, sync=sync)
        builder.add_node_instance(node)
        for dependency in node.waits_for:
            builder.add_connection(dependency, "result", step.id, dependency)
    if helper is not None:
        builder.add_node_instance(SynthesisNode(SYNTHESIS, plan.steps, helper, sync=sync))
        for step in plan.steps:
            builder.add_connection(step.id, "result", SYNTHESIS, step.id)
    return builder
