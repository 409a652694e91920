"""Probe: sync fan-out cost per node against `max_concurrency` (Kaizen only, no peers).

A sync node runs in a worker thread and takes one of the run's `max_concurrency` slots only when
a worker starts it, so the cost per node of a wide fan-out of trivial sync nodes should not depend
on the bound. This checks that (docs/benchmarks.md, "What the misses come from").

    .venv/bin/python benchmarks/probe_fanout_concurrency.py [N]
"""

from __future__ import annotations

import statistics
import sys
import time

from kaizen import LocalRuntime, WorkflowBuilder
from kaizen.nodes import node


@node
def probe_source(x: int) -> int:
    return x


@node
def probe_increment(x: int) -> int:
    return x + 1


def fan_out(n: int) -> object:
    builder = WorkflowBuilder("fan-out")
    builder.add_node(probe_source, "source")
    for i in range(n):
        builder.add_node(probe_increment, f"n{i}")
        builder.add_connection("source", "result", f"n{i}", "x")
    return builder.build()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    workflow = fan_out(n)
    print(f"sync fan-out of {n} trivial nodes, median of 15 runs")
    for max_concurrency in (1, 2, 4, 8, 16, 32, 64):
        runtime = LocalRuntime(max_concurrency=max_concurrency)
        runtime.execute(workflow, {"source": {"x": 1}})  # warm-up: threads started
        times = []
        for _ in range(15):
            start = time.perf_counter()
            runtime.execute(workflow, {"source": {"x": 1}})
            times.append(time.perf_counter() - start)
        per_node = statistics.median(times) / n * 1e6
        print(f"  max_concurrency={max_concurrency:<3} {per_node:6.1f} µs/node")
        runtime.close()


if __name__ == "__main__":
    main()
