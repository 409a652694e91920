"""Agent benchmark: import cost, per-call overhead, and 100 concurrent calls, beside the peers.

Cases:
- import: `import X` in a fresh interpreter (median of several), for `kaizen` (this repository),
  `kailash`, `langgraph.graph`, `dspy` and kailash-kaizen's `kaizen`.
- execute, 0 ms model: one `agent.execute(question=...)` with a model that answers at once
  (Kaizen: `kaizen.testing.ScriptedModel`, answered in-process through the transport seam, no
  litellm; kailash-kaizen: its mock provider; DSPy: `dspy.Predict` with `DummyLM`). The floor row
  is `kaizen.llm.complete` alone, the same call with the same messages and schema, so "kaizen own
  share" = execute - complete is what Kaizen adds around the model call (prompt, validation,
  parsing, the one-node workflow). "kaizen-litellm" is the same agent with
  `config={"transport": "litellm"}`: the scripted model answered through litellm's provider.
- 100 concurrent, 0 ms model: 100 executions at once (Kaizen and DSPy with asyncio; kailash-kaizen
  has no async execute, so 100 threads).
- 100 concurrent, 200 ms HTTP: 100 executions at once against `kaizen.testing.FaultServer`
  (a real OpenAI-compatible server on loopback answering after 200 ms), model `openai/bench`
  with an `api_base`: "kaizen" takes its default transport (the pooled OpenAI-compatible fast
  path), "kaizen-litellm" is forced through litellm (`config={"transport": "litellm"}`); the
  floor row is 100 bare `litellm.acompletion` calls. kailash-kaizen refuses loopback endpoints,
  so it has no row here.
- 100 concurrent, 0 ms HTTP: the same against a server that answers at once (the server runs in
  the same process, so its CPU is counted too): what the transport and Kaizen cost per call.

Run: `.bench-venv/bin/python benchmarks/bench_agent.py [--quick]`.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    FLOOR,
    KAIZEN,
    PEER_KAIZEN_DIR,
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

SIGNATURE = "question -> answer: str, confidence: float"
ANSWER = {"answer": "Machine learning is learning from data.", "confidence": 0.9}
QUESTION = "What is machine learning?"
LATENCY = 0.2
CONCURRENT = 100
BATCH = 20  # calls per timed repetition of the per-call cases

IMPORT = "import"
EXECUTE = "execute, 0 ms model"
OWN_SHARE = "execute, kaizen own share"
EXECUTE_ASYNC = "execute_async, 0 ms model"
OWN_SHARE_ASYNC = "execute_async, kaizen own share"
CONCURRENT_0 = f"{CONCURRENT} concurrent, 0 ms model"
CONCURRENT_HTTP = f"{CONCURRENT} concurrent, {LATENCY * 1000:.0f} ms HTTP"
CONCURRENT_HTTP_0 = f"{CONCURRENT} concurrent, 0 ms HTTP"
KAIZEN_LITELLM = "kaizen-litellm"
CASES = (
    IMPORT,
    EXECUTE,
    OWN_SHARE,
    EXECUTE_ASYNC,
    OWN_SHARE_ASYNC,
    CONCURRENT_0,
    CONCURRENT_HTTP,
    CONCURRENT_HTTP_0,
)
PEER_KAIZEN = "kailash-kaizen"
IMPL_ORDER = (
    KAIZEN,
    KAIZEN_LITELLM,
    FLOOR,
    "kailash",
    "langgraph",
    "dspy",
    "dspy-litellm",
    PEER_KAIZEN,
)
TARGETS = {
    IMPORT: Target("≤ 150 ms", 0.150, "seconds"),
    OWN_SHARE: Target("≤ 1 ms/call", 1000.0),
    OWN_SHARE_ASYNC: Target("≤ 1 ms/call", 1000.0),
    CONCURRENT_HTTP: Target("≤ 0.3 s", 0.3, "seconds"),
    CONCURRENT_HTTP_0: Target("≤ 60 ms", 0.060, "seconds"),
}

IMPORTS = (
    (KAIZEN, "kaizen", False),
    ("kailash", "kailash", False),
    ("langgraph", "langgraph.graph", False),
    ("dspy", "dspy", False),
    (PEER_KAIZEN, "kaizen", True),
)


# --- import time (parent process, one fresh interpreter per sample) ------------------------------


def import_rows(quick: bool) -> list[Row]:
    samples = 3 if quick else 7
    probe = "import time; t = time.perf_counter(); import {0}; print(time.perf_counter() - t)"
    rows = []
    for impl, module, peer in IMPORTS:
        env = dict(os.environ)
        if peer:
            if not PEER_KAIZEN_DIR.is_dir():
                rows.append(skipped(IMPORT, impl, f"{PEER_KAIZEN_DIR} missing"))
                continue
            env["PYTHONPATH"] = str(PEER_KAIZEN_DIR)
        times = []
        for _ in range(samples + 1):  # the first warms the OS file cache
            proc = subprocess.run(
                [sys.executable, "-W", "ignore", "-c", probe.format(module)],
                capture_output=True,
                text=True,
                env=env,
                cwd="/tmp",
                check=False,
            )
            if proc.returncode != 0:
                tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
                rows.append(skipped(IMPORT, impl, f"import {module} failed: {tail}"))
                break
            times.append(float(proc.stdout.strip().splitlines()[-1]))
        else:
            median = statistics.median(times[1:])
            rows.append(Row(IMPORT, impl, median, None, samples, f"import {module}"))
    return rows


# --- Kaizen --------------------------------------------------------------------------------------


def kaizen_api() -> tuple[Callable[..., Any], Any]:
    """`kaizen.create_agent` (falling back to its defining module) and `kaizen.llm`."""
    import kaizen
    from kaizen import llm

    create: Callable[..., Any] | None = getattr(kaizen, "create_agent", None)
    if create is None:
        from kaizen import framework

        create = framework.create_agent
    return create, llm


def kaizen_rows(quick: bool) -> list[Row]:
    from kaizen.testing import ScriptedModel
    from kaizen.testing.fault_server import FaultServer

    create_agent, llm = kaizen_api()
    reps = 5 if quick else 11
    rows: list[Row] = []

    model = ScriptedModel(lambda messages: ANSWER)
    agent = create_agent("bench_qa", signature=SIGNATURE, config={"model": model})
    first = agent.execute(question=QUESTION)
    if first.confidence != ANSWER["confidence"]:
        return [skipped(EXECUTE, KAIZEN, f"wrong result {first!r}")]
    call = model.calls[-1]
    messages = call.messages
    schema = agent.signature.output_schema

    def executes() -> None:
        for _ in range(BATCH):
            agent.execute(question=QUESTION)

    def completes() -> None:
        for _ in range(BATCH):
            llm.complete(messages, model=model, response_schema=schema)

    rows += paired(
        (EXECUTE, OWN_SHARE),
        lambda: timed_pair(executes, completes, reps),
        "kaizen.llm.complete alone (ScriptedModel, in-process)",
        "execute - complete, paired",
    )
    # the same agent with its scripted model answered through litellm's custom provider: what
    # litellm alone adds to a call (the in-process transport leaves it out)
    through_litellm = create_agent(
        "bench_qa_litellm", signature=SIGNATURE, config={"model": model, "transport": "litellm"}
    )

    def executes_through_litellm() -> None:
        for _ in range(BATCH):
            through_litellm.execute(question=QUESTION)

    rows.append(
        timed_row(
            EXECUTE,
            KAIZEN_LITELLM,
            executes_through_litellm,
            units=BATCH,
            reps=reps,
            note="ScriptedModel through litellm (transport='litellm')",
        )
    )

    async def executes_async() -> None:
        for _ in range(BATCH):
            await agent.execute_async(question=QUESTION)

    async def acompletes() -> None:
        for _ in range(BATCH):
            await llm.acomplete(messages, model=model, response_schema=schema)

    rows += paired(
        (EXECUTE_ASYNC, OWN_SHARE_ASYNC),
        lambda: asyncio.run(timed_pair_async(executes_async, acompletes, reps)),
        "kaizen.llm.acomplete alone (ScriptedModel, in-process)",
        "execute_async - acomplete, paired",
    )

    async def hundred_scripted() -> None:
        results = await asyncio.gather(
            *(agent.execute_async(question=f"{QUESTION} #{i}") for i in range(CONCURRENT))
        )
        assert all(r.confidence == ANSWER["confidence"] for r in results)

    rows.append(
        timed_row(CONCURRENT_0, KAIZEN, hundred_scripted, reps=max(3, reps // 2), is_async=True)
    )

    for latency, case in ((LATENCY, CONCURRENT_HTTP), (0.0, CONCURRENT_HTTP_0)):
        with FaultServer(latency=latency, reply=ANSWER) as server:
            for impl, transport in ((KAIZEN, "auto"), (KAIZEN_LITELLM, "litellm")):
                config = {
                    "model": "openai/bench",
                    "api_base": server.base_url,
                    "api_key": "bench",
                    "transport": transport,
                }
                http_agent = create_agent("bench_http_qa", signature=SIGNATURE, config=config)
                note = "fast path (default)" if transport == "auto" else "transport='litellm'"
                rows.append(
                    timed_row(
                        case,
                        impl,
                        partial(hundred_agents, http_agent),
                        reps=3 if latency else max(5, reps),
                        is_async=True,
                        note=note,
                    )
                )
            if latency:
                rows.append(litellm_floor_row(server.base_url, messages))
    return rows


async def hundred_agents(agent: Any) -> None:
    results = await asyncio.gather(
        *(agent.execute_async(question=f"{QUESTION} #{i}") for i in range(CONCURRENT))
    )
    assert all(r.confidence == ANSWER["confidence"] for r in results)


Pair = tuple[list[float], list[float]]


def timed_pair(full: Callable[[], Any], floor: Callable[[], Any], reps: int) -> Pair:
    """Batch times of `full` and `floor`, alternating (so load changes hit both alike)."""
    fulls: list[float] = []
    floors: list[float] = []
    for i in range(reps + 1):  # the first pair warms up
        order = [(full, fulls), (floor, floors)]
        for fn, out in order if i % 2 else reversed(order):
            start = time.perf_counter()
            fn()
            if i:
                out.append(time.perf_counter() - start)
    return fulls, floors


async def timed_pair_async(
    full: Callable[[], Awaitable[Any]], floor: Callable[[], Awaitable[Any]], reps: int
) -> Pair:
    """`timed_pair` for coroutine functions, inside one event loop."""
    fulls: list[float] = []
    floors: list[float] = []
    for i in range(reps + 1):
        order = [(full, fulls), (floor, floors)]
        for fn, out in order if i % 2 else reversed(order):
            start = time.perf_counter()
            await fn()
            if i:
                out.append(time.perf_counter() - start)
    return fulls, floors


def paired(
    cases: tuple[str, str], measure: Callable[[], Pair], floor_note: str, share_note: str
) -> list[Row]:
    """Rows for the full call, the bare model call, and Kaizen's own share per call.

    The share is the median of the per-repetition differences, which shrugs off load changes
    better than a difference of two medians taken at different times.
    """
    case, share_case = cases
    try:
        fulls, floors = measure()
    except Exception as exc:
        return [skipped(case, KAIZEN, f"{type(exc).__name__}: {exc}")]
    per_call = 1e6 / BATCH
    full_s = statistics.median(fulls)
    floor_s = statistics.median(floors)
    share_s = statistics.median(f - b for f, b in zip(fulls, floors, strict=True)) / BATCH
    count = len(fulls)
    return [
        Row(case, KAIZEN, full_s, full_s * per_call, count),
        Row(case, FLOOR, floor_s, floor_s * per_call, count, floor_note),
        Row(share_case, KAIZEN, share_s, share_s * 1e6, count, share_note),
    ]


def litellm_floor_row(base_url: str, messages: list[dict[str, Any]]) -> Row:
    """100 bare `litellm.acompletion` calls to the same server: the floor for the HTTP case."""
    import litellm

    async def hundred() -> None:
        await asyncio.gather(
            *(
                litellm.acompletion(
                    model="openai/bench", messages=messages, api_base=base_url, api_key="bench"
                )
                for _ in range(CONCURRENT)
            )
        )

    row = timed_row(CONCURRENT_HTTP, FLOOR, hundred, reps=3, is_async=True)
    row.note = "bare litellm.acompletion"
    return row


# --- DSPy ----------------------------------------------------------------------------------------


def dspy_reply(fields: dict[str, Any]) -> str:
    """A reply in DSPy's chat-adapter format, for the HTTP server DSPy talks to."""
    parts = [f"[[ ## {name} ## ]]\n{value}" for name, value in fields.items()]
    return "\n\n".join([*parts, "[[ ## completed ## ]]"])


