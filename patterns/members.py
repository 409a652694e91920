"""The agents of a pattern: resolving `Agent`s and role names into `Member`s with unique keys.

Every pattern accepts a list whose items are `Agent` objects or role names. A member's `key` is a
unique, identifier-safe name used in node ids (`"round1/optimist"`) and in aggregator port names
(`"optimist__argument"`), so two agents with the same name become `expert_1`, `expert_2`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kaizen.patterns.roles import role_agent

if TYPE_CHECKING:
    from kaizen.agents.agent import Agent, AgentNode
    from kaizen.agents.facade import Kaizen
    from kaizen.nodes.base import Node
    from kaizen.signatures import Signature
    from kaizen.workflow.builder import WorkflowBuilder


@dataclass(frozen=True, slots=True)
class Member:
    """One agent of a pattern, under the key that names its nodes and ports."""

    key: str
    agent: Agent

    @property
    def signature(self) -> Signature:
        return self.agent.signature

    def has_input(self, name: str) -> bool:
        return name in self.agent.signature.input_names

    def has_output(self, name: str) -> bool:
        return name in self.agent.signature.output_names


def safe_key(name: str) -> str:
    """`name` as an identifier (non-word characters become underscores)."""
    key = re.sub(r"\W+", "_", name.strip()).strip("_") or "agent"
    return f"a_{key}" if key[0].isdigit() else key


def config_with_model(agent_config: Mapping[str, Any] | None, model: Any) -> dict[str, Any]:
    """The config for agents made from role names: `agent_config`, with `model` when given."""
    config = dict(agent_config or {})
    if model is not None:
        config["model"] = model
    return config


def resolve_members(
    agents: Sequence[Agent | str],
    part: str,
    *,
    pattern: str,
    agent_config: Mapping[str, Any] | None = None,
    options: Sequence[str] | None = None,
    framework: Kaizen | None = None,
) -> list[Member]:
    """Turn `agents` (Agent objects or role names) into members with unique keys."""
    from kaizen.agents.agent import Agent

    if isinstance(agents, str | bytes) or not isinstance(agents, Sequence):
        raise TypeError(
            f"{pattern}: agents must be a list of Agent objects or role names, got {agents!r}"
        )
    names: list[str] = []
    for i, item in enumerate(agents):
        if isinstance(item, str):
            if not item.strip():
                raise ValueError(f"{pattern}: agent #{i + 1} is an empty role name")
            names.append(safe_key(item))
        elif isinstance(item, Agent):
            names.append(safe_key(item.name))
        else:
            raise TypeError(
                f"{pattern}: agent #{i + 1} must be an Agent (kaizen.create_agent) or a role name "
                f"such as 'optimist', got {type(item).__name__}"
            )
    keys = _unique(names)
    members: list[Member] = []
    for key, item in zip(keys, agents, strict=True):
        if isinstance(item, str):
            agent = role_agent(
                item, part, name=key, config=agent_config, options=options, framework=framework
            )
        else:
            agent = item
        members.append(Member(key, agent))
    return members


def _unique(names: Sequence[str]) -> list[str]:
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    seen: dict[str, int] = {}
    keys: list[str] = []
    taken = set(names)
    for name in names:
        if counts[name] == 1:
            keys.append(name)
            continue
        n = seen.get(name, 0)
        while True:
            n += 1
            candidate = f"{name}_{n}"
            if candidate not in taken:
                break
        seen[name] = n
        taken.add(candidate)
        keys.append(candidate)
    return keys


def add_agent_node(
    builder: WorkflowBuilder, agent: Agent, node_id: str, *, group: str | None = None
) -> AgentNode:
    """Add `agent` to `builder` as node `node_id`, clustered under `group` when drawn."""
    node = agent.to_workflow_node(node_id)
    if group is not None:
        set_group(node, group)
    builder.add_node_instance(node)
    return node


def set_group(node: Node, group: str) -> None:
    """Cluster `node` under `group` when the graph is drawn (see kaizen.render)."""
    node.group = group


def first_output(signature: Signature, preferred: Sequence[str]) -> str:
    """The first of `preferred` among the signature's outputs, else its first output."""
    for name in preferred:
        if name in signature.output_names:
            return name
    return signature.output_names[0]
