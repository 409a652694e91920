"""`create_supervisor_agent`: supervisor-worker as a graph: plan, assign, work, review, synthesise.

Graph (ids, `<s>` = the supervisor's name): `task` (when the task is given in the config) and
`<s>/team` (the workers' names and specialities) feed `<s>/plan`, the supervisor planning
(structured output: a list of {worker, subtask}; with `task_allocation="round_robin"` it only
splits the task into `subtasks`, dealt to the workers in turn). `<s>/assign` routes each worker
its subtask; the workers `<s>/<worker>` run in parallel, and a worker without a subtask is
skipped, with the reason, in the run record. `<s>/results` gathers what they produced. With
`quality_control`, `<s>/review` approves the results or names workers to redo theirs;
`<s>/revise` routes that feedback to `<s>/<worker>/revised` (one revision round) and
`<s>/final_results` takes each revised result over the first. `<s>/synthesize` writes the answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kaizen.nodes.builtins import ConstantNode
from kaizen.patterns.budgeting import attach_budget
from kaizen.patterns.delegation import REVISED, AssignNode, RevisionRouteNode, WorkerResultsNode
from kaizen.patterns.members import (
    Member,
    add_agent_node,
    config_with_model,
    first_output,
    resolve_members,
    safe_key,
    set_group,
)
from kaizen.patterns.roles import persona, role_agent

if TYPE_CHECKING:
    from kaizen.agents.facade import Kaizen
    from kaizen.workflow.builder import WorkflowBuilder

ALLOCATIONS = ("automatic", "round_robin")
CONFIG_KEYS = (
    "workers",
    "task_allocation",
    "quality_control",
    "task",
    "model",
    "agent_config",
    "budget",
    "max_tokens",
    "max_cost",
)
_RESERVED = frozenset(
    {"plan", "team", "assign", "results", "review", "revise", "final_results", "synthesize"}
    | {"tasks", "unassigned", "unmatched", "requested"}
)


def create_supervisor_agent(
    name: str, config: Mapping[str, Any], *, framework: Kaizen | None = None
) -> WorkflowBuilder:
    """A supervisor named `name` (also its role: "manager", "supervisor", ...) leading workers.

    Config keys: `workers` (Agents or role names, required), `task_allocation` ("automatic", the
    supervisor assigns each subtask to a worker by name, or "round_robin"), `quality_control`
    (bool: review and one revision round), `task` (else pass `parameters={"task": ...}`), `model`
    and `agent_config` (for the agents made from role names and the supervisor's own),
    `budget` / `max_tokens` / `max_cost`. Role-name agents are created by `framework` (a
    `Kaizen` instance, whose config they inherit) when one is given, else as plain agents. A
    worker `Agent` needs a `task: str` input; its result is its `result` output (or `answer` /
    `output`, else its first). The answer is the output `answer` of node `<name>/synthesize`.
    """
    from kaizen.workflow.builder import WorkflowBuilder

    settings = _settings(name, config)
    allocation: str = settings["task_allocation"]
    agent_config = config_with_model(settings.get("agent_config"), settings.get("model"))
    s = safe_key(name)
    workers = resolve_members(
        settings["workers"],
        "worker",
        pattern=f"supervisor {name!r}",
        agent_config=agent_config,
        framework=framework,
    )
    outputs = {w.key: _worker_output(w, name) for w in workers}
    names = {w.key: w.agent.name for w in workers}

    builder = WorkflowBuilder(name)
    task = settings.get("task")
    if task is not None:
        builder.add_node("ConstantNode", "task", {"value": task})

    def supervisor_step(part: str, node_id: str, group: str) -> str:
        agent = role_agent(name, part, name=f"{s}_{part}", config=agent_config, framework=framework)
        add_agent_node(builder, agent, node_id, group=group)
        if task is not None:
            builder.add_connection("task", "value", node_id, "task")
        return node_id

    plan_id = supervisor_step(
        "splitter" if allocation == "round_robin" else "planner", f"{s}/plan", "plan"
    )
    team = ConstantNode(f"{s}/team", {"value": [_describe(w) for w in workers]})
    set_group(team, "plan")
    builder.add_node_instance(team)
    builder.add_connection(f"{s}/team", "value", plan_id, "workers")
    assign_id = f"{s}/assign"
    assign = AssignNode(assign_id, {"workers": names, "mode": allocation})
    set_group(assign, "plan")
    builder.add_node_instance(assign)
    plan_port = "subtasks" if allocation == "round_robin" else "assignments"
    builder.add_connection(plan_id, plan_port, assign_id, plan_port)

    results_id = f"{s}/results"
    results = WorkerResultsNode(results_id, {"workers": list(names), "revised": False})
    set_group(results, "workers")
    builder.add_node_instance(results)
    for worker in workers:
        node_id = f"{s}/{worker.key}"
        add_agent_node(builder, worker.agent, node_id, group="workers")
        builder.add_connection(assign_id, worker.key, node_id, "task")
        builder.add_connection(node_id, outputs[worker.key], results_id, worker.key)

    final_id = results_id
    if settings.get("quality_control"):
        review_id = supervisor_step("reviewer", f"{s}/review", "review")
        builder.add_connection(results_id, "results", review_id, "results")
        route_id = f"{s}/revise"
        route = RevisionRouteNode(route_id, {"workers": names})
        set_group(route, "review")
        builder.add_node_instance(route)
        builder.add_connection(review_id, "approved", route_id, "approved")
        builder.add_connection(review_id, "revisions", route_id, "revisions")
        builder.add_connection(assign_id, "tasks", route_id, "tasks")
        builder.add_connection(results_id, "by_worker", route_id, "by_worker")
        final_id = f"{s}/final_results"
        final = WorkerResultsNode(final_id, {"workers": list(names), "revised": True})
        set_group(final, "revision")
        builder.add_node_instance(final)
        for worker in workers:
            first, again = f"{s}/{worker.key}", f"{s}/{worker.key}/revised"
            add_agent_node(builder, worker.agent, again, group="revision")
            builder.add_connection(route_id, worker.key, again, "task")
            builder.add_connection(first, outputs[worker.key], final_id, worker.key)
            builder.add_connection(again, outputs[worker.key], final_id, worker.key + REVISED)

    synth_id = supervisor_step("synthesizer", f"{s}/synthesize", "synthesis")
    builder.add_connection(final_id, "results", synth_id, "results")
    attach_budget(
        builder,
        settings.get("budget"),
        max_tokens=settings.get("max_tokens"),
        max_cost=settings.get("max_cost"),
    )
    return builder


def _settings(name: str, config: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"create_supervisor_agent: the name must be a non-empty str, got {name!r}")
    if not isinstance(config, Mapping):
        raise TypeError(
            f"create_supervisor_agent({name!r}, config): config must be a dict with 'workers', "
            f"got {type(config).__name__}"
        )
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if unknown:
        raise ValueError(
            f"create_supervisor_agent({name!r}): unknown config key(s) {unknown}; "
            f"valid keys: {', '.join(CONFIG_KEYS)}"
        )
    settings = {"task_allocation": "automatic", "quality_control": False, **config}
    workers = settings.get("workers")
    if not workers or isinstance(workers, str):
        raise ValueError(
            f"create_supervisor_agent({name!r}): config 'workers' must list at least one Agent "
            "or role name"
        )
    if settings["task_allocation"] not in ALLOCATIONS:
        raise ValueError(
            f"create_supervisor_agent({name!r}): task_allocation must be one of "
            f"{', '.join(ALLOCATIONS)}, got {settings['task_allocation']!r}"
        )
    return settings


def _worker_output(worker: Member, supervisor: str) -> str:
    if worker.key in _RESERVED:
        raise ValueError(
            f"supervisor {supervisor!r}: worker name {worker.key!r} is reserved by the pattern; "
            "rename the worker"
        )
    if not worker.has_input("task"):
        raise ValueError(
            f"supervisor {supervisor!r}: worker {worker.agent.name!r} needs an input 'task: str' "
            f"to receive its subtask (its inputs: {', '.join(worker.signature.input_names)})"
        )
    return first_output(worker.signature, ("result", "answer", "output"))


def _describe(worker: Member) -> str:
    about = worker.signature.instructions or persona(worker.key)
    first = about.split(". ")[0].strip().rstrip(".")
    return f"{worker.key}: {first}"


__all__ = ["create_supervisor_agent"]
