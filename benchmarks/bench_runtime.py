"""Runtime benchmark: Kaizen's LocalRuntime beside LangGraph, kailash and plain Python.

Cases (each implementation runs in its own fresh interpreter, so no peer's threads or caches touch
another's figures):
- chain-N / fanout-N, sync and async: N trivial nodes (x -> x + 1) in a line, or one source feeding
  N independent nodes. Median wall time of one run of the built graph, in µs per node. chain-1 is
  a run's fixed cost: the whole run of a one-node workflow.
- build-N: building and validating the N-node chain (Kaizen `build()`, LangGraph `compile()`,
  kailash `build()`), µs per node.
- sleepers, sync and async: 8 independent nodes sleeping 0.2 s; wall time.
- fast-branch, sync and async: a slow node (0.5 s) beside a fast branch of three 0.05 s steps into
  its own sink; the time at which the fast sink finished, measured from the start of the run.

Run: `.bench-venv/bin/python benchmarks/bench_runtime.py [--quick]`.
"""

from __future__ import annotations

import asyncio
import operator
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Annotated, Any, TypedDict

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    FLOOR,
    KAIZEN,
    Report,
    Row,
    Target,
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
SLOW = 0.5
FAST_STEP = 0.05
FAST_STEPS = 3

WORKERS = ("kaizen", "python", "langgraph", "kailash")
IMPL_ORDER = ("kaizen", "python", "langgraph", "kailash-local", "kailash-async")


def sizes(quick: bool) -> tuple[int, ...]:
    # N = 1 is a run's fixed cost: a one-node chain, the whole run
    return (1, 10, 100) if quick else (1, 10, 100, 1000)


def reps(quick: bool) -> int:
    return 3 if quick else 7


def sleep_reps(quick: bool) -> int:
    return 1 if quick else 3


def case_names(quick: bool) -> list[str]:
    names = []
    for shape in ("chain", "fanout"):
        for mode in ("sync", "async"):
            names += [f"{shape}-{n} {mode}" for n in sizes(quick)]
    names += [f"build-{n}" for n in sizes(quick)]
    names += ["sleepers sync", "sleepers async", "fast-branch sync", "fast-branch async"]
    return names


def targets(quick: bool) -> dict[str, Target]:
    found: dict[str, Target] = {}
    for name in case_names(quick):
        if name.startswith("chain-1 "):
            found[name] = Target("≤ 50 µs per run (fixed cost)", 50.0)
        elif name.startswith(("chain-", "fanout-")):
            found[name] = Target("≤ 10 µs/node (aim 5)", 10.0)
        elif name.startswith("build-"):
            found[name] = Target("≤ 20 µs/node (aim 10)", 20.0)
        elif name.startswith("sleepers"):
            found[name] = Target(f"≤ {SLEEP + 0.01:.2f} s", SLEEP + 0.01, "seconds")
        elif name.startswith("fast-branch"):
            path = FAST_STEP * FAST_STEPS
            # its own critical path plus scheduling slack, far below the slow sibling's 0.5 s
            found[name] = Target(f"≈ {path:.2f} s path", path + 0.03, "seconds")
    return found


class FinishClock:
    """Where the fast sink records when it finished (shared by every implementation)."""

    def __init__(self) -> None:
        self.start = 0.0
        self.fast_done = 0.0
        self.lock = threading.Lock()

    def begin(self) -> None:
        self.start = time.perf_counter()
        self.fast_done = 0.0

    def mark_fast(self) -> None:
        with self.lock:
            self.fast_done = time.perf_counter() - self.start


CLOCK = FinishClock()


