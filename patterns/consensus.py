"""`create_consensus_workflow`: agents answer in parallel; an aggregator decides, honestly.

Graph (ids): `question` (when the question is a builder argument) feeds every agent; one node
per agent (id: the agent's key, group "agents"); every agent's answer, confidence and rationale
flow into `consensus`, a `ConsensusNode` that runs once every agent has settled, with the votes
that were cast (`accepts_partial_inputs`): an agent that failed or was skipped is a failure in the
result, with the error the run recorded for it. Run it with `LocalRuntime(failure_policy=
"continue")` so one failed agent does not stop the others; under "fail_fast" the first failure
stops the run (and nothing claims consensus either). See `kaizen.patterns.decision` for the rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kaizen.patterns.aggregate import ConsensusNode, member_port
from kaizen.patterns.budgeting import attach_budget
from kaizen.patterns.decision import DECISION_RULES, default_quorum
from kaizen.patterns.members import (
    Member,
    add_agent_node,
    config_with_model,
    first_output,
    resolve_members,
    set_group,
)

if TYPE_CHECKING:
    from kaizen.agents.agent import Agent
    from kaizen.agents.facade import Kaizen
    from kaizen.runtime.budget import Budget
    from kaizen.workflow.builder import WorkflowBuilder

AGGREGATOR_ID = "consensus"
RESERVED_IDS = frozenset({AGGREGATOR_ID, "question"})


def create_consensus_workflow(
    agents: Sequence[Agent | str],
    decision_criteria: str = "majority_vote",
    confidence_threshold: float = 0.5,
    *,
    question: str | None = None,
    options: Sequence[str] | None = None,
    quorum: int | None = None,
    weights: Mapping[str, float] | None = None,
    model: Any = None,
    agent_config: Mapping[str, Any] | None = None,
    budget: Budget | None = None,
    max_tokens: int | None = None,
    max_cost: float | None = None,
    framework: Kaizen | None = None,
    name: str = "consensus",
) -> WorkflowBuilder:
    """Agents vote in parallel; node `consensus` outputs a `ConsensusResult` (`result`),
    `decision` and `reached`.

    `decision_criteria`: `majority_vote`, `weighted_vote` (with `weights` per agent name),
    `unanimous` or `average_confidence`. Consensus is reached only when the rule agrees, at least
    `quorum` agents voted (default: a majority of them) and the decision's confidence is at least
    `confidence_threshold`. Role-name agents answer `question -> rationale, answer, confidence`;
    `options` restricts their answer to those values. An `Agent` votes with its `answer` output
    (or `decision` / `result` / `position`, else its first output) and its `confidence` output
    (1.0 when it has none). `question` set here becomes a constant node; left None, pass it at run
    time (`parameters={"question": ...}`).
    `framework` (a `Kaizen` instance) creates the role-name agents, which inherit its config.
    """
    from kaizen.workflow.builder import WorkflowBuilder

    if decision_criteria not in DECISION_RULES:
        raise ValueError(
            f"create_consensus_workflow: unknown decision_criteria {decision_criteria!r}; "
            f"choose one of {', '.join(DECISION_RULES)}"
        )
    if not 0.0 <= confidence_threshold <= 1.0:
        raise ValueError(
            f"create_consensus_workflow: confidence_threshold must be in [0, 1], "
            f"got {confidence_threshold!r}"
        )
    config = config_with_model(agent_config, model)
    members = resolve_members(
        agents,
        "voter",
        pattern="consensus",
        agent_config=config,
        framework=framework,
        options=options,
    )
    if not members:
        raise ValueError("create_consensus_workflow: give at least one agent")
    clash = sorted(RESERVED_IDS & {m.key for m in members})
    if clash:
        raise ValueError(
            f"create_consensus_workflow: agent name(s) {clash} clash with the pattern's own node "
            "ids; rename the agent(s)"
        )
    if quorum is not None and not 1 <= quorum <= len(members):
        raise ValueError(
            f"create_consensus_workflow: quorum must be between 1 and {len(members)} "
            f"(the number of agents), got {quorum!r}"
        )
    member_weights = _weights(members, weights)

    builder = WorkflowBuilder(name)
    if question is not None:
        builder.add_node("ConstantNode", "question", {"value": question})
    spec: dict[str, dict[str, Any]] = {}
    for member in members:
        add_agent_node(builder, member.agent, member.key, group="agents")
        if question is not None and member.has_input("question"):
            builder.add_connection("question", "value", member.key, "question")
        fields = _vote_fields(member)
        spec[member.key] = {"node": member.key, "agent": member.agent.name, "fields": fields}
        for role, output in fields.items():
            builder.add_connection(member.key, output, AGGREGATOR_ID, member_port(member.key, role))
    aggregator = ConsensusNode(
        AGGREGATOR_ID,
        {
            "members": spec,
            "rule": decision_criteria,
            "confidence_threshold": confidence_threshold,
            "quorum": quorum if quorum is not None else default_quorum(len(members)),
            "weights": member_weights,
        },
    )
    set_group(aggregator, "decision")
    builder.add_node_instance(aggregator)
    attach_budget(builder, budget, max_tokens=max_tokens, max_cost=max_cost)
    return builder


def _vote_fields(member: Member) -> dict[str, str]:
    signature = member.signature
    fields = {"answer": first_output(signature, ("answer", "decision", "result", "position"))}
    for role in ("confidence", "rationale"):
        if member.has_output(role) and fields["answer"] != role:
            fields[role] = role
    return fields


def _weights(members: Sequence[Member], weights: Mapping[str, float] | None) -> dict[str, float]:
    if not weights:
        return {}
    by_name = {m.agent.name: m.key for m in members} | {m.key: m.key for m in members}
    unknown = sorted(set(weights) - set(by_name))
    if unknown:
        raise ValueError(
            f"create_consensus_workflow: weights name unknown agent(s) {unknown}; "
            f"the agents are {', '.join(m.key for m in members)}"
        )
    resolved: dict[str, float] = {}
    for name, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
            raise ValueError(
                f"create_consensus_workflow: the weight of {name!r} must be a number >= 0, "
                f"got {weight!r}"
            )
        resolved[by_name[name]] = float(weight)
    return resolved


__all__ = ["AGGREGATOR_ID", "create_consensus_workflow"]
