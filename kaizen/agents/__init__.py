"""Agents: `Agent` and its workflow node, the `Kaizen` facade, configuration, the exchange with
the model, and results.

Modules: `agent` (`Agent`), `node` (`AgentNode`, `LLMAgentNode`), `facade` (`Kaizen`,
`create_agent`), `config` (`AgentConfig`, settings resolution), `exchange` (the conversation
with the model, as a flow), `loop` (the reason-act loop with tools), `pause` (a loop paused for
a person: approvals, the saved trajectory, `agent.resume`), `outcome` and `result`
(`ExecutionResult`).
"""

from kaizen.agents.agent import AGENT_CONFIG_KEYS, Agent
from kaizen.agents.config import AgentConfig
from kaizen.agents.facade import Kaizen, create_agent, default_kaizen, get_agent
from kaizen.agents.node import AgentNode, LLMAgentNode
from kaizen.agents.result import ExecutionMetadata, ExecutionResult

__all__ = [
    "AGENT_CONFIG_KEYS",
    "Agent",
    "AgentConfig",
    "AgentNode",
    "ExecutionMetadata",
    "ExecutionResult",
    "Kaizen",
    "LLMAgentNode",
    "create_agent",
    "default_kaizen",
    "get_agent",
]
