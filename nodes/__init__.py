"""Nodes: typed ports, the node-type registry, the `@node` decorator and the built-in nodes."""

from kaizen.nodes.base import MISSING, ExecutionPolicy, Node, Port
from kaizen.nodes.builtins import ConstantNode, MergeNode, SwitchNode
from kaizen.nodes.compat import is_compatible
from kaizen.nodes.function import FunctionNode, NodeFunction, node, ports_from_callable
from kaizen.nodes.memory import MemoryRead, MemoryWrite
from kaizen.nodes.registry import (
    get_node_type,
    node_types,
    register_node_type,
    unregister_node_type,
)

register_node_type(FunctionNode)

__all__ = [
    "MISSING",
    "ConstantNode",
    "ExecutionPolicy",
    "FunctionNode",
    "MemoryRead",
    "MemoryWrite",
    "MergeNode",
    "Node",
    "NodeFunction",
    "Port",
    "SwitchNode",
    "get_node_type",
    "is_compatible",
    "node",
    "node_types",
    "ports_from_callable",
    "register_node_type",
    "unregister_node_type",
]
