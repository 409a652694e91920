"""`WorkflowShape`: what a drawing of a workflow needs, as plain data that round-trips through JSON.

A built `Workflow` holds live node objects (agents, functions); a run browser reading a store
written by another process has none of them. The shape keeps what the graph shows: each node's
id, type and group, its typed ports (type names as text), the values bound at build time (as
their shortened ``repr``), the open inputs and the connections. `shape_of(workflow)` makes one
(once per workflow object), `to_json` / `from_json` store and read it (the store keeps one per
workflow fingerprint, `kaizen.store.runs.begin_run`), and `kaizen.render.graph.build_dot`
draws a shape exactly as it draws the workflow it came from.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kaizen.text import shorten, type_name

if TYPE_CHECKING:
    from kaizen.workflow.workflow import Workflow

__all__ = ["ConnectionShape", "NodeShape", "PortShape", "ShownValue", "WorkflowShape", "shape_of"]

_BOUND_WIDTH = 200  # characters of a bound value's repr kept in a shape


class ShownValue(str):
    """A bound value kept as its repr: its own repr is that text, so a drawing shows it as the
    live value would be shown."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)


@dataclass(frozen=True, slots=True)
class PortShape:
    name: str
    type: str  # the type's name, as `kaizen.text.type_name` writes it
    required: bool = True


@dataclass(frozen=True, slots=True)
class NodeShape:
    id: str
    type_name: str
    group: str | None = None
    inputs: dict[str, PortShape] = field(default_factory=dict)
    outputs: dict[str, PortShape] = field(default_factory=dict)

    def node_type(self) -> str:
        return self.type_name


@dataclass(frozen=True, slots=True)
class ConnectionShape:
    source: str
    source_port: str
    target: str
    target_port: str


@dataclass(frozen=True, slots=True)
class WorkflowShape:
    """A workflow's drawable shape; `nodes` in the workflow's topological order."""

    name: str
    nodes: dict[str, NodeShape]
    connections: tuple[ConnectionShape, ...] = ()
    bound_inputs: dict[str, dict[str, ShownValue]] = field(default_factory=dict)
    open_inputs: tuple[tuple[str, str], ...] = ()

    @property
    def order(self) -> tuple[str, ...]:
        return tuple(self.nodes)

    def upstream(self, node_id: str) -> list[ConnectionShape]:
        """The connections that feed `node_id`'s inputs."""
        return [c for c in self.connections if c.target == node_id]

    def to_json(self) -> dict[str, Any]:
        def ports(side: dict[str, PortShape]) -> list[list[Any]]:
            return [[p.name, p.type, p.required] for p in side.values()]

        return {
            "name": self.name,
            "nodes": [
                {
                    "id": n.id,
                    "type": n.type_name,
                    "group": n.group,
                    "inputs": ports(n.inputs),
                    "outputs": ports(n.outputs),
                }
                for n in self.nodes.values()
            ],
            "connections": [
                [c.source, c.source_port, c.target, c.target_port] for c in self.connections
            ],
            "bound": {n: dict(values) for n, values in self.bound_inputs.items()},
            "open": [list(pair) for pair in self.open_inputs],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorkflowShape:
        def ports(rows: list[list[Any]]) -> dict[str, PortShape]:
            return {str(r[0]): PortShape(str(r[0]), str(r[1]), bool(r[2])) for r in rows}

        nodes = {
            str(n["id"]): NodeShape(
                str(n["id"]),
                str(n["type"]),
                n.get("group"),
                ports(n.get("inputs", [])),
                ports(n.get("outputs", [])),
            )
            for n in data.get("nodes", [])
        }
        return cls(
            name=str(data.get("name", "")),
            nodes=nodes,
            connections=tuple(ConnectionShape(*map(str, c)) for c in data.get("connections", [])),
            bound_inputs={
                n: {p: ShownValue(v) for p, v in values.items()}
                for n, values in data.get("bound", {}).items()
            },
            open_inputs=tuple((str(a), str(b)) for a, b in data.get("open", [])),
        )


_shapes: weakref.WeakKeyDictionary[Workflow, WorkflowShape] = weakref.WeakKeyDictionary()


def shape_of(workflow: Workflow) -> WorkflowShape:
    """The shape of `workflow` (worked out once per workflow object: it is immutable)."""
    known = _shapes.get(workflow)
    if known is not None:
        return known

    def ports(side: Any) -> dict[str, PortShape]:
        return {p.name: PortShape(p.name, type_name(p.type), p.required) for p in side.values()}

    nodes = {
        node_id: NodeShape(
            node_id, node.node_type(), node.group, ports(node.inputs), ports(node.outputs)
        )
        for node_id, node in workflow.nodes.items()
    }
    shape = WorkflowShape(
        name=workflow.name,
        nodes=nodes,
        connections=tuple(
            ConnectionShape(c.source, c.source_port, c.target, c.target_port)
            for c in workflow.connections
        ),
        bound_inputs={
            node_id: {p: ShownValue(shorten(repr(v), _BOUND_WIDTH)) for p, v in values.items()}
            for node_id, values in workflow.bound_inputs.items()
        },
        open_inputs=tuple(workflow.open_inputs),
    )
    _shapes[workflow] = shape
    return shape