def dspy_rows(quick: bool) -> list[Row]:
    import dspy
    from dspy.utils.dummies import DummyLM

    reps = 5 if quick else 11
    rows: list[Row] = []
    predict = dspy.Predict(SIGNATURE)
    dummy = DummyLM({QUESTION: ANSWER, "#": ANSWER})
    with dspy.context(lm=dummy):
        first = predict(question=QUESTION)
        if float(first.confidence) != ANSWER["confidence"]:
            return [skipped(EXECUTE, "dspy", f"wrong result {first!r}")]

        def calls() -> None:
            for _ in range(BATCH):
                predict(question=QUESTION)

        rows.append(timed_row(EXECUTE, "dspy", calls, units=BATCH, reps=reps, note="DummyLM"))

    async def hundred(lm: Any) -> None:
        with dspy.context(lm=lm):
            results = await asyncio.gather(
                *(predict.acall(question=f"{QUESTION} #{i}") for i in range(CONCURRENT))
            )
        assert all(float(r.confidence) == ANSWER["confidence"] for r in results)

    rows.append(
        timed_row(
            CONCURRENT_0,
            "dspy",
            lambda: hundred(dummy),
            reps=max(3, reps // 2),
            is_async=True,
            note="DummyLM, asyncio",
        )
    )
    missing = try_import("kaizen.testing.fault_server")
    if missing:
        rows.append(skipped(CONCURRENT_HTTP, "dspy", f"no FaultServer: {missing}"))
        return rows
    for latency, case in ((LATENCY, CONCURRENT_HTTP), (0.0, CONCURRENT_HTTP_0)):
        rows += dspy_http_rows(hundred, latency, case, reps)
    return rows


def dspy_http_rows(hundred: Any, latency: float, case: str, reps: int) -> list[Row]:
    import dspy

    from kaizen.testing.fault_server import FaultServer

    rows = []
    with FaultServer(latency=latency, reply=dspy_reply(ANSWER)) as server:
        # DSPy 3.4's default engine ("auto") sends this request through its own lm15 client, not
        # litellm; the second row forces litellm.
        for impl, engine in (("dspy", "auto"), ("dspy-litellm", "litellm")):
            lm = dspy.LM(
                "openai/bench",
                api_base=server.base_url,
                api_key="bench",
                cache=False,
                engine=engine,
            )
            rows.append(
                timed_row(
                    case,
                    impl,
                    partial(hundred, lm),
                    reps=3 if latency else max(5, reps),
                    is_async=True,
                    note=f"dspy.LM(engine={engine!r}), Predict.acall",
                )
            )
    return rows


# --- kailash-kaizen (subprocess with its directory first on sys.path) ----------------------------


def peer_kaizen_rows(quick: bool) -> list[Row]:
    import kaizen  # kailash-kaizen's package here, see run_worker(peer_kaizen=True)

    if "kailash-kaizen" not in str(kaizen.__file__):
        return [skipped("*", PEER_KAIZEN, f"imported {kaizen.__file__}, not kailash-kaizen")]
    reps = 5 if quick else 11
    agent = kaizen.create_agent(
        "bench_qa", config={"model": "mock-model", "provider": "mock", "signature": SIGNATURE}
    )
    first = agent.execute(question=QUESTION)
    if not isinstance(first, dict):
        return [skipped("*", PEER_KAIZEN, f"unexpected result {str(first)[:60]}")]
    note = "mock provider, canned text"
    if set(first) != set(ANSWER):  # it reads "answer: str" as a field name: say so, still time it
        note += f"; output keys {sorted(first)}"

    def calls() -> None:
        for _ in range(BATCH):
            agent.execute(question=QUESTION)

    rows = [timed_row(EXECUTE, PEER_KAIZEN, calls, units=BATCH, reps=reps, note=note)]

    def hundred() -> None:
        with ThreadPoolExecutor(CONCURRENT) as pool:
            list(pool.map(lambda i: agent.execute(question=f"{QUESTION} #{i}"), range(CONCURRENT)))

    rows.append(
        timed_row(
            CONCURRENT_0, PEER_KAIZEN, hundred, reps=3, note="mock provider, 100 threads (no async)"
        )
    )
    rows.append(skipped(CONCURRENT_HTTP, PEER_KAIZEN, "its openai provider rejects loopback URLs"))
    return rows


# --- main ----------------------------------------------------------------------------------------


def worker_rows(name: str, quick: bool) -> list[Row]:
    quiet_peers()
    if name == PEER_KAIZEN:
        return peer_kaizen_rows(quick)
    missing = try_import("kaizen.agents" if name == KAIZEN else name)
    if missing:
        return [skipped("*", name, missing)]
    return kaizen_rows(quick) if name == KAIZEN else dspy_rows(quick)


def build_report(quick: bool) -> Report:
    report = Report("bench_agent: import, per-call overhead, concurrency", "µs/call", [], TARGETS)
    print("timing imports ...", flush=True)
    report.extend(import_rows(quick))
    workers = (KAIZEN, "dspy", (PEER_KAIZEN, True))
    collect_workers(report, __file__, workers, quick, CASES[1:])
    sort_rows(report, CASES, IMPL_ORDER)
    return report


if __name__ == "__main__":
    bench_main(__doc__, worker_rows, build_report)
