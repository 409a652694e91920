"""A small, real MCP server for tests, docs and notebooks (needs the ``mcp`` extra).

    python -m kaizen.testing.mcp_server            # serves over stdio

`demo_server()` builds it (an SDK ``MCPServer``) for in-memory use: ``MCPServer.in_memory(...)``.
Its tools cover what a client must handle: a plain result (`add`), structured output (`stats`),
a tool error (`fail`), a slow call (`slow`), an image (`pixel`), and the server's process id
(`pid`, so a test can kill the process and watch the client restart it).
"""

import asyncio
import os
from pathlib import Path

from mcp.server import MCPServer
from mcp.server.mcpserver import Image
from mcp.server.mcpserver.exceptions import ToolError

__all__ = ["demo_server", "main"]

# a 1x1 transparent PNG
_PIXEL = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)


def demo_server(name: str = "kaizen-demo") -> MCPServer:
    """The demo server, not yet running (an ``mcp.server.MCPServer``)."""
    server = MCPServer(name, log_level="WARNING")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    def stats(numbers: list[float]) -> dict[str, float]:
        """The count, sum and mean of some numbers."""
        total = sum(numbers)
        return {"count": len(numbers), "sum": total, "mean": total / len(numbers)}

    @server.tool()
    def fail(message: str) -> str:
        """Always fails, with `message` as its error."""
        raise ToolError(message)

    @server.tool()
    async def slow(seconds: float, started: str = "") -> str:
        """Sleep, then say how long. `started`: a file made when the call begins (a test
        waits for it instead of guessing when the call reached the server)."""
        if started:
            Path(started).touch()
        await asyncio.sleep(seconds)
        return f"slept {seconds}s"

    @server.tool()
    def pixel() -> Image:
        """A one-pixel PNG image."""
        return Image(data=_PIXEL, format="png")

    @server.tool()
    def pid() -> int:
        """The server's process id."""
        return os.getpid()

    @server.tool()
    def env(name: str) -> str:
        """The value of an environment variable in the server's process ('' when unset)."""
        return os.environ.get(name, "")

    return server


def main() -> None:
    """Serve the demo server over stdio."""
    demo_server().run("stdio")


if __name__ == "__main__":
    main()
