"""AG-UI on `kaizen serve` (`POST /ag-ui`), checked by the protocol's own validator: the
`ag-ui-validate` command against the live endpoint (real uvicorn on loopback) for an agent with a
tool, a streaming agent, a workflow, a failing run and an interrupted run, and its pytest helper
`assert_valid_agui` on recorded streams, including a resumed and a cancelled one."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("ag_ui")
pytest.importorskip("ag_ui_validate")
import httpx
from ag_ui_validate.pytest_plugin import assert_valid_agui

import kaizen
from kaizen import WorkflowBuilder
from kaizen.testing import ScriptedModel

VALIDATOR = shutil.which("ag-ui-validate") or str(Path(sys.executable).with_name("ag-ui-validate"))
FEATURES = "shared-state,backend-tool-rendering,human-in-the-loop,agentic-chat"


@kaizen.tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def tool_agent() -> Any:
    model = ScriptedModel([ScriptedModel.tool_call("add", {"a": 1, "b": 2}), {"answer": "3"}])
    return kaizen.create_agent("calc", "question -> answer", {"model": model}, tools=[add])


def chat_agent() -> Any:
    model = ScriptedModel(lambda messages: {"answer": "Hello there, briefly."})
    return kaizen.create_agent("chat", "question -> answer", {"model": model})


def shout(answer: str) -> str:
    return answer.upper()


def workflow() -> Any:
    builder = WorkflowBuilder("chat_then_shout")
    builder.add_agent(chat_agent(), "chat")
    builder.add_node(shout, "shout")
    builder.add_connection("chat", "answer", "shout", "answer")
    return builder.build()


def explode(question: str) -> str:
    raise RuntimeError(f"cannot handle {question!r}")


def failing() -> Any:
    builder = WorkflowBuilder("failing")
    builder.add_node(explode, "explode")
    return builder.build()


def ask(question: str) -> str:
    said = kaizen.interrupt({"question": question}, schema={"type": "string"})
    return f"{question} -> {said}"


def asking() -> Any:
    builder = WorkflowBuilder("asking")
    builder.add_node(ask, "ask")
    builder.add_node(shout, "shout")
    builder.add_connection("ask", "result", "shout", "answer")
    return builder.build()


def events_of(url: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The AG-UI events of one POST /ag-ui, in order."""
    with httpx.Client(timeout=60) as client, client.stream("POST", f"{url}/ag-ui", json=body) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        return [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]


def run_input(text: str = "Hello! Please respond briefly.", **extra: Any) -> dict[str, Any]:
    return {
        "threadId": "thread-1",
        "runId": "run-1",
        "messages": [{"id": "m1", "role": "user", "content": text}],
        "tools": [],
        "context": [],
        "state": {},
        "forwardedProps": {},
        **extra,
    }


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


