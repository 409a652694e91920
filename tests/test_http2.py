"""HTTP/2 on the fast path (kaizen.llm.http2): negotiation, multiplexing, flow control, GOAWAY.

Every fault-server test of tests/test_llm_http.py runs here a second time against
`H2FaultServer` over TLS, where the fast path's default (``http_version="auto"``) negotiates h2
in ALPN: the same retry rules, typed errors, streaming and tool calls over HTTP/2. The rest
checks what only HTTP/2 has, against real loopback servers (h2c with prior knowledge, or TLS
with a throwaway CA that clients trust through ``SSL_CERT_FILE``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kaizen
from kaizen.errors import ModelError
from kaizen.llm import acomplete, complete, http1, http2, model_call, prepare
from kaizen.llm.http1 import ServerDisconnectedError
from kaizen.testing.fault_server import FaultServer, ToolCalls
from kaizen.testing.h2_server import H2FaultServer
from kaizen.testing.tls import loopback_certificate

pytestmark = pytest.mark.timeout(60)

MESSAGES = [{"role": "user", "content": "What is machine learning?"}]


@pytest.fixture
def trust_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients trust the loopback CA (`ssl.create_default_context` reads SSL_CERT_FILE)."""
    monkeypatch.setenv("SSL_CERT_FILE", loopback_certificate().ca_file)


# -- the fault-server tests of test_llm_http, over HTTP/2 ------------------------------------------


