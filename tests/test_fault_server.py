"""kaizen.testing.FaultServer over raw HTTP (no litellm): replies, faults, log, concurrency."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import time
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kaizen.testing.fault_server import (
    Fault,
    FaultServer,
    ToolCalls,
    example_for_schema,
    requested_schema,
    schema_violation,
)

pytestmark = pytest.mark.timeout(60)

SCHEMA = {
    "type": "object",
    "properties": {
        "answer": {"type": "string"},
        "confidence": {"type": "number"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "kind": {"enum": ["a", "b"]},
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "nested": {"$ref": "#/$defs/Inner"},
    },
    "required": ["answer", "confidence", "tags", "kind", "note", "nested"],
    "$defs": {"Inner": {"type": "object", "properties": {"n": {"type": "integer"}}}},
}


def post(
    server: FaultServer, body: dict[str, Any], timeout: float = 5
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        conn.request(
            "POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"}
        )
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def chat(schema: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    if schema is not None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "out", "schema": schema, "strict": False},
        }
    return body


def content(payload: bytes) -> str:
    return str(json.loads(payload)["choices"][0]["message"]["content"])


def test_default_reply_follows_the_requested_schema(fault_server: FaultServer) -> None:
    status, _, payload = post(fault_server, chat(SCHEMA))
    assert status == 200
    data = json.loads(payload)
    assert data["object"] == "chat.completion"
    assert data["usage"]["total_tokens"] > 0
    jsonschema.validate(json.loads(content(payload)), SCHEMA)


def test_configured_replies(fault_server: FaultServer) -> None:
    fault_server.reply = "plain words"
    assert content(post(fault_server, chat())[2]) == "plain words"
    fault_server.reply = {"answer": 42}
    assert json.loads(content(post(fault_server, chat())[2])) == {"answer": 42}
    fault_server.reply = lambda body: {"echo": body["messages"][-1]["content"]}
    assert json.loads(content(post(fault_server, chat())[2])) == {"echo": "hi"}


def test_faults_apply_in_order_and_are_logged(fault_server: FaultServer) -> None:
    fault_server.inject(Fault("429", retry_after=3), "500", "401", "400")
    status, headers, _ = post(fault_server, chat())
    assert (status, headers["retry-after"]) == (429, "3")
    assert post(fault_server, chat())[0] == 500
    assert post(fault_server, chat())[0] == 401
    status, _, payload = post(fault_server, chat())
    assert status == 400 and "error" in json.loads(payload)
    assert post(fault_server, chat())[0] == 200
    assert [r.fault for r in fault_server.requests] == ["429", "500", "401", "400", None]
    assert fault_server.pending_faults == []


def test_malformed_body_is_not_json(fault_server: FaultServer) -> None:
    fault_server.inject("malformed")
    status, _, payload = post(fault_server, chat())
    assert status == 200
    with pytest.raises(ValueError):
        json.loads(payload)


def test_schema_violation_is_valid_json_that_fails_the_schema(fault_server: FaultServer) -> None:
    fault_server.inject("schema_violation")
    data = json.loads(content(post(fault_server, chat(SCHEMA))[2]))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, SCHEMA)


def test_drop_closes_without_a_response(fault_server: FaultServer) -> None:
    fault_server.inject("drop")
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        post(fault_server, chat())


def test_timeout_stalls_past_the_client_timeout(fault_server: FaultServer) -> None:
    fault_server.inject(Fault("timeout", stall=30))
    with pytest.raises((TimeoutError, socket.timeout)):
        post(fault_server, chat(), timeout=0.3)


def test_stop_cuts_off_stalled_requests_promptly() -> None:
    # stalled for an hour: a stop that waited for it would run into the file's 60 s timeout
    server = FaultServer(faults=[Fault("timeout", stall=3600)]).start()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    body = json.dumps(chat()).encode()
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    deadline = time.monotonic() + 30
    while not server.requests:  # the request has arrived and stalls
        assert time.monotonic() < deadline, "the server never received the request"
        time.sleep(0.01)
    server.stop()
    assert sock.recv(1024) == b""  # closed, no response
    sock.close()


def test_unknown_fault_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        FaultServer(faults=["gremlins"])


def test_keep_alive_serves_several_requests_on_one_connection(fault_server: FaultServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", fault_server.port, timeout=5)
    for _ in range(3):
        conn.request("POST", "/v1/chat/completions", json.dumps(chat()))
        assert conn.getresponse().read()
    conn.close()
    assert len(fault_server.requests) == 3


def test_many_concurrent_requests_are_served_together() -> None:
    async def one(port: int) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        body = json.dumps(chat()).encode()
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        data = await reader.read()
        writer.close()
        received_when_answered.append(len(server.requests))
        return data

    async def many(port: int) -> list[bytes]:
        return await asyncio.gather(*(one(port) for _ in range(100)))

    received_when_answered: list[int] = []  # requests the server had when each reply came
    with FaultServer(latency=0.2) as server:
        results = asyncio.run(many(server.port))
    assert all(r.startswith(b"HTTP/1.1 200") for r in results)
    assert min(received_when_answered) >= 50  # served side by side: one at a time would be 1


def test_requested_schema_reads_both_request_styles() -> None:
    assert requested_schema(chat(SCHEMA)) == SCHEMA
    assert (
        requested_schema({"response_format": {"type": "json_object", "schema": SCHEMA}}) == SCHEMA
    )
    assert requested_schema(chat()) is None


def stream_events(payload: bytes) -> list[str]:
    return [line[6:] for line in payload.decode().splitlines() if line.startswith("data: ")]


def test_streaming_requests_get_server_sent_events(fault_server: FaultServer) -> None:
    fault_server.reply = "streamed"
    status, headers, payload = post(fault_server, {**chat(), "stream": True})
    assert status == 200 and headers["content-type"] == "text/event-stream"
    assert headers["transfer-encoding"] == "chunked"  # http.client joined the chunks
    events = stream_events(payload)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == "streamed"
    assert len([c for c in chunks if c["choices"][0]["delta"].get("content")]) > 1  # pieces
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all("usage" not in c for c in chunks)  # not asked for


def test_streaming_sends_usage_last_when_asked(fault_server: FaultServer) -> None:
    body = {**chat(), "stream": True, "stream_options": {"include_usage": True}}
    chunks = [json.loads(e) for e in stream_events(post(fault_server, body)[2])[:-1]]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0


def test_tool_call_replies(fault_server: FaultServer) -> None:
    fault_server.reply = ToolCalls((("search", {"query": "ml"}), ("broken", '{"a": ')))
    data = json.loads(post(fault_server, chat())[2])
    choice = data["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    calls = choice["message"]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["search", "broken"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"query": "ml"}
    assert calls[1]["function"]["arguments"] == '{"a": '  # sent as given
    assert len({c["id"] for c in calls}) == 2


def test_streamed_tool_calls_come_in_fragments_by_index(fault_server: FaultServer) -> None:
    fault_server.reply = ToolCalls((("search", {"query": "ml"}),), content="Looking.")
    events = stream_events(post(fault_server, {**chat(), "stream": True})[2])
    fragments = [
        fragment
        for event in events[:-1]
        for fragment in json.loads(event)["choices"][0]["delta"].get("tool_calls") or ()
    ]
    assert fragments[0]["id"] and fragments[0]["function"]["name"] == "search"
    assert len(fragments) == 3 and {f["index"] for f in fragments} == {0}
    joined = "".join(f["function"].get("arguments") or "" for f in fragments)
    assert json.loads(joined) == {"query": "ml"}


_leaf = st.sampled_from(
    [{"type": "string"}, {"type": "integer"}, {"type": "number"}, {"type": "boolean"}]
)
_schemas = st.recursive(
    _leaf,
    lambda children: st.one_of(
        st.builds(lambda item: {"type": "array", "items": item}, children),
        st.dictionaries(
            st.from_regex(r"[a-z]{1,6}", fullmatch=True), children, min_size=1, max_size=4
        ).map(lambda props: {"type": "object", "properties": props, "required": sorted(props)}),
    ),
    max_leaves=8,
)


@settings(max_examples=80, deadline=None)
@given(_schemas)
def test_examples_satisfy_and_violations_break_any_schema(schema: dict[str, Any]) -> None:
    jsonschema.validate(example_for_schema(schema), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(schema_violation(schema), schema)
