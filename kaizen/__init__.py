"""Kaizen: agents from typed signatures, compiled into concurrent, drawable workflow graphs.

Every public name is re-exported here and imported lazily on first use, so `import kaizen` stays
cheap (pydantic, networkx and litellm load only when something needs them).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kaizen import seams

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "Error": "kaizen.runtime.stream",
    "Failed": "kaizen.runtime.stream",
    "ContentDelta": "kaizen.runtime.stream",
    "ToolStart": "kaizen.runtime.stream",
    "ToolComplete": "kaizen.runtime.stream",
    "Done": "kaizen.runtime.stream",
    "StreamEvent": "kaizen.runtime.stream",
    "StreamHook": "kaizen.runtime.stream",
    "ToolCallRecord": "kaizen.runtime.record",
    "AgentLimitError": "kaizen.errors",
    "AccessDeniedError": "kaizen.errors",
    "ApprovalRequired": "kaizen.errors",
    "AuditChainError": "kaizen.errors",
    "CircuitOpenError": "kaizen.errors",
    "breakers": "kaizen.llm.resilience",
    "acting_as": "kaizen.observe.audit",
    "AuditLog": "kaizen.observe.audit",
    "AccessPolicy": "kaizen.observe.policy",
    "ExecutionMonitor": "kaizen.observe.monitor",
    "ExecutionOptimizer": "kaizen.observe.optimizer",
    "verify_audit": "kaizen.observe.audit",
    "allow": "kaizen.observe.policy",
    "deny": "kaizen.observe.policy",
    "require_approval": "kaizen.observe.policy",
    "per_user": "kaizen.observe.policy",
    "approve": "kaizen.observe.policy",
    "interrupt": "kaizen.interrupts",
    "Interrupt": "kaizen.interrupts",
    "NodeWaiting": "kaizen.moments",
    "NodeResumed": "kaizen.moments",
    "NodeWaitHook": "kaizen.runtime.hooks",
    "NodeResumeHook": "kaizen.runtime.hooks",
    "InterruptError": "kaizen.errors",
    "UnknownInterruptError": "kaizen.errors",
    "InterruptAnswerError": "kaizen.errors",
    "RunNotWaitingError": "kaizen.errors",
    "AgentWaitingError": "kaizen.errors",
    "ApprovalDecision": "kaizen.interrupts",
    "watch_breakers": "kaizen.llm.resilience",
    "BreakerHook": "kaizen.runtime.hooks",
    "PlanError": "kaizen.errors",
    "PlanStepError": "kaizen.errors",
    "compile_plan": "kaizen.plans",
    "Plan": "kaizen.plans",
    "PlanStep": "kaizen.plans",
    "tool": "kaizen.tools",
    "Tool": "kaizen.tools",
    "Toolset": "kaizen.tools",
    "ToolArgumentError": "kaizen.tools",
    "Agent": "kaizen.agents",
    "AgentConfig": "kaizen.agents",
    "AgentNode": "kaizen.agents",
    "create_agent": "kaizen.agents",
    "ExecutionMetadata": "kaizen.agents",
    "ExecutionResult": "kaizen.agents",
    "get_agent": "kaizen.agents",
    "Kaizen": "kaizen.agents",
    "LLMAgentNode": "kaizen.agents",
    "BudgetExceededError": "kaizen.errors",
    "ConfigError": "kaizen.errors",
    "InputGuardError": "kaizen.errors",
    "InputValidationError": "kaizen.errors",
    "KaizenError": "kaizen.errors",
    "ModelError": "kaizen.errors",
    "NodeCancelledError": "kaizen.errors",
    "NodeExecutionError": "kaizen.errors",
    "NotPicklableError": "kaizen.errors",
    "OutputParseError": "kaizen.errors",
    "ParameterError": "kaizen.errors",
    "RenderError": "kaizen.errors",
    "SignatureError": "kaizen.errors",
    "UnknownNodeTypeError": "kaizen.errors",
    "VetoError": "kaizen.errors",
    "EncodeError": "kaizen.errors",
    "ReplayMismatchError": "kaizen.errors",
    "RunNotFoundError": "kaizen.errors",
    "StoreCorruptedError": "kaizen.errors",
    "StoreError": "kaizen.errors",
    "StoreFullError": "kaizen.errors",
    "StoreLockedError": "kaizen.errors",
    "StorePermissionError": "kaizen.errors",
    "StoreUnavailableError": "kaizen.errors",
    "WorkflowChangedError": "kaizen.errors",
    "Memory": "kaizen.store.memory",
    "Store": "kaizen.store",
    "replay": "kaizen.durable",
    "WorkflowValidationError": "kaizen.errors",
    "ConstantNode": "kaizen.nodes",
    "ExecutionPolicy": "kaizen.nodes",
    "FunctionNode": "kaizen.nodes",
    "get_node_type": "kaizen.nodes",
    "MemoryRead": "kaizen.nodes",
    "MemoryWrite": "kaizen.nodes",
    "MergeNode": "kaizen.nodes",
    "Node": "kaizen.nodes",
    "node": "kaizen.nodes",
    "Port": "kaizen.nodes",
    "register_node_type": "kaizen.nodes",
    "SwitchNode": "kaizen.nodes",
    "ConsensusResult": "kaizen.patterns",
    "create_consensus_workflow": "kaizen.patterns",
    "create_debate_workflow": "kaizen.patterns",
    "create_pipeline": "kaizen.patterns",
    "create_supervisor_agent": "kaizen.patterns",
    "Budget": "kaizen.runtime",
    "current_node_context": "kaizen.runtime",
    "EventKind": "kaizen.runtime",
    "HookError": "kaizen.runtime",
    "LocalRuntime": "kaizen.runtime",
    "NodeContext": "kaizen.runtime",
    "NodeStatus": "kaizen.runtime",
    "RunEvent": "kaizen.runtime",
    "RunRecord": "kaizen.runtime",
    "RunStatus": "kaizen.runtime",
    "Usage": "kaizen.runtime",
    "RayRuntime": "kaizen.runtime.ray",
    "ChunkHook": "kaizen.runtime.hooks",
    "ModelCallFinishHook": "kaizen.runtime.hooks",
    "ModelCallStartHook": "kaizen.runtime.hooks",
    "NodeFinishHook": "kaizen.runtime.hooks",
    "NodeRetryHook": "kaizen.runtime.hooks",
    "NodeSkipHook": "kaizen.runtime.hooks",
    "NodeStartHook": "kaizen.runtime.hooks",
    "RunFinishHook": "kaizen.runtime.hooks",
    "RunStartHook": "kaizen.runtime.hooks",
    "ToolCallFinishHook": "kaizen.runtime.hooks",
    "ToolCallStartHook": "kaizen.runtime.hooks",
    "enable_tracing": "kaizen.observe.telemetry",
    "TracingHook": "kaizen.observe.telemetry",
    "CorrelationFilter": "kaizen.observe.telemetry",
    "MetricsHook": "kaizen.observe.metrics",
    "Middleware": "kaizen.runtime.middleware",
    "ModelCallRequest": "kaizen.runtime.middleware",
    "NodeCall": "kaizen.runtime.middleware",
    "create_signature": "kaizen.signatures",
    "InputField": "kaizen.signatures",
    "OutputField": "kaizen.signatures",
    "parse_output": "kaizen.signatures",
    "register_type": "kaizen.signatures",
    "render_messages": "kaizen.signatures",
    "Signature": "kaizen.signatures",
    "SignatureField": "kaizen.signatures",
    "BreakerChanged": "kaizen.moments",
    "ChunkReceived": "kaizen.moments",
    "ModelCallFinished": "kaizen.moments",
    "ModelCallStarted": "kaizen.moments",
    "Moment": "kaizen.moments",
    "NodeFinished": "kaizen.moments",
    "NodeRetrying": "kaizen.moments",
    "NodeSkipped": "kaizen.moments",
    "NodeStarted": "kaizen.moments",
    "RunFinished": "kaizen.moments",
    "RunStarted": "kaizen.moments",
    "ToolCallFinished": "kaizen.moments",
    "ToolCallStarted": "kaizen.moments",
    "MomentHook": "kaizen.runtime.hooks",
    "Connection": "kaizen.workflow",
    "Workflow": "kaizen.workflow",
    "WorkflowBuilder": "kaizen.workflow",
}

__all__ = [
    "AccessDeniedError",
    "AccessPolicy",
    "Agent",
    "AgentConfig",
    "AgentLimitError",
    "AgentNode",
    "AgentWaitingError",
    "ApprovalDecision",
    "ApprovalRequired",
    "AuditChainError",
    "AuditLog",
    "BreakerChanged",
    "BreakerHook",
    "Budget",
    "BudgetExceededError",
    "ChunkHook",
    "ChunkReceived",
    "CircuitOpenError",
    "ConfigError",
    "Connection",
    "ConsensusResult",
    "ConstantNode",
    "ContentDelta",
    "CorrelationFilter",
    "Done",
    "EncodeError",
    "Error",
    "EventKind",
    "ExecutionMetadata",
    "ExecutionMonitor",
    "ExecutionOptimizer",
    "ExecutionPolicy",
    "ExecutionResult",
    "Failed",
    "FunctionNode",
    "HookError",
    "InputField",
    "InputGuardError",
    "InputValidationError",
    "Interrupt",
    "InterruptAnswerError",
    "InterruptError",
    "Kaizen",
    "KaizenError",
    "LLMAgentNode",
    "LocalRuntime",
    "Memory",
    "MemoryRead",
    "MemoryWrite",
    "MergeNode",
    "MetricsHook",
    "Middleware",
    "ModelCallFinishHook",
    "ModelCallFinished",
    "ModelCallRequest",
    "ModelCallStartHook",
    "ModelCallStarted",
    "ModelError",
    "Moment",
    "MomentHook",
    "Node",
    "NodeCall",
    "NodeCancelledError",
    "NodeContext",
    "NodeExecutionError",
    "NodeFinishHook",
    "NodeFinished",
    "NodeResumeHook",
    "NodeResumed",
    "NodeRetryHook",
    "NodeRetrying",
    "NodeSkipHook",
    "NodeSkipped",
    "NodeStartHook",
    "NodeStarted",
    "NodeStatus",
    "NodeWaitHook",
    "NodeWaiting",
    "NotPicklableError",
    "OutputField",
    "OutputParseError",
    "ParameterError",
    "Plan",
    "PlanError",
    "PlanStep",
    "PlanStepError",
    "Port",
    "RayRuntime",
    "RenderError",
    "ReplayMismatchError",
    "RunEvent",
    "RunFinishHook",
    "RunFinished",
    "RunNotFoundError",
    "RunNotWaitingError",
    "RunRecord",
    "RunStartHook",
    "RunStarted",
    "RunStatus",
    "Signature",
    "SignatureError",
    "SignatureField",
    "Store",
    "StoreCorruptedError",
    "StoreError",
    "StoreFullError",
    "StoreLockedError",
    "StorePermissionError",
    "StoreUnavailableError",
    "StreamEvent",
    "StreamHook",
    "SwitchNode",
    "Tool",
    "ToolArgumentError",
    "ToolCallFinishHook",
    "ToolCallFinished",
    "ToolCallRecord",
    "ToolCallStartHook",
    "ToolCallStarted",
    "ToolComplete",
    "ToolStart",
    "Toolset",
    "TracingHook",
    "UnknownInterruptError",
    "UnknownNodeTypeError",
    "Usage",
    "VetoError",
    "Workflow",
    "WorkflowBuilder",
    "WorkflowChangedError",
    "WorkflowValidationError",
    "acting_as",
    "allow",
    "approve",
    "breakers",
    "compile_plan",
    "create_agent",
    "create_consensus_workflow",
    "create_debate_workflow",
    "create_pipeline",
    "create_signature",
    "create_supervisor_agent",
    "current_node_context",
    "deny",
    "enable_tracing",
    "get_agent",
    "get_node_type",
    "interrupt",
    "node",
    "parse_output",
    "per_user",
    "register_node_type",
    "register_type",
    "render_messages",
    "replay",
    "require_approval",
    "tool",
    "verify_audit",
    "watch_breakers",
]


# -- the seams' providers ---------------------------------------------------------------------
# A lower layer that needs something from a higher one calls a seam of `kaizen.seams`; the
# package root, the top layer, provides each one lazily: nothing is imported until first use.


def _drawing() -> seams.Drawing:
    import kaizen.render

    return kaizen.render


def _model_call_steps() -> seams.ModelCallSteps:
    from kaizen.store.calls import model_call_step

    return model_call_step


def _durability() -> type[Durability]:
    from kaizen.durable import Durability

    return Durability


def _node_types() -> Callable[[], None]:
    def load() -> None:
        import kaizen.agents.node  # noqa: F401  (it registers AgentNode and LLMAgentNode)

    return load


def _execution_monitor() -> Callable[[], ExecutionMonitor]:
    from kaizen.observe.monitor import ExecutionMonitor

    return ExecutionMonitor


def _memories() -> seams.Memories:
    import kaizen.store.memory

    return kaizen.store.memory


def _patterns() -> seams.Patterns:
    import kaizen.patterns

    return kaizen.patterns


seams.drawing.provide_lazily(_drawing)
seams.model_call_steps.provide_lazily(_model_call_steps)
seams.durability.provide_lazily(_durability)
seams.node_types.provide_lazily(_node_types)
seams.execution_monitor.provide_lazily(_execution_monitor)
seams.memories.provide_lazily(_memories)
seams.patterns.provide_lazily(_patterns)


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
    from kaizen.durable import Durability
    from kaizen.observe.monitor import ExecutionMonitor

if TYPE_CHECKING:
    from kaizen.agents import (
        Agent,
        AgentConfig,
        AgentNode,
        ExecutionMetadata,
        ExecutionResult,
        Kaizen,
        LLMAgentNode,
        create_agent,
        get_agent,
    )
    from kaizen.durable import replay
    from kaizen.errors import (
        AccessDeniedError,
        AgentLimitError,
        AgentWaitingError,
        ApprovalRequired,
        AuditChainError,
        BudgetExceededError,
        CircuitOpenError,
        ConfigError,
        EncodeError,
        InputGuardError,
        InputValidationError,
        InterruptAnswerError,
        InterruptError,
        KaizenError,
        ModelError,
        NodeCancelledError,
        NodeExecutionError,
        NotPicklableError,
        OutputParseError,
        ParameterError,
        PlanError,
        PlanStepError,
        RenderError,
        ReplayMismatchError,
        RunNotFoundError,
        RunNotWaitingError,
        SignatureError,
        StoreCorruptedError,
        StoreError,
        StoreFullError,
        StoreLockedError,
        StorePermissionError,
        StoreUnavailableError,
        UnknownInterruptError,
        UnknownNodeTypeError,
        VetoError,
        WorkflowChangedError,
        WorkflowValidationError,
    )
    from kaizen.interrupts import ApprovalDecision, Interrupt, interrupt
    from kaizen.llm.resilience import breakers, watch_breakers
    from kaizen.moments import (
        BreakerChanged,
        ChunkReceived,
        ModelCallFinished,
        ModelCallStarted,
        Moment,
        NodeFinished,
        NodeResumed,
        NodeRetrying,
        NodeSkipped,
        NodeStarted,
        NodeWaiting,
        RunFinished,
        RunStarted,
        ToolCallFinished,
        ToolCallStarted,
    )
    from kaizen.nodes import (
        ConstantNode,
        ExecutionPolicy,
        FunctionNode,
        MemoryRead,
        MemoryWrite,
        MergeNode,
        Node,
        Port,
        SwitchNode,
        get_node_type,
        node,
        register_node_type,
    )
    from kaizen.observe.audit import AuditLog, acting_as, verify_audit
    from kaizen.observe.metrics import MetricsHook
    from kaizen.observe.optimizer import ExecutionOptimizer
    from kaizen.observe.policy import (
        AccessPolicy,
        allow,
        approve,
        deny,
        per_user,
        require_approval,
    )
    from kaizen.observe.telemetry import CorrelationFilter, TracingHook, enable_tracing
    from kaizen.patterns import (
        ConsensusResult,
        create_consensus_workflow,
        create_debate_workflow,
        create_pipeline,
        create_supervisor_agent,
    )
    from kaizen.plans import Plan, PlanStep, compile_plan
    from kaizen.runtime import (
        Budget,
        EventKind,
        HookError,
        LocalRuntime,
        NodeContext,
        NodeStatus,
        RunEvent,
        RunRecord,
        RunStatus,
        Usage,
        current_node_context,
    )
    from kaizen.runtime.hooks import (
        BreakerHook,
        ChunkHook,
        ModelCallFinishHook,
        ModelCallStartHook,
        MomentHook,
        NodeFinishHook,
        NodeResumeHook,
        NodeRetryHook,
        NodeSkipHook,
        NodeStartHook,
        NodeWaitHook,
        RunFinishHook,
        RunStartHook,
        ToolCallFinishHook,
        ToolCallStartHook,
    )
    from kaizen.runtime.middleware import Middleware, ModelCallRequest, NodeCall
    from kaizen.runtime.ray import RayRuntime
    from kaizen.runtime.record import (
        ToolCallRecord,
    )
    from kaizen.runtime.stream import (
        ContentDelta,
        Done,
        Error,
        Failed,
        StreamEvent,
        StreamHook,
        ToolComplete,
        ToolStart,
    )
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
    from kaizen.store import Store
    from kaizen.store.memory import Memory
    from kaizen.tools import (
        Tool,
        ToolArgumentError,
        Toolset,
        tool,
    )
    from kaizen.workflow import (
        Connection,
        Workflow,
        WorkflowBuilder,
    )
