"""`Workflow`: the immutable, validated graph that `WorkflowBuilder.build()` produces.

It holds the node instances (in a topological order), the port-to-port `Connection`s, the inputs
bound at build time, the budgets its runs draw on, and its `ExecutionPlan` (the indexed form
runtimes read). Nothing mutates it, so one workflow can be run many times, concurrently. The
networkx view (`workflow.graph`) is built on first use, for users who want graph algorithms.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from kaizen import seams
from kaizen.nodes.base import Node
from kaizen.workflow.plan import ExecutionPlan, make_plan

if TYPE_CHECKING:
    import networkx as nx

    from kaizen.runtime.budget import Budget

__all__ = ["Connection", "Workflow"]


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
    """A built, validated, immutable workflow graph. Create it with `WorkflowBuilder.build()`.

    - `nodes`: `{node_id: Node}` in a topological order (`order` lists the ids);
    - `connections`: every `Connection`;
    - `bound_inputs`: `{node_id: {port: value}}` set at build time;
    - `open_inputs`: `(node_id, port)` pairs a run must supply as parameters;
    - `budget`: a token / cost ceiling for its runs (a pattern's budget; a runtime's own wins);
      `scoped_budgets`: `{node_id: (Budget, ...)}`, ceilings of sub-workflows added with
      `add_workflow`, which apply to their nodes only, always.
    """

    __slots__ = (
        "__weakref__",
        "_graph",
        "bound_inputs",
        "budget",
        "connections",
        "name",
        "nodes",
        "plan",
        "scoped_budgets",
    )

    _graph: nx.DiGraph[str] | None
    name: str
    nodes: Mapping[str, Node]
    connections: tuple[Connection, ...]
    bound_inputs: Mapping[str, Mapping[str, Any]]
    budget: Budget | None
    scoped_budgets: Mapping[str, tuple[Budget, ...]]
    plan: ExecutionPlan

    def __init__(
        self,
        name: str,
        nodes: Mapping[str, Node],
        connections: tuple[Connection, ...],
        *,
        bound_inputs: Mapping[str, Mapping[str, Any]] | None = None,
        budget: Budget | None = None,
        scoped_budgets: Mapping[str, tuple[Budget, ...]] | None = None,
    ) -> None:
        """`nodes` must be in a topological order and `connections` resolved and valid: build
        workflows with `WorkflowBuilder`, which checks both."""
        bound = {k: MappingProxyType(dict(v)) for k, v in (bound_inputs or {}).items() if v}
        init = object.__setattr__
        init(self, "name", name)
        init(self, "nodes", MappingProxyType(dict(nodes)))
        init(self, "connections", tuple(connections))
        init(self, "bound_inputs", MappingProxyType(bound))
        init(self, "budget", budget)
        init(self, "scoped_budgets", MappingProxyType(dict(scoped_budgets or {})))
        init(self, "_graph", None)
        init(
            self,
            "plan",
            make_plan(
                list(self.nodes),
                self.nodes,
                [(c.source, c.source_port, c.target, c.target_port) for c in self.connections],
                bound,
            ),
        )

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(
            f"a Workflow is immutable (tried to set {name!r}); change the WorkflowBuilder and "
            "build again"
        )

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"a Workflow is immutable (tried to delete {name!r})")

    def __reduce__(self) -> tuple[Any, ...]:
        # pickled as its constructor call: the plan is recomputed where it is unpickled
        options = {
            "bound_inputs": {k: dict(v) for k, v in self.bound_inputs.items()},
            "budget": self.budget,
            "scoped_budgets": dict(self.scoped_budgets),
        }
        return (_rebuild, (self.name, dict(self.nodes), self.connections, options))

    @property
    def order(self) -> tuple[str, ...]:
        """The node ids in a topological order (every source before its targets)."""
        return tuple(self.nodes)

    @property
    def open_inputs(self) -> tuple[tuple[str, str], ...]:
        """Required inputs with no connection and no bound value: `(node_id, port)` pairs that
        a run must supply as parameters."""
        return self.plan.open_inputs

    @property
    def graph(self) -> nx.DiGraph[str]:
        """A frozen networkx view: node attribute `node` (the `Node`), edge attribute `ports`
        (the `(source_port, target_port)` pairs of that edge)."""
        graph = self._graph
        if graph is None:
            import networkx as nx

            pairs: dict[tuple[str, str], list[tuple[str, str]]] = {}
            for c in self.connections:
                pairs.setdefault((c.source, c.target), []).append((c.source_port, c.target_port))
            graph = nx.DiGraph(name=self.name)
            graph.add_nodes_from((node_id, {"node": node}) for node_id, node in self.nodes.items())
            graph.add_edges_from((s, t, {"ports": tuple(p)}) for (s, t), p in pairs.items())
            graph = nx.freeze(graph)
            object.__setattr__(self, "_graph", graph)
        return graph

    def __repr__(self) -> str:
        return f"Workflow({self.name!r}, {len(self.nodes)} nodes, {len(self.connections)} edges)"

    # Drawing lives in kaizen.render, a layer above: these convenient entry points reach it
    # through kaizen.seams.drawing.
    def to_mermaid(self) -> str:
        return seams.drawing.get().workflow_to_mermaid(self)

    def to_dot(self) -> str:
        return seams.drawing.get().workflow_to_dot(self)

    def render(self, path: str | Path) -> Path:
        """Draw the graph to `path`; the suffix picks the format (`.svg`, `.png`, `.pdf`)."""
        return seams.drawing.get().render_workflow(self, path)

    def _repr_svg_(self) -> str:
        return seams.drawing.get().workflow_svg(self)


def _rebuild(
    name: str, nodes: dict[str, Node], connections: tuple[Connection, ...], options: dict[str, Any]
) -> Workflow:
    return Workflow(name, nodes, connections, **options)