def fast_branch_row(case: str, impl: str, run: Callable[[], Any], quick: bool) -> Row:
    """Median time at which the fast sink finished; the whole-run median goes in the note."""
    finish_times: list[float] = []
    wall_times: list[float] = []

    def once() -> None:
        CLOCK.begin()
        run()
        wall_times.append(time.perf_counter() - CLOCK.start)
        finish_times.append(CLOCK.fast_done)

    row = timed_row(case, impl, once, reps=sleep_reps(quick), warmup=1)
    if row.seconds is None:
        return row
    measured = finish_times[1:] or finish_times  # drop the warm-up
    walls = wall_times[1:] or wall_times
    if not all(measured):
        return skipped(case, impl, "the fast sink never ran")
    measured.sort()
    walls.sort()
    fast = measured[len(measured) // 2]
    return Row(case, impl, fast, None, row.reps, f"whole run {walls[len(walls) // 2]:.3f} s")


def run_async(factory: Callable[[], Awaitable[Any]]) -> Callable[[], Any]:
    """A sync callable running a coroutine in a fresh loop (for the sleep cases)."""
    return lambda: asyncio.run(factory())  # type: ignore[arg-type]


# --- plain Python: the floor ----------------------------------------------------------------------


def inc(x: int) -> int:
    return x + 1


async def ainc(x: int) -> int:
    return x + 1


def python_rows(quick: bool) -> list[Row]:
    rows = []
    r = reps(quick)
    for n in sizes(quick):
        fns = [inc] * n
        afns = [ainc] * n

        def chain(fns: Sequence[Callable[[int], int]] = fns) -> int:
            x = 0
            for fn in fns:
                x = fn(x)
            return x

        async def achain(afns: Sequence[Callable[[int], Awaitable[int]]] = afns) -> int:
            x = 0
            for fn in afns:
                x = await fn(x)
            return x

        def fanout(fns: Sequence[Callable[[int], int]] = fns) -> list[int]:
            x = inc(0)
            return [fn(x) for fn in fns]

        async def afanout(afns: Sequence[Callable[[int], Awaitable[int]]] = afns) -> list[int]:
            x = await ainc(0)
            return [await fn(x) for fn in afns]

        chain_ok = lambda x, n=n: x == n  # noqa: E731
        fan_ok = lambda xs, n=n: xs == [2] * n  # noqa: E731
        for case, fn, ok, is_async in (
            (f"chain-{n} sync", chain, chain_ok, False),
            (f"chain-{n} async", achain, chain_ok, True),
            (f"fanout-{n} sync", fanout, fan_ok, False),
            (f"fanout-{n} async", afanout, fan_ok, True),
        ):
            rows.append(timed_row(case, FLOOR, fn, units=n, reps=r, is_async=is_async, check=ok))

    def sleepers() -> None:
        with ThreadPoolExecutor(SLEEPERS) as pool:
            list(pool.map(lambda _: time.sleep(SLEEP), range(SLEEPERS)))

    async def asleepers() -> None:
        await asyncio.gather(*(asyncio.sleep(SLEEP) for _ in range(SLEEPERS)))

    rows.append(timed_row("sleepers sync", FLOOR, sleepers, reps=sleep_reps(quick)))
    rows.append(timed_row("sleepers async", FLOOR, run_async(asleepers), reps=sleep_reps(quick)))

    def fast_branch() -> None:
        def fast() -> None:
            for _ in range(FAST_STEPS):
                time.sleep(FAST_STEP)
            CLOCK.mark_fast()

        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda f: f(), [lambda: time.sleep(SLOW), fast]))

    async def afast_branch() -> None:
        async def fast() -> None:
            for _ in range(FAST_STEPS):
                await asyncio.sleep(FAST_STEP)
            CLOCK.mark_fast()

        await asyncio.gather(asyncio.sleep(SLOW), fast())

    rows.append(fast_branch_row("fast-branch sync", FLOOR, fast_branch, quick))
    rows.append(fast_branch_row("fast-branch async", FLOOR, run_async(afast_branch), quick))
    return rows


# --- Kaizen --------------------------------------------------------------------------------------


