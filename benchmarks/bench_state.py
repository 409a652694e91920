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
- the same chain checkpointed on Postgres: a throwaway Debian PostgreSQL on loopback
  (`kaizen.testing.postgres`, fsync=off, as tests run it; the server's own fsync is not what is
  compared), one database per implementation. Kaizen: `LocalRuntime(checkpoint="postgresql://
  ...")`, both durability modes; LangGraph: `PostgresSaver` (langgraph-checkpoint-postgres).
  Target (DESIGN.md): Kaizen's cost per node on Postgres <= 10x its cost on SQLite, and below
  PostgresSaver's.
- memory search, 10,000 memories: `Memory.search(query, 5)`, the mean over 4 queries (common
  words, a rare word, no match), provider "sqlite" (FTS5 BM25 + recency; target <= 10 ms) and
  "vector_db" (plus wordllama embeddings scored in numpy; skipped without the `vector` extra).
- agent.execute, cache hit: a call answered by the model-call cache, beside the same call
  to a 0 ms scripted model, answered in-process (no cache).

Run: `.bench-venv/bin/python benchmarks/bench_state.py [--quick]`. The machine is shared:
compare runs only at a similar load (printed in the header).
"""

from __future__ import annotations

import os
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


def postgres_cases(n: int) -> tuple[str, str]:
    return f"chain {n}, checkpointed on Postgres", "checkpoint cost per node, Postgres"


POSTGRES_URL = "BENCH_POSTGRES_URL_"  # + the worker's name: its database (set by the report)


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
    rows += kaizen_postgres_rows(workflow, params, n, reps, right)
    rows.append(memory_row(KAIZEN, "sqlite", folder, quick))
    why = try_import("wordllama")
    rows.append(
        skipped(MEMORY, VECTOR, why or "")
        if why
        else memory_row(VECTOR, "vector_db", folder, quick)
    )
    rows.extend(cache_rows(folder, quick))
    return rows


def kaizen_postgres_rows(workflow: Any, params: Any, n: int, reps: int, right: Any) -> list[Row]:
    from kaizen import LocalRuntime

    saved_case, _ = postgres_cases(n)
    url = os.environ.get(POSTGRES_URL + KAIZEN)
    if not url:
        return [skipped(saved_case, KAIZEN, os.environ.get(POSTGRES_URL + "why", "no server"))]
    on_pg = LocalRuntime(checkpoint=url)
    on_pg_async = LocalRuntime(checkpoint=url, durability="async")
    return [
        timed_row(saved_case, KAIZEN, lambda: on_pg.execute(workflow, params), units=n,
                  reps=reps, check=right, note='durability="sync" (default)'),
        timed_row(saved_case, KAIZEN_ASYNC, lambda: on_pg_async.execute(workflow, params),
                  units=n, reps=reps, check=right, note='durability="async"'),
    ]  # fmt: skip


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
        *langgraph_postgres_rows(graph, n, limit, threads, reps, right),
        timed_row(plain_case, LANGGRAPH, lambda: plain.invoke({"value": 0}, limit), units=n,
                  reps=reps, check=right),
        timed_row(saved_case, LANGGRAPH, saved("FULL"), units=n, reps=reps, check=right,
                  note="SqliteSaver, its defaults"),
        timed_row(saved_case, LANGGRAPH_NORMAL, saved("NORMAL"), units=n, reps=reps,
                  check=right, note="SqliteSaver, synchronous=NORMAL"),
    ]  # fmt: skip


def langgraph_postgres_rows(
    graph: Any, n: int, limit: Any, threads: Any, reps: int, right: Any
) -> list[Row]:
    saved_case, _ = postgres_cases(n)
    url = os.environ.get(POSTGRES_URL + LANGGRAPH)
    why = try_import("langgraph.checkpoint.postgres")
    if why or not url:
        reason = why or os.environ.get(POSTGRES_URL + "why", "no server")
        return [skipped(saved_case, LANGGRAPH, reason + " (langgraph-checkpoint-postgres)")]
    from langgraph.checkpoint.postgres import PostgresSaver

    saver_context = PostgresSaver.from_conn_string(url)
    saver = saver_context.__enter__()  # held open for the process (the worker ends after)
    saver.setup()
    app = graph.compile(checkpointer=saver)

    def run() -> Any:
        config = {**limit, "configurable": {"thread_id": str(next(threads))}}
        return app.invoke({"value": 0}, config)

    return [
        timed_row(saved_case, LANGGRAPH, run, units=n, reps=reps, check=right,
                  note="PostgresSaver, its defaults"),
    ]  # fmt: skip


# --- report --------------------------------------------------------------------------------------


def worker_rows(name: str, quick: bool) -> list[Row]:
    quiet_peers()
    return {KAIZEN: kaizen_rows, LANGGRAPH: langgraph_rows}[name](quick)


def added_rows(
    report: Report, n: int, saved_case: str, added_case: str, compared_to: str | None = None
) -> list[Row]:
    """`saved_case` minus the plain chain, per node, for each implementation that has both;
    with `compared_to`, each also as a ratio to its own row of that case."""
    plain_case = case_names(n)[0]
    plain = {r.impl: r for r in report.rows if r.case == plain_case}
    plain[LANGGRAPH_NORMAL] = plain.get(LANGGRAPH, Row(plain_case, LANGGRAPH))
    plain[KAIZEN_ASYNC] = plain.get(KAIZEN, Row(plain_case, KAIZEN))
    other = {r.impl: r for r in report.rows if r.case == compared_to}
    rows = []
    for row in [r for r in report.rows if r.case == saved_case]:
        base = plain.get(row.impl)
        if row.seconds is None or base is None or base.seconds is None:
            rows.append(skipped(added_case, row.impl, "needs both chain rows"))
            continue
        added = row.seconds - base.seconds
        note, than = row.note, other.get(row.impl)
        if than is not None and than.per_unit_us:
            note = f"{added / n * 1e6 / than.per_unit_us:.1f}x its SQLite cost; {note}".strip("; ")
        rows.append(Row(added_case, row.impl, added, added / n * 1e6, row.reps, note))
    return rows


def start_postgres() -> Any:
    """A throwaway server with one database per worker (their URLs in the environment the
    workers inherit); None, with the reason in the environment, when none can start."""
    try:
        from kaizen.testing.postgres import TemporaryPostgres

        server = TemporaryPostgres().start()
        for worker in (KAIZEN, LANGGRAPH):
            os.environ[POSTGRES_URL + worker] = server.database()
        return server
    except Exception as exc:
        os.environ[POSTGRES_URL + "why"] = f"no PostgreSQL: {exc}"
        return None


def build_report(quick: bool) -> Report:
    n = chain_size(quick)
    plain_case, saved_case, added_case = case_names(n)
    pg_saved, pg_added = postgres_cases(n)
    cases = (plain_case, saved_case, added_case, pg_saved, pg_added, MEMORY, CACHE)
    report = Report("State: checkpoints, memory search, cache hits", unit="µs/node")
    report.targets = {
        added_case: Target("≤ 50 µs/node", 50.0),
        MEMORY: Target("≤ 10 ms/query", 0.010, "seconds"),
    }
    server = start_postgres()
    try:
        collect_workers(report, __file__, [KAIZEN, LANGGRAPH], quick, cases, timeout=900)
    finally:
        if server is not None:
            server.stop()
    report.extend(added_rows(report, n, saved_case, added_case))
    report.extend(added_rows(report, n, pg_saved, pg_added, compared_to=added_case))
    sqlite_cost = next(
        (r.per_unit_us for r in report.rows if r.case == added_case and r.impl == KAIZEN), None
    )
    peer_cost = next(
        (r.per_unit_us for r in report.rows if r.case == pg_added and r.impl == LANGGRAPH), None
    )
    if sqlite_cost:
        bound = 10 * sqlite_cost if peer_cost is None else min(10 * sqlite_cost, peer_cost)
        report.targets[pg_added] = Target(
            f"≤ 10x SQLite's ({10 * sqlite_cost:.0f}) and ≤ PostgresSaver's", bound
        )
    sort_rows(report, cases, (KAIZEN, KAIZEN_ASYNC, VECTOR, NO_CACHE, LANGGRAPH, LANGGRAPH_NORMAL))
    return report


if __name__ == "__main__":
    bench_main(__doc__ or "", worker_rows, build_report)
