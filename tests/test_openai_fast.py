"""The pooled fast path for OpenAI-compatible servers (kaizen.llm.openai_compat, kaizen.llm.http1).

What both transports share (retries, typed errors, streaming, tool calls, usage and cost) is
tested on both in tests/test_llm_http.py. Here: when the fast path is chosen, the HTTP/1.1
parsing (hypothesis over how the bytes are split), connection reuse and its limits, servers that
close connections (idle, mid-response, after a `Connection: close`), closing pools with their
event loop, and keeping the key out of every message. Servers are real sockets on loopback.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kaizen
from kaizen.errors import ConfigError, ModelError
from kaizen.llm import acomplete, complete, http1
from kaizen.llm.http1 import ProtocolError, ResponseParser, ServerDisconnectedError
from kaizen.llm.openai_compat import OPENAI_COMPATIBLE, applies, request_body
from kaizen.llm.transport import LITELLM, transport_for
from kaizen.testing.fault_server import FaultServer

pytestmark = pytest.mark.timeout(60)

MESSAGES = [{"role": "user", "content": "What is machine learning?"}]
BASE = "http://127.0.0.1:9/v1"


# -- choosing the transport ------------------------------------------------------------------------


def test_auto_picks_the_fast_path_for_openai_models_with_an_api_base() -> None:
    kwargs = {"model": "openai/m", "messages": MESSAGES, "api_base": BASE, "timeout": 5}
    assert transport_for("openai/m", kwargs) is OPENAI_COMPATIBLE
    assert transport_for("openai/m", kwargs, "litellm") is LITELLM


@pytest.mark.parametrize(
    "model, extra",
    [
        ("openai/m", {"api_base": None}),  # OpenAI itself, through litellm
        ("anthropic/claude", {"api_base": BASE}),  # another provider
        ("openai/m", {"api_base": BASE, "custom_llm_provider": "x"}),  # a litellm-only option
        ("openai/m", {"api_base": "unix:///tmp/socket"}),
    ],
)
def test_auto_leaves_everything_else_to_litellm(model: str, extra: dict[str, Any]) -> None:
    kwargs = {"model": model, "messages": MESSAGES, **extra}
    assert not applies(model, kwargs)
    assert transport_for(model, kwargs) is LITELLM


def test_an_unknown_transport_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="openai-compatible"):
        transport_for("openai/m", {}, "fastest")


def test_forcing_the_fast_path_without_an_api_base_says_what_to_do() -> None:
    with pytest.raises(ModelError, match="api_base"):
        complete(MESSAGES, model="openai/m", api_key="k", transport="openai-compatible")


def test_the_body_is_what_litellm_sends() -> None:
    kwargs = {
        "model": "openai/m",
        "messages": MESSAGES,
        "timeout": 5.0,
        "num_retries": 0,
        "max_retries": 0,
        "api_base": BASE,
        "api_key": "sk-secret-value",
        "temperature": 0.2,
        "max_tokens": 50,
        "seed": None,
    }
    body = json.loads(request_body(kwargs))
    assert body == {"model": "m", "messages": MESSAGES, "temperature": 0.2, "max_tokens": 50}
    streaming = json.loads(request_body(kwargs, stream=True))
    assert streaming["stream"] is True and streaming["stream_options"] == {"include_usage": True}


def test_agents_choose_the_transport_in_config_or_environment(
    fault_server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    fault_server.reply = {"answer": "over http"}
    config = {"model": "openai/m", "api_base": fault_server.base_url, "api_key": "k"}
    agent = kaizen.create_agent("qa", signature="question -> answer", config=config)
    assert agent.execute(question="q").answer == "over http"
    assert options(config)["transport"] == "auto"
    forced = kaizen.create_agent("qa2", "question -> answer", {**config, "transport": "litellm"})
    assert forced.execute(question="q").answer == "over http"
    assert options({**config, "transport": "litellm"})["transport"] == "litellm"
    monkeypatch.setenv("KAIZEN_TRANSPORT", "litellm")
    assert options(config)["transport"] == "litellm"
    with pytest.raises(ConfigError, match="transport"):
        kaizen.create_agent("bad", "question -> answer", {**config, "transport": "fastest"})
    monkeypatch.setenv("KAIZEN_TRANSPORT", "nonsense")
    with pytest.raises(ConfigError, match="KAIZEN_TRANSPORT"):
        agent.execute(question="q")


def options(config: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments an agent with `config` gives `prepare`."""
    from kaizen.agents.config import AgentConfig, resolve_settings

    return dict(resolve_settings(AgentConfig.coerce(config, where="test")).call_options)


# -- HTTP/1.1 parsing -----------------------------------------------------------------------------


def parse(pieces: list[bytes]) -> ResponseParser:
    parser = ResponseParser()
    for piece in pieces:
        parser.feed(piece)
    return parser


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def chunked(body: bytes, sizes: list[int]) -> bytes:
    out, rest = [], body
    for size in sizes:
        if not rest:
            break
        piece, rest = rest[: max(size, 1)], rest[max(size, 1) :]
        out.append(b"%x;ext=1\r\n%s\r\n" % (len(piece), piece))
    if rest:
        out.append(b"%x\r\n%s\r\n" % (len(rest), rest))
    return b"".join(out) + b"0\r\nX-Trailer: t\r\n\r\n"