def kaizen_rows(quick: bool) -> list[Row]:
    from kaizen import LocalRuntime, WorkflowBuilder
    from kaizen.nodes import node

    @node
    def bench_inc(x: int) -> int:
        return x + 1

    @node
    async def bench_ainc(x: int) -> int:
        return x + 1

    out = kaizen_output_port(bench_inc)

    def chain(n: int, type_name: str) -> Any:
        builder = WorkflowBuilder()
        for i in range(n):
            builder.add_node(type_name, f"n{i}", {})
            if i:
                builder.add_connection(f"n{i - 1}", out, f"n{i}", "x")
        return builder.build()

    def fanout(n: int, type_name: str) -> Any:
        builder = WorkflowBuilder()
        builder.add_node(type_name, "src", {})
        for i in range(n):
            builder.add_node(type_name, f"n{i}", {})
            builder.add_connection("src", out, f"n{i}", "x")
        return builder.build()

    runtime = LocalRuntime(max_concurrency=8)
    rows = []
    r = reps(quick)
    for n in sizes(quick):
        for shape, make, first in (("chain", chain, "n0"), ("fanout", fanout, "src")):
            params = {first: {"x": 0}}
            last = n if shape == "chain" else 2

            def ok(result: Any, n: int = n, last: int = last) -> bool:
                results = result[0]
                return len(results) >= n and results[f"n{n - 1}"][out] == last

            for mode, type_name in (("sync", "bench_inc"), ("async", "bench_ainc")):
                case = f"{shape}-{n} {mode}"
                try:
                    workflow = make(n, type_name)
                except Exception as exc:
                    rows.append(skipped(case, KAIZEN, f"build failed: {type(exc).__name__}: {exc}"))
                    continue
                if mode == "sync":
                    rows.append(
                        timed_row(
                            case,
                            KAIZEN,
                            partial(runtime.execute, workflow, parameters=params),
                            units=n,
                            reps=r,
                            check=ok,
                        )
                    )
                else:

                    async def run(w: Any = workflow, p: dict[str, Any] = params) -> Any:
                        return await runtime.execute_async(w, parameters=p)

                    rows.append(
                        timed_row(case, KAIZEN, run, units=n, reps=r, is_async=True, check=ok)
                    )
        rows.append(
            timed_row(f"build-{n}", KAIZEN, partial(chain, n, "bench_inc"), units=n, reps=r)
        )
    rows += kaizen_sleep_rows(quick, WorkflowBuilder, LocalRuntime)
    return rows


def kaizen_output_port(node_type: Any) -> str:
    """The output port of a decorated single-value function (its declared name, else "result")."""
    ports = getattr(node_type, "output_ports", None)
    if ports:
        first = next(iter(ports.values() if isinstance(ports, dict) else ports))
        return str(getattr(first, "name", first))
    return "result"


def kaizen_sleep_rows(quick: bool, builder_cls: Any, runtime_cls: Any) -> list[Row]:
    """Sleepers and fast-branch graphs of FunctionNodes wrapping closures (sync and async)."""

    def step(delay: float, fast_sink: bool, is_async: bool) -> Callable[..., Any]:
        if is_async:

            async def astep(x: int = 0) -> int:
                await asyncio.sleep(delay)
                if fast_sink:
                    CLOCK.mark_fast()
                return x + 1

            return astep

        def sstep(x: int = 0) -> int:
            time.sleep(delay)
            if fast_sink:
                CLOCK.mark_fast()
            return x + 1

        return sstep

    runtime = runtime_cls(max_concurrency=16)
    rows = []
    for mode in ("sync", "async"):
        is_async = mode == "async"
        try:
            sleepers = builder_cls()
            for i in range(SLEEPERS):
                sleepers.add_node(
                    "FunctionNode", f"s{i}", {"function": step(SLEEP, False, is_async)}
                )
            sleepers_wf = sleepers.build()
            branch = builder_cls()
            branch.add_node("FunctionNode", "slow", {"function": step(SLOW, False, is_async)})
            branch.add_node("FunctionNode", "slow_sink", {"function": step(0, False, is_async)})
            branch.add_connection("slow", "result", "slow_sink", "x")
            previous = None
            for i in range(FAST_STEPS):
                branch.add_node(
                    "FunctionNode", f"f{i}", {"function": step(FAST_STEP, False, is_async)}
                )
                if previous:
                    branch.add_connection(previous, "result", f"f{i}", "x")
                previous = f"f{i}"
            branch.add_node("FunctionNode", "fast_sink", {"function": step(0, True, is_async)})
            branch.add_connection(previous, "result", "fast_sink", "x")
            branch_wf = branch.build()
        except Exception as exc:
            why = f"build failed: {type(exc).__name__}: {exc}"
            rows += [
                skipped(f"sleepers {mode}", KAIZEN, why),
                skipped(f"fast-branch {mode}", KAIZEN, why),
            ]
            continue
        rows.append(
            timed_row(
                f"sleepers {mode}",
                KAIZEN,
                partial(runtime.execute, sleepers_wf),
                reps=sleep_reps(quick),
            )
        )
        row = fast_branch_row(
            f"fast-branch {mode}", KAIZEN, partial(runtime.execute, branch_wf), quick
        )
        if row.seconds is not None:
            row.note += "; " + record_says(runtime, branch_wf)
        rows.append(row)
    return rows


