"""`create_pipeline`: agents in sequence, each step's inputs fed by earlier steps' outputs by name.

Each input of step i is connected from the latest earlier step with an output of the same name;
an input named `previous_<x>` takes the latest earlier output `<x>` (so role-name steps, which
all answer `task, previous_result, context -> result`, chain). Inputs that no earlier step
produces are open inputs, given at run time as parameters (`parameters={"task": ...}` reaches
every step's `task`). `build()` type-checks every connection, and `build(parameters=...)` names
any required input left without a source.

Per-step config `(agent, {...})`: keys that are agent config keys (`model`, `temperature`,
`instructions`, ...) configure that step's copy of the agent; keys naming one of the step's
inputs set that input to a constant (a `ConstantNode` `<step>/<input>` in the graph).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kaizen.nodes.builtins import ConstantNode
from kaizen.patterns.budgeting import attach_budget
from kaizen.patterns.members import (
    Member,
    add_agent_node,
    config_with_model,
    resolve_members,
    set_group,
)

if TYPE_CHECKING:
    from kaizen.agents.agent import Agent
    from kaizen.agents.facade import Kaizen
    from kaizen.runtime.budget import Budget
    from kaizen.workflow.builder import WorkflowBuilder

PREVIOUS = "previous_"


def create_pipeline(
    steps: Sequence[Any],
    *,
    name: str = "pipeline",
    model: Any = None,
    agent_config: Mapping[str, Any] | None = None,
    budget: Budget | None = None,
    max_tokens: int | None = None,
    max_cost: float | None = None,
    framework: Kaizen | None = None,
) -> WorkflowBuilder:
    """Chain `steps` (each an `Agent`, a role name, or `(agent_or_role, {config})`).

    Node ids are the agents' names (made unique). Raises `ValueError` when a step after the first
    takes none of the earlier steps' outputs, or a step config key is neither an agent config key
    nor one of the step's inputs.
    `framework` (a `Kaizen` instance) creates the role-name agents, which inherit its config.
    """
    from kaizen.workflow.builder import WorkflowBuilder

    if isinstance(steps, str | bytes) or not isinstance(steps, Sequence) or not steps:
        raise ValueError(f"create_pipeline: steps must be a non-empty list, got {steps!r}")
    agents: list[Agent | str] = []
    overrides: list[Mapping[str, Any]] = []
    for i, step in enumerate(steps, start=1):
        if isinstance(step, tuple):
            if len(step) != 2 or not isinstance(step[1], Mapping):
                raise ValueError(
                    f"create_pipeline: step {i} must be an agent or (agent, {{config}}), "
                    f"got {step!r}"
                )
            agents.append(step[0])
            overrides.append(step[1])
        else:
            agents.append(step)
            overrides.append({})
    config = config_with_model(agent_config, model)
    members = resolve_members(
        agents, "stage", pattern="pipeline", agent_config=config, framework=framework
    )

    builder = WorkflowBuilder(name)
    produced: list[tuple[str, Sequence[str]]] = []  # (node id, outputs) of the earlier steps
    for i, (member, override) in enumerate(zip(members, overrides, strict=True), start=1):
        member, constants = _configure(member, override, i)
        node_id = member.key
        add_agent_node(builder, member.agent, node_id, group=f"step {i}")
        for port, value in constants.items():
            const_id = f"{node_id}/{port}"
            constant = ConstantNode(const_id, {"value": value})
            set_group(constant, f"step {i}")
            builder.add_node_instance(constant)
            builder.add_connection(const_id, "value", node_id, port)
        linked = 0
        for port in member.signature.input_names:
            if port in constants:
                continue
            source = _source_for(port, produced)
            if source is not None:
                builder.add_connection(source[0], source[1], node_id, port)
                linked += 1
        if produced and not linked:
            earlier = sorted({o for _, outs in produced for o in outs})
            raise ValueError(
                f"create_pipeline: step {i} ({member.agent.name!r}) takes none of the earlier "
                f"steps' outputs (they produce {', '.join(earlier)}; it takes "
                f"{', '.join(member.signature.input_names)}). Name an input like an earlier "
                "output, or 'previous_<output>'"
            )
        produced.append((node_id, member.signature.output_names))
    attach_budget(builder, budget, max_tokens=max_tokens, max_cost=max_cost)
    return builder


def _source_for(port: str, produced: Sequence[tuple[str, Sequence[str]]]) -> tuple[str, str] | None:
    wanted = [port]
    if port.startswith(PREVIOUS) and len(port) > len(PREVIOUS):
        wanted.append(port[len(PREVIOUS) :])
    for node_id, outputs in reversed(produced):
        for name in wanted:
            if name in outputs:
                return node_id, name
    return None


def _configure(
    member: Member, override: Mapping[str, Any], step: int
) -> tuple[Member, dict[str, Any]]:
    """The step's agent with its config overrides applied, and its constant inputs."""
    from kaizen.agents.agent import Agent
    from kaizen.agents.config import valid_keys

    config_keys = set(valid_keys())
    settings = {k: v for k, v in override.items() if k in config_keys}
    constants = {k: v for k, v in override.items() if k not in config_keys and member.has_input(k)}
    unknown = sorted(set(override) - set(settings) - set(constants))
    if unknown and _takes_context(member) and "context" not in constants:
        # {"focus": "technical"} on an agent with the default signature: step context
        constants["context"] = {k: override[k] for k in unknown}
    elif unknown:
        raise ValueError(
            f"create_pipeline: step {step} ({member.agent.name!r}) config key(s) {unknown} are "
            f"neither agent config keys ({', '.join(sorted(config_keys))}) nor inputs of the "
            f"step ({', '.join(member.signature.input_names)}), and the step has no "
            "`context: dict` input to carry them"
        )
    if not settings:
        return member, constants
    agent = member.agent
    copy = Agent(
        agent.name, agent.signature, {**agent.config.explicit(), **settings}, hooks=agent.hooks
    )
    return Member(member.key, copy), constants


def _takes_context(member: Member) -> bool:
    """The step has a `context` input of a dict type (as the default signature does)."""
    from typing import get_origin

    field = next((f for f in member.signature.input_fields if f.name == "context"), None)
    return field is not None and (field.type is dict or get_origin(field.type) is dict)


__all__ = ["create_pipeline"]
