"""MCP (Model Context Protocol), both ways (the ``mcp`` extra: ``pip install 'kaizen[mcp]'``).

- `MCPServer.stdio(...)`, `MCPServer.http(...)`, `MCPServer.in_memory(...)`: an MCP server's
  tools as a toolset an agent takes in ``tools=[...]`` (`kaizen.mcp.client`).
- ``kaizen mcp serve module:attr``: an agent or a workflow served as an MCP server with one tool
  (`kaizen.mcp.serve`).

Inside this package ``import mcp`` is the official SDK (absolute imports), imported only when a
session opens or a server starts: it costs about a second.
"""

from kaizen.mcp.client import MCPServer
from kaizen.mcp.errors import MCPConnectionError, MCPError, MCPTimeoutError, MCPToolError

__all__ = ["MCPConnectionError", "MCPError", "MCPServer", "MCPTimeoutError", "MCPToolError"]