def record_says(runtime: Any, workflow: Any) -> str:
    """Cross-check with Kaizen's RunRecord: when it says the fast sink and the slow node ended."""
    try:
        _, run_id = runtime.execute(workflow)
        record = runtime.get_record(run_id)
        fast = record.nodes["fast_sink"].finished - record.started
        slow = record.nodes["slow"].finished - record.started
    except Exception as exc:
        return f"RunRecord unavailable: {type(exc).__name__}: {exc}"
    return f"RunRecord: fast_sink done at {fast:.3f} s, slow at {slow:.3f} s"


# --- LangGraph -----------------------------------------------------------------------------------


class ChainState(TypedDict):
    x: int


class FanState(TypedDict):
    x: int
    out: Annotated[list[int], operator.add]


def langgraph_rows(quick: bool) -> list[Row]:
    from langgraph.graph import END, START, StateGraph

    def lg_inc(state: ChainState) -> dict[str, int]:
        return {"x": state["x"] + 1}

    async def lg_ainc(state: ChainState) -> dict[str, int]:
        return {"x": state["x"] + 1}

    def lg_leaf(state: FanState) -> dict[str, list[int]]:
        return {"out": [state["x"] + 1]}

    async def lg_aleaf(state: FanState) -> dict[str, list[int]]:
        return {"out": [state["x"] + 1]}

    def chain(n: int, fn: Callable[..., Any]) -> Any:
        graph = StateGraph(ChainState)
        for i in range(n):
            graph.add_node(f"n{i}", fn)
            graph.add_edge(START if i == 0 else f"n{i - 1}", f"n{i}")
        graph.add_edge(f"n{n - 1}", END)
        return graph.compile()

    def fanout(n: int, fn: Callable[..., Any]) -> Any:
        graph = StateGraph(FanState)
        graph.add_node("src", lg_inc)
        graph.add_edge(START, "src")
        for i in range(n):
            graph.add_node(f"n{i}", fn)
            graph.add_edge("src", f"n{i}")
        return graph.compile()

    rows = []
    r = reps(quick)
    impl = "langgraph"
    for n in sizes(quick):
        config = {"recursion_limit": n + 10}
        graphs = {
            "chain": (chain(n, lg_inc), chain(n, lg_ainc), {"x": 0}),
            "fanout": (fanout(n, lg_leaf), fanout(n, lg_aleaf), {"x": 0, "out": []}),
        }
        for shape, (sync_graph, async_graph, state) in graphs.items():

            def ok(result: Any, n: int = n, shape: str = shape) -> bool:
                return bool(result["x"] == n if shape == "chain" else result["out"] == [2] * n)

            rows.append(
                timed_row(
                    f"{shape}-{n} sync",
                    impl,
                    partial(sync_graph.invoke, state, config),
                    units=n,
                    reps=r,
                    check=ok,
                )
            )

            async def run(g: Any = async_graph, s: Any = state, c: Any = config) -> Any:
                return await g.ainvoke(s, c)

            rows.append(
                timed_row(f"{shape}-{n} async", impl, run, units=n, reps=r, is_async=True, check=ok)
            )
        rows.append(timed_row(f"build-{n}", impl, partial(chain, n, lg_inc), units=n, reps=r))

    def sleeper(state: FanState) -> dict[str, list[int]]:
        time.sleep(SLEEP)
        return {"out": [1]}

    async def asleeper(state: FanState) -> dict[str, list[int]]:
        await asyncio.sleep(SLEEP)
        return {"out": [1]}

    def step(delay: float, fast_sink: bool, is_async: bool) -> Callable[..., Any]:
        if is_async:

            async def astep(state: FanState) -> dict[str, list[int]]:
                await asyncio.sleep(delay)
                if fast_sink:
                    CLOCK.mark_fast()
                return {"out": [1]}

            return astep

        def sstep(state: FanState) -> dict[str, list[int]]:
            time.sleep(delay)
            if fast_sink:
                CLOCK.mark_fast()
            return {"out": [1]}

        return sstep

    for mode in ("sync", "async"):
        is_async = mode == "async"
        graph = StateGraph(FanState)
        for i in range(SLEEPERS):
            graph.add_node(f"s{i}", asleeper if is_async else sleeper)
            graph.add_edge(START, f"s{i}")
        sleepers = graph.compile()
        graph = StateGraph(FanState)
        graph.add_node("slow", step(SLOW, False, is_async))
        graph.add_node("slow_sink", step(0, False, is_async))
        graph.add_edge(START, "slow")
        graph.add_edge("slow", "slow_sink")
        previous = START
        for i in range(FAST_STEPS):
            graph.add_node(f"f{i}", step(FAST_STEP, False, is_async))
            graph.add_edge(previous, f"f{i}")
            previous = f"f{i}"
        graph.add_node("fast_sink", step(0, True, is_async))
        graph.add_edge(previous, "fast_sink")
        branch = graph.compile()
        fresh = {"x": 0, "out": []}
        if is_async:
            run_sleepers = run_async(partial(sleepers.ainvoke, fresh))
            run_branch = run_async(partial(branch.ainvoke, fresh))
        else:
            run_sleepers = partial(sleepers.invoke, fresh)
            run_branch = partial(branch.invoke, fresh)
        rows.append(timed_row(f"sleepers {mode}", impl, run_sleepers, reps=sleep_reps(quick)))
        rows.append(fast_branch_row(f"fast-branch {mode}", impl, run_branch, quick))
    return rows