@settings(max_examples=150, deadline=None)
@given(
    body=st.binary(max_size=300),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=8),
    sizes=st.lists(st.integers(min_value=1, max_value=64), max_size=8),
    use_chunked=st.booleans(),
)
def test_any_split_of_a_response_parses_to_the_same_body(
    body: bytes, cuts: list[int], sizes: list[int], use_chunked: bool
) -> None:
    if use_chunked:
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        data = head + chunked(body, sizes)
    else:
        data = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    parser = ResponseParser()
    received = b""
    for piece in split(data, cuts):
        parser.feed(piece)
        received += parser.take_body()
    assert parser.done and parser.keep_alive
    assert (parser.status, received) == (200, body)


def test_informational_heads_are_skipped_and_headers_lowercased() -> None:
    parser = parse([b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 429 Too Many\r\nRetry-After: 2\r\n"])
    assert not parser.head_done
    parser.feed(b"Content-Length: 2\r\n\r\nno")
    assert parser.done and parser.status == 429 and parser.headers["retry-after"] == "2"


def test_a_body_until_close_ends_at_eof_and_the_connection_is_not_reused() -> None:
    parser = parse([b"HTTP/1.1 200 OK\r\n\r\npartial", b" body"])
    assert not parser.done
    parser.feed_eof()
    assert parser.done and not parser.keep_alive and parser.take_body() == b"partial body"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
    ],
)
def test_eof_before_the_end_is_a_server_disconnect(data: bytes) -> None:
    parser = parse([data])
    with pytest.raises(ServerDisconnectedError):
        parser.feed_eof()


