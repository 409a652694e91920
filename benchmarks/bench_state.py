"""State benchmark: checkpoint cost per node beside LangGraph's SqliteSaver, memory search,
cache hits.

Cases (each implementation in its own fresh interpreter; medians after a warm-up run):
- chain N, plain / checkpointed: a chain of N trivial sync nodes (N = 1000; 200 with --quick),
  run whole. Kaizen: `LocalRuntime()` and `LocalRuntime(checkpoint=<file>)` (WAL,
  synchronous=NORMAL) in its two durability modes: "kaizen" is the default `durability="sync"`
  (each node's outputs committed before its dependant starts: on a chain, one transaction per
  node), "kaizen, async" is `durability="async"` (committed in batches by a background writer;
  the run's end waits for them; at-least-once after a crash). LangGraph: a `StateGraph` of N
  nodes compiled without and with `SqliteSaver` on a file (one thread per run; LangGraph's own
  setup: WAL, synchronous=FULL), and "langgraph-normal": the same saver on a connection set to
  synchronous=NORMAL, as Kaizen's.
- checkpoint cost added per node: checkpointed minus plain, per node (target <= 50 us for
  Kaizen).
- memory search, 10,000 memories: `Memory.search(query, 5)`, the mean over 4 queries (common
  words, a rare word, no match), provider "sqlite" (FTS5 BM25 + recency; target <= 10 ms) and
  "vector_db" (plus wordllama embeddings scored in numpy; skipped without the `vector` extra).
- agent.execute, cache hit: a call answered by the model-call cache, beside the same call
  to a 0 ms scripted model, answered in-process (no cache).

Run: `.bench-venv/bin/python benchmarks/bench_state.py [--quick]`. The machine is shared:
compare runs only at a similar load (printed in the header).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
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

LANGGRAPH, LANGGRAPH_NORMAL = "langgraph", "langgraph-normal"
VECTOR = "kaizen vector_db"
NO_CACHE = "kaizen, no cache"
KAIZEN_ASYNC = "kaizen, async"
MEMORIES = 10_000
QUERIES = ["gamma theta", "note about kappa", "value 42", "nothing matches zzz"]


def chain_size(quick: bool) -> int:
    return 200 if quick else 1000


def case_names(n: int) -> tuple[str, str, str]:
    return f"chain {n}, plain", f"chain {n}, checkpointed", "checkpoint cost added per node"


MEMORY = f"memory search, {MEMORIES:,} memories"
CACHE = "agent.execute, cache hit"


# --- Kaizen --------------------------------------------------------------------------------------


def kaizen_rows(quick: bool) -> list[Row]:
    n = chain_size(quick)
    plain_case, saved_case, _ = case_names(n)
    reps = 3 if quick else 7
    folder = Path(tempfile.mkdtemp(prefix="bench-state-"))
    workflow = kaizen_chain(n)
    from kaizen import LocalRuntime

    plain, saved = LocalRuntime(), LocalRuntime(checkpoint=folder / "bench.db")
    saved_async = LocalRuntime(checkpoint=folder / "bench-async.db", durability="async")
    params = {"n0": {"value": 0}}

    def right(outcome: Any) -> bool:
        return bool(outcome[0][f"n{n - 1}"]["result"] == n)

    rows = [
        timed_row(plain_case, KAIZEN, lambda: plain.execute(workflow, params), units=n,
                  reps=reps, check=right),
        timed_row(saved_case, KAIZEN, lambda: saved.execute(workflow, params), units=n,
                  reps=reps, check=right, note='durability="sync" (default)'),
        timed_row(saved_case, KAIZEN_ASYNC, lambda: saved_async.execute(workflow, params),
                  units=n, reps=reps, check=right, note='durability="async"'),
    ]  # fmt: skip
    rows.append(memory_row(KAIZEN, "sqlite", folder, quick))
    why = try_import("wordllama")
    rows.append(
        skipped(MEMORY, VECTOR, why or "")
        if why
        else memory_row(VECTOR, "vector_db", folder, quick)
    )
    rows.extend(cache_rows(folder, quick))
    return rows


def kaizen_chain(n: int) -> Any:
    from kaizen import WorkflowBuilder

    def step(value: int) -> int:
        return value + 1

    wf = WorkflowBuilder("chain")
    for i in range(n):
        wf.add_node("FunctionNode", f"n{i}", {"function": step})
        if i:
            wf.add_connection(f"n{i - 1}", "result", f"n{i}", "value")
    return wf.build()


def memory_row(impl: str, provider: Any, folder: Path, quick: bool) -> Row:
    from kaizen.store.memory import Memory

    path = folder / f"mem-{provider}.db"
    memory = Memory(impl, provider=provider, path=path, max_history=2 * MEMORIES)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota",
             "kappa", "lambda", "mu"]  # fmt: skip
    texts = [f"note {i} {words[i % 12]} {words[(i * 7) % 12]} value {i}" for i in range(MEMORIES)]
    embeddings: list[Any] = [None] * MEMORIES
    if memory._embedder is not None:
        vectors = memory._embedder.embed(texts).astype("float32")
        embeddings = [vector.tobytes() for vector in vectors]
    with memory.store.write() as db:
        db.executemany(
            "INSERT INTO memories (namespace, session, text, created, embedding)"
            " VALUES (?, '', ?, ?, ?)",
            [(impl, text, i, embeddings[i]) for i, text in enumerate(texts)],
        )

    def search_all() -> list[Any]:
        return [memory.search(query, 5) for query in QUERIES]

    def right(found: list[Any]) -> bool:
        return bool(found[2] and found[2][0].text == "note 42 eta eta value 42")

    row = timed_row(MEMORY, impl, search_all, reps=5 if quick else 20, check=right)
    if row.seconds is not None:  # the figure is per query
        row.seconds /= len(QUERIES)
    return row


def cache_rows(folder: Path, quick: bool) -> list[Row]:
    import kaizen
    from kaizen.testing import ScriptedModel

    model = ScriptedModel(lambda messages: {"answer": "4"})
    cached = kaizen.create_agent(
        "c", "question -> answer", {"model": model, "cache": {"path": str(folder / "c.db")}}
    )
    uncached = kaizen.create_agent("u", "question -> answer", {"model": model})
    reps = 20 if quick else 50

    def right(result: Any) -> bool:
        return bool(result.answer == "4")

    return [
        timed_row(CACHE, KAIZEN, lambda: cached.execute(question="2+2?"), reps=reps, check=right),
        timed_row(CACHE, NO_CACHE, lambda: uncached.execute(question="2+2?"), reps=reps,
                  check=right, note="0 ms model through litellm"),
    ]  # fmt: skip


# --- LangGraph -----------------------------------------------------------------------------------


def langgraph_rows(quick: bool) -> list[Row]:
    n = chain_size(quick)
    plain_case, saved_case, _ = case_names(n)
    why = try_import("langgraph.checkpoint.sqlite")
    if why:
        return [skipped("*", LANGGRAPH, why + " (pip install langgraph-checkpoint-sqlite)")]
    import sqlite3
    from typing import TypedDict

    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.graph import END, START, StateGraph

    class State(TypedDict):
        value: int

    def step(state: State) -> State:
        return {"value": state["value"] + 1}

    graph = StateGraph(State)
    for i in range(n):
        graph.add_node(f"n{i}", step)
        graph.add_edge(START if i == 0 else f"n{i - 1}", f"n{i}")
    graph.add_edge(f"n{n - 1}", END)
    folder = Path(tempfile.mkdtemp(prefix="bench-state-lg-"))
    limit: dict[str, Any] = {"recursion_limit": n + 10}
    threads = iter(range(10**9))
    reps = 3 if quick else 7

    def right(state: Any) -> bool:
        return bool(state["value"] == n)

    def saved(synchronous: str) -> Any:
        connection = sqlite3.connect(folder / f"lg-{synchronous}.db", check_same_thread=False)
        saver = SqliteSaver(connection)
        saver.setup()  # LangGraph's own pragmas (WAL); then ours, if any
        if synchronous != "FULL":
            connection.execute(f"PRAGMA synchronous={synchronous}")
        app = graph.compile(checkpointer=saver)

        def run() -> Any:
            config = {**limit, "configurable": {"thread_id": str(next(threads))}}
            return app.invoke({"value": 0}, config)

        return run

    plain = graph.compile()
    return [
        timed_row(plain_case, LANGGRAPH, lambda: plain.invoke({"value": 0}, limit), units=n,
                  reps=reps, check=right),
        timed_row(saved_case, LANGGRAPH, saved("FULL"), units=n, reps=reps, check=right,
                  note="SqliteSaver, its defaults"),
        timed_row(saved_case, LANGGRAPH_NORMAL, saved("NORMAL"), units=n, reps=reps,
                  check=right, note="SqliteSaver, synchronous=NORMAL"),
    ]  # fmt: skip


# --- report --------------------------------------------------------------------------------------


def worker_rows(name: str, quick: bool) -> list[Row]:
    quiet_peers()
    return {KAIZEN: kaizen_rows, LANGGRAPH: langgraph_rows}[name](quick)


def added_rows(report: Report, n: int) -> list[Row]:
    """Checkpointed minus plain, per node, for each implementation that has both."""
    plain_case, saved_case, added_case = case_names(n)
    plain = {r.impl: r for r in report.rows if r.case == plain_case}
    plain[LANGGRAPH_NORMAL] = plain.get(LANGGRAPH, Row(plain_case, LANGGRAPH))
    plain[KAIZEN_ASYNC] = plain.get(KAIZEN, Row(plain_case, KAIZEN))
    rows = []
    for row in [r for r in report.rows if r.case == saved_case]:
        base = plain.get(row.impl)
        if row.seconds is None or base is None or base.seconds is None:
            rows.append(skipped(added_case, row.impl, "needs both chain rows"))
            continue
        added = row.seconds - base.seconds
        rows.append(Row(added_case, row.impl, added, added / n * 1e6, row.reps, row.note))
    return rows


def build_report(quick: bool) -> Report:
    n = chain_size(quick)
    plain_case, saved_case, added_case = case_names(n)
    cases = (plain_case, saved_case, added_case, MEMORY, CACHE)
    report = Report("State: checkpoints, memory search, cache hits", unit="µs/node")
    report.targets = {
        added_case: Target("≤ 50 µs/node", 50.0),
        MEMORY: Target("≤ 10 ms/query", 0.010, "seconds"),
    }
    collect_workers(report, __file__, [KAIZEN, LANGGRAPH], quick, cases, timeout=900)
    report.extend(added_rows(report, n))
    sort_rows(report, cases, (KAIZEN, KAIZEN_ASYNC, VECTOR, NO_CACHE, LANGGRAPH, LANGGRAPH_NORMAL))
    return report


if __name__ == "__main__":
    bench_main(__doc__ or "", worker_rows, build_report)