# --- kailash -------------------------------------------------------------------------------------


def kailash_node_types() -> tuple[str, str]:
    """Register one sync and one async kailash node: optional sleep, optional fast-sink mark."""
    from kailash.nodes.base import Node, NodeParameter, register_node
    from kailash.nodes.base_async import AsyncNode

    def parameters() -> dict[str, Any]:
        return {
            "x": NodeParameter(name="x", type=int, required=False, default=0),
            "delay": NodeParameter(name="delay", type=float, required=False, default=0.0),
            "fast_sink": NodeParameter(name="fast_sink", type=bool, required=False, default=False),
        }

    @register_node()
    class BenchStep(Node):
        def get_parameters(self) -> dict[str, Any]:
            return parameters()

        def run(self, x: int = 0, delay: float = 0.0, fast_sink: bool = False, **_: Any) -> Any:
            if delay:
                time.sleep(delay)
            if fast_sink:
                CLOCK.mark_fast()
            return {"x": x + 1}

    @register_node()
    class BenchAsyncStep(AsyncNode):
        def get_parameters(self) -> dict[str, Any]:
            return parameters()

        async def async_run(
            self, x: int = 0, delay: float = 0.0, fast_sink: bool = False, **_: Any
        ) -> Any:
            if delay:
                await asyncio.sleep(delay)
            if fast_sink:
                CLOCK.mark_fast()
            return {"x": x + 1}

    return "BenchStep", "BenchAsyncStep"