def _load_shared_tests() -> dict[str, Any]:
    path = Path(__file__).with_name("test_llm_http.py")
    spec = importlib.util.spec_from_file_location("_llm_http_over_http2", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {name: value for name, value in vars(module).items() if name.startswith("test_")}


globals().update(_load_shared_tests())  # collected here with this module's fixtures


@pytest.fixture
def transport() -> str:
    """The shared tests run on the fast path only (litellm speaks HTTP/1.1)."""
    return "openai-compatible"


@pytest.fixture
def fault_server(trust_loopback: None) -> Iterator[H2FaultServer]:
    """An `H2FaultServer` over TLS: the fast path's default negotiates h2 with it."""
    with H2FaultServer(tls=True) as server:
        yield server
        assert set(server.protocols) <= {"h2"}  # every connection spoke HTTP/2


# -- negotiation -----------------------------------------------------------------------------------


def origin_of(server: FaultServer) -> http1.Origin:
    return http1.Origin("https" if server.tls else "http", "127.0.0.1", server.port)


def call(server: FaultServer, **options: Any) -> Any:
    options.setdefault("backoff", 0.01)
    options.setdefault("timeout", 5)
    return complete(MESSAGES, model="openai/m", api_base=server.base_url, api_key="k", **options)


async def acall(server: FaultServer, content: str = "q", **options: Any) -> Any:
    options.setdefault("backoff", 0.01)
    options.setdefault("timeout", 5)
    return await acomplete(
        [{"role": "user", "content": content}],
        model="openai/m",
        api_base=server.base_url,
        api_key="k",
        **options,
    )


def test_alpn_picks_h2_when_the_server_offers_it(trust_loopback: None) -> None:
    with H2FaultServer(tls=True, reply="over h2") as server:
        assert call(server).text == "over h2"
        assert asyncio.run(acall(server)).text == "over h2"
        assert http2.negotiated(origin_of(server)) == "h2"
        assert server.protocols == ["h2", "h2"]  # one for blocking callers, one for the loop


def test_alpn_falls_back_to_http_1_1_and_remembers_it(trust_loopback: None) -> None:
    with FaultServer(tls=True, reply="over http/1.1") as server:
        assert [call(server).text for _ in range(3)] == ["over http/1.1"] * 3
        assert http2.negotiated(origin_of(server)) == "http/1.1"
        assert server.connections == 2  # the ALPN answer, then one kept-alive HTTP/1.1 connection
        assert asyncio.run(acall(server)).attempts == 1  # asked once per process, not per loop
        assert server.connections == 3


def test_cleartext_endpoints_stay_on_http_1_1_by_default() -> None:
    with FaultServer() as server:
        assert call(server).attempts == 1
        assert http2.negotiated(origin_of(server)) is None
        assert all(key[0] != origin_of(server) for key in http2._async_pools)


def test_prior_knowledge_speaks_h2c_to_a_cleartext_server() -> None:
    with H2FaultServer(reply="h2c") as server:
        assert call(server, http_version="2").text == "h2c"
        assert server.protocols == ["h2"]


def test_prior_knowledge_against_an_http_1_1_server_says_so() -> None:
    key = "sk-live-0a1b2c3d4e5f"
    with FaultServer() as server, pytest.raises(ModelError) as caught:
        complete(
            MESSAGES,
            model="openai/m",
            api_base=server.base_url,
            api_key=key,
            http_version="2",
            backoff=0.01,
            timeout=5,
        )
    assert "does not speak HTTP/2" in str(caught.value) and "http_version='1.1'" in str(
        caught.value
    )
    assert key not in str(caught.value)
    assert caught.value.attempts == 1  # a setting to change: not retried


def test_alpn_without_h2_when_http_2_is_forced_says_so(trust_loopback: None) -> None:
    with FaultServer(tls=True) as server, pytest.raises(ModelError) as caught:
        call(server, http_version="2")
    assert "does not offer HTTP/2" in str(caught.value) and caught.value.attempts == 1


def test_agents_choose_the_http_version_in_config_or_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with H2FaultServer(reply={"answer": "over h2c"}) as server:
        config = {"model": "openai/m", "api_base": server.base_url, "api_key": "k"}
        agent = kaizen.create_agent("qa", "question -> answer", {**config, "http_version": "2"})
        assert agent.execute(question="q").answer == "over h2c"
        monkeypatch.setenv("KAIZEN_HTTP_VERSION", "2")
        plain = kaizen.create_agent("qa2", "question -> answer", config)
        assert plain.execute(question="q").answer == "over h2c"
        assert server.protocols == ["h2"]
    with pytest.raises(kaizen.ConfigError, match="http_version"):
        kaizen.create_agent("bad", "question -> answer", {**config, "http_version": "3"})


def test_litellm_never_sees_the_http_version() -> None:
    with FaultServer(reply="via litellm") as server:
        reply = call(server, transport="litellm", http_version="2")
        assert reply.text == "via litellm"


def test_without_the_h2_package_everything_stays_on_http_1_1(
    trust_loopback: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http2, "_available", False)
    with H2FaultServer(tls=True, reply="still fine") as server:
        assert call(server).text == "still fine"
        assert server.protocols == ["http/1.1"]  # no ALPN offer: the server's default
        with pytest.raises(ModelError, match=r"kaizen\[http2\]"):
            call(server, http_version="2")


# -- one connection, many streams ------------------------------------------------------------------


def test_concurrent_calls_share_one_connection() -> None:
    with H2FaultServer(latency=0.1) as server:

        async def go() -> list[Any]:
            return await asyncio.gather(
                *(acall(server, f"question {i}", http_version="2") for i in range(50))
            )

        replies = asyncio.run(go())
        assert len(replies) == 50 and all(r.attempts == 1 for r in replies)
        assert server.protocols == ["h2"]
        assert server.peak_streams == 50  # all in flight at once on that one connection


def test_threads_share_one_connection_too() -> None:
    with H2FaultServer(latency=0.1) as server:
        replies: list[Any] = []

        def one() -> None:
            replies.append(call(server, http_version="2"))

        threads = [threading.Thread(target=one) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(replies) == 20
        assert server.protocols == ["h2"] and server.peak_streams > 1


def test_streams_beyond_the_servers_limit_wait_or_open_another_connection() -> None:
    with H2FaultServer(latency=0.05, max_concurrent_streams=5) as server:
        origin = origin_of(server)
        fields = [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":authority", b"127.0.0.1"),
            (b":path", b"/v1/chat/completions"),
        ]
        body = json.dumps({"model": "m", "messages": MESSAGES}).encode()

        async def go(max_connections: int) -> list[int]:
            pool = http2.AsyncPool(origin, asyncio.get_running_loop(), "h2", max_connections)
            try:
                responses = await asyncio.gather(
                    *(pool.request(fields, body, 5) for _ in range(20))
                )
                return [r.status for r in responses] + [pool.opened]
            finally:
                pool.close()

        *statuses, opened = asyncio.run(go(max_connections=1))
        assert statuses == [200] * 20 and opened == 1  # they waited for free streams
        assert server.peak_streams == 5
        *statuses, opened = asyncio.run(go(max_connections=10))
        assert statuses == [200] * 20 and opened == 4  # 20 streams, 5 per connection
        assert server.peak_streams == 5


def test_large_bodies_follow_flow_control() -> None:
    big = "x" * 300_000  # several times the server's 64 KiB initial window, both ways
    with H2FaultServer(reply=lambda body: body["messages"][0]["content"]) as server:
        reply = complete(
            [{"role": "user", "content": big}],
            model="openai/m",
            api_base=server.base_url,
            api_key="k",
            http_version="2",
            timeout=10,
        )
        assert reply.text == big
        assert asyncio.run(acall(server, big, http_version="2")).text == big


def test_a_timeout_cancels_the_stream_and_keeps_the_connection() -> None:
    with H2FaultServer() as server:
        server.inject("timeout")
        reply = call(server, http_version="2", timeout=0.3)
        assert reply.attempts == 2
        assert server.protocols == ["h2"]  # the retry went on the same connection


def test_streaming_with_tool_calls_over_h2c() -> None:
    with H2FaultServer() as server:
        server.reply = ToolCalls((("search", {"query": "ml"}),), content="Looking.")
        pieces: list[str] = []
        request = prepare(
            MESSAGES, model="openai/m", api_base=server.base_url, api_key="k", http_version="2"
        )
        from kaizen.flow import run_async

        reply = asyncio.run(run_async(model_call(request, on_text=pieces.append)))
        assert "".join(pieces) == reply.text == "Looking."
        assert [(c.name, json.loads(c.arguments)) for c in reply.tool_calls] == [
            ("search", {"query": "ml"})
        ]
        assert reply.finish_reason == "tool_calls"


# -- GOAWAY and lost connections -------------------------------------------------------------------


def test_goaway_before_the_request_was_processed_is_retried_on_a_new_connection() -> None:
    with H2FaultServer() as server:
        assert call(server, http_version="2").attempts == 1
        server.inject("goaway")
        reply = call(server, http_version="2")
        assert reply.attempts == 2
        assert server.protocols == ["h2", "h2"]
        server.inject("goaway")
        with pytest.raises(ModelError) as caught:
            call(server, http_version="2", retries=0)
        assert caught.value.retryable and caught.value.attempts == 1
        assert isinstance(caught.value.__cause__, ServerDisconnectedError)
        assert "GOAWAY" in str(caught.value)


def test_a_graceful_goaway_sends_later_calls_to_a_new_connection() -> None:
    with H2FaultServer(latency=0.3) as server:

        async def go() -> list[Any]:
            first = [asyncio.ensure_future(acall(server, http_version="2")) for _ in range(5)]
            while len(server.requests) < 5:  # the five are in flight
                await asyncio.sleep(0.01)
            server.goaway()
            await asyncio.sleep(0.05)
            later = await acall(server, http_version="2")
            return [*await asyncio.gather(*first), later]

        replies = asyncio.run(go())
        assert len(replies) == 6 and replies[-1].attempts == 1
        # the five in flight could not be read after the GOAWAY (h2 reads no frame after it):
        # retried on the new connection, like the calls of a dropped connection
        assert [r.attempts for r in replies[:5]] == [2] * 5
        assert server.protocols == ["h2", "h2"]


def test_a_dropped_connection_fails_every_stream_on_it_and_they_are_retried() -> None:
    with H2FaultServer(latency=0.1) as server:
        server.inject("drop")

        async def go() -> list[Any]:
            return await asyncio.gather(*(acall(server, http_version="2") for _ in range(10)))

        replies = asyncio.run(go())
        assert len(replies) == 10
        assert sorted(r.attempts for r in replies)[-1] == 2  # the dropped ones came back
        assert len(server.protocols) >= 2


# -- the client's HTTP/2 framing, sans IO ----------------------------------------------------------


class _Wire:
    """Where a client connection writes (a transport stand-in: bytes are kept, not sent)."""

    def __init__(self) -> None:
        self.sent = b""

    def write(self, data: bytes) -> None:
        self.sent += data

    def take(self) -> bytes:
        sent, self.sent = self.sent, b""
        return sent

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def close(self) -> None:
        pass

    abort = close


@settings(max_examples=60, deadline=None)
@given(
    body=st.binary(max_size=50_000),
    frame=st.integers(min_value=1, max_value=20_000),
    cuts=st.lists(st.integers(min_value=1, max_value=5_000), max_size=12),
)
def test_any_framing_and_split_of_a_response_gives_the_same_body(
    body: bytes, frame: int, cuts: list[int]
) -> None:
    import h2.config
    import h2.connection

    loop = asyncio.new_event_loop()
    try:
        pool = http2.AsyncPool(http1.Origin("http", "127.0.0.1", 9), loop, "h2")
        client = http2._Connection(pool)
        wire = _Wire()
        client.connection_made(wire)  # type: ignore[arg-type]

        def sent() -> bytes:  # what the client wrote (its writes go out on the loop's next turn)
            loop.run_until_complete(asyncio.sleep(0))
            return wire.take()

        server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        server.initiate_connection()
        server.receive_data(sent())
        client.data_received(server.data_to_send())
        assert client.ready.done()
        request = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"x")]
        stream_id, stream = client.start([*request, (b":path", b"/")], b"")
        client.flush()
        server.receive_data(sent())
        server.send_headers(stream_id, [(":status", "200"), ("x-a", "1"), ("x-a", "2")])
        for start in range(0, len(body), frame):
            server.send_data(stream_id, body[start : start + frame])
        server.end_stream(stream_id)
        data = server.data_to_send()
        position = 0
        for cut in [*cuts, len(data)]:
            client.data_received(data[position : position + cut])
            position += cut
        client.data_received(data[position:])
        assert stream.done and stream.status == 200 and stream.headers["x-a"] == "1, 2"
        assert stream.take_body() == body
    finally:
        loop.close()
