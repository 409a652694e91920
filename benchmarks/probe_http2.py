"""Probe: the fast path over HTTP/1.1 and HTTP/2, with the server in its own process.

`bench_agent.py` runs its servers in the benchmark's process, so their CPU (and their share of
the GIL) is in the figures; `H2FaultServer` frames HTTP/2 in pure Python and costs more than the
HTTP/1.1 `FaultServer`. Here the server runs in a child process, and the client's own CPU is
measured (thread CPU time of the event loop's thread). For each of http:// and https:// (TLS
with the loopback CA) and each HTTP version: 100 concurrent `acomplete` calls, first on a fresh
event loop (new connections: over TLS, 100 handshakes on HTTP/1.1 against one on HTTP/2), then
warm (median of 9).

    .venv/bin/python benchmarks/probe_http2.py [LATENCY_SECONDS]
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time

CALLS = 100
MESSAGES = [{"role": "user", "content": "What is machine learning?"}]
SERVER = """
import sys, time
from kaizen.testing.fault_server import FaultServer
from kaizen.testing.h2_server import H2FaultServer
from kaizen.testing.tls import loopback_certificate
kind, latency, tls = sys.argv[1], float(sys.argv[2]), sys.argv[3] == "tls"
server = (H2FaultServer if kind == "2" else FaultServer)(latency=latency, tls=tls).start()
print(server.base_url, loopback_certificate().ca_file, flush=True)
time.sleep(600)
"""


def measure(version: str, latency: float, tls: bool) -> str:
    from kaizen.llm import acomplete

    argv = [sys.executable, "-c", SERVER, version, str(latency), "tls" if tls else "plain"]
    server = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        base_url, ca_file = server.stdout.readline().split()
        os.environ["SSL_CERT_FILE"] = ca_file

        async def hundred() -> None:
            await asyncio.gather(
                *(
                    acomplete(
                        MESSAGES, model="openai/bench", api_base=base_url, api_key="k",
                        http_version=version, timeout=10,
                    )
                    for _ in range(CALLS)
                )
            )  # fmt: skip

        async def one() -> None:
            await acomplete(
                MESSAGES, model="openai/bench", api_base=base_url, api_key="k",
                http_version=version,
            )  # fmt: skip

        asyncio.run(one())  # imports, price lookup, ALPN answer: out of the figures

        async def timed() -> tuple[float, float, float]:
            start = time.perf_counter()
            await hundred()
            cold = time.perf_counter() - start
            walls, cpus = [], []
            for _ in range(9):
                start, cpu = time.perf_counter(), time.thread_time()
                await hundred()
                walls.append(time.perf_counter() - start)
                cpus.append(time.thread_time() - cpu)
            return cold, statistics.median(walls), statistics.median(cpus)

        cold, warm, cpu = asyncio.run(timed())
    finally:
        server.kill()
        server.wait()
    scheme = "https" if tls else "http"
    return (
        f"| {scheme} | HTTP/{'2' if version == '2' else '1.1'} | {cold * 1000:.0f} ms "
        f"| {warm * 1000:.1f} ms | {cpu * 1000:.1f} ms |"
    )


def main() -> None:
    latency = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0
    load = os.getloadavg()[0]
    print(f"{CALLS} concurrent calls, {latency * 1000:.0f} ms server, load {load:.1f}")
    print("| endpoint | version | first burst (new connections) | warm, median | client CPU |")
    print("|---|---|---:|---:|---:|")
    for tls in (False, True):
        for version in ("1.1", "2"):
            print(measure(version, latency, tls), flush=True)
    print(f"load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
