"""Kaizen: agents from typed signatures, compiled into concurrent, drawable workflow graphs.

Every public name is re-exported here and imported lazily on first use, so `import kaizen` stays
cheap (pydantic, networkx and litellm load only when something needs them).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # signatures
    "Signature": "kaizen.signatures",
    "InputField": "kaizen.signatures",
    "OutputField": "kaizen.signatures",
    "create_signature": "kaizen.signatures",
    "register_type": "kaizen.signatures",
    # nodes and graphs
    "Node": "kaizen.nodes",
    "Port": "kaizen.nodes",
    "ExecutionPolicy": "kaizen.nodes",
    "node": "kaizen.nodes",
    "register_node_type": "kaizen.nodes",
    "WorkflowBuilder": "kaizen.builder",
    "Workflow": "kaizen.workflow",
    "Connection": "kaizen.workflow",
    # running
    "LocalRuntime": "kaizen.runtime",
    "RunRecord": "kaizen.record",
    "RunEvent": "kaizen.record",
    "EventKind": "kaizen.record",
    "NodeStatus": "kaizen.record",
    "RunStatus": "kaizen.record",
    "Usage": "kaizen.record",
    # errors
    "KaizenError": "kaizen.errors",
    "SignatureError": "kaizen.errors",
    "OutputParseError": "kaizen.errors",
    "WorkflowValidationError": "kaizen.errors",
    "ParameterError": "kaizen.errors",
    "InputValidationError": "kaizen.errors",
    "NodeExecutionError": "kaizen.errors",
    "ModelError": "kaizen.errors",
    "ConfigError": "kaizen.errors",
    "BudgetExceededError": "kaizen.errors",
}

__all__ = [
    "BudgetExceededError",
    "ConfigError",
    "Connection",
    "EventKind",
    "ExecutionPolicy",
    "InputField",
    "InputValidationError",
    "KaizenError",
    "LocalRuntime",
    "ModelError",
    "Node",
    "NodeExecutionError",
    "NodeStatus",
    "OutputField",
    "OutputParseError",
    "ParameterError",
    "Port",
    "RunEvent",
    "RunRecord",
    "RunStatus",
    "Signature",
    "SignatureError",
    "Usage",
    "Workflow",
    "WorkflowBuilder",
    "WorkflowValidationError",
    "create_signature",
    "node",
    "register_node_type",
    "register_type",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kaizen' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:
    from kaizen.builder import WorkflowBuilder
    from kaizen.errors import (
        BudgetExceededError,
        ConfigError,
        InputValidationError,
        KaizenError,
        ModelError,
        NodeExecutionError,
        OutputParseError,
        ParameterError,
        SignatureError,
        WorkflowValidationError,
    )
    from kaizen.nodes import ExecutionPolicy, Node, Port, node, register_node_type
    from kaizen.record import EventKind, NodeStatus, RunEvent, RunRecord, RunStatus, Usage
    from kaizen.runtime import LocalRuntime
    from kaizen.signatures import (
        InputField,
        OutputField,
        Signature,
        create_signature,
        register_type,
    )
    from kaizen.workflow import Connection, Workflow
