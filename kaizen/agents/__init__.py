"""Agents: `Agent` and its workflow node, the `Kaizen` facade, configuration, the exchange with
the model, and results.

Modules: `agent` (`Agent`, `AgentNode`), `facade` (`Kaizen`, `create_agent`), `config`
(`AgentConfig`, settings resolution), `exchange` (the conversation with the model, as a flow),
`result` (`ExecutionResult`).
"""

from kaizen.agents.agent import AGENT_CONFIG_KEYS, Agent, AgentNode, LLMAgentNode
from kaizen.agents.config import AgentConfig
from kaizen.agents.facade import Kaizen, create_agent, default_kaizen, get_agent
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
