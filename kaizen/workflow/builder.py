"""`WorkflowBuilder`: declare nodes and connections in any order, then `build()` a `Workflow`.

Builder calls only record what they are given; `build()` (in `kaizen.workflow.validate`) checks
everything at once and raises one `WorkflowValidationError` listing every problem. The builder
stays usable after `build()`, and each build gives an independent `Workflow`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from kaizen.nodes.base import Node
from kaizen.workflow.specs import REFERENCE, ConnectionSpec, NodeKind, NodeSpec
from kaizen.workflow.validate import build_workflow

if TYPE_CHECKING:
    from kaizen.runtime.budget import Budget
    from kaizen.workflow.workflow import Workflow

__all__ = ["ConnectionSpec", "NodeSpec", "WorkflowBuilder"]


class WorkflowBuilder:
    """Collects nodes and connections; `build()` turns them into an immutable `Workflow`.

    `budget` (a `kaizen.Budget`, set by patterns through `budget=` / `max_tokens=` / `max_cost=`)
    is carried by every workflow built from this builder.
    """

    def __init__(self, name: str = "workflow", *, budget: Budget | None = None) -> None:
        self.name = name
        self.budget: Budget | None = budget
        self._specs: list[NodeSpec] = []
        self._connections: list[ConnectionSpec] = []
        # budgets of workflows merged in with add_workflow, per node id they apply to
        self._scoped_budgets: dict[str, tuple[Budget, ...]] = {}

    # ---- declaring -------------------------------------------------------------------------

    def add_node(
        self,
        node_type: NodeKind,
        node_id: str,
        config: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
        retries: int = 0,
    ) -> str:
        """Declare a node; `node_type` is a registered type name, a `Node` subclass, an `@node`
        function, an agent (anything with `to_workflow_node`), any callable (run as a
        `FunctionNode`), or a `Node` instance (added as a copy under `node_id`). Config values
        under input port names set those inputs; a value `"${other.port}"` connects `other.port`
        to that input. `timeout` (seconds per attempt) and `retries` are the node's policy."""
        self._specs.append(NodeSpec(node_id, node_type, dict(config or {}), timeout, retries))
        return node_id

    def add_node_instance(self, node: Node) -> str:
        """Add a node built beforehand (such as `agent.to_workflow_node("id")`) under its id."""
        if not isinstance(node, Node):
            raise TypeError(f"add_node_instance() needs a Node, got {node!r}")
        self._specs.append(NodeSpec(node.id, node))
        return node.id

    def add_agent(self, agent: Any, node_id: str, **options: Any) -> str:
        """Add `agent.to_workflow_node(node_id, **options)`."""
        return self.add_node_instance(agent.to_workflow_node(node_id, **options))

    def add_connection(self, *args: str) -> None:
        """`add_connection(src, dst)` matches ports by name (see `build`);
        `add_connection(src, src_port, dst, dst_port)` names them."""
        if len(args) == 2:
            self._connections.append(ConnectionSpec(args[0], args[1]))
        elif len(args) == 4:
            self._connections.append(ConnectionSpec(args[0], args[2], args[1], args[3]))
        else:
            raise TypeError(
                "add_connection() takes (source, target) or "
                f"(source, source_port, target, target_port), got {len(args)} arguments"
            )

    def add_connections(self, connections: Iterable[Sequence[str] | Mapping[str, str]]) -> None:
        """Several connections: tuples of 2 or 4, or dicts with `source`, `target` and optional
        `source_port`, `target_port` (kailash's `from_node`/`from_output`/`to_node`/`to_input`
        are understood too)."""
        for item in connections:
            if isinstance(item, Mapping):
                self.add_connection(*_connection_from_mapping(item))
            elif isinstance(item, str):
                raise TypeError(f"a connection is a tuple or a dict, got the string {item!r}")
            else:
                self.add_connection(*item)

    def add_workflow(
        self, other: WorkflowBuilder, prefix: str, separator: str = "/"
    ) -> dict[str, str]:
        """Copy `other`'s nodes and connections into this builder, each node id prefixed
        (`"prefix/id"`), and return the id mapping. References `${id.port}` inside the copied
        configs follow the renaming; connect to the copy with the new ids. `other`'s budget
        keeps applying to the copied nodes (and only to them)."""
        renamed = {spec.node_id: f"{prefix}{separator}{spec.node_id}" for spec in other._specs}

        def rename(value: Any) -> Any:
            match = REFERENCE.fullmatch(value) if isinstance(value, str) else None
            if match and match["node"] in renamed:
                return f"${{{renamed[match['node']]}.{match['port']}}}"
            return value

        for spec in other._specs:
            new_id = renamed[spec.node_id]
            config = {key: rename(value) for key, value in spec.config.items()}
            self._specs.append(NodeSpec(new_id, spec.kind, config, spec.timeout, spec.retries))
            scoped = other._scoped_budgets.get(spec.node_id, ())
            if other.budget is not None and other.budget not in scoped:
                scoped = (*scoped, other.budget)
            if scoped:
                self._scoped_budgets[new_id] = scoped
        for c in other._connections:
            self._connections.append(
                ConnectionSpec(
                    renamed.get(c.source, c.source),
                    renamed.get(c.target, c.target),
                    c.source_port,
                    c.target_port,
                    c.origin,
                )
            )
        return renamed

    # ---- inspecting --------------------------------------------------------------------------

    @property
    def nodes(self) -> Mapping[str, NodeSpec]:
        """Declared nodes by id (read-only; the first declaration of a duplicated id)."""
        view: dict[str, NodeSpec] = {}
        for spec in self._specs:
            view.setdefault(spec.node_id, spec)
        return MappingProxyType(view)

    @property
    def connections(self) -> tuple[ConnectionSpec, ...]:
        return tuple(self._connections)

    def copy(self, name: str | None = None) -> WorkflowBuilder:
        """An independent builder with the same declarations and budgets."""
        other = WorkflowBuilder(self.name if name is None else name, budget=self.budget)
        other._specs = list(self._specs)
        other._connections = list(self._connections)
        other._scoped_budgets = dict(self._scoped_budgets)
        return other

    def __repr__(self) -> str:
        return (
            f"WorkflowBuilder({self.name!r}, {len(self._specs)} nodes, "
            f"{len(self._connections)} connections)"
        )

    # ---- building ----------------------------------------------------------------------------

    def build(self, *, parameters: Mapping[str, Any] | None = None) -> Workflow:
        """Validate everything and return the `Workflow`, or raise one `WorkflowValidationError`.

        Two-argument connections connect every output of the source to the same-named input of
        the target; when no names match, a single-output source goes to the target's only
        unconnected required input. A required input with no source and no config value is an
        *open input* (`workflow.open_inputs`) to be given as a run parameter; with `parameters`,
        build() checks them too.
        """
        return build_workflow(
            self.name,
            self._specs,
            self._connections,
            parameters,
            budget=self.budget,
            scoped_budgets=self._scoped_budgets,
        )


def _connection_from_mapping(item: Mapping[str, str]) -> tuple[str, ...]:
    source = item.get("source", item.get("from_node"))
    target = item.get("target", item.get("to_node"))
    source_port = item.get("source_port", item.get("from_output"))
    target_port = item.get("target_port", item.get("to_input"))
    if source is None or target is None:
        raise TypeError(f"a connection dict needs 'source' and 'target', got {dict(item)!r}")
    if (source_port is None) != (target_port is None):
        raise TypeError(f"give both ports or neither in a connection dict, got {dict(item)!r}")
    if source_port is None or target_port is None:
        return source, target
    return source, source_port, target, target_port
