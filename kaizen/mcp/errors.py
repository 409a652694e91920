"""The errors an MCP toolset raises. Each names the server (never its secrets) and says what to do.

A tool that raises one of these becomes a tool-error message the model sees, like any tool error.
"""

from __future__ import annotations

from kaizen.errors import KaizenError

__all__ = ["MCPConnectionError", "MCPError", "MCPTimeoutError", "MCPToolError"]


class MCPError(KaizenError):
    """Base class of the MCP errors; `server` is the server's display name."""

    def __init__(self, message: str, *, server: str) -> None:
        self.server = server
        super().__init__(message)


class MCPToolError(MCPError):
    """The server ran the tool and reported an error (an ``isError`` result): the message is the
    server's own error text, so the model reads what went wrong."""

    def __init__(self, message: str, *, server: str, tool: str) -> None:
        self.tool = tool
        super().__init__(message, server=server)


class MCPTimeoutError(MCPError, TimeoutError):
    """The server did not answer in time (connecting, listing tools, or one call). The session
    stays usable: the next call goes through it again."""


class MCPConnectionError(MCPError, ConnectionError):
    """The server could not be reached or started, or its session dropped and one restart did
    not bring it back."""