def kailash_rows(quick: bool) -> list[Row]:
    from kailash.runtime import AsyncLocalRuntime
    from kailash.runtime.local import LocalRuntime
    from kailash.workflow.builder import WorkflowBuilder

    sync_type, async_type = kailash_node_types()

    def chain(n: int, type_name: str) -> Any:
        builder = WorkflowBuilder()
        for i in range(n):
            builder.add_node(type_name, f"n{i}", {})
            if i:
                builder.add_connection(f"n{i - 1}", "x", f"n{i}", "x")
        return builder.build()

    def fanout(n: int, type_name: str) -> Any:
        builder = WorkflowBuilder()
        builder.add_node(type_name, "src", {})
        for i in range(n):
            builder.add_node(type_name, f"n{i}", {})
            builder.add_connection("src", "x", f"n{i}", "x")
        return builder.build()

    def sleepers(type_name: str) -> Any:
        builder = WorkflowBuilder()
        for i in range(SLEEPERS):
            builder.add_node(type_name, f"s{i}", {"delay": SLEEP})
        return builder.build()

    def fast_branch(type_name: str) -> Any:
        builder = WorkflowBuilder()
        builder.add_node(type_name, "slow", {"delay": SLOW})
        builder.add_node(type_name, "slow_sink", {})
        builder.add_connection("slow", "x", "slow_sink", "x")
        previous = None
        for i in range(FAST_STEPS):
            builder.add_node(type_name, f"f{i}", {"delay": FAST_STEP})
            if previous:
                builder.add_connection(previous, "x", f"f{i}", "x")
            previous = f"f{i}"
        builder.add_node(type_name, "fast_sink", {"fast_sink": True})
        builder.add_connection(previous, "x", "fast_sink", "x")
        return builder.build()

    local = LocalRuntime()
    async_runtime = AsyncLocalRuntime()

    def with_local(workflow: Any, params: dict[str, Any] | None = None) -> Callable[[], Any]:
        return lambda: local.execute(workflow, parameters=params or {})

    def with_async(workflow: Any, params: dict[str, Any] | None = None) -> Callable[[], Any]:
        async def run() -> Any:
            return await async_runtime.execute_workflow_async(workflow, inputs=params or {})

        return run

    rows = []
    r = reps(quick)
    # the sync case runs kailash's sync node type, the async case its AsyncNode type; both runtimes
    for n in sizes(quick):
        for shape, make, first in (("chain", chain, "n0"), ("fanout", fanout, "src")):
            params = {first: {"x": 0}}
            last = n if shape == "chain" else 2

            def ok(result: Any, n: int = n, last: int = last) -> bool:
                results = result[0] if isinstance(result, tuple) else result.get("results", result)
                return bool(results[f"n{n - 1}"]["x"] == last)

            for mode, type_name in (("sync", sync_type), ("async", async_type)):
                case = f"{shape}-{n} {mode}"
                workflow = make(n, type_name)
                rows.append(
                    timed_row(
                        case,
                        "kailash-local",
                        with_local(workflow, params),
                        units=n,
                        reps=r,
                        check=ok,
                    )
                )
                rows.append(
                    timed_row(
                        case,
                        "kailash-async",
                        with_async(workflow, params),
                        units=n,
                        reps=r,
                        is_async=True,
                        check=ok,
                    )
                )
        rows.append(
            timed_row(f"build-{n}", "kailash-local", partial(chain, n, sync_type), units=n, reps=r)
        )
    for mode, type_name in (("sync", sync_type), ("async", async_type)):
        for impl, runner in (("kailash-local", with_local), ("kailash-async", with_async)):
            sleepers_run = runner(sleepers(type_name))
            branch_run = runner(fast_branch(type_name))
            if impl == "kailash-async":
                sleepers_run = run_async(sleepers_run)
                branch_run = run_async(branch_run)
            rows.append(timed_row(f"sleepers {mode}", impl, sleepers_run, reps=sleep_reps(quick)))
            rows.append(fast_branch_row(f"fast-branch {mode}", impl, branch_run, quick))
    return rows


# --- main ----------------------------------------------------------------------------------------


def worker_rows(name: str, quick: bool) -> list[Row]:
    quiet_peers()
    module = {"kaizen": "kaizen.runtime", "langgraph": "langgraph.graph", "kailash": "kailash"}
    missing = try_import(module[name]) if name in module else None
    if missing:
        impl = {"kailash": "kailash-local"}.get(name, name)
        return [skipped("*", impl, missing)]
    builders = {
        "python": python_rows,
        "kaizen": kaizen_rows,
        "langgraph": langgraph_rows,
        "kailash": kailash_rows,
    }
    return builders[name](quick)


def build_report(quick: bool) -> Report:
    report = Report("bench_runtime: graph execution", unit="µs/node", targets=targets(quick))
    cases = case_names(quick)
    collect_workers(report, __file__, WORKERS, quick, cases, timeout=400)
    sort_rows(report, cases, IMPL_ORDER)
    return report


if __name__ == "__main__":
    bench_main(__doc__, worker_rows, build_report)
