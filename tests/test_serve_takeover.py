"""A served run outlives its server: two `kaizen serve` processes on one store, 50 runs in
flight, one process killed with SIGKILL. Every run completes exactly once, no node whose
checkpoint was committed runs again, and an event stream resumed on the other server with
`Last-Event-ID` sees no gap and no repeated id. On SQLite the two servers share the file; on
Postgres they share nothing but the database (each its own working directory and KAIZEN_HOME),
as two hosts would. A cancel asked of either server reaches the one running the run. Real
processes, a real store, nothing mocked."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from kaizen.store import Store
from kaizen.store.db import is_store_url
from tests.test_serve import free_port, parse_sse

pytestmark = pytest.mark.slow

FLOW = textwrap.dedent(
    """
    import os, time
    from kaizen import WorkflowBuilder
    from kaizen.runtime.context import current_node_context

    def _ran(name, watched):
        line = f"{current_node_context().run_id} {name}\\n".encode()
        fd = os.open(os.environ["NODE_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
        # the run a client follows (x = 0) is slow, so that it is still going when the server
        # holding it is killed, however late the client's stream connects
        time.sleep(1.0 if watched else 0.15)

    def first(x: int) -> int:
        _ran("first", x == 0); return x + 1

    def second(value: int) -> int:
        _ran("second", value == 1); return value * 10

    def third(value: int) -> int:
        _ran("third", value == 10); return value - 3

    wf = WorkflowBuilder("takeover")
    wf.add_node("FunctionNode", "first", {"function": first})
    wf.add_node("FunctionNode", "second", {"function": second})
    wf.add_node("FunctionNode", "third", {"function": third})
    wf.add_connection("first", "result", "second", "value")
    wf.add_connection("second", "result", "third", "value")
    workflow = wf.build()
    """
)

RUNS = 50


def _server(folder: Path, store: str, port: int) -> subprocess.Popen[str]:
    """A `kaizen serve` process of its own folder: its working directory, KAIZEN_HOME, copy of
    the flow and log of the nodes it ran."""
    folder.mkdir(exist_ok=True)
    (folder / "flow.py").write_text(FLOW)
    env = {**os.environ, "NODE_LOG": str(folder / "nodes.log"), "KAIZEN_SERVE_KEYS": "",
           "KAIZEN_HOME": str(folder / "home")}  # fmt: skip
    env.pop("KAIZEN_STORE_URL", None)
    command = [
        sys.executable, "-m", "kaizen", "serve", "flow:workflow",
        "--port", str(port), "--store", store, "--lease-interval", "0.2",
        "--lease-expiry", "1.5",
    ]  # fmt: skip
    return subprocess.Popen(command, env=env, cwd=folder, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip


def _healthy(url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0]
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} never answered")


def _committed(store: Store) -> set[tuple[str, str]]:
    return {(r[0], r[1]) for r in store.read("SELECT run_id, node_id FROM checkpoints")}


def test_runs_of_a_killed_server_are_finished_by_the_other_exactly_once(
    store_location: str, tmp_path: Path
) -> None:
    if not is_store_url(store_location):
        Store.open(store_location)  # the file exists before both servers open it
    store = Store(store_location)  # the test's own connections, read as a third process
    ports = free_port(), free_port()
    folders = tmp_path / "host-a", tmp_path / "host-b"
    killed, survivor = (
        _server(folder, store_location, port) for folder, port in zip(folders, ports, strict=True)
    )
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        for url, process in zip(urls, (killed, survivor), strict=True):
            _healthy(url, process)
        with httpx.Client(base_url=urls[0], timeout=30) as first:
            run_ids = [first.post("/runs", json={"x": i}).json()["run_id"] for i in range(RUNS)]
        watched = run_ids[0]
        seen: list[dict[str, Any]] = []

        def follow() -> None:  # a client streaming one run from the server about to die
            try:
                with httpx.stream("GET", f"{urls[0]}/runs/{watched}/events", timeout=30) as r:
                    for event in _events(r.iter_lines()):
                        seen.append(event)
            except httpx.HTTPError:
                pass  # the server died under it

        reader = threading.Thread(target=follow)
        reader.start()
        deadline = time.monotonic() + 60
        # mid-run: some nodes of many runs done, and the client has seen some events
        while len(_committed(store)) < RUNS // 2 or len(seen) < 3:
            assert time.monotonic() < deadline, "the runs never got going"
            time.sleep(0.02)
        assert seen[-1]["event"] != "done", "the followed run ended before the kill"
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        done_before_kill = _committed(store)
        reader.join(timeout=30)

        with httpx.Client(base_url=urls[1], timeout=30) as second:
            states = {run_id: _finished(second, run_id) for run_id in run_ids}
            last = int(seen[-1]["id"]) if seen else 0
            with second.stream(
                "GET", f"/runs/{watched}/events", headers={"Last-Event-ID": str(last)}
            ) as response:
                rest = list(_events(response.iter_lines()))
    finally:
        for process in (killed, survivor):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)

    assert {s["status"] for s in states.values()} == {"completed"}
    stored = dict(store.read("SELECT run_id, status FROM served_runs"))  # as a third host sees
    assert {stored[run_id] for run_id in run_ids} == {"completed"}
    survivor_log = survivor.stdout.read() if survivor.stdout else ""
    assert "could not be stored" not in survivor_log, survivor_log
    for i, run_id in enumerate(run_ids):
        assert states[run_id]["results"]["third"] == {"result": (i + 1) * 10 - 3}
    executions = Counter(
        tuple(line.split())
        for folder in folders
        if (folder / "nodes.log").exists()
        for line in (folder / "nodes.log").read_text().splitlines()
    )
    again = sorted(key for key in done_before_kill if executions[key] != 1)
    assert not again, f"nodes committed before the kill ran again: {again[:5]}"
    assert all(executions[(r, n)] >= 1 for r in run_ids for n in ("first", "second", "third"))
    dones = Counter(r[0] for r in store.read("SELECT run_id FROM served_events WHERE kind"
                                             " = 'done'"))  # fmt: skip
    for run_id in run_ids:
        ids = [
            r[0]
            for r in store.read(
                "SELECT seq FROM served_events WHERE run_id = ? ORDER BY seq", (run_id,)
            )
        ]
        assert ids == list(range(1, len(ids) + 1)), f"run {run_id}: ids {ids}"
    assert all(dones[run_id] == 1 for run_id in run_ids)  # each run ended exactly once
    ids = [int(e["id"]) for e in [*seen, *rest]]
    assert ids == list(range(1, len(ids) + 1)), f"the client saw ids {ids}"
    assert len(seen) >= 3 and rest and rest[-1]["event"] == "done"
    assert json.loads(json.dumps(rest[-1]["data"]))["status"] == "completed"


def _events(lines: Any) -> Any:
    """Events as they arrive (parse_sse, one event at a time)."""
    block: list[str] = []
    for line in lines:
        if line:
            block.append(line)
            continue
        events, _ = parse_sse(iter([*block, ""]))
        block = []
        yield from events


def _finished(client: httpx.Client, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 90
    while True:
        state = client.get(f"/runs/{run_id}").json()
        if state["status"] in ("completed", "failed", "cancelled"):
            return dict(state)
        assert time.monotonic() < deadline, f"run {run_id} never finished: {state['status']}"
        time.sleep(0.05)


WAITING_FLOW = textwrap.dedent(
    """
    import asyncio, os
    from pathlib import Path
    from kaizen import WorkflowBuilder

    def first(x: int) -> int:
        return x + 1

    async def hold(value: int) -> int:
        Path(os.environ["NODE_LOG"]).write_text("holding")
        await asyncio.sleep(120)  # until cancelled
        return value

    wf = WorkflowBuilder("held")
    wf.add_node("FunctionNode", "first", {"function": first})
    wf.add_node("FunctionNode", "hold", {"function": hold})
    wf.add_connection("first", "result", "hold", "value")
    workflow = wf.build()
    """
)


def test_any_server_streams_and_cancels_a_run_another_server_holds(
    store_location: str, tmp_path: Path
) -> None:
    """Server B follows A's run from the store (on Postgres, woken by LISTEN/NOTIFY) and a
    cancel asked of B reaches A, which holds the run's lease."""
    if not is_store_url(store_location):
        Store.open(store_location)
    folders = tmp_path / "host-a", tmp_path / "host-b"
    ports = free_port(), free_port()
    servers = [
        _server(folder, store_location, port) for folder, port in zip(folders, ports, strict=True)
    ]
    for folder in folders:
        (folder / "flow.py").write_text(WAITING_FLOW)
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        for url, process in zip(urls, servers, strict=True):
            _healthy(url, process)
        with (
            httpx.Client(base_url=urls[0], timeout=30) as a,
            httpx.Client(base_url=urls[1], timeout=30) as b,
        ):
            run_id = a.post("/runs", json={"x": 1}).json()["run_id"]
            deadline = time.monotonic() + 60
            while not (folders[0] / "nodes.log").exists():
                assert time.monotonic() < deadline, "the held node never started on host A"
                time.sleep(0.02)
            streamed: list[dict[str, Any]] = []

            def follow() -> None:
                with httpx.stream("GET", f"{urls[1]}/runs/{run_id}/events", timeout=60) as r:
                    streamed.extend(_events(r.iter_lines()))

            reader = threading.Thread(target=follow)
            reader.start()
            assert b.post(f"/runs/{run_id}/cancel").status_code == 202
            state = _finished(b, run_id)
            reader.join(timeout=60)
            assert a.get(f"/runs/{run_id}").json()["status"] == "cancelled"
    finally:
        for process in servers:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)
    assert state["status"] == "cancelled"
    assert Store(store_location).read(
        "SELECT status FROM served_runs WHERE run_id = ?", (run_id,)
    ) == [("cancelled",)]
    for process in servers:
        output = process.stdout.read() if process.stdout else ""
        assert "could not be stored" not in output, output
    assert not (folders[1] / "nodes.log").exists()  # host B never ran a node of it
    ids = [int(event["id"]) for event in streamed]
    assert ids == list(range(1, len(ids) + 1)) and streamed[-1]["event"] == "done"
    assert {"run_started", "node_finished"} <= {event["event"] for event in streamed}
