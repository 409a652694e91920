"""Probe: instructions per node of the runtime's cases, counted by valgrind (no timing noise).

Needs Debian's valgrind (`apt-get install valgrind`). Wall-clock figures on a shared 2-core VM
move by tens of percent between runs; instruction counts do not. Each case runs a 200-node graph
REPS times; run it under callgrind twice (REPS=1 and REPS=6) and the difference / 5 / 200 is the
cost of one node, the run's fixed cost spread over 200 nodes included ("fixed": one 1-node run,
reported per 200 like the others).

    benchmarks/probe_instructions.sh .venv/bin/python chain-sync   # or chain-async, fanout-sync,
                                                                    # fanout-async, build, fixed
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from kaizen import LocalRuntime, WorkflowBuilder
from kaizen.nodes import node

N = 200


@node
def probe_inc(x: int) -> int:
    return x + 1


@node
async def probe_ainc(x: int) -> int:
    return x + 1


def chain(n: int, type_name: str) -> Any:
    builder = WorkflowBuilder()
    for i in range(n):
        builder.add_node(type_name, f"n{i}", {})
        if i:
            builder.add_connection(f"n{i - 1}", "result", f"n{i}", "x")
    return builder.build()


def fanout(n: int, type_name: str) -> Any:
    builder = WorkflowBuilder()
    builder.add_node(type_name, "src", {})
    for i in range(n):
        builder.add_node(type_name, f"n{i}", {})
        builder.add_connection("src", "result", f"n{i}", "x")
    return builder.build()


def main() -> None:
    case, reps = os.environ["CASE"], int(os.environ["REPS"])
    runtime = LocalRuntime(max_concurrency=8)
    if case == "build":
        for _ in range(reps):
            chain(N, "probe_inc")
        return
    if case == "fixed":
        workflow = chain(1, "probe_inc")
        for _ in range(reps):
            runtime.execute(workflow, {"n0": {"x": 0}})
        return
    shape, mode = case.split("-")
    first = "n0" if shape == "chain" else "src"
    make = chain if shape == "chain" else fanout
    if mode == "async":
        workflow = make(N, "probe_ainc")

        async def runs() -> None:
            for _ in range(reps):
                await runtime.execute_async(workflow, {first: {"x": 0}})

        asyncio.run(runs())
    else:
        workflow = make(N, "probe_inc")
        for _ in range(reps):
            runtime.execute(workflow, {first: {"x": 0}})


if __name__ == "__main__":
    main()
