"""A served run that waits for a person: `event: interrupt` on its event stream, status
``waiting``, and `POST /runs/{id}/resume` (on any worker of the store), against a real uvicorn
server on loopback; the responses are checked against the OpenAPI document by openapi-core."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

import kaizen
from kaizen import WorkflowBuilder
from kaizen.serve.app import create_app
from kaizen.serve.server import BackgroundServer
from tests.test_serve import Exchanges, read_events


def ask(x: int) -> int:
    return x + kaizen.interrupt({"question": "how many more?"}, schema={"type": "integer"})


def double(value: int) -> int:
    return value * 2


def pausing_workflow() -> Any:
    wf = WorkflowBuilder("pausing")
    wf.add_node("FunctionNode", "ask", {"function": ask})
    wf.add_node("FunctionNode", "double", {"function": double})
    wf.add_connection("ask", "result", "double", "value")
    return wf.build()


def _until(client: httpx.Client, run_id: str, statuses: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        state = client.get(f"/runs/{run_id}").json()
        if state["status"] in statuses:
            return state
        assert time.monotonic() < deadline, f"run {run_id} stayed {state['status']}"
        time.sleep(0.02)


def test_a_served_run_waits_streams_its_interrupt_and_resumes_on_another_worker(
    store_location: str,
    tmp_path: Path,
) -> None:
    store = store_location
    exchanges = Exchanges()
    first = create_app(pausing_workflow(), store=store, keys=[])
    second = create_app(pausing_workflow(), store=store, keys=[], recover=False)
    with (
        BackgroundServer(first) as one,
        BackgroundServer(second) as two,
        httpx.Client(base_url=one.url, timeout=30, event_hooks={"response": [exchanges]}) as a,
        httpx.Client(base_url=two.url, timeout=30, event_hooks={"response": [exchanges]}) as b,
    ):
        run_id = a.post("/runs", json={"x": 1}).json()["run_id"]
        waiting = _until(a, run_id, {"waiting"})
        assert waiting["results"] is None
        events, _ = read_events(a, run_id)  # the stream ends while the run waits
        (interrupt,) = [e for e in events if e["event"] == "interrupt"]
        (asked,) = interrupt["data"]["interrupts"]
        assert asked["id"] == "ask/0" and asked["payload"] == {"question": "how many more?"}
        last_id = int(events[-1]["id"])

        bad = b.post(f"/runs/{run_id}/resume", json={"answers": {"ask/0": "lots"}})
        assert bad.status_code == 422 and "integer" in bad.text
        unknown = b.post(f"/runs/{run_id}/resume", json={"answers": {"ask/9": 1}})
        assert (
            unknown.status_code == 422 and unknown.json()["fields"][0]["field"] == "answers.ask/9"
        )
        assert b.post(f"/runs/{run_id}/resume", json={"answer": {}}).status_code == 422
        assert b.post("/runs/nope/resume", json={"answers": {}}).status_code == 404
        assert b.get(f"/runs/{run_id}").json()["status"] == "waiting"  # nothing changed

        taken = b.post(f"/runs/{run_id}/resume", json={"answers": {"ask/0": 4}, "by": "ann"})
        assert taken.status_code == 202, taken.text
        done = _until(a, run_id, {"completed", "failed", "cancelled"})
        assert done["status"] == "completed"
        assert done["results"] == {"ask": {"result": 5}, "double": {"result": 10}}
        again = a.post(f"/runs/{run_id}/resume", json={"answers": {"ask/0": 4}})
        assert again.status_code == 409  # a double resume

        rest, _ = read_events(a, run_id, headers={"Last-Event-ID": str(last_id)})
        ids = [int(e["id"]) for e in rest]
        assert ids == list(range(last_id + 1, last_id + 1 + len(ids)))  # no gap, no repeat
        kinds = [e["event"] for e in rest]
        assert "node_resumed" in kinds and kinds[-1] == "done"
        document = a.get("/openapi.json").json()
    paths = document["paths"]
    assert "/runs/{run_id}/resume" in paths
    assert "waiting" in document["components"]["schemas"]["Run"]["properties"]["status"]["enum"]
    pytest.importorskip("openapi_core")
    problems = exchanges.problems(document)
    assert not problems, "\n".join(problems)


def test_a_waiting_served_run_can_be_cancelled(store_location: str, tmp_path: Path) -> None:
    app = create_app(pausing_workflow(), store=store_location, keys=[])
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        run_id = client.post("/runs", json={"x": 1}).json()["run_id"]
        _until(client, run_id, {"waiting"})
        cancelled = client.post(f"/runs/{run_id}/cancel")
        assert cancelled.status_code == 202, cancelled.text
        state = _until(client, run_id, {"cancelled"})
        assert state["status"] == "cancelled"
        late = client.post(f"/runs/{run_id}/resume", json={"answers": {"ask/0": 1}})
        assert late.status_code == 409