@pytest.mark.parametrize(
    "target", [tool_agent, chat_agent, workflow, failing, asking], ids=lambda f: f.__name__
)
def test_the_live_endpoint_passes_ag_ui_validate(serve: Any, target: Any) -> None:
    url = serve(target())
    checked = subprocess.run(
        [VALIDATOR, f"{url}/ag-ui", "--json", "--features", FEATURES, "--timeout", "60"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    report = json.loads(checked.stdout)
    assert checked.returncode == 0 and report["diagnostics"] == [], checked.stdout
    assert report["eventCount"] >= 4 and report["internalErrors"] == []


def test_a_tool_call_streams_as_start_args_end_and_result(serve: Any) -> None:
    events = events_of(serve(tool_agent()), run_input("What is 1 + 2?"))
    assert_valid_agui(events)
    assert kinds(events)[:2] == ["RUN_STARTED", "STATE_SNAPSHOT"]
    assert events[0]["input"]["messages"][0]["content"] == "What is 1 + 2?"
    start = next(e for e in events if e["type"] == "TOOL_CALL_START")
    args = next(e for e in events if e["type"] == "TOOL_CALL_ARGS")
    result = next(e for e in events if e["type"] == "TOOL_CALL_RESULT")
    assert start["toolCallName"] == "add" and json.loads(args["delta"]) == {"a": 1, "b": 2}
    assert result["toolCallId"] == start["toolCallId"] and result["content"] == "3"
    assert kinds(events).index("STEP_STARTED") < kinds(events).index("TOOL_CALL_START")
    last = events[-1]
    assert last["type"] == "RUN_FINISHED" and last["result"] == {"answer": "3"}


def test_streamed_text_is_one_message_per_node(serve: Any) -> None:
    events = events_of(serve(workflow()), run_input())
    assert_valid_agui(events)
    texts = [e for e in events if e["type"].startswith("TEXT_MESSAGE")]
    assert (
        texts
        and texts[0]["type"] == "TEXT_MESSAGE_START"
        and texts[-1]["type"] == ("TEXT_MESSAGE_END")
    )
    said = "".join(e["delta"] for e in texts if e["type"] == "TEXT_MESSAGE_CONTENT")
    assert "Hello there, briefly." in said
    steps = [(e["type"], e["stepName"]) for e in events if e["type"].startswith("STEP_")]
    assert steps == [("STEP_STARTED", "chat"), ("STEP_FINISHED", "chat"),
                     ("STEP_STARTED", "shout"), ("STEP_FINISHED", "shout")]  # fmt: skip
    # the state follows the nodes, as RFC 6902 patches
    deltas = [op for e in events if e["type"] == "STATE_DELTA" for op in e["delta"]]
    assert {"op": "replace", "path": "/nodes/shout", "value": "completed"} in deltas
    assert events[-1]["result"]["shout"] == {"result": "HELLO THERE, BRIEFLY."}


def test_a_failed_run_ends_with_run_error(serve: Any) -> None:
    events = events_of(serve(failing()), run_input("boom"))
    assert_valid_agui(events)
    assert events[-1]["type"] == "RUN_ERROR" and "cannot handle 'boom'" in events[-1]["message"]


def test_an_interrupt_ends_the_run_and_a_resume_continues_it(serve: Any) -> None:
    url = serve(asking())
    first = events_of(url, run_input("ship it?"))
    assert_valid_agui(first)
    outcome = first[-1]["outcome"]
    assert first[-1]["type"] == "RUN_FINISHED" and outcome["type"] == "interrupt"
    (asked,) = outcome["interrupts"]
    assert asked["id"].endswith(":ask/0") and asked["reason"] == "input"
    assert asked["responseSchema"] == {"type": "string"}

    wrong = httpx.post(f"{url}/ag-ui", json=run_input(
        runId="run-2", resume=[{"interruptId": asked["id"], "status": "resolved", "payload": 7}]
    ), timeout=30)  # fmt: skip
    assert wrong.status_code == 422 and "string" in wrong.text  # the schema holds; nothing taken

    resumed = events_of(url, run_input(
        runId="run-2", resume=[{"interruptId": asked["id"], "status": "resolved", "payload": "yes"}]
    ))  # fmt: skip
    assert_valid_agui(resumed)
    assert resumed[-1]["type"] == "RUN_FINISHED"
    assert resumed[-1]["result"]["shout"] == {"result": "SHIP IT? -> YES"}
    again = httpx.post(f"{url}/ag-ui", json=run_input(
        runId="run-3", resume=[{"interruptId": asked["id"], "status": "resolved", "payload": "x"}]
    ), timeout=30)  # fmt: skip
    assert again.status_code == 409  # it waits for nothing now


def test_a_resume_may_cancel_the_waiting_run(serve: Any) -> None:
    url = serve(asking())
    asked = events_of(url, run_input("ship it?"))[-1]["outcome"]["interrupts"][0]
    cancelled = events_of(url, run_input(
        runId="run-2", resume=[{"interruptId": asked["id"], "status": "cancelled"}]
    ))  # fmt: skip
    assert_valid_agui(cancelled)
    assert cancelled[-1]["type"] == "RUN_FINISHED"
    assert cancelled[-1]["outcome"] == {"type": "cancelled"}
    run_id = asked["id"].split(":")[0]
    assert httpx.get(f"{url}/runs/{run_id}", timeout=30).json()["status"] == "cancelled"


def test_inputs_come_from_forwarded_props_or_state_and_bad_input_is_named(serve: Any) -> None:
    def pair(first: str, second: str) -> str:
        return first + second

    builder = WorkflowBuilder("pair")
    builder.add_node(pair, "pair")
    url = serve(builder.build())
    by_props = events_of(url, run_input(forwardedProps={"inputs": {"first": "a", "second": "b"}}))
    assert by_props[-1]["result"] == {"pair": {"result": "ab"}}
    by_state = events_of(url, run_input(state={"first": "c", "second": "d"}))
    assert by_state[-1]["result"] == {"pair": {"result": "cd"}}
    unclear = httpx.post(f"{url}/ag-ui", json=run_input(), timeout=30)
    assert unclear.status_code == 422 and "forwardedProps.inputs" in unclear.text
    malformed = httpx.post(f"{url}/ag-ui", json={"threadId": "t"}, timeout=30)
    assert malformed.status_code == 422
    fields = {f["field"] for f in malformed.json()["fields"]}
    assert {"runId", "messages"} <= fields or {"run_id", "messages"} <= fields
    unknown = httpx.post(f"{url}/ag-ui", json=run_input(
        resume=[{"interruptId": "nope:ask/0", "status": "resolved", "payload": 1}]
    ), timeout=30)  # fmt: skip
    assert unknown.status_code == 404
