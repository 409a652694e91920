"""`Workflow`: the immutable, validated graph that `WorkflowBuilder.build()` produces.

It holds the node instances, the port-to-port `Connection`s, the parameters bound at build time,
and a frozen networkx `DiGraph` (node attribute `node`: the `Node`; edge attribute `ports`: the
list of `(source_port, target_port)` pairs). Runtimes read it; nothing mutates it, so one workflow
can be run many times, concurrently.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from kaizen.nodes.base import Node

if TYPE_CHECKING:
    import networkx as nx

    from kaizen.budget import Budget


@dataclass(frozen=True, slots=True)
class Connection:
    """Data flows from `source.source_port` to `target.target_port`."""

    source: str
    source_port: str
    target: str
    target_port: str

    def __str__(self) -> str:
        return f"{self.source}.{self.source_port} -> {self.target}.{self.target_port}"


class Workflow:
    """A built, validated, immutable workflow graph. Create it with `WorkflowBuilder.build()`."""

    __slots__ = (
        "__weakref__",  # the runtime caches per-workflow plans in a WeakKeyDictionary
        "_graph",
        "bound_inputs",
        "budget",
        "connections",
        "name",
        "nodes",
        "open_inputs",
        "order",
    )

    def __init__(
        self,
        name: str,
        nodes: Mapping[str, Node],
        connections: tuple[Connection, ...],
        graph: nx.DiGraph,
        order: tuple[str, ...],
        bound_inputs: Mapping[str, Mapping[str, Any]] | None = None,
        open_inputs: tuple[tuple[str, str], ...] = (),
        budget: Budget | None = None,
    ) -> None:
        self.name = name
        self.nodes: Mapping[str, Node] = MappingProxyType(dict(nodes))
        self.connections = connections
        self._graph = graph
        self.order = order  # a topological order of node ids
        self.bound_inputs: Mapping[str, Mapping[str, Any]] = MappingProxyType(
            {k: MappingProxyType(dict(v)) for k, v in (bound_inputs or {}).items()}
        )
        # required inputs with no source and no config value: (node_id, port), to be supplied
        # as run parameters
        self.open_inputs = open_inputs
        # a token / cost ceiling for its runs (a pattern's budget); a runtime's own budget wins
        self.budget = budget

    @property
    def graph(self) -> nx.DiGraph:
        """The graph, frozen: networkx raises on any attempt to change it."""
        return self._graph

    def __repr__(self) -> str:
        return f"Workflow({self.name!r}, {len(self.nodes)} nodes, {len(self.connections)} edges)"

    # Rendering lives in kaizen.render; these are the convenient entry points.
    def to_mermaid(self) -> str:
        from kaizen.render import workflow_to_mermaid

        return workflow_to_mermaid(self)

    def to_dot(self) -> str:
        from kaizen.render import workflow_to_dot

        return workflow_to_dot(self)

    def render(self, path: str | Path) -> Path:
        """Draw the graph to `path`; the suffix picks the format (`.svg`, `.png`, `.pdf`)."""
        from kaizen.render import render_workflow

        return render_workflow(self, path)

    def _repr_svg_(self) -> str:
        from kaizen.render import workflow_svg

        return workflow_svg(self)
