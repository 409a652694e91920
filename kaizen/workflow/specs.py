"""What a `WorkflowBuilder` records: node and connection declarations, before validation."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kaizen.nodes.base import Node
from kaizen.nodes.function import FunctionNode, NodeFunction

__all__ = ["REFERENCE", "ConnectionSpec", "NodeKind", "NodeSpec"]

#: "${node.port}": the node id may contain dots, the port may not
REFERENCE = re.compile(r"\$\{(?P<node>[^{}]+)\.(?P<port>[^.{}]+)\}")

NodeKind = str | type[Node] | NodeFunction[Any, Any] | Callable[..., Any] | Node


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """A node as declared: its id, its type (name, class, `@node` function, callable, agent or
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
