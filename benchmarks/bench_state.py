"""State benchmark: checkpoint cost per node, memory search, cache-hit overhead.

Cases (medians of several runs; these 2-core machines are shared, expect noise):
- checkpoint, 1000-node chain: `LocalRuntime(checkpoint=path)` minus `LocalRuntime()` on the same
  chain of sync function nodes, per node (target <= 50 us). Beside it, LangGraph's `SqliteSaver`
  on a 1000-step chain (with and without the saver), when langgraph-checkpoint-sqlite is
  installed (the bench venv).
- memory search at 10,000 memories: `Memory.search` (sqlite provider: FTS5 BM25 + recency),
  target <= 10 ms.
- cache hit: `agent.execute` answered by the model-call cache, minus the same call with no cache
  lookup at all is not separable, so the row reports the hit itself (target <= 0.2 ms overhead
  over the uncached path's non-model work).

Run: `.bench-venv/bin/python benchmarks/bench_state.py [--quick]`.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

QUICK = "--quick" in sys.argv
N = 200 if QUICK else 1000
REPS = 3 if QUICK else 5


def median_time(call: Any, reps: int = REPS) -> float:
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def chain(n: int) -> Any:
    from kaizen import WorkflowBuilder

    def step(value: int) -> int:
        return value + 1

    wf = WorkflowBuilder("chain")
    for i in range(n):
        wf.add_node("FunctionNode", f"n{i}", {"function": step})
        if i:
            wf.add_connection(f"n{i - 1}", "result", f"n{i}", "value")
    return wf.build()


def kaizen_checkpoint(folder: Path) -> tuple[float, float]:
    from kaizen import LocalRuntime

    workflow = chain(N)
    plain = LocalRuntime()
    saved = LocalRuntime(checkpoint=folder / "bench.db")
    params = {"n0": {"value": 0}}
    base = median_time(lambda: plain.execute(workflow, params))
    with_cp = median_time(lambda: saved.execute(workflow, params))
    return base / N, with_cp / N


def langgraph_checkpoint(folder: Path) -> tuple[float, float] | None:
    try:
        import sqlite3
        from typing import TypedDict

        from langgraph.checkpoint.sqlite import SqliteSaver
        from langgraph.graph import END, START, StateGraph
    except ImportError:
        return None

    class State(TypedDict):
        value: int

    def step(state: State) -> State:
        return {"value": state["value"] + 1}

    graph = StateGraph(State)
    for i in range(N):
        graph.add_node(f"n{i}", step)
        graph.add_edge(START if i == 0 else f"n{i - 1}", f"n{i}")
    graph.add_edge(f"n{N - 1}", END)
    plain = graph.compile()
    saver = SqliteSaver(sqlite3.connect(folder / "lg.db", check_same_thread=False))
    saved = graph.compile(checkpointer=saver)
    limit = {"recursion_limit": N + 10}
    counter = iter(range(10**6))
    base = median_time(lambda: plain.invoke({"value": 0}, limit))
    with_cp = median_time(
        lambda: saved.invoke(
            {"value": 0}, {**limit, "configurable": {"thread_id": str(next(counter))}}
        )
    )
    return base / N, with_cp / N


def memory_search(folder: Path) -> float:
    from kaizen.store.memory import Memory

    memory = Memory("bench", path=folder / "mem.db", max_history=20_000)
    words = [
        "alpha",
        "beta",
        "gamma",
        "delta",
        "epsilon",
        "zeta",
        "eta",
        "theta",
        "iota",
        "kappa",
        "lambda",
        "mu",
    ]
    with memory.store.write() as db:
        db.executemany(
            "INSERT INTO memories (namespace, session, text, created) VALUES ('bench', '', ?, ?)",
            [
                (f"note {i} {words[i % 12]} {words[(i * 7) % 12]} value {i}", i)
                for i in range(10_000)
            ],
        )
    queries = ["gamma theta", "note about kappa", "value 42", "nothing matches zzz"]
    return median_time(lambda: [memory.search(q, 5) for q in queries], reps=20) / len(queries)


def cache_hit(folder: Path) -> tuple[float, float]:
    import kaizen
    from kaizen.testing import ScriptedModel

    model = ScriptedModel(lambda messages: {"answer": "4"})
    config = {"model": model, "cache": {"path": str(folder / "c.db")}}
    cached = kaizen.create_agent("c", "question -> answer", config)
    uncached = kaizen.create_agent("u", "question -> answer", {"model": model})
    cached.execute(question="2+2?")  # fills the cache
    uncached.execute(question="2+2?")
    hit = median_time(lambda: cached.execute(question="2+2?"), reps=50)
    miss = median_time(lambda: uncached.execute(question="2+2?"), reps=50)
    return hit, miss


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        base, with_cp = kaizen_checkpoint(folder)
        print(f"kaizen {N}-node chain: {base * 1e6:.1f} us/node plain, {with_cp * 1e6:.1f} us/node "
              f"checkpointed: +{(with_cp - base) * 1e6:.1f} us/node (target <= 50)")  # fmt: skip
        lg = langgraph_checkpoint(folder)
        if lg is None:
            print("langgraph SqliteSaver: not installed (langgraph-checkpoint-sqlite)")
        else:
            added = (lg[1] - lg[0]) * 1e6
            print(f"langgraph {N}-step chain: {lg[0] * 1e6:.1f} us/step plain, "
                  f"{lg[1] * 1e6:.1f} us/step with SqliteSaver: +{added:.1f} us")  # fmt: skip
        search = memory_search(folder)
        print(f"memory search at 10,000 memories: {search * 1e3:.2f} ms (target <= 10)")
        hit, miss = cache_hit(folder)
        print(f"agent.execute answered by the cache: {hit * 1e3:.2f} ms; the same with a 0 ms "
              f"model through litellm: {miss * 1e3:.2f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
