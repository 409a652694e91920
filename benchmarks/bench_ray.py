"""Ray benchmark: the same workflows on RayRuntime and LocalRuntime, beside bare Ray tasks.

Cases (each implementation in its own fresh interpreter; medians after a warm-up run):
- cluster start: `ray.init(num_cpus=2)` on this machine, and the first run after it (which
  starts and warms the workers); measured once, reported apart from everything else.
- sleepers: 8 independent sync nodes sleeping 0.2 s. LocalRuntime runs them in threads;
  RayRuntime as tasks of 0.25 CPU each (`ExecutionPolicy(num_cpus=0.25)`), and with Ray's
  default of 1 CPU per task ("kaizen-ray, 1 CPU/node": only 2 run at once on 2 CPUs).
- chain N: N trivial sync nodes `x -> x + 1` in a line (N = 1000; 200 with --quick), µs per
  node. Every node is a Ray task whose input is its upstream task's ObjectRef.
- consensus, 100 agents: `create_consensus_workflow` of 100 agents on a `ScriptedModel` that
  answers after 200 ms, into the aggregator. On Ray the agents are calls on the runtime's
  async model actors (2 on 2 CPUs, 0.25 CPU each), many at once per actor process; and, for
  comparison, as tasks of 0.25 CPU each ("kaizen-ray, agents as tasks": `model_actors=0`, 8 at
  once on 2 CPUs, each holding a worker process).
- "ray, bare tasks": the same shapes written directly as Ray tasks (`f.remote(ref)`), the floor
  for anything running on Ray.

Run: `.venv/bin/python benchmarks/bench_ray.py [--quick]` (needs the `ray` extra). The machine
is shared: compare runs only at a similar load (printed in the header).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    FLOOR,
    KAIZEN,
    Report,
    Row,
    bench_main,
    collect_workers,
    quiet_peers,
    skipped,
    sort_rows,
    timed_row,
    try_import,
)

SLEEP = 0.2
SLEEPERS = 8
VOTERS = 100
LATENCY = 0.2
RAY = "kaizen-ray"
RAY_ONE_CPU = "kaizen-ray, 1 CPU/node"
RAY_AGENT_TASKS = "kaizen-ray, agents as tasks"
BARE = "ray, bare tasks"
START, FIRST = "cluster start (ray.init, 2 CPUs)", "first run after start (workers warm up)"
SLEEPERS_CASE = f"sleepers {SLEEPERS} x {SLEEP:g} s"
CONSENSUS = f"consensus, {VOTERS} agents, {LATENCY * 1000:.0f} ms model"


def chain_size(quick: bool) -> int:
    return 200 if quick else 1000


def chain_case(quick: bool) -> str:
    return f"chain {chain_size(quick)}"


# --- the workflows --------------------------------------------------------------------------------


def sleep_node(value: int) -> int:
    time.sleep(SLEEP)
    return value


def increment(x: int) -> int:
    return x + 1


def sleepers(num_cpus: float | None) -> Any:
    from kaizen import ExecutionPolicy, FunctionNode, WorkflowBuilder

    builder = WorkflowBuilder("sleepers")
    policy = ExecutionPolicy(num_cpus=num_cpus)
    for i in range(SLEEPERS):
        node = FunctionNode(f"s{i}", {"function": sleep_node, "value": i}, policy=policy)
        builder.add_node_instance(node)
    return builder.build()


def chain(n: int) -> Any:
    from kaizen import WorkflowBuilder

    builder = WorkflowBuilder("chain")
    for i in range(n):
        builder.add_node(increment, f"n{i}")
        if i:
            builder.add_connection(f"n{i - 1}", "result", f"n{i}", "x")
    return builder.build()


def consensus() -> Any:
    from kaizen import create_agent, create_consensus_workflow
    from kaizen.testing import ScriptedModel

    model = ScriptedModel({"": {"answer": "yes", "confidence": 0.9}}, latency=LATENCY)
    signature = "question -> answer: str, confidence: float"
    voters = [
        create_agent(f"voter_{i}", signature=signature, config={"model": model})
        for i in range(VOTERS)
    ]
    return create_consensus_workflow(voters, decision_criteria="majority_vote").build(), model


def runtime_rows(impl: str, runtime: Any, quick: bool, *, sleeper_cpus: float | None) -> list[Row]:
    """The three cases on `runtime`, as rows of `impl`."""
    reps = 3 if quick else 5
    n = chain_size(quick)
    rows = []
    parallel = sleepers(sleeper_cpus)
    rows.append(
        timed_row(
            SLEEPERS_CASE, impl, lambda: runtime.execute(parallel), reps=reps,
            check=lambda out: len(out[0]) == SLEEPERS,
        )
    )  # fmt: skip
    line = chain(n)
    rows.append(
        timed_row(
            chain_case(quick), impl, lambda: runtime.execute(line, {"n0": {"x": 0}}), units=n,
            reps=reps, check=lambda out: out[0][f"n{n - 1}"]["result"] == n,
        )
    )  # fmt: skip
    workflow, _model = consensus()
    rows.append(
        timed_row(
            CONSENSUS, impl, lambda: runtime.execute(workflow, {"question": "Ship it?"}),
            reps=2 if quick else 3, check=lambda out: bool(out[0]["consensus"]["reached"]),
            note="reached, 100 votes",
        )
    )  # fmt: skip
    return rows


# --- the workers ----------------------------------------------------------------------------------


def local_rows(quick: bool) -> list[Row]:
    from kaizen import LocalRuntime

    return runtime_rows(KAIZEN, LocalRuntime(max_concurrency=128), quick, sleeper_cpus=None)


def start_ray() -> tuple[Any, float]:
    import ray

    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    return ray, time.perf_counter() - started


def ray_rows(quick: bool) -> list[Row]:
    missing = try_import("ray")
    if missing:
        return [skipped("*", RAY, missing)]
    ray, start = start_ray()
    from kaizen import RayRuntime

    rows = [Row(START, RAY, start, None, 1, "measured once")]
    runtime = RayRuntime(max_concurrency=128)
    started = time.perf_counter()
    runtime.execute(sleepers(0.25))
    rows.append(Row(FIRST, RAY, time.perf_counter() - started, None, 1, "the sleepers, once"))
    one_cpu = sleepers(None)  # before the agents: their model actors then hold 0.5 CPU
    rows.append(
        timed_row(
            SLEEPERS_CASE, RAY_ONE_CPU, lambda: runtime.execute(one_cpu), reps=3,
            note="Ray's default: 1 CPU per task, 2 at once",
        )
    )  # fmt: skip
    rows += runtime_rows(RAY, runtime, quick, sleeper_cpus=0.25)
    runtime.close()
    as_tasks = RayRuntime(max_concurrency=128, model_actors=0)
    workflow, _model = consensus()
    rows.append(
        timed_row(
            CONSENSUS, RAY_AGENT_TASKS,
            lambda: as_tasks.execute(workflow, {"question": "Ship it?"}),
            reps=2 if quick else 3, check=lambda out: bool(out[0]["consensus"]["reached"]),
            note="each agent a task holding a worker, 8 at once",
        )
    )  # fmt: skip
    as_tasks.close()
    ray.shutdown()
    return rows


def bare_rows(quick: bool) -> list[Row]:
    missing = try_import("ray")
    if missing:
        return [skipped("*", BARE, missing)]
    ray, _ = start_ray()
    reps = 3 if quick else 5
    n = chain_size(quick)
    sleep_task = ray.remote(num_cpus=0.25)(sleep_node)
    increment_task = ray.remote(num_cpus=1)(increment)

    def run_sleepers() -> list[int]:
        return list(ray.get([sleep_task.remote(i) for i in range(SLEEPERS)]))

    def run_chain() -> int:
        ref = increment_task.remote(0)
        for _ in range(n - 1):
            ref = increment_task.remote(ref)
        return int(ray.get(ref))

    run_sleepers()  # start the workers (twice: a loaded machine starts them slowly)
    run_sleepers()
    rows = [
        timed_row(SLEEPERS_CASE, BARE, run_sleepers, reps=reps),
        timed_row(chain_case(quick), BARE, run_chain, units=n, reps=reps),
    ]
    ray.shutdown()
    return rows


def floor_rows(quick: bool) -> list[Row]:
    return [
        Row(SLEEPERS_CASE, FLOOR, SLEEP, None, 0, "one sleep: all 8 at once"),
        Row(CONSENSUS, FLOOR, LATENCY, None, 0, "one model call on the critical path"),
    ]


def worker_rows(name: str, quick: bool) -> list[Row]:
    quiet_peers()
    return {KAIZEN: local_rows, RAY: ray_rows, BARE: bare_rows}[name](quick)


def build_report(quick: bool) -> Report:
    cases = (START, FIRST, SLEEPERS_CASE, chain_case(quick), CONSENSUS)
    report = Report("Ray: RayRuntime beside LocalRuntime and bare Ray tasks", unit="µs/node")
    collect_workers(report, __file__, [KAIZEN, RAY, BARE], quick, cases, timeout=900)
    report.extend(floor_rows(quick))
    sort_rows(report, cases, (KAIZEN, RAY, RAY_ONE_CPU, RAY_AGENT_TASKS, BARE, FLOOR))
    return report


if __name__ == "__main__":
    bench_main(__doc__ or "", worker_rows, build_report)
