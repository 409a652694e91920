"""`ExecutionPlan`: a built workflow in the form runtimes read: nodes by index, edges grouped
per node.

`WorkflowBuilder.build()` computes it once and the immutable `Workflow` keeps it, so every run
starts from precomputed arrays (a few list copies) instead of walking ids and connections.
Everything derived from the graph's shape lives here, once: the topological order, each node's
sources and targets, its wired and open input ports, and the workflow's open inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from kaizen.nodes.base import Node, Port

__all__ = ["ExecutionPlan", "NodePlan", "Plan", "make_plan"]

Edge = tuple[int, str, str]  # (other node's index, source port, target port)


@dataclass(frozen=True, slots=True)
class NodePlan:
    """One node as runtimes see it: indices instead of ids, edges grouped."""

    index: int
    node_id: str
    node: Node
    node_type: str
    is_async: bool
    needs_policy: bool  # a timeout or retries: runs supervised
    partial: bool  # accepts_partial_inputs: runs once every source settled, with what arrived
    runs_without_inputs: bool  # partial and runs even when nothing arrived
    required: frozenset[str]  # required input ports
    n_sources: int  # distinct upstream nodes
    edges_in: tuple[Edge, ...]  # (source index, source port, input port)
    edges_out: tuple[Edge, ...]  # (target index, output port, target port)
    targets: tuple[int, ...]  # distinct downstream nodes
    wired: frozenset[str]  # input ports fed by a connection
    open_ports: Mapping[str, Port]  # input ports fed by no connection
    outputs: frozenset[str]
    fed_ports: frozenset[str]  # output ports some connection reads
    bound: Mapping[str, Any]  # inputs set at build time (config values)
    scoped_hooks: bool  # the node's type can carry hooks of its own (Node.hooks overridden)


@dataclass(frozen=True, slots=True)
class ExecutionPlan:
    nodes: tuple[NodePlan, ...]  # in topological order
    index: Mapping[str, int]
    roots: tuple[int, ...]  # nodes with no upstream
    open_inputs: tuple[tuple[str, str], ...]  # required, unconnected, unbound: run parameters


def make_plan(
    order: Sequence[str],
    nodes: Mapping[str, Node],
    connections: Sequence[tuple[str, str, str, str]],
    bound: Mapping[str, Mapping[str, Any]],
) -> ExecutionPlan:
    """The plan of nodes already in topological `order` and their resolved connections
    `(source, source_port, target, target_port)`."""
    index = {node_id: i for i, node_id in enumerate(order)}
    edges_in: list[list[Edge]] = [[] for _ in order]
    edges_out: list[list[Edge]] = [[] for _ in order]
    for source, source_port, target, target_port in connections:
        s, t = index[source], index[target]
        edges_in[t].append((s, source_port, target_port))
        edges_out[s].append((t, source_port, target_port))
    plans = []
    for i, node_id in enumerate(order):
        node = nodes[node_id]
        wired = frozenset(port for _, _, port in edges_in[i])
        policy = node.policy
        partial = bool(node.accepts_partial_inputs)
        plans.append(
            NodePlan(
                index=i,
                node_id=node_id,
                node=node,
                node_type=node.node_type(),
                is_async=node.is_async,
                needs_policy=policy.timeout is not None or policy.retries > 0,
                partial=partial,
                runs_without_inputs=partial and bool(node.runs_without_inputs),
                required=frozenset(n for n, p in node.inputs.items() if p.required),
                n_sources=len({s for s, _, _ in edges_in[i]}),
                edges_in=tuple(edges_in[i]),
                edges_out=tuple(edges_out[i]),
                targets=tuple(dict.fromkeys(t for t, _, _ in edges_out[i])),
                wired=wired,
                open_ports=MappingProxyType(
                    {n: p for n, p in node.inputs.items() if n not in wired}
                ),
                outputs=frozenset(node.outputs),
                fed_ports=frozenset(port for _, port, _ in edges_out[i]),
                bound=MappingProxyType(dict(bound.get(node_id, {}))),
                scoped_hooks=type(node).hooks is not Node.hooks,
            )
        )
    open_inputs = tuple(
        (p.node_id, name)
        for p in plans
        for name, port in p.open_ports.items()
        if port.required and name not in p.bound
    )
    return ExecutionPlan(
        nodes=tuple(plans),
        index=MappingProxyType(index),
        roots=tuple(p.index for p in plans if p.n_sources == 0),
        open_inputs=open_inputs,
    )


# The old name, deprecated: `kaizen.Plan` is an agent's plan of steps (`kaizen.plans.Plan`); this
# one is the runtime's form of a built workflow. Kept for one release.
Plan = ExecutionPlan
