"""Retry rules and typed errors of kaizen.llm, over real HTTP against the loopback FaultServer.

Every test runs on both transports: litellm (litellm -> OpenAI SDK -> httpx -> 127.0.0.1) and
the pooled OpenAI-compatible fast path (kaizen.llm.http -> aiohttp -> 127.0.0.1); nothing is mocked.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from kaizen.errors import ModelError
from kaizen.flow import run_async, run_sync
from kaizen.llm import ModelReply, acomplete, complete, model_call, prepare
from kaizen.testing.fault_server import Fault, FaultServer, ToolCalls

pytestmark = pytest.mark.timeout(60)

SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string"}, "confidence": {"type": "number"}},
    "required": ["answer", "confidence"],
    "additionalProperties": False,
}
MESSAGES = [{"role": "user", "content": "What is machine learning?"}]
TRANSPORTS = ("litellm", "openai-compatible")


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    """The transport each test runs on (every test here runs on both)."""
    return str(request.param)


def call(server: FaultServer, transport: str, **options: Any) -> ModelReply:
    options.setdefault("backoff", 0.01)
    options.setdefault("timeout", 5.0)
    return complete(
        MESSAGES,
        model="openai/kaizen-test",
        api_base=server.base_url,
        api_key="test",
        transport=transport,
        **options,
    )


def test_success_returns_text_usage_and_attempts(fault_server: FaultServer, transport: str) -> None:
    fault_server.reply = {"answer": "a field of AI", "confidence": 0.75}
    reply = call(fault_server, transport)
    assert json.loads(reply.text) == {"answer": "a field of AI", "confidence": 0.75}
    assert reply.attempts == 1
    assert reply.model == "openai/kaizen-test"
    assert reply.finish_reason == "stop"
    assert reply.usage.calls == 1
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
    assert reply.usage.cost == 0.0  # litellm has no price for this model name
    assert reply.latency > 0
    [request] = fault_server.requests
    assert request.body is not None and request.body["messages"] == MESSAGES


def test_known_model_is_priced_by_litellm(fault_server: FaultServer, transport: str) -> None:
    reply = complete(
        MESSAGES,
        model="openai/gpt-4o-mini",
        api_base=fault_server.base_url,
        api_key="test",
        transport=transport,
    )
    assert reply.usage.cost > 0


def test_json_schema_is_sent_when_forced(fault_server: FaultServer, transport: str) -> None:
    reply = call(fault_server, transport, response_schema=SCHEMA, structured_output="json_schema")
    sent = fault_server.requests[0].body
    assert sent is not None
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["schema"] == SCHEMA
    assert sent["response_format"]["json_schema"]["strict"] is True
    data = json.loads(reply.text)  # the server answers with an instance of the schema
    assert isinstance(data["answer"], str) and isinstance(data["confidence"], float)


def test_schema_stays_out_of_the_request_in_instructions_mode(
    fault_server: FaultServer, transport: str
) -> None:
    call(fault_server, transport, response_schema=SCHEMA, structured_output="instructions")
    body = fault_server.requests[0].body
    assert body is not None and "response_format" not in body


def test_429_is_retried_after_the_retry_after_delay(
    fault_server: FaultServer, transport: str
) -> None:
    fault_server.inject(Fault("429", retry_after=1))
    started = time.perf_counter()
    reply = call(fault_server, transport)
    elapsed = time.perf_counter() - started
    assert reply.attempts == 2
    assert elapsed >= 0.9  # waited as told (backoff alone would be ~0.01 s)
    assert [r.fault for r in fault_server.requests] == ["429", None]


def test_retry_after_is_capped(fault_server: FaultServer, transport: str) -> None:
    fault_server.inject(Fault("429", retry_after=120))
    started = time.perf_counter()
    reply = call(fault_server, transport, max_wait=0.2)
    assert reply.attempts == 2
    assert time.perf_counter() - started < 120  # not the 120 s the server asked for


@pytest.mark.parametrize("fault", ["500", "503", "drop"])
def test_server_errors_and_dropped_connections_are_retried(
    fault_server: FaultServer, fault: str, transport: str
) -> None:
    fault_server.inject(fault, fault)
    reply = call(fault_server, transport)
    assert reply.attempts == 3
    assert len(fault_server.requests) == 3


def test_timeout_is_retried(fault_server: FaultServer, transport: str) -> None:
    fault_server.inject("timeout")
    reply = call(fault_server, transport, timeout=0.5)
    assert reply.attempts == 2


def test_timeouts_exhaust_the_budget_then_raise_model_error(
    fault_server: FaultServer, transport: str
) -> None:
    fault_server.inject("timeout", "timeout")
    with pytest.raises(ModelError) as caught:
        call(fault_server, transport, timeout=0.3, retries=1)
    error = caught.value
    assert error.status == 408
    assert error.retryable is True
    assert error.attempts == 2
    assert error.provider == "openai"
    assert error.__cause__ is not None
    assert "timeout" in str(error)


def test_persistent_500_raises_retryable_model_error(
    fault_server: FaultServer, transport: str
) -> None:
    fault_server.inject(*["500"] * 4)
    with pytest.raises(ModelError) as caught:
        call(fault_server, transport, retries=3)
    assert (caught.value.status, caught.value.retryable, caught.value.attempts) == (500, True, 4)
    assert len(fault_server.requests) == 4


@pytest.mark.parametrize("fault", ["401", "403", "400", "404", "422"])
def test_auth_and_request_errors_are_not_retried(
    fault_server: FaultServer, fault: str, transport: str
) -> None:
    fault_server.inject(fault)
    with pytest.raises(ModelError) as caught:
        call(fault_server, transport)
    error = caught.value
    assert error.status == int(fault)
    assert error.retryable is False
    assert error.attempts == 1
    assert len(fault_server.requests) == 1  # one request: no retry
    assert error.__cause__ is not None


def test_auth_error_says_what_to_do(fault_server: FaultServer, transport: str) -> None:
    fault_server.inject("401")
    with pytest.raises(ModelError, match="API key"):
        call(fault_server, transport)


def test_malformed_json_body_is_retried(fault_server: FaultServer, transport: str) -> None:
    # A garbled body is a transport fault, like a dropped connection: retried, then reported.
    fault_server.inject("malformed")
    assert call(fault_server, transport).attempts == 2
    fault_server.inject("malformed", "malformed")
    with pytest.raises(ModelError) as caught:
        call(fault_server, transport, retries=1)
    assert caught.value.retryable is True
    assert caught.value.attempts == 2


def test_schema_violating_json_is_returned_as_text(
    fault_server: FaultServer, transport: str
) -> None:
    # The model layer does not judge content: the agent layer validates and re-asks.
    fault_server.inject("schema_violation")
    reply = call(fault_server, transport, response_schema=SCHEMA, structured_output="json_schema")
    data = json.loads(reply.text)
    assert not isinstance(data["answer"], str)
    assert not isinstance(data["confidence"], float)
    assert reply.attempts == 1


def test_retries_zero_means_one_attempt(fault_server: FaultServer, transport: str) -> None:
    fault_server.inject("500")
    with pytest.raises(ModelError) as caught:
        call(fault_server, transport, retries=0)
    assert caught.value.attempts == 1


def test_async_path_follows_the_same_rules(fault_server: FaultServer, transport: str) -> None:
    fault_server.inject("429", "drop")
    fault_server.retry_after = 0

    async def go() -> ModelReply:
        return await acomplete(
            MESSAGES,
            model="openai/kaizen-test",
            api_base=fault_server.base_url,
            api_key="test",
            backoff=0.01,
            timeout=5,
            transport=transport,
        )

    reply = asyncio.run(go())
    assert reply.attempts == 3

    fault_server.inject("401")
    with pytest.raises(ModelError) as caught:
        asyncio.run(go())
    assert (caught.value.status, caught.value.attempts) == (401, 1)


def test_concurrent_async_calls_overlap(fault_server: FaultServer, transport: str) -> None:
    fault_server.latency = 0.2
    received_when_answered: list[int] = []  # requests the server had when each reply came

    async def one(i: int) -> ModelReply:
        reply = await acomplete(
            [{"role": "user", "content": f"question {i}"}],
            model="openai/kaizen-test",
            api_base=fault_server.base_url,
            api_key="test",
            timeout=20,
            transport=transport,
        )
        received_when_answered.append(len(fault_server.requests))
        return reply

    async def go() -> list[ModelReply]:
        return await asyncio.gather(*(one(i) for i in range(20)))

    replies = asyncio.run(go())
    assert len(replies) == 20
    assert min(received_when_answered) >= 10  # side by side: one after another would be 1


def test_unreachable_server_fails_fast_and_typed(transport: str) -> None:
    server = FaultServer().start()
    base_url = server.base_url
    server.stop()  # nothing listens on that port any more
    with pytest.raises(ModelError) as caught:
        complete(
            MESSAGES,
            model="openai/kaizen-test",
            api_base=base_url,
            api_key="test",
            retries=1,
            backoff=0.01,
            timeout=2,
            transport=transport,
        )
    assert caught.value.retryable is True
    assert caught.value.attempts == 2


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search the web.",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        },
    }
]


def streamed(server: FaultServer, transport: str, pieces: list[str], **options: Any) -> ModelReply:
    request = prepare(
        MESSAGES,
        model=options.pop("model", "openai/kaizen-test"),
        api_base=server.base_url,
        api_key="test",
        timeout=5,
        transport=transport,
        **options,
    )
    return run_sync(model_call(request, on_text=pieces.append))


def test_tool_calls_pass_through_and_come_back(fault_server: FaultServer, transport: str) -> None:
    fault_server.reply = ToolCalls((("search", {"query": "ml"}), ("search", '{"query": ')))
    reply = call(fault_server, transport, tools=TOOLS, tool_choice="auto")
    sent = fault_server.requests[0].body
    assert sent is not None and sent["tools"] == TOOLS and sent["tool_choice"] == "auto"
    assert reply.finish_reason == "tool_calls"
    assert [(c.name, c.arguments) for c in reply.tool_calls] == [
        ("search", '{"query": "ml"}'),
        ("search", '{"query": '),  # invalid JSON arrives as it was sent: the tool loop reports it
    ]
    assert reply.tool_calls[0].id != reply.tool_calls[1].id


def test_streaming_delivers_text_in_pieces_with_usage_and_cost(
    fault_server: FaultServer, transport: str
) -> None:
    fault_server.reply = "Machine learning finds patterns in data."
    pieces: list[str] = []
    reply = streamed(fault_server, transport, pieces, model="openai/gpt-4o-mini")
    assert len(pieces) > 1 and "".join(pieces) == reply.text == fault_server.reply
    sent = fault_server.requests[0].body
    assert sent is not None and sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
    assert reply.usage.cost > 0  # priced from litellm's map, as without streaming
    assert reply.finish_reason == "stop"


def test_streamed_tool_calls_are_assembled_by_index(
    fault_server: FaultServer, transport: str
) -> None:
    fault_server.reply = ToolCalls(
        (("search", {"query": "ml"}), ("search", {"query": "ai"})), content="Searching."
    )
    pieces: list[str] = []
    reply = streamed(fault_server, transport, pieces, tools=TOOLS)
    assert "".join(pieces) == reply.text == "Searching."
    assert [json.loads(c.arguments) for c in reply.tool_calls] == [
        {"query": "ml"},
        {"query": "ai"},
    ]
    assert reply.finish_reason == "tool_calls"


def test_streaming_on_the_event_loop(fault_server: FaultServer, transport: str) -> None:
    fault_server.reply = "Streamed on the loop."
    pieces: list[str] = []
    request = prepare(
        MESSAGES,
        model="openai/kaizen-test",
        api_base=fault_server.base_url,
        api_key="test",
        transport=transport,
    )
    reply = asyncio.run(run_async(model_call(request, on_text=pieces.append)))
    assert "".join(pieces) == reply.text == "Streamed on the loop."


def test_streaming_errors_follow_the_retry_rules(fault_server: FaultServer, transport: str) -> None:
    fault_server.inject(Fault("429", retry_after=0), "401")
    pieces: list[str] = []
    with pytest.raises(ModelError) as caught:
        streamed(fault_server, transport, pieces, backoff=0.01)
    assert (caught.value.status, caught.value.attempts) == (401, 2)
    assert pieces == []
