"""Load test of `kaizen serve`: N concurrent POST /runs of a served workflow on loopback.

The served workflow is an agent (question -> answer, confidence) whose ScriptedModel answers
after 200 ms, feeding a function node. The server runs in its own process (uvicorn, one worker,
access log off, a fresh SQLite store); this process posts N runs at once with httpx, follows
each run's Server-Sent Events until its ``done`` event, then reads every run back with GET.

Three rounds: without faults (every run must complete); with the model failing on one question
in ten (each run must end completed or failed, a failed one with the injected reason; none
lost); and without faults with ``stream_content=False`` (agents' replies not streamed as
``content`` events: plain model calls, which cost litellm about a quarter of the CPU); and both
again with the model behind HTTP (the loopback FaultServer, 200 ms, in the server process)
reached through Kaizen's pooled OpenAI-compatible fast path instead of litellm.

With ``--stores``, a second table compares the stores under the first round's load: one server
on SQLite, one server on Postgres, and two servers on one Postgres (a throwaway Debian
PostgreSQL on loopback, `kaizen.testing.postgres`; runs posted to the two servers in turn, each
followed and read back on the server it was posted to).

Figures: end-to-end latency per run (POST sent -> ``done`` received) p50/p99, the POST's own
response time p50/p99, the run's duration on the server (its RunRecord) p50/p99, and throughput
(runs / wall time from the first POST to the last ``done``).

    .venv/bin/python benchmarks/load_serve.py            # 1,000 runs per round
    QUICK=1 .venv/bin/python benchmarks/load_serve.py    # 200 runs per round (or --quick)
    .venv/bin/python benchmarks/load_serve.py --runs 500
    .venv/bin/python benchmarks/load_serve.py --stores   # SQLite vs Postgres, 1 and 2 servers

Bounded: loopback only, one server process, N runs per round, 300 s timeout per round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

MODEL_LATENCY = 0.2  # seconds per scripted model reply
ROUND_TIMEOUT = 300.0
ROUNDS = (  # (name, one question in how many faults (0: none), content streamed, HTTP model)
    ("no faults", 0, True, False),
    ("10% model faults", 10, True, False),
    ("no faults, stream_content=False", 0, False, False),
    ("HTTP model (fast path), content streamed", 0, True, True),
    ("HTTP model (fast path), stream_content=False", 0, False, True),
)


# -- the server side ------------------------------------------------------------------------------


def build_workflow(fault_every: int, http: bool = False) -> Any:
    """The served workflow; with `fault_every` > 0, one question in that many faults. `http`:
    the model is the loopback FaultServer (an OpenAI-compatible HTTP server, started here),
    reached through Kaizen's pooled fast path, instead of a ScriptedModel."""
    import kaizen
    from kaizen import WorkflowBuilder
    from kaizen.testing import ScriptedModel
    from kaizen.testing.fault_server import FaultServer

    def reply(messages: list[dict[str, Any]]) -> Any:
        # the same question always faults (retries too): its run must end failed, with why
        question = str(messages[-1].get("content", ""))
        if fault_every and zlib.crc32(question.encode()) % fault_every == 0:
            return RuntimeError("injected model fault")
        return {"answer": "ok", "confidence": 1.0}

    config: dict[str, Any]
    if http:
        server = FaultServer(latency=MODEL_LATENCY, reply={"answer": "ok", "confidence": 1.0})
        server.start()  # lives as long as this server process
        config = {"model": "openai/load", "api_base": server.base_url, "api_key": "load"}
    else:
        config = {"model": ScriptedModel(reply, latency=MODEL_LATENCY)}
    agent = kaizen.create_agent(
        "qa", signature="question -> answer, confidence: float", config=config
    )

    def shout(answer: str) -> str:
        return answer.upper()

    builder = WorkflowBuilder("load")
    builder.add_agent(agent, "qa")
    builder.add_node("FunctionNode", "shout", {"function": shout})
    builder.add_connection("qa", "answer", "shout", "answer")
    return builder.build()


