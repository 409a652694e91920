"""Nodes: typed ports, the node-type registry, the `@node` decorator and the built-in nodes."""

from kaizen.nodes.base import MISSING, ExecutionPolicy, Node, Port

__all__ = ["MISSING", "ExecutionPolicy", "Node", "Port"]
