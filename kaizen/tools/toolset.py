"""Toolsets: groups of tools that come from elsewhere (an MCP server), and `collect_tools`, which
turns what a user passes as ``tools=[...]`` into one list of `Tool` with unique names.

A `Toolset` answers `list_tools()` with its current tools (an MCP toolset asks its server once
and caches the answer; `refresh()` asks again). An agent reads its toolsets' tools when a run
starts, so a refreshed toolset is seen by the next run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from kaizen.errors import ConfigError
from kaizen.tools.tool import Tool

__all__ = ["COMPLETE", "Toolset", "collect_tools"]

#: The name of the tool that finishes an agent's loop (its arguments are the output fields).
COMPLETE = "complete"


class Toolset:
    """A source of tools; subclasses implement `list_tools` (and `refresh` if they cache)."""

    name = "toolset"

    def list_tools(self) -> Sequence[Tool]:
        raise NotImplementedError

    def refresh(self) -> None:
        """Forget any cached tool list (the next `list_tools` asks again)."""


ToolLike = Tool | Toolset | Callable[..., Any]


def collect_tools(items: Iterable[ToolLike]) -> list[Tool]:
    """`Tool`s as they are, toolsets expanded, plain functions wrapped with `kaizen.tool`;
    `ConfigError` for a duplicate name or a tool named `complete` (reserved: it finishes the
    loop)."""
    tools: list[Tool] = []
    for item in items:
        if isinstance(item, Tool):
            tools.append(item)
        elif isinstance(item, Toolset):
            tools.extend(item.list_tools())
        elif callable(item):
            tools.append(Tool(item))
        else:
            raise ConfigError(
                f"{item!r} is not a tool: pass functions, kaizen.Tool objects or toolsets "
                "(kaizen.mcp.MCPServer)"
            )
    seen: set[str] = set()
    for found in tools:
        if found.name == COMPLETE:
            raise ConfigError(
                f"a tool may not be named {COMPLETE!r}: that name finishes the agent's loop "
                "(its arguments are the agent's outputs); rename the tool (name=...)"
            )
        if found.name in seen:
            raise ConfigError(
                f"two tools are named {found.name!r}: tool names must be unique per agent "
                "(rename one with name=..., or give an MCP server a prefix)"
            )
        seen.add(found.name)
    return tools
