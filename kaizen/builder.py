"""`WorkflowBuilder`: declare nodes and connections in any order, then `build()` a `Workflow`.

Builder calls only record what they are given; `build()` validates everything at once and raises
one `WorkflowValidationError` listing every problem (unknown node types, duplicate ids, dangling
or ambiguous connections, inputs fed twice, type-incompatible ports, cycles, and, when
`parameters` are given, required inputs left without a value). The builder stays usable after
`build()`, and each build gives an independent `Workflow`.
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from kaizen.errors import UnknownNodeTypeError, WorkflowValidationError
from kaizen.nodes.base import ExecutionPolicy, Node
from kaizen.nodes.compat import format_type, is_compatible
from kaizen.nodes.function import FunctionNode, NodeFunction
from kaizen.nodes.registry import get_node_type
from kaizen.workflow import Connection, Workflow

if TYPE_CHECKING:
    from kaizen.budget import Budget

__all__ = ["ConnectionSpec", "NodeSpec", "WorkflowBuilder"]

# "${node.port}": the node id may contain dots, the port may not
_REFERENCE = re.compile(r"\$\{(?P<node>[^{}]+)\.(?P<port>[^.{}]+)\}")

NodeKind = str | type[Node] | NodeFunction[Any, Any] | Callable[..., Any] | Node


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """A node as declared: its id, its type (name, class, `@node` function, callable or
    ready-made instance), its config and execution policy."""

    node_id: str
    kind: Any
    config: Mapping[str, Any] = field(default_factory=dict)
    timeout: float | None = None
    retries: int = 0

    @property
    def type_name(self) -> str:
        kind = self.kind
        if isinstance(kind, str):
            return kind
        if isinstance(kind, NodeFunction):
            return kind.type_name
        if isinstance(kind, Node):
            return kind.node_type()
        if isinstance(kind, type) and issubclass(kind, Node):
            return kind.node_type()
        if callable(kind) and not hasattr(kind, "to_workflow_node"):
            return FunctionNode.node_type()
        return type(kind).__name__


@dataclass(frozen=True, slots=True)
class ConnectionSpec:
    """A connection as declared; ports are `None` for a two-argument (match-by-name) one."""

    source: str
    target: str
    source_port: str | None = None
    target_port: str | None = None
    origin: str = ""  # where it came from, for messages ("config of 'b'")

    def __str__(self) -> str:
        left = self.source if self.source_port is None else f"{self.source}.{self.source_port}"
        right = self.target if self.target_port is None else f"{self.target}.{self.target_port}"
        return f"{left} -> {right}" + (f" ({self.origin})" if self.origin else "")


class WorkflowBuilder:
    """Collects nodes and connections; `build()` turns them into an immutable `Workflow`."""

    def __init__(self, name: str = "workflow") -> None:
        self.name = name
        self._specs: list[NodeSpec] = []
        self._connections: list[ConnectionSpec] = []
        # a token / cost ceiling the built workflows carry (patterns set it: budget=, max_tokens=)
        self.budget: Budget | None = None

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
        function, an agent (anything with `to_workflow_node`) or any callable (run as a
        `FunctionNode`). Config values under input port names set those inputs; a value
        `"${other.port}"` connects `other.port` to that input."""
        self._specs.append(NodeSpec(node_id, node_type, dict(config or {}), timeout, retries))
        return node_id

    def add_node_instance(self, node: Node) -> str:
        """Add a node built beforehand (such as `agent.to_workflow_node("id")`)."""
        if not isinstance(node, Node):
            raise TypeError(f"add_node_instance() needs a Node, got {node!r}")
        self._specs.append(NodeSpec(node.id, node, node.config))
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
        configs follow the renaming; connect to the copy with the new ids."""
        renamed = {spec.node_id: f"{prefix}{separator}{spec.node_id}" for spec in other._specs}

        def rename(value: Any) -> Any:
            match = _REFERENCE.fullmatch(value) if isinstance(value, str) else None
            if match and match["node"] in renamed:
                return f"${{{renamed[match['node']]}.{match['port']}}}"
            return value

        for spec in other._specs:
            new_id = renamed[spec.node_id]
            config = {key: rename(value) for key, value in spec.config.items()}
            if isinstance(spec.kind, Node):
                instance = copy.copy(spec.kind)
                instance.id = new_id
                self._specs.append(NodeSpec(new_id, instance, config))
            else:
                self._specs.append(NodeSpec(new_id, spec.kind, config, spec.timeout, spec.retries))
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
        """An independent builder with the same declarations."""
        other = WorkflowBuilder(self.name if name is None else name)
        other._specs = list(self._specs)
        other._connections = list(self._connections)
        other.budget = self.budget
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
        workflow = _Build(self.name, self._specs, self._connections).run(parameters)
        workflow.budget = self.budget
        return workflow


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


def _names(names: Iterable[str]) -> str:
    listed = ", ".join(names)
    return listed or "none"


class _Build:
    """One validation pass over the declarations; collects every problem before failing."""

    def __init__(
        self, name: str, specs: Sequence[NodeSpec], connections: Sequence[ConnectionSpec]
    ) -> None:
        self.name = name
        self.specs = specs
        self.declared = connections
        self.problems: list[str] = []
        self.nodes: dict[str, Node] = {}
        self.broken: set[str] = set()  # declared ids whose node could not be made
        self.bound: dict[str, dict[str, Any]] = {}
        self.references: list[ConnectionSpec] = []
        self.resolved: dict[tuple[str, str, str, str], None] = {}  # ordered set of connections
        self.feeds: dict[tuple[str, str], list[str]] = {}  # (node, input) -> source descriptions

    def run(self, parameters: Mapping[str, Any] | None) -> Workflow:
        self._make_nodes()
        self._connect()
        self._check_feeds()
        connections = tuple(Connection(*key) for key in self.resolved)
        self._check_types(connections)
        graph, order = self._graph(connections)
        workflow = Workflow(
            self.name,
            self.nodes,
            connections,
            graph,
            order,
            bound_inputs=self.bound,
            open_inputs=self._open_inputs(),
        )
        if parameters is not None and not self.problems:
            # The same routing and checks the runtime applies before a run. Only on an otherwise
            # valid graph: a broken node or connection would make inputs look unfed.
            from kaizen.scheduler import check_parameters, plan_for

            self.problems.extend(check_parameters(plan_for(workflow), parameters)[1])
        if self.problems:
            raise WorkflowValidationError(self.problems)
        return workflow

    # ---- nodes ---------------------------------------------------------------------------------

    def _make_nodes(self) -> None:
        first_type: dict[str, str] = {}
        for spec in self.specs:
            node_id = spec.node_id
            if not isinstance(node_id, str) or not node_id:
                self.problems.append(f"node id must be a non-empty string, got {node_id!r}")
                continue
            if node_id in first_type:
                self.problems.append(
                    f"duplicate node id {node_id!r}: added as {first_type[node_id]} and again "
                    f"as {spec.type_name}; node ids must be unique"
                )
                continue
            first_type[node_id] = spec.type_name
            node = self._make_node(spec)
            if node is None:
                self.broken.add(node_id)
            else:
                self.nodes[node_id] = node

    def _make_node(self, spec: NodeSpec) -> Node | None:
        node_id = spec.node_id
        config, references = self._split_config(node_id, spec.config)
        try:
            policy = (
                None
                if spec.timeout is None and spec.retries == 0
                else ExecutionPolicy(timeout=spec.timeout, retries=spec.retries)
            )
        except (ValueError, TypeError) as exc:
            self.problems.append(f"node {node_id!r}: {exc}")
            return None
        kind = spec.kind
        try:
            if isinstance(kind, Node):
                node: Node = kind
            elif isinstance(kind, str):
                node = get_node_type(kind)(node_id, config, policy=policy)
            elif isinstance(kind, NodeFunction):
                node = kind.node_class(node_id, config, policy=policy)
            elif isinstance(kind, type) and issubclass(kind, Node):
                node = kind(node_id, config, policy=policy)
            elif hasattr(kind, "to_workflow_node"):  # an Agent
                node = kind.to_workflow_node(node_id, timeout=spec.timeout, retries=spec.retries)
            elif callable(kind):
                node = FunctionNode(node_id, {**config, "function": kind}, policy=policy)
            else:
                self.problems.append(
                    f"node {node_id!r}: {kind!r} is not a node type; give a registered type "
                    "name, a Node subclass, an @node function or a callable"
                )
                return None
        except UnknownNodeTypeError as exc:
            hint = (
                f"; did you mean {_names(map(repr, exc.suggestions))}?" if exc.suggestions else ""
            )
            self.problems.append(f"node {node_id!r}: unknown node type {exc.name!r}{hint}")
            return None
        except Exception as exc:  # the type's own config validation
            self.problems.append(f"node {node_id!r} ({spec.type_name}): {exc}")
            return None
        self._bind_config(node, config, references)
        return node

    def _split_config(
        self, node_id: str, config: Mapping[str, Any]
    ) -> tuple[dict[str, Any], dict[str, tuple[str, str]]]:
        plain: dict[str, Any] = {}
        references: dict[str, tuple[str, str]] = {}
        for key, value in config.items():
            match = _REFERENCE.fullmatch(value) if isinstance(value, str) else None
            if match:
                references[key] = (match["node"], match["port"])
                continue
            nested = _nested_reference(value)
            if nested is not None:
                self.problems.append(
                    f"node {node_id!r}: config key {key!r} holds the reference {nested!r} "
                    "inside a larger value, where it is not replaced; a reference must be the "
                    "whole value of an input port's key"
                )
            plain[key] = value
        return plain, references

    def _bind_config(
        self,
        node: Node,
        config: Mapping[str, Any],
        references: Mapping[str, tuple[str, str]],
    ) -> None:
        settings = type(node).config_keys
        for key, value in config.items():
            if key in node.inputs and (settings is None or key not in settings):
                self.bound.setdefault(node.id, {})[key] = value
            elif settings is not None and key not in settings:
                self.problems.append(
                    f"node {node.id!r} ({node.node_type()}): unknown config key {key!r}; "
                    f"its settings: {_names(sorted(settings))}; its inputs: {_names(node.inputs)}"
                )
        for key, (source, port) in references.items():
            if key not in node.inputs:
                self.problems.append(
                    f"node {node.id!r}: config key {key!r} references ${{{source}.{port}}} but "
                    f"{node.id!r} has no input port {key!r} (its inputs: {_names(node.inputs)})"
                )
                continue
            self.references.append(
                ConnectionSpec(source, node.id, port, key, origin=f"config of {node.id!r}")
            )

    # ---- connections ---------------------------------------------------------------------------

    def _connect(self) -> None:
        by_name: list[tuple[ConnectionSpec, Node, Node]] = []
        for spec in (*self.declared, *self.references):
            source = self._endpoint(spec, spec.source, "source")
            target = self._endpoint(spec, spec.target, "target")
            if spec.source_port is None:
                if source is not None and target is not None:
                    by_name.append((spec, source, target))
                continue
            assert spec.target_port is not None
            source_ok = source is None or self._has_port(spec, source, spec.source_port, "output")
            target_ok = target is None or self._has_port(spec, target, spec.target_port, "input")
            if target is not None and target_ok:
                if source is not None and source_ok:
                    self._add(spec.source, spec.source_port, spec.target, spec.target_port)
                else:  # the source is already reported; count the input as fed, not open
                    self.feeds.setdefault((spec.target, spec.target_port), []).append(str(spec))
        unmatched = [item for item in by_name if not self._connect_by_name(*item)]
        snapshot = set(self.feeds)
        for spec, source, target in unmatched:
            self._connect_single(spec, source, target, snapshot)

    def _endpoint(self, spec: ConnectionSpec, node_id: str, role: str) -> Node | None:
        node = self.nodes.get(node_id)
        if node is None and node_id not in self.broken:
            close = difflib.get_close_matches(str(node_id), list(self.nodes), n=3, cutoff=0.6)
            hint = f"; did you mean {_names(map(repr, close))}?" if close else ""
            self.problems.append(f"connection {spec}: unknown {role} node {node_id!r}{hint}")
        return node

    def _has_port(self, spec: ConnectionSpec, node: Node, port: str, kind: str) -> bool:
        ports = node.outputs if kind == "output" else node.inputs
        if port in ports:
            return True
        hint = ""
        if kind == "output" and isinstance(node, FunctionNode) and list(node.outputs) == ["result"]:
            hint = (
                "; to give a function named outputs, annotate its return with a TypedDict or "
                "declare @node(outputs=...)"
            )
        self.problems.append(
            f"connection {spec}: node {node.id!r} has no {kind} port {port!r} "
            f"(its {kind}s: {_names(ports)}){hint}"
        )
        return False

    def _add(self, source: str, source_port: str, target: str, target_port: str) -> None:
        key = (source, source_port, target, target_port)
        if key in self.resolved:
            return  # the same connection declared twice is harmless
        self.resolved[key] = None
        self.feeds.setdefault((target, target_port), []).append(f"{source}.{source_port}")

    def _connect_by_name(self, spec: ConnectionSpec, source: Node, target: Node) -> bool:
        matched = [port for port in source.outputs if port in target.inputs]
        for port in matched:
            self._add(source.id, port, target.id, port)
        return bool(matched)

    def _connect_single(
        self,
        spec: ConnectionSpec,
        source: Node,
        target: Node,
        fed: set[tuple[str, str]],
    ) -> None:
        bound = self.bound.get(target.id, {})
        free = [p for p in target.inputs if (target.id, p) not in fed and p not in bound]
        required = [p for p in free if target.inputs[p].required]
        candidates = required or (free if len(free) == 1 else [])
        if len(source.outputs) == 1 and len(candidates) == 1:
            self._add(source.id, next(iter(source.outputs)), target.id, candidates[0])
            return
        self._report_unmatched(spec, source, target, candidates or free)

    def _report_unmatched(
        self, spec: ConnectionSpec, source: Node, target: Node, candidates: list[str]
    ) -> None:
        how = f"name the ports: add_connection({source.id!r}, <output>, {target.id!r}, <input>)"
        if not source.outputs or not candidates:
            self.problems.append(
                f"connection {spec}: no output of {source.id!r} (outputs: "
                f"{_names(source.outputs)}) matches an input of {target.id!r} by name, and "
                f"{target.id!r} has no unconnected input left (inputs: "
                f"{_names(target.inputs)}); {how}"
            )
            return
        pairs = [f"{source.id}.{o} -> {target.id}.{i}" for o in source.outputs for i in candidates]
        self.problems.append(
            f"connection {spec} is ambiguous: no port names match; candidates: "
            f"{_names(pairs)}; {how}"
        )

    def _check_feeds(self) -> None:
        for (node_id, port), sources in self.feeds.items():
            if len(sources) > 1:
                self.problems.append(
                    f"input {node_id}.{port} is fed twice: from {' and from '.join(sources)}; "
                    "an input takes one source (join branches with a MergeNode)"
                )
            if port in self.bound.get(node_id, {}):
                self.problems.append(
                    f"input {node_id}.{port} is set in the config of {node_id!r} and also "
                    f"connected from {sources[0]}; remove one of them"
                )

    def _check_types(self, connections: Iterable[Connection]) -> None:
        for c in connections:
            produced = self.nodes[c.source].outputs[c.source_port].type
            expected = self.nodes[c.target].inputs[c.target_port].type
            if not is_compatible(produced, expected):
                self.problems.append(
                    f"connection {c}: type mismatch: {c.source}.{c.source_port} produces "
                    f"{format_type(produced)} but {c.target}.{c.target_port} expects "
                    f"{format_type(expected)}"
                )

    # ---- graph ---------------------------------------------------------------------------------

    def _graph(self, connections: Sequence[Connection]) -> tuple[Any, tuple[str, ...]]:
        import networkx as nx

        edge_ports: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for c in connections:
            edge_ports.setdefault((c.source, c.target), []).append((c.source_port, c.target_port))
        graph: nx.DiGraph[str] = nx.DiGraph(name=self.name)
        graph.add_nodes_from((node_id, {"node": node}) for node_id, node in self.nodes.items())
        graph.add_edges_from((s, t, {"ports": tuple(p)}) for (s, t), p in edge_ports.items())
        try:
            order = tuple(nx.topological_sort(graph))
        except nx.NetworkXUnfeasible:
            self._report_cycles(graph)
            order = ()
        return nx.freeze(graph), order

    def _report_cycles(self, graph: Any) -> None:
        import networkx as nx

        for component in nx.strongly_connected_components(graph):
            if len(component) == 1:
                (only,) = component
                if not graph.has_edge(only, only):
                    continue
            cycle = nx.find_cycle(graph.subgraph(component))
            path = [edge[0] for edge in cycle] + [cycle[0][0]]
            ports = ", ".join(
                f"{s}.{sp} -> {t}.{tp}"
                for s, t in cycle[:]
                for sp, tp in graph.edges[s, t]["ports"]
            )
            self.problems.append(f"cycle: {' -> '.join(path)} (through {ports})")

    # ---- inputs --------------------------------------------------------------------------------

    def _open_inputs(self) -> tuple[tuple[str, str], ...]:
        open_inputs = []
        for node_id, node in self.nodes.items():
            bound = self.bound.get(node_id, ())
            for port in node.inputs.values():
                if (
                    port.required
                    and port.name not in bound
                    and (node_id, port.name) not in self.feeds
                ):
                    open_inputs.append((node_id, port.name))
        return tuple(open_inputs)


_SCALARS = (int, float, bool, bytes, type(None))


def _nested_reference(value: Any) -> str | None:
    if isinstance(value, _SCALARS) or callable(value):
        return None
    if isinstance(value, str):
        match = _REFERENCE.search(value)
        return match.group(0) if match else None
    if isinstance(value, Mapping):
        items: Iterable[Any] = value.values()
    elif isinstance(value, list | tuple | set | frozenset):
        items = value
    else:
        return None
    for item in items:
        found = _nested_reference(item)
        if found is not None:
            return found
    return None
