"""Load times of the run browser's pages, measured by the browser itself.

A store is filled with a real checkpointed run of a 200-node workflow (20 layers of 10 function
nodes, grouped), a second run of it (for the comparison), and 100,000 synthetic finished runs
(each with a small record, so the list's tokens and cost are read). `kaizen ui` serves the store
in its own process on loopback; Debian's chromium (Playwright) loads each page and reports its
Navigation Timing: the time to the last byte of the HTML (``responseEnd``) and to the ``load``
event (styles, script and the inline SVG graph and timeline laid out and painted).

Cases: the 200-node run page the first time (the server lays the graph out with Graphviz) and
again (the layout is cached per workflow shape); a node's panel; the runs list's first page and
a filtered page 1,000 runs deep (at 100,000 runs); the comparison of the two 200-node runs.
Target (DESIGN.md, issue 23): the 200-node run page loads in under 1 s on loopback.

    .venv/bin/python benchmarks/load_ui.py            # 7 loads per case
    .venv/bin/python benchmarks/load_ui.py --quick    # 3 loads per case, 20,000 runs
    .venv/bin/python benchmarks/load_ui.py --markdown out/bench/load_ui.md

Needs the dev extra (FastAPI, uvicorn, Playwright) and Debian's chromium (`make setup`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 1.0


def step(x: int) -> int:
    return x + 1


def two_hundred_nodes() -> Any:
    from kaizen import WorkflowBuilder

    builder = WorkflowBuilder("wide-200")
    for i in range(200):
        layer, j = divmod(i, 10)
        node_id = f"layer{layer:02d}/n{j}"
        builder.add_node(step, node_id, {} if layer else {"x": j})
        if layer:
            builder.add_connection(f"layer{layer - 1:02d}/n{j}", "result", node_id, "x")
    return builder.build()


def fill(path: Path, synthetic: int) -> tuple[str, str]:
    """The two real runs' ids; `synthetic` more finished runs written straight to the store."""
    from kaizen.runtime.local import LocalRuntime
    from kaizen.store.db import Store

    runtime = LocalRuntime(checkpoint=path)
    workflow = two_hundred_nodes()
    _, first = runtime.execute(workflow)
    _, second = runtime.execute(workflow)
    runtime.close()
    record = json.dumps({"usage": {"prompt_tokens": 120, "completion_tokens": 30, "cost": 0.0}})
    store = Store.open(path)
    start = time.time() - synthetic
    with store.write() as db:
        db.executemany(
            "INSERT INTO runs (run_id, workflow, fingerprint, nodes, parameters, status, started,"
            " finished, record) VALUES (?, ?, 'f', '{}', '{}', ?, ?, ?, ?)",
            (
                (f"synthetic{i:07d}", ("triage", "report", "debate")[i % 3],
                 "failed" if i % 17 == 0 else "completed", start + i, start + i + 0.5, record)
                for i in range(synthetic)
            ),
        )  # fmt: skip
    return first, second


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(store: Path, port: int) -> subprocess.Popen[bytes]:
    kaizen = Path(sys.executable).with_name("kaizen")
    command = [str(kaizen), "ui", "--store", str(store), "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("kaizen ui did not start: " + (server.stderr.read() or b"").decode()[-500:])


def timing(page: Any, url: str) -> tuple[float, float]:
    """(seconds to the HTML's last byte, seconds to the load event) of one navigation."""
    page.goto(url, wait_until="load")
    entry = page.evaluate("JSON.stringify(performance.getEntriesByType('navigation')[0].toJSON())")
    nav = json.loads(entry)
    return nav["responseEnd"] / 1000, nav["loadEventEnd"] / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 loads per case, 20,000 runs")
    parser.add_argument("--markdown", default=None, help="also write the table here")
    args = parser.parse_args()
    loads = 3 if args.quick or os.environ.get("QUICK") else 7
    synthetic = 20_000 if args.quick or os.environ.get("QUICK") else 100_000

    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    workdir = Path(tempfile.mkdtemp(prefix="kaizen-load-ui-"))
    store = workdir / "kaizen.db"
    began = time.perf_counter()
    first, second = fill(store, synthetic)
    print(f"store: 2 runs of a 200-node workflow + {synthetic:,} runs "
          f"({time.perf_counter() - began:.1f} s to fill)", flush=True)  # fmt: skip
    port = free_port()
    server = serve(store, port)
    base = f"http://127.0.0.1:{port}"
    cases: list[tuple[str, list[tuple[float, float]]]] = []
    try:
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            run_url = f"{base}/ui/runs/{first}"
            cases.append(("run page, 200 nodes, first view (graph laid out)",
                          [timing(page, run_url)]))  # fmt: skip
            cases.append(("run page, 200 nodes", [timing(page, run_url) for _ in range(loads)]))
            node_url = f"{run_url}?node=layer10/n5"
            cases.append(
                ("node panel, 200-node run", [timing(page, node_url) for _ in range(loads)])
            )
            cases.append((f"runs list, first page ({synthetic:,} runs)",
                          [timing(page, f"{base}/ui") for _ in range(loads)]))  # fmt: skip
            deep = f"{base}/ui?status=completed&before={time.time() - 1000!r}:z"
            cases.append(("runs list, completed, 1,000 runs deep",
                          [timing(page, deep) for _ in range(loads)]))  # fmt: skip
            compare = f"{base}/ui/compare?a={first}&b={second}"
            cases.append(("compare two 200-node runs",
                          [timing(page, compare) for _ in range(loads)]))  # fmt: skip
            browser.close()
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)

    lines = [
        "| page | HTML received (median) | loaded (median) | loads | target < 1 s |",
        "|---|---|---|---|---|",
    ]
    for name, samples in cases:
        html = statistics.median(s[0] for s in samples)
        loaded = statistics.median(s[1] for s in samples)
        verdict = "PASS" if loaded < TARGET_SECONDS else "MISS"
        checked = verdict if "200 nodes" in name else ""
        lines.append(f"| {name} | {html * 1000:.0f} ms | {loaded * 1000:.0f} ms | "
                     f"{len(samples)} | {checked} |")  # fmt: skip
    table = "\n".join(lines)
    print(table)
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(table + "\n")


if __name__ == "__main__":
    main()
