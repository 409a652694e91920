"""`kaizen serve` against real servers: uvicorn on loopback (port 0) in a thread, or the command
as a subprocess; httpx as the client; runs in a real SQLite store; models are ScriptedModels.
Nothing is mocked."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
import httpx

import kaizen
from kaizen import WorkflowBuilder
from kaizen.serve.app import create_app
from kaizen.serve.server import BackgroundServer
from kaizen.serve.sse import encode_event, parse_last_event_id
from kaizen.store.db import Store
from kaizen.store.served import ServedRunLog
from kaizen.testing import ScriptedModel

FINISHED = {"completed", "failed", "cancelled"}


# -- what is served --------------------------------------------------------------------------------


def qa_agent(model: ScriptedModel | None = None) -> Any:
    model = model or ScriptedModel(lambda messages: {"answer": "Paris", "confidence": 0.9})
    return kaizen.create_agent(
        "qa", signature="question -> answer, confidence: float", config={"model": model}
    )


def shout(answer: str) -> str:
    return answer.upper()


def qa_workflow(model: ScriptedModel | None = None) -> Any:
    builder = WorkflowBuilder("qa_flow")
    builder.add_agent(qa_agent(model), "qa")
    builder.add_node("FunctionNode", "shout", {"function": shout})
    builder.add_connection("qa", "answer", "shout", "answer")
    return builder.build()


async def wait(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


def explode(text: str) -> str:
    raise RuntimeError(f"cannot handle {text!r}")


def slow_workflow() -> Any:
    builder = WorkflowBuilder("slow")
    builder.add_node("FunctionNode", "wait", {"function": wait})
    return builder.build()


def failing_workflow() -> Any:
    builder = WorkflowBuilder("failing")
    builder.add_node("FunctionNode", "explode", {"function": explode})
    return builder.build()


# -- helpers ---------------------------------------------------------------------------------------


@contextmanager
def serving(target: Any, store: Path, **options: Any) -> Iterator[httpx.Client]:
    options.setdefault("keys", [])
    server_options = options.pop("server", {})
    app = create_app(target, store=store, **options)
    with (
        BackgroundServer(app, **server_options) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        yield client


def finish(client: httpx.Client, run_id: str, headers: dict[str, str] | None = None) -> Any:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = client.get(f"/runs/{run_id}", headers=headers).json()
        if state["status"] in FINISHED:
            return state
        time.sleep(0.02)
    raise AssertionError(f"run {run_id} did not finish: {state}")


def read_events(
    client: httpx.Client, run_id: str, headers: dict[str, str] | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """The SSE events of a run (`id`, `event`, `data` decoded), and the comment lines."""
    events: list[dict[str, Any]] = []
    comments: list[str] = []
    with client.stream("GET", f"/runs/{run_id}/events", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events, comments = parse_sse(response.iter_lines())
    return events, comments


def parse_sse(lines: Iterator[str]) -> tuple[list[dict[str, Any]], list[str]]:
    events: list[dict[str, Any]] = []
    comments: list[str] = []
    current: dict[str, Any] = {}
    for line in lines:
        if line.startswith(":"):
            comments.append(line)
        elif not line:
            if current:
                events.append(current)
            current = {}
        else:
            name, _, value = line.partition(": ")
            current[name] = json.loads(value) if name == "data" else value
    if current:
        events.append(current)
    return events, comments


# -- the endpoints ---------------------------------------------------------------------------------


def test_a_posted_run_answers_with_its_results_record_and_events(tmp_path: Path) -> None:
    with serving(qa_workflow(), tmp_path / "runs.db") as client:
        response = client.post("/runs", json={"question": "Capital of France?"})
        assert response.status_code == 202
        run_id = response.json()["run_id"]
        assert response.headers["location"] == f"/runs/{run_id}"
        state = finish(client, run_id)
        assert state["status"] == "completed" and state["error"] is None
        assert state["results"] == {
            "qa": {"answer": "Paris", "confidence": 0.9},
            "shout": {"result": "PARIS"},
        }
        assert state["parameters"] == {"question": "Capital of France?"}
        record = state["record"]
        assert record["run_id"] == run_id and record["status"] == "completed"
        assert {n: v["status"] for n, v in record["nodes"].items()} == {
            "qa": "completed",
            "shout": "completed",
        }
        events, _ = read_events(client, run_id)
    assert [int(e["id"]) for e in events] == list(range(1, len(events) + 1))
    kinds = [e["event"] for e in events]
    assert kinds[0] == "run_started" and kinds[-2:] == ["run_finished", "done"]
    assert kinds.index("node_finished") < kinds.index("done")
    assert "content" in kinds  # the model's reply, streamed
    assert events[-1]["data"]["results"]["shout"] == {"result": "PARIS"}
    assert all(e["data"]["run_id"] == run_id for e in events)


def test_without_content_streaming_the_other_events_still_come(tmp_path: Path) -> None:
    with serving(qa_workflow(), tmp_path / "runs.db", stream_content=False) as client:
        run_id = client.post("/runs", json={"question": "q"}).json()["run_id"]
        assert finish(client, run_id)["results"]["shout"] == {"result": "PARIS"}
        events, _ = read_events(client, run_id)
    kinds = [e["event"] for e in events]
    assert "content" not in kinds
    assert kinds.count("node_finished") == 2 and kinds[-1] == "done"


@pytest.mark.parametrize("stream_content", [True, False])
def test_an_agents_tool_calls_are_events(tmp_path: Path, stream_content: bool) -> None:
    @kaizen.tool
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    model = ScriptedModel([ScriptedModel.tool_call("add", {"a": 1, "b": 2}), {"answer": "3"}])
    agent = kaizen.create_agent("calc", "question -> answer", config={"model": model}, tools=[add])
    with serving(agent, tmp_path / "runs.db", stream_content=stream_content) as client:
        run_id = client.post("/runs", json={"question": "1 + 2?"}).json()["run_id"]
        assert finish(client, run_id)["results"] == {"answer": "3"}
        events, _ = read_events(client, run_id)
    start = next(e["data"] for e in events if e["event"] == "tool_start")
    complete = next(e["data"] for e in events if e["event"] == "tool_complete")
    assert start["tool"] == "add" and start["arguments"] == {"a": 1, "b": 2}
    assert complete["output"] == "3" and complete["error"] is None
    assert complete["call_id"] == start["call_id"] and start["node_id"] == "calc"


def test_an_agent_is_served_with_its_signature_fields(tmp_path: Path) -> None:
    with serving(qa_agent(), tmp_path / "runs.db") as client:
        run_id = client.post("/runs", json={"question": "Capital?"}).json()["run_id"]
        assert finish(client, run_id)["results"] == {"answer": "Paris", "confidence": 0.9}
        schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert schemas["RunParameters"]["properties"] == {"question": {"type": "string"}}
    assert schemas["RunParameters"]["required"] == ["question"]
    assert schemas["RunResults"]["properties"] == {
        "answer": {"type": "string"},
        "confidence": {"type": "number"},
    }


def test_openapi_schemas_are_the_workflows_open_inputs_and_outputs(tmp_path: Path) -> None:
    def add(a: int, b: int = 2) -> int:
        return a + b

    def label(value: int, prefix: str) -> str:
        return f"{prefix}{value}"

    builder = WorkflowBuilder("math")
    builder.add_node("FunctionNode", "add", {"function": add})
    builder.add_node("FunctionNode", "label", {"function": label})
    builder.add_connection("add", "result", "label", "value")
    with serving(builder.build(), tmp_path / "runs.db") as client:
        document = client.get("/openapi.json").json()
        schemas = document["components"]["schemas"]
        parameters = schemas["RunParameters"]
        assert parameters["properties"] == {
            "a": {"type": "integer"},
            "b": {"type": "integer", "default": 2},
            "prefix": {"type": "string"},
        }
        assert sorted(parameters["required"]) == ["a", "prefix"]
        assert parameters["additionalProperties"] is False
        results = schemas["RunResults"]["properties"]
        assert results == {
            "add": {"type": "object", "properties": {"result": {"type": "integer"}}},
            "label": {"type": "object", "properties": {"result": {"type": "string"}}},
        }
        post = document["paths"]["/runs"]["post"]
        body = post["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": "#/components/schemas/RunParameters"}
        run = schemas["Run"]["properties"]
        assert {"$ref": "#/components/schemas/RunResults"} in run["results"]["anyOf"]
        # and the server does what the schema says
        run_id = client.post("/runs", json={"a": 40, "prefix": "n="}).json()["run_id"]
        assert finish(client, run_id)["results"]["label"] == {"result": "n=42"}


def test_last_event_id_replays_what_came_after(tmp_path: Path) -> None:
    with serving(qa_workflow(), tmp_path / "runs.db") as client:
        run_id = client.post("/runs", json={"question": "q"}).json()["run_id"]
        finish(client, run_id)
        everything, _ = read_events(client, run_id)
        assert len(everything) > 4
        rest, _ = read_events(client, run_id, headers={"Last-Event-ID": "3"})
    assert rest == everything[3:]


def test_an_idle_event_stream_gets_keepalive_comments(tmp_path: Path) -> None:
    with serving(slow_workflow(), tmp_path / "runs.db", keepalive=0.1) as client:
        run_id = client.post("/runs", json={"seconds": 0.6}).json()["run_id"]
        events, comments = read_events(client, run_id)
    assert comments and set(comments) == {": keepalive"}
    assert events[-1]["event"] == "done" and events[-1]["data"]["status"] == "completed"


def test_a_cancelled_run_ends_cancelled(tmp_path: Path) -> None:
    with serving(slow_workflow(), tmp_path / "runs.db") as client:
        run_id = client.post("/runs", json={"seconds": 60}).json()["run_id"]
        deadline = time.monotonic() + 10
        while client.get(f"/runs/{run_id}").json()["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        response = client.post(f"/runs/{run_id}/cancel")
        assert response.status_code == 202 and response.json()["status"] == "cancelling"
        state = finish(client, run_id)
        assert state["status"] == "cancelled" and "cancelled" in state["error"]
        assert state["record"]["nodes"]["wait"]["status"] == "cancelled"
        events, _ = read_events(client, run_id)
        assert events[-1]["data"]["status"] == "cancelled"
        again = client.post(f"/runs/{run_id}/cancel")
        assert again.status_code == 409 and "finished" in again.json()["detail"]
        assert client.post("/runs/nope/cancel").status_code == 404


def test_a_failing_run_fails_with_its_reason_and_the_server_goes_on(tmp_path: Path) -> None:
    with serving(failing_workflow(), tmp_path / "runs.db") as client:
        run_id = client.post("/runs", json={"text": "boom"}).json()["run_id"]
        state = finish(client, run_id)
        assert state["status"] == "failed"
        assert "explode" in state["error"] and "cannot handle 'boom'" in state["error"]
        assert state["record"]["nodes"]["explode"]["status"] == "failed"
        assert client.get("/health").json() == {"status": "ok"}
        second = client.post("/runs", json={"text": "again"}).json()["run_id"]
        assert finish(client, second)["status"] == "failed"


# -- bad requests ----------------------------------------------------------------------------------


def test_bad_requests_get_4xx_naming_the_field(tmp_path: Path) -> None:
    with serving(qa_workflow(), tmp_path / "runs.db", max_body=1024) as client:
        unknown = client.post("/runs", json={"question": "q", "temperature": 2})
        assert unknown.status_code == 422
        assert unknown.json()["fields"] == [
            {"field": "temperature", "message": "is not an input of 'qa_flow' (inputs: question)"}
        ]
        wrong = client.post("/runs", json={"question": 42})
        assert wrong.status_code == 422
        assert wrong.json()["fields"] == [
            {"field": "question", "message": "expects str, got integer"}
        ]
        missing = client.post("/runs", json={})
        assert missing.status_code == 422
        assert missing.json()["fields"] == [{"field": "question", "message": "is required"}]
        not_object = client.post("/runs", json=["question"])
        assert not_object.status_code == 422 and not_object.json()["fields"][0]["field"] == "body"
        not_json = client.post("/runs", content=b"{question", headers={"content-type": "x"})
        assert not_json.status_code == 400 and not_json.json()["fields"][0]["field"] == "body"
        huge = client.post("/runs", json={"question": "x" * 5000})
        assert huge.status_code == 413 and "1024 bytes" in huge.json()["detail"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while reading
            yield b'{"question": "'
            yield b"x" * 4096
            yield b'"}'

        streamed = client.post("/runs", content=chunks())
        assert streamed.status_code == 413
        assert client.get("/runs/unknown").status_code == 404
        assert client.get("/runs/unknown/events").status_code == 404
        run_id = client.post("/runs", json={"question": "still fine?"}).json()["run_id"]
        assert finish(client, run_id)["status"] == "completed"


def test_an_agents_inputs_are_checked_by_its_signature(tmp_path: Path) -> None:
    with serving(qa_agent(), tmp_path / "runs.db") as client:
        response = client.post("/runs", json={"question": "q", "extra": 1})
        assert response.status_code == 422
        assert [f["field"] for f in response.json()["fields"]] == ["extra"]


# -- auth ------------------------------------------------------------------------------------------

KEY = "sk-serve-0123456789abcdef"


def test_without_a_valid_key_nothing_is_readable_and_the_key_is_never_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = {"Authorization": f"Bearer {KEY}"}
    caplog.set_level(logging.INFO)
    server = {"log_level": "info", "access_log": True}
    with serving(qa_workflow(), tmp_path / "runs.db", keys=[KEY, "other"], server=server) as c:
        run_id = c.post("/runs", json={"question": "q"}, headers=good).json()["run_id"]
        assert finish(c, run_id, good)["status"] == "completed"
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": KEY[:-1]}):
            assert c.post("/runs", json={"question": "q"}, headers=headers).status_code == 401
            assert c.get(f"/runs/{run_id}", headers=headers).status_code == 401
            assert c.get(f"/runs/{run_id}/events", headers=headers).status_code == 401
            assert c.post(f"/runs/{run_id}/cancel", headers=headers).status_code == 401
            denied = c.get("/runs/unknown", headers=headers)
            assert denied.status_code == 401 and KEY not in denied.text
            assert denied.headers["www-authenticate"] == "Bearer"
        assert c.get(f"/runs/{run_id}", headers={"X-API-Key": KEY}).status_code == 200
        events, _ = read_events(c, run_id, headers=good)
        assert events[-1]["event"] == "done"
        document = c.get("/openapi.json").json()  # public: schemas, no runs
        assert "bearer" in document["components"]["securitySchemes"]
    access = [r for r in caplog.records if r.name == "uvicorn.access"]
    assert len(access) > 10  # the access log was on: the check below means something
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert KEY not in logged and KEY[:-1] not in logged


def test_keys_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAIZEN_SERVE_KEYS", f" {KEY} , second ")
    app = create_app(qa_workflow(), store=tmp_path / "runs.db")
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url) as client:
        assert client.post("/runs", json={"question": "q"}).status_code == 401
        ok = client.post("/runs", json={"question": "q"}, headers={"X-API-Key": "second"})
        assert ok.status_code == 202


# -- the store -------------------------------------------------------------------------------------


def test_a_restarted_server_answers_for_finished_runs(tmp_path: Path) -> None:
    store = tmp_path / "runs.db"
    with serving(qa_workflow(), store) as client:
        run_id = client.post("/runs", json={"question": "q"}).json()["run_id"]
        before = finish(client, run_id)
        events_before, _ = read_events(client, run_id)
    with serving(qa_workflow(), store) as client:
        after = client.get(f"/runs/{run_id}").json()
        events_after, _ = read_events(client, run_id)
        tail, _ = read_events(client, run_id, headers={"Last-Event-ID": "2"})
    assert after == before
    assert events_after == events_before
    assert tail == events_before[2:]


def test_runs_a_stopped_server_left_unfinished_are_taken_over_and_finished(
    tmp_path: Path,
) -> None:
    """A run whose worker is gone (no lease, or an expired one) is taken over by a server on
    the store and finished; one that cannot be run here fails with the reason."""
    store = Store(tmp_path / "runs.db")
    log = ServedRunLog(store)
    log.created("left-behind", "slow", "running", '{"seconds": 0}')
    log.created("expired", "slow", "queued", '{"seconds": 0}', owner="gone:1:x",
                lease_until=time.time() - 1)  # fmt: skip
    log.created("foreign", "slow", "running", '{"minutes": 1}')
    log.close()
    with serving(slow_workflow(), tmp_path / "runs.db", lease_interval=0.05,
                 lease_expiry=0.5) as client:  # fmt: skip
        for run_id in ("left-behind", "expired"):
            state = finish(client, run_id)
            assert state["status"] == "completed" and state["results"] == {"wait": {"result": 0}}
        foreign = finish(client, "foreign")
    assert foreign["status"] == "failed" and "cannot be resumed here" in foreign["error"]


def test_a_cancel_reaches_a_run_whose_lease_moved_to_another_worker(tmp_path: Path) -> None:
    """The lease on a run worker A executes moves (as if A had hung past its expiry): a worker
    takes the run over (B, which resumes it, or A again, which goes on with it), A stops its
    copy if it lost it, and a cancel asked through A is carried out by whoever holds the run:
    it ends cancelled, once, its events numbered without a gap."""
    store = tmp_path / "runs.db"
    fast = {"lease_interval": 0.05, "lease_expiry": 0.5}
    with (
        serving(slow_workflow(), store, **fast) as a,
        serving(slow_workflow(), store, **fast) as b,
    ):
        run_id = a.post("/runs", json={"seconds": 60}).json()["run_id"]
        deadline = time.monotonic() + 10
        while a.get(f"/runs/{run_id}").json()["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with Store.open(store).write() as db:  # as if A had hung past its lease's expiry
            db.execute(
                "UPDATE served_runs SET owner = 'hung:0:0', lease_until = 0 WHERE run_id = ?",
                (run_id,),
            )
        while _owner_of(store, run_id) in ("", "hung:0:0"):  # A or B takes it (over)
            assert time.monotonic() < deadline + 10, "nobody took the run over"
            time.sleep(0.02)
        assert a.post(f"/runs/{run_id}/cancel").status_code == 202
        state = finish(b, run_id)
        assert state["status"] == "cancelled"
        events, _ = read_events(b, run_id)
    assert [e["event"] for e in events].count("done") == 1
    ids = [int(e["id"]) for e in events]
    assert ids == list(range(1, len(ids) + 1))


def _owner_of(store: Path, run_id: str) -> str:
    """The worker holding `run_id` now ("" while nobody does)."""
    rows = Store.open(store).read("SELECT owner FROM served_runs WHERE run_id = ?", (run_id,))
    return str(rows[0][0]) if rows and rows[0][0] else ""


def test_another_process_on_the_same_store_follows_and_cancels_a_run(tmp_path: Path) -> None:
    """Two servers on one store stand for two worker processes: either answers for any run."""
    store = tmp_path / "runs.db"
    with (
        serving(slow_workflow(), store) as owner,
        serving(slow_workflow(), store, recover=False) as other,
    ):
        quick = owner.post("/runs", json={"seconds": 0.3}).json()["run_id"]
        events, _ = read_events(other, quick)  # followed through the store until it ended
        assert events[-1]["event"] == "done" and events[-1]["data"]["status"] == "completed"
        assert other.get(f"/runs/{quick}").json()["status"] == "completed"
        slow = owner.post("/runs", json={"seconds": 60}).json()["run_id"]
        deadline = time.monotonic() + 10
        while other.get(f"/runs/{slow}").json()["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert other.post(f"/runs/{slow}/cancel").status_code == 202
        assert finish(owner, slow)["status"] == "cancelled"


# -- many at once ----------------------------------------------------------------------------------


def test_fifty_concurrent_runs_with_faults_all_end_and_none_is_lost(tmp_path: Path) -> None:
    def reply(messages: list[dict[str, Any]]) -> Any:
        text = str(messages[-1]["content"])
        if "fault" in text:
            return RuntimeError("injected model fault")
        return ScriptedModel.reply({"answer": "ok", "confidence": 1.0}, latency=0.05)

    model = ScriptedModel(reply)
    with serving(qa_workflow(model), tmp_path / "runs.db") as client:
        questions = [f"question {i}" + (" fault" if i % 10 == 0 else "") for i in range(50)]
        with ThreadPoolExecutor(16) as pool:
            posted = list(pool.map(lambda q: client.post("/runs", json={"question": q}), questions))
        assert all(r.status_code == 202 for r in posted)
        ids = [r.json()["run_id"] for r in posted]
        assert len(set(ids)) == 50
        states = [finish(client, run_id) for run_id in ids]
    for question, state in zip(questions, states, strict=True):
        if "fault" in question:
            assert state["status"] == "failed" and "injected model fault" in state["error"]
        else:
            assert state["status"] == "completed" and state["results"]["shout"] == {"result": "OK"}


# -- the command -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_kaizen_serve_command_serves_a_module_target(tmp_path: Path) -> None:
    (tmp_path / "flows.py").write_text(
        "from kaizen import WorkflowBuilder\n"
        "def greet(name: str) -> str:\n"
        "    return f'hello {name}'\n"
        "builder = WorkflowBuilder('greeting')\n"
        "builder.add_node('FunctionNode', 'greet', {'function': greet})\n",
        encoding="utf-8",
    )
    port = free_port()
    env = {**os.environ, "KAIZEN_SERVE_KEYS": KEY}
    command = [sys.executable, "-m", "kaizen", "serve", "flows:builder", "--port", str(port),
               "--store", str(tmp_path / "runs.db")]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline
            time.sleep(0.1)
        headers = {"Authorization": f"Bearer {KEY}"}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            run_id = client.post("/runs", json={"name": "ada"}).json()["run_id"]
            assert finish(client, run_id)["results"] == {"greet": {"result": "hello ada"}}
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert KEY not in output
    assert "POST /runs" in output  # uvicorn's access log, without the key


def test_the_command_names_a_bad_target(tmp_path: Path) -> None:
    (tmp_path / "flows.py").write_text("number = 3\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "kaizen", "serve", "flows:number"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "flows:number is a int" in done.stderr and "kaizen serve" in done.stderr


# -- encoding --------------------------------------------------------------------------------------


@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[a-z_]{1,12}", fullmatch=True),
            st.recursive(
                st.none() | st.booleans() | st.integers() | st.text(),
                lambda inner: (
                    st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=5), inner, max_size=3)
                ),
                max_leaves=8,
            ),
        ),
        max_size=5,
    )
)
def test_sse_frames_round_trip(items: list[tuple[str, Any]]) -> None:
    payload = b"".join(
        encode_event(seq, kind, json.dumps({"value": value}))
        for seq, (kind, value) in enumerate(items, 1)
    )
    events, comments = parse_sse(iter(payload.decode().split("\n")))
    assert comments == []
    assert [(int(e["id"]), e["event"], e["data"]["value"]) for e in events] == [
        (seq, kind, value) for seq, (kind, value) in enumerate(items, 1)
    ]


@given(st.one_of(st.none(), st.text(max_size=12), st.integers(-5, 10**6).map(str)))
def test_a_last_event_id_is_a_count_or_nothing(value: str | None) -> None:
    after = parse_last_event_id(value)
    assert after >= 0
    if value is not None and re.fullmatch(r"[0-9]+", value.strip()):
        assert after == int(value.strip())
    if value is None or not value.strip():
        assert after == 0


# -- the OpenAPI document holds for every real response --------------------------------------------


class Exchanges:
    """Every request an httpx client sent and the response it got (bodies read)."""

    def __init__(self) -> None:
        self.seen: list[httpx.Response] = []

    def __call__(self, response: httpx.Response) -> None:
        response.read()  # (an event stream too: it ends with its run)
        self.seen.append(response)

    def problems(self, document: dict[str, Any]) -> list[str]:
        """What a client generated from `document` would refuse, one line per response."""
        from openapi_core import OpenAPI
        from openapi_core.testing import MockRequest, MockResponse

        spec = OpenAPI.from_dict(document)
        found = []
        for response in self.seen:
            request = response.request
            if request.url.path == "/openapi.json":  # the document itself
                continue
            kind = response.headers.get("content-type", "").split(";")[0]
            mock_request = MockRequest(
                "http://testserver", request.method, request.url.path,
                headers=dict(request.headers), data=request.content,
                content_type=request.headers.get("content-type", "application/json"),
            )  # fmt: skip
            mock_response = MockResponse(
                response.content, response.status_code,
                headers=dict(response.headers), content_type=kind,
            )  # fmt: skip
            try:
                spec.validate_response(mock_request, mock_response)
            except Exception as exc:
                causes = [exc, *getattr(exc, "schema_errors", [])]
                if exc.__cause__ is not None:
                    causes += [exc.__cause__, *getattr(exc.__cause__, "schema_errors", [])]
                why = "; ".join(f"{type(e).__name__}: {e}"[:300] for e in causes)
                found.append(
                    f"{request.method} {request.url.path} -> {response.status_code}: {why}"
                )
        return found


def exercise(client: httpx.Client, headers: dict[str, str]) -> None:
    """Every endpoint, answered every way it can answer."""
    run_id = client.post("/runs", json={"seconds": 60}, headers=headers).json()["run_id"]
    deadline = time.monotonic() + 10
    while client.get(f"/runs/{run_id}", headers=headers).json()["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert client.post(f"/runs/{run_id}/cancel", headers=headers).status_code == 202
    finish(client, run_id, headers)
    assert client.post(f"/runs/{run_id}/cancel", headers=headers).status_code == 409
    read_events(client, run_id, headers)
    done = client.post("/runs", json={"seconds": 0}, headers=headers).json()["run_id"]
    finish(client, done, headers)
    assert client.post("/runs", json={"seconds": "x"}, headers=headers).status_code == 422
    assert client.post("/runs", content=b"{", headers=headers).status_code == 400
    assert client.post("/runs", json={"seconds": "x" * 900}, headers=headers).status_code == 413
    for path in ("/runs/nope", "/runs/nope/events"):
        assert client.get(path, headers=headers).status_code == 404
    assert client.post("/runs/nope/cancel", headers=headers).status_code == 404


def test_every_real_response_fits_the_openapi_document(tmp_path: Path) -> None:
    pytest.importorskip("openapi_core")
    exchanges = Exchanges()
    app = create_app(slow_workflow(), store=tmp_path / "runs.db", keys=[KEY], max_body=512)
    good = {"X-API-Key": KEY}
    with (
        BackgroundServer(app) as server,
        httpx.Client(base_url=server.url, event_hooks={"response": [exchanges]}) as client,
    ):
        exercise(client, good)
        run_id = client.post("/runs", json={"seconds": 0}, headers=good).json()["run_id"]
        for method, path in [("POST", "/runs"), ("GET", f"/runs/{run_id}"),
                             ("GET", f"/runs/{run_id}/events"),
                             ("POST", f"/runs/{run_id}/cancel")]:  # fmt: skip
            assert client.request(method, path).status_code == 401
        document = client.get("/openapi.json").json()
    statuses = {(r.request.method, r.status_code) for r in exchanges.seen}
    assert {("POST", 202), ("POST", 400), ("POST", 401), ("POST", 409), ("POST", 413)} <= statuses
    problems = exchanges.problems(document)
    assert not problems, "\n".join(problems)


def test_an_agents_runs_fit_the_openapi_document(tmp_path: Path) -> None:
    pytest.importorskip("openapi_core")
    exchanges = Exchanges()
    app = create_app(qa_agent(), store=tmp_path / "runs.db", keys=[])
    with (
        BackgroundServer(app) as server,
        httpx.Client(base_url=server.url, event_hooks={"response": [exchanges]}) as client,
    ):
        run_id = client.post("/runs", json={"question": "Capital?"}).json()["run_id"]
        finish(client, run_id)
        assert client.post("/runs", json={"question": "q", "extra": 1}).status_code == 422
        document = client.get("/openapi.json").json()
    problems = exchanges.problems(document)
    assert not problems, "\n".join(problems)


def test_kaizen_runs_prune_prunes_served_runs_but_not_unfinished_ones(tmp_path: Path) -> None:
    from kaizen.store.runs import prune
    from kaizen.store.served import load_served_events, load_served_run

    store = Store(tmp_path / "runs.db")
    log = ServedRunLog(store)
    log.created("old-done", "slow", "running", "{}", created=time.time() - 100)
    log.event("old-done", 1, "done", "{}")
    log.finished("old-done", "completed", results="{}", error=None, record=None)
    log.created("old-running", "slow", "running", "{}", created=time.time() - 100,
                owner="elsewhere", lease_until=time.time() + 60)  # fmt: skip
    log.close()
    assert prune(store, 10) == 1
    assert load_served_run(store, "old-done") is None and not load_served_events(store, "old-done")
    assert load_served_run(store, "old-running") is not None  # someone may still run it
