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
    "Agent": "kaizen.agent",
    "ExecutionResult": "kaizen.agent",
    "Budget": "kaizen.budget",
    "NodeContext": "kaizen.context",
    "current_node_context": "kaizen.context",
    "WorkflowBuilder": "kaizen.builder",
    "AgentConfig": "kaizen.config",
    "BudgetExceededError": "kaizen.errors",
    "ConfigError": "kaizen.errors",
    "InputValidationError": "kaizen.errors",
    "KaizenError": "kaizen.errors",
    "ModelError": "kaizen.errors",
    "NodeExecutionError": "kaizen.errors",
    "OutputParseError": "kaizen.errors",
    "ParameterError": "kaizen.errors",
    "RenderError": "kaizen.errors",
    "SignatureError": "kaizen.errors",
    "UnknownNodeTypeError": "kaizen.errors",
    "WorkflowValidationError": "kaizen.errors",
    "Kaizen": "kaizen.framework",
    "create_agent": "kaizen.framework",
    "get_agent": "kaizen.framework",
    "ConstantNode": "kaizen.nodes",
    "ExecutionPolicy": "kaizen.nodes",
    "FunctionNode": "kaizen.nodes",
    "MergeNode": "kaizen.nodes",
    "Node": "kaizen.nodes",
    "Port": "kaizen.nodes",
    "SwitchNode": "kaizen.nodes",
    "get_node_type": "kaizen.nodes",
    "node": "kaizen.nodes",
    "register_node_type": "kaizen.nodes",
    "AgentNode": "kaizen.nodes.agent",
    "LLMAgentNode": "kaizen.nodes.agent",
    "ConsensusResult": "kaizen.patterns",
    "create_consensus_workflow": "kaizen.patterns",
    "create_debate_workflow": "kaizen.patterns",
    "create_pipeline": "kaizen.patterns",
    "create_supervisor_agent": "kaizen.patterns",
    "EventKind": "kaizen.record",
    "NodeStatus": "kaizen.record",
    "RunEvent": "kaizen.record",
    "RunRecord": "kaizen.record",
    "RunStatus": "kaizen.record",
    "Usage": "kaizen.record",
    "LocalRuntime": "kaizen.runtime",
    "InputField": "kaizen.signatures",
    "OutputField": "kaizen.signatures",
    "Signature": "kaizen.signatures",
    "SignatureField": "kaizen.signatures",
    "create_signature": "kaizen.signatures",
    "parse_output": "kaizen.signatures",
    "register_type": "kaizen.signatures",
    "render_messages": "kaizen.signatures",
    "Connection": "kaizen.workflow",
    "Workflow": "kaizen.workflow",
}

__all__ = [
    "Agent",
    "AgentConfig",
    "AgentNode",
    "Budget",
    "BudgetExceededError",
    "ConfigError",
    "Connection",
    "ConsensusResult",
    "ConstantNode",
    "EventKind",
    "ExecutionPolicy",
    "ExecutionResult",
    "FunctionNode",
    "InputField",
    "InputValidationError",
    "Kaizen",
    "KaizenError",
    "LLMAgentNode",
    "LocalRuntime",
    "MergeNode",
    "ModelError",
    "Node",
    "NodeContext",
    "NodeExecutionError",
    "NodeStatus",
    "OutputField",
    "OutputParseError",
    "ParameterError",
    "Port",
    "RenderError",
    "RunEvent",
    "RunRecord",
    "RunStatus",
    "Signature",
    "SignatureError",
    "SignatureField",
    "SwitchNode",
    "UnknownNodeTypeError",
    "Usage",
    "Workflow",
    "WorkflowBuilder",
    "WorkflowValidationError",
    "create_agent",
    "create_consensus_workflow",
    "create_debate_workflow",
    "create_pipeline",
    "create_signature",
    "create_supervisor_agent",
    "current_node_context",
    "get_agent",
    "get_node_type",
    "node",
    "parse_output",
    "register_node_type",
    "register_type",
    "render_messages",
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
    from kaizen.agent import Agent, ExecutionResult
    from kaizen.budget import Budget
    from kaizen.builder import WorkflowBuilder
    from kaizen.config import AgentConfig
    from kaizen.context import NodeContext, current_node_context
    from kaizen.errors import (
        BudgetExceededError,
        ConfigError,
        InputValidationError,
        KaizenError,
        ModelError,
        NodeExecutionError,
        OutputParseError,
        ParameterError,
        RenderError,
        SignatureError,
        UnknownNodeTypeError,
        WorkflowValidationError,
    )
    from kaizen.framework import Kaizen, create_agent, get_agent
    from kaizen.nodes import (
        ConstantNode,
        ExecutionPolicy,
        FunctionNode,
        MergeNode,
        Node,
        Port,
        SwitchNode,
        get_node_type,
        node,
        register_node_type,
    )
    from kaizen.nodes.agent import AgentNode, LLMAgentNode
    from kaizen.patterns import (
        ConsensusResult,
        create_consensus_workflow,
        create_debate_workflow,
        create_pipeline,
        create_supervisor_agent,
    )
    from kaizen.record import EventKind, NodeStatus, RunEvent, RunRecord, RunStatus, Usage
    from kaizen.runtime import LocalRuntime
    from kaizen.signatures import (
        InputField,
        OutputField,
        Signature,
        SignatureField,
        create_signature,
        parse_output,
        register_type,
        render_messages,
    )
    from kaizen.workflow import Connection, Workflow
