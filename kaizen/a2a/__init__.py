"""A2A agents as Kaizen tools: `RemoteAgent(url)`, another team's agent as a toolset (like
`kaizen.mcp.MCPServer`) or, with `RemoteAgent.ask`, a node of a workflow. Serving a Kaizen agent
over A2A is `kaizen serve`'s (`kaizen.serve.a2a`). Needs the ``a2a`` extra (``a2a-sdk``),
imported when a call is made."""

from kaizen.a2a.remote import RemoteAgent, RemoteAgentError

__all__ = ["RemoteAgent", "RemoteAgentError"]
