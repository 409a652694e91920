"""Tools an agent can call: `Tool` and `@tool` (typed Python functions), `Toolset` (groups of
tools from elsewhere, such as an MCP server: `kaizen.mcp`), and the runner that executes a turn's
tool calls concurrently, turning every failure into a message the model can act on."""

from kaizen.tools.tool import Tool, ToolArgumentError, ToolResultError, serialize_result, tool
from kaizen.tools.toolset import COMPLETE, Toolset, collect_tools

__all__ = [
    "COMPLETE",
    "Tool",
    "ToolArgumentError",
    "ToolResultError",
    "Toolset",
    "collect_tools",
    "serialize_result",
    "tool",
]