def serve(
    port: int, store: str, fault_every: int, stream_content: bool = True, http: bool = False
) -> None:
    import uvicorn

    from kaizen.serve.app import create_app

    workflow = build_workflow(fault_every, http)
    app = create_app(workflow, store=store, keys=[], max_active=2000,
                     stream_content=stream_content)  # fmt: skip
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                backlog=4096, timeout_keep_alive=120)  # fmt: skip


# -- the client side ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


async def one_run(session: Any, urls: list[str], i: int) -> dict[str, Any]:
    url = urls[i % len(urls)]
    sent = time.perf_counter()
    async with session.post(f"{url}/runs", json={"question": f"question {i}"}) as response:
        body = await response.json()
        if response.status != 202:
            return {"i": i, "error": f"POST {response.status}: {str(body)[:200]}"}
    posted = time.perf_counter()
    run_id = body["run_id"]
    done: dict[str, Any] | None = None
    async with session.get(f"{url}/runs/{run_id}/events") as stream:
        kind = ""
        async for raw in stream.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind == "done":
                done = json.loads(line[6:])
                break
    ended = time.perf_counter()
    return {"i": i, "run_id": run_id, "sent": sent, "post": posted - sent, "ended": ended,
            "latency": ended - sent, "done": done, "url": url}  # fmt: skip


