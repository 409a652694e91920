"""Probe: what Kaizen's MCP toolset adds per call (Kaizen only, no peers; needs the mcp extra).

Every call hops to Kaizen's background MCP loop and back (`kaizen.mcp.loop`). This measures a
trivial tool call (`add`) through `MCPServer.call` (blocking) and `await MCPServer.acall`, in
memory and over stdio, beside the SDK's own `Client` in memory (no hop), and checks that three
concurrent 0.2 s calls take about 0.2 s. Medians of 3 rounds; expect noise on shared machines.

    .venv/bin/python benchmarks/probe_mcp_overhead.py [CALLS]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

from kaizen.mcp import MCPServer
from kaizen.testing.mcp_server import demo_server

ROUNDS = 3


def per_sync_call(server: MCPServer, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        server.call("add", {"a": 1, "b": 1})
    return (time.perf_counter() - started) / calls


async def per_async_call(server: MCPServer, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        await server.acall("add", {"a": 1, "b": 1})
    return (time.perf_counter() - started) / calls


async def three_slow_calls(server: MCPServer) -> float:
    started = time.perf_counter()
    await asyncio.gather(*(server.acall("slow", {"seconds": 0.2}) for _ in range(3)))
    return time.perf_counter() - started


async def per_sdk_call(calls: int) -> float:
    from mcp import Client

    async with Client(demo_server(), cache=None) as client:
        await client.call_tool("add", {"a": 1, "b": 1})
        started = time.perf_counter()
        for _ in range(calls):
            await client.call_tool("add", {"a": 1, "b": 1})
        return (time.perf_counter() - started) / calls


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    servers = {
        "in memory": MCPServer.in_memory(demo_server()),
        "stdio": MCPServer.stdio(sys.executable, ["-m", "kaizen.testing.mcp_server"]),
    }
    for label, server in servers.items():
        with server:
            server.call("add", {"a": 1, "b": 1})  # connect first
            sync = statistics.median(per_sync_call(server, calls) for _ in range(ROUNDS))
            run = asyncio.run
            aio = statistics.median(run(per_async_call(server, calls)) for _ in range(ROUNDS))
            slow = statistics.median(run(three_slow_calls(server)) for _ in range(ROUNDS))
        print(
            f"{label:9}  call {sync * 1e3:6.2f} ms  acall {aio * 1e3:6.2f} ms  "
            f"3 concurrent 0.2 s calls {slow:.3f} s"
        )
    sdk = statistics.median(asyncio.run(per_sdk_call(calls)) for _ in range(ROUNDS))
    print(f"SDK Client, in memory (no loop hop): {sdk * 1e3:.2f} ms per call")


if __name__ == "__main__":
    main()
