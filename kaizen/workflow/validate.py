"""`build_workflow`: one validation pass over a builder's declarations, giving a `Workflow`.

Every problem is collected before failing, and all are raised together in one
`WorkflowValidationError`: unknown node types, duplicate ids, nodes whose config their type
refuses, dangling or ambiguous connections, inputs fed twice, type-incompatible ports, cycles
and, when `parameters` are given, every problem with them (the check the runtime makes).
"""

from __future__ import annotations

import difflib
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kaizen.errors import UnknownNodeTypeError, WorkflowValidationError
from kaizen.nodes.base import ExecutionPolicy, Node
from kaizen.nodes.compat import is_compatible
from kaizen.nodes.function import FunctionNode, NodeFunction
from kaizen.nodes.registry import get_node_type
from kaizen.text import type_name
from kaizen.workflow.parameters import check_parameters
from kaizen.workflow.specs import REFERENCE, ConnectionSpec, NodeSpec
from kaizen.workflow.workflow import Connection, Workflow

if TYPE_CHECKING:
    from kaizen.runtime.budget import Budget

__all__ = ["build_workflow"]


def build_workflow(
    name: str,
    specs: Sequence[NodeSpec],
    connections: Sequence[ConnectionSpec],
    parameters: Mapping[str, Any] | None = None,
    *,
    budget: Budget | None = None,
    scoped_budgets: Mapping[str, tuple[Budget, ...]] | None = None,
) -> Workflow:
    """Validate the declarations and return the `Workflow`, or raise `WorkflowValidationError`."""
    build = _Build(name, specs, connections)
    build.check()
    order = build.topological_order()
    workflow = None
    if not build.problems:
        scoped = {k: v for k, v in (scoped_budgets or {}).items() if k in build.nodes}
        workflow = Workflow(
            name,
            {node_id: build.nodes[node_id] for node_id in order},
            tuple(Connection(*key) for key in build.resolved),
            bound_inputs=build.bound,
            budget=budget,
            scoped_budgets=scoped,
        )
        if parameters is not None:
            # The routing and checks the runtime applies before a run. Only on an otherwise
            # valid graph: a broken node or connection would make inputs look unfed.
            build.problems.extend(check_parameters(workflow.plan, parameters)[1])
    if build.problems or workflow is None:
        raise WorkflowValidationError(build.problems)
    return workflow


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

    def check(self) -> None:
        """Make the nodes, resolve the connections, check feeds and types."""
        self._make_nodes()
        self._connect()
        self._check_feeds()
        self._check_types()

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
        kind = spec.kind
        given = {**kind.config, **spec.config} if isinstance(kind, Node) else spec.config
        config, references = self._split_config(node_id, given)
        try:
            policy = (
                None
                if spec.timeout is None and spec.retries == 0
                else ExecutionPolicy(timeout=spec.timeout, retries=spec.retries)
            )
        except (ValueError, TypeError) as exc:
            self.problems.append(f"node {node_id!r}: {exc}")
            return None
        try:
            if isinstance(kind, Node):  # a ready-made node: a copy when id or policy change
                node: Node = kind
                if kind.id != node_id or policy is not None:
                    node = kind.copy(node_id=node_id, policy=policy)
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
            match = REFERENCE.fullmatch(value) if isinstance(value, str) else None
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

    def _check_types(self) -> None:
        for source, source_port, target, target_port in self.resolved:
            produced = self.nodes[source].outputs[source_port].type
            expected = self.nodes[target].inputs[target_port].type
            if not is_compatible(produced, expected):
                self.problems.append(
                    f"connection {source}.{source_port} -> {target}.{target_port}: type "
                    f"mismatch: {source}.{source_port} produces {type_name(produced)} but "
                    f"{target}.{target_port} expects {type_name(expected)}"
                )

    # ---- order ---------------------------------------------------------------------------------

    def topological_order(self) -> list[str]:
        """The node ids with every source before its targets, declaration order kept where the
        edges allow (Kahn's algorithm); a cycle is reported as a problem."""
        ids = list(self.nodes)
        waiting = dict.fromkeys(ids, 0)
        targets: dict[str, list[str]] = {node_id: [] for node_id in ids}
        for source, target in dict.fromkeys((s, t) for s, _, t, _ in self.resolved):
            waiting[target] += 1
            targets[source].append(target)
        ready = deque(node_id for node_id in ids if waiting[node_id] == 0)
        order: list[str] = []
        while ready:
            node_id = ready.popleft()
            order.append(node_id)
            for target in targets[node_id]:
                waiting[target] -= 1
                if waiting[target] == 0:
                    ready.append(target)
        if len(order) < len(ids):
            self._report_cycles()
        return order

    def _report_cycles(self) -> None:
        import networkx as nx

        graph: nx.DiGraph[str] = nx.DiGraph()
        graph.add_nodes_from(self.nodes)
        ports: dict[tuple[str, str], list[str]] = {}
        for source, source_port, target, target_port in self.resolved:
            graph.add_edge(source, target)
            ports.setdefault((source, target), []).append(
                f"{source}.{source_port} -> {target}.{target_port}"
            )
        for component in nx.strongly_connected_components(graph):
            if len(component) == 1:
                (only,) = component
                if not graph.has_edge(only, only):
                    continue
            cycle = nx.find_cycle(graph.subgraph(component))
            path = [edge[0] for edge in cycle] + [cycle[0][0]]
            through = ", ".join(p for s, t in cycle for p in ports[s, t])
            self.problems.append(f"cycle: {' -> '.join(path)} (through {through})")


_SCALARS = (int, float, bool, bytes, type(None))


def _nested_reference(value: Any) -> str | None:
    if isinstance(value, _SCALARS) or callable(value):
        return None
    if isinstance(value, str):
        match = REFERENCE.search(value)
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