async def load_round(urls: list[str], runs: int) -> dict[str, Any]:
    """Post `runs` runs at once and follow each to its end (aiohttp: httpx's connection pool
    costs more CPU than the server under test at these counts)."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=ROUND_TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        outcomes = await asyncio.gather(*(one_run(session, urls, i) for i in range(runs)))
        wall = time.perf_counter() - started

        async def state(url: str, run_id: str) -> Any:  # every run read back: none lost
            async with session.get(f"{url}/runs/{run_id}") as response:
                return await response.json()

        records = await asyncio.gather(
            *(state(o["url"], o["run_id"]) for o in outcomes if "run_id" in o)
        )
    return {"outcomes": outcomes, "records": records, "wall": wall}


def summarise(name: str, runs: int, result: dict[str, Any], fault_every: int) -> dict[str, Any]:
    outcomes, records = result["outcomes"], result["records"]
    errors = [o["error"] for o in outcomes if "error" in o]
    statuses: dict[str, int] = {}
    for record in records:
        statuses[record["status"]] = statuses.get(record["status"], 0) + 1
    reasons_ok = all(
        r["status"] == "completed" or (r["status"] == "failed" and "injected" in (r["error"] or ""))
        for r in records
    )
    latencies = [o["latency"] for o in outcomes if "latency" in o]
    posts = [o["post"] for o in outcomes if "post" in o]
    durations = [
        r["record"]["finished"] - r["record"]["started"]
        for r in records
        if r.get("record") and r["record"].get("finished")
    ]
    first = min(o["sent"] for o in outcomes if "sent" in o)
    last = max(o["ended"] for o in outcomes if "ended" in o)
    lost = runs - sum(statuses.get(s, 0) for s in ("completed", "failed"))
    return {
        "round": name,
        "runs": runs,
        "statuses": statuses,
        "lost": lost,
        "post_errors": len(errors),
        "reasons_ok": reasons_ok,
        "latency_p50": percentile(latencies, 50),
        "latency_p99": percentile(latencies, 99),
        "post_p50": percentile(posts, 50),
        "post_p99": percentile(posts, 99),
        "server_p50": percentile(durations, 50) if durations else None,
        "server_p99": percentile(durations, 99) if durations else None,
        "throughput": runs / (last - first),
        "wall": result["wall"],
        "expect_all_completed": fault_every == 0,
    }


def run_round(
    name: str, runs: int, fault_every: int, stream: bool, http: bool, folder: Path,
    store: str | None = None, servers: int = 1,
) -> dict[str, Any]:  # fmt: skip
    """One round: `servers` server processes on `store` (default: a new SQLite file)."""
    import httpx

    store = store or str(folder / f"{name}.db")
    started: list[tuple[subprocess.Popen[bytes], int]] = []
    try:
        for _ in range(servers):
            port = free_port()
            code = (
                f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
                f"import load_serve; "
                f"load_serve.serve({port}, {store!r}, {fault_every}, {stream}, {http})"
            )
            started.append((subprocess.Popen([sys.executable, "-c", code]), port))
        for server, port in started:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the server did not start")
                time.sleep(0.1)
        urls = [f"http://127.0.0.1:{port}" for _, port in started]
        result = asyncio.run(load_round(urls, runs))
    finally:
        for server, _ in started:
            server.terminate()
        for server, _ in started:
            server.wait(30)
    return summarise(name, runs, result, fault_every)


def store_rounds(runs: int, folder: Path) -> list[dict[str, Any]]:
    """The first round's load on one SQLite server, one Postgres server, two Postgres servers."""
    from kaizen.testing.postgres import TemporaryPostgres

    rows = [run_round("stores0", runs, 0, True, False, folder)]
    rows[-1]["round"] = "1 server, SQLite"
    with TemporaryPostgres() as postgres:
        for servers in (1, 2):
            rows.append(run_round(f"stores{servers}", runs, 0, True, False, folder,
                                  store=postgres.database(), servers=servers))  # fmt: skip
            rows[-1]["round"] = f"{servers} server{'s' if servers > 1 else ''}, one Postgres"
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 runs per round")
    parser.add_argument("--runs", type=int, default=None, help="runs per round (default 1000)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument(
        "--stores", action="store_true", help="SQLite vs Postgres, one and two servers"
    )
    args = parser.parse_args()
    quick = args.quick or os.environ.get("QUICK", "") not in ("", "0")
    runs = args.runs or (200 if quick else 1000)
    load = os.getloadavg()
    print(f"# kaizen serve load test: {runs} concurrent runs per round, model {MODEL_LATENCY}s "
          f"(scripted), loopback, 1 server process")  # fmt: skip
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S')}  {platform.machine()} {os.cpu_count()} cores  "
          f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        if args.stores:
            rows = store_rounds(runs, Path(folder))
        for number, (name, fault_every, stream, http) in enumerate(() if args.stores else ROUNDS):
            folder_path = Path(folder)
            rows.append(run_round(f"round{number}", runs, fault_every, stream, http, folder_path))
            rows[-1]["round"] = name
    header = ("| round | runs | completed | failed | lost | latency p50 / p99 (s) | "
              "POST p50 / p99 (ms) | server run p50 / p99 (s) | throughput (runs/s) |")  # fmt: skip
    print(header)
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        statuses = row["statuses"]
        server = f"{row['server_p50']:.3f} / {row['server_p99']:.3f}" if row["server_p50"] else "-"
        print(
            f"| {row['round']} | {row['runs']} | {statuses.get('completed', 0)} | "
            f"{statuses.get('failed', 0)} | {row['lost']} | "
            f"{row['latency_p50']:.3f} / {row['latency_p99']:.3f} | "
            f"{row['post_p50'] * 1000:.1f} / {row['post_p99'] * 1000:.1f} | {server} | "
            f"{row['throughput']:.0f} |"
        )
    problems = []
    for row in rows:
        if row["lost"] or row["post_errors"]:
            lost, failed = row["lost"], row["post_errors"]
            problems.append(f"{row['round']}: {lost} lost, {failed} POSTs failed")
        if not row["reasons_ok"]:
            problems.append(f"{row['round']}: a failed run without the injected reason")
        if row["expect_all_completed"] and row["statuses"].get("completed", 0) != row["runs"]:
            problems.append(f"{row['round']}: not every run completed ({row['statuses']})")
    print("\nverdict: " + ("every run ended as expected, none lost" if not problems
                           else "; ".join(problems)))  # fmt: skip
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