@pytest.mark.parametrize(
    "data",
    [
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_bytes_that_are_not_http_are_a_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse([data])


def test_connection_close_and_http_1_0_are_not_kept_alive() -> None:
    closing = parse([b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"])
    assert closing.done and not closing.keep_alive
    old = parse([b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"])
    assert old.done and not old.keep_alive


# -- a scripted raw server -------------------------------------------------------------------------


class RawServer:
    """A loopback server that answers request N with `respond(N)`: the bytes to send, or None to
    close the connection without an answer. `close_after` closes each connection after that many
    answers. Counts connections and requests."""

    def __init__(self, respond: Callable[[int], bytes | None], close_after: int = 0) -> None:
        self.respond = respond
        self.close_after = close_after
        self.connections = 0
        self.requests = 0
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/v1"
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        answered = 0
        with conn:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                buffer = buffer[length:]
                with self._lock:
                    self.requests += 1
                    number = self.requests
                answer = self.respond(number)
                if answer is None:
                    return
                conn.sendall(answer)
                answered += 1
                if self.close_after and answered >= self.close_after:
                    return

    def close(self) -> None:
        self._sock.close()


@pytest.fixture
def raw_server() -> Iterator[Callable[..., RawServer]]:
    made: list[RawServer] = []

    def make(respond: Callable[[int], bytes | None], close_after: int = 0) -> RawServer:
        server = RawServer(respond, close_after)
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


def completion_bytes(text: str = "hi", extra_headers: bytes = b"", chunk: bool = False) -> bytes:
    body = json.dumps(
        {
            "choices": [{"message": {"content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1},
        }
    ).encode()
    if chunk:
        framed = chunked(body, [7, 1, 30])
        return (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n" + extra_headers + b"\r\n" + framed
        )
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n" % len(body)
    return head + extra_headers + b"\r\n" + body


def fast(server: RawServer | FaultServer, **options: Any) -> Any:
    options.setdefault("backoff", 0.01)
    options.setdefault("timeout", 5)
    return complete(MESSAGES, model="openai/m", api_base=server.base_url, api_key="k", **options)


async def afast(server: RawServer | FaultServer, **options: Any) -> Any:
    options.setdefault("backoff", 0.01)
    options.setdefault("timeout", 5)
    return await acomplete(
        MESSAGES, model="openai/m", api_base=server.base_url, api_key="k", **options
    )


# -- connections -----------------------------------------------------------------------------------


def test_sync_calls_reuse_one_connection(raw_server: Callable[..., RawServer]) -> None:
    server = raw_server(lambda n: completion_bytes(f"reply {n}", chunk=n % 2 == 0))
    texts = [fast(server).text for _ in range(5)]
    assert texts == [f"reply {n}" for n in range(1, 6)]
    assert server.connections == 1


def test_async_calls_reuse_connections_within_the_pool_bound(
    raw_server: Callable[..., RawServer],
) -> None:
    server = raw_server(lambda n: completion_bytes())

    async def go() -> None:
        for _ in range(3):
            await asyncio.gather(*(afast(server) for _ in range(10)))

    asyncio.run(go())
    assert server.requests == 30
    assert server.connections <= 10  # the second and third rounds reuse the first round's


def test_concurrency_beyond_the_pool_bound_waits_for_a_free_connection(
    fault_server: FaultServer,
) -> None:
    fault_server.latency = 0.05
    opened: list[int] = []

    async def go() -> None:
        loop = asyncio.get_running_loop()
        origin = http1.Origin("http", "127.0.0.1", fault_server.port)
        pool = http1.async_pool(origin, loop, max_connections=3)
        body = b"{}"
        head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n"
        responses = await asyncio.gather(*(pool.request(head, body, 5) for _ in range(9)))
        assert all(r.status == 200 for r in responses)
        opened.append(pool.opened)

    asyncio.run(go())
    assert opened == [3]  # nine requests over three connections


def test_a_connection_the_server_closed_while_idle_is_not_reused(
    raw_server: Callable[..., RawServer],
) -> None:
    server = raw_server(lambda n: completion_bytes(), close_after=1)
    attempts = []
    for _ in range(3):
        attempts.append(fast(server).attempts)
        time.sleep(0.2)  # the server's close arrives (a close racing a request is an error)
    assert attempts == [1, 1, 1]  # no failed attempt
    assert server.connections == 3

    async def go() -> list[int]:
        replies = []
        for _ in range(3):
            replies.append((await afast(server)).attempts)
            await asyncio.sleep(0.2)  # the loop sees the server's close
        return replies

    assert asyncio.run(go()) == [1, 1, 1]


def test_connection_close_header_opens_a_new_connection(
    raw_server: Callable[..., RawServer],
) -> None:
    server = raw_server(lambda n: completion_bytes(extra_headers=b"Connection: close\r\n"))
    for _ in range(3):
        fast(server)
    assert server.connections == 3


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_a_drop_mid_response_is_retried_then_a_typed_error(
    raw_server: Callable[..., RawServer], driver: str
) -> None:
    cut = completion_bytes()[:-10]  # head and most of the body, then the server goes away
    server = raw_server(lambda n: cut if n < 3 else completion_bytes("at last"), close_after=1)
    if driver == "sync":
        assert (reply := fast(server)).text == "at last" and reply.attempts == 3
    else:
        assert (reply := asyncio.run(afast(server))).text == "at last" and reply.attempts == 3
    server.respond = lambda n: cut
    with pytest.raises(ModelError) as caught:
        fast(server, retries=1) if driver == "sync" else asyncio.run(afast(server, retries=1))
    assert caught.value.retryable and caught.value.attempts == 2
    assert isinstance(caught.value.__cause__, ServerDisconnectedError)


def test_garbage_from_the_server_is_retried(raw_server: Callable[..., RawServer]) -> None:
    server = raw_server(lambda n: b"SSH-2.0-nope\r\n\r\n" if n == 1 else completion_bytes())
    assert fast(server).attempts == 2


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_a_stall_times_out_per_attempt(fault_server: FaultServer, driver: str) -> None:
    fault_server.inject("timeout", "timeout")
    with pytest.raises(ModelError) as caught:
        if driver == "sync":
            fast(fault_server, timeout=0.2, retries=1)
        else:
            asyncio.run(afast(fault_server, timeout=0.2, retries=1))
    assert (caught.value.status, caught.value.attempts) == (408, 2)


def test_the_pool_closes_its_connections_when_its_loop_shuts_down(
    fault_server: FaultServer,
) -> None:
    pools: list[http1.AsyncPool] = []

    async def go() -> None:
        await asyncio.gather(*(afast(fault_server) for _ in range(5)))
        origin = http1.Origin("http", "127.0.0.1", fault_server.port)
        pools.append(http1.async_pool(origin, asyncio.get_running_loop()))
        assert len(pools[0]._connections) == 5

    asyncio.run(go())
    assert len(pools[0]._connections) == 0  # closed by asyncio.run's shutdown, not leaked


def test_the_key_never_reaches_messages(raw_server: Callable[..., RawServer]) -> None:
    key = "sk-live-9f8e7d6c5b4a39281706"
    body = json.dumps({"error": {"message": f"Incorrect API key provided: {key}"}}).encode()
    answer = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    server = raw_server(lambda n: answer)
    with pytest.raises(ModelError) as caught:
        complete(MESSAGES, model="openai/m", api_base=server.base_url, api_key=key)
    assert caught.value.status == 401 and caught.value.attempts == 1
    assert key not in str(caught.value)
    from kaizen.llm import openai_compat

    assert all(key not in repr(endpoint) for endpoint in openai_compat._endpoints.values())


def test_without_a_key_it_is_an_authentication_error(
    fault_server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ModelError) as caught:
        complete(MESSAGES, model="openai/m", api_base=fault_server.base_url)
    assert (caught.value.status, caught.value.retryable, caught.value.attempts) == (401, False, 1)
    assert fault_server.requests == []  # nothing sent
    monkeypatch.setenv("OPENAI_API_KEY", "from-the-environment")
    assert complete(MESSAGES, model="openai/m", api_base=fault_server.base_url).text
