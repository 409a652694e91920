"""The pooled fast path for OpenAI-compatible servers (kaizen.llm.http: aiohttp underneath).

What both transports share (retries, typed errors, streaming, tool calls, usage and cost) is
tested on both in tests/test_llm_http.py. Here: when the fast path is chosen, reading server-sent
events (hypothesis over how the stream is split), connection reuse and its bound, servers that
close connections (idle, mid-response, after a `Connection: close`), closing the session with
its event loop, HTTPS with verified certificates, proxies from the environment, and keeping the
key out of every message. Servers are real sockets on loopback.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kaizen
from kaizen.errors import ConfigError, ModelError
from kaizen.llm import acomplete, complete
from kaizen.llm.http import session as http_session
from kaizen.llm.http.openai_compat import (
    OPENAI_COMPATIBLE,
    MalformedResponseError,
    ServerDisconnectedError,
    _EventReader,
    applies,
    request_body,
)
from kaizen.llm.transport import LITELLM, StreamAssembler, transport_for
from kaizen.testing.fault_server import FaultServer
from kaizen.testing.tls import loopback_certificate

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


# -- server-sent events ------------------------------------------------------------------------


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


def event_stream(pieces: list[str], line_end: bytes) -> bytes:
    chunks = [{"choices": [{"delta": {"content": piece}}]} for piece in pieces]
    chunks.append({"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 2}})
    events = [b"data: " + json.dumps(chunk).encode() for chunk in chunks] + [b"data: [DONE]"]
    return b"".join(event + line_end + line_end for event in events)


@settings(max_examples=150, deadline=None)
@given(
    pieces=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=6),
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=10),
    line_end=st.sampled_from([b"\n", b"\r\n"]),
)
def test_any_split_of_an_event_stream_reads_to_the_same_reply(
    pieces: list[str], cuts: list[int], line_end: bytes
) -> None:
    seen: list[str] = []
    reader = _EventReader(StreamAssembler(seen.append))
    done = False
    for part in split(event_stream(pieces, line_end), cuts):
        done = reader.feed(part)
        if done:
            break
    reply = reader.reply("openai/m")
    assert done and reply.text == "".join(pieces) == "".join(seen)
    assert (reply.prompt_tokens, reply.completion_tokens) == (4, 2)


@pytest.mark.parametrize("event", [b"data: {not json\n\n", b"data: [1, 2]\n\n"])
def test_a_garbled_event_is_a_malformed_response(event: bytes) -> None:
    with pytest.raises(MalformedResponseError):
        _EventReader(StreamAssembler()).feed(event)


# -- a scripted raw server -------------------------------------------------------------------------


class RawServer:
    """A loopback server that answers request N with `respond(N)`: the bytes to send, or None to
    close the connection without an answer. `close_after` closes each connection after that many
    answers. Counts connections, requests and the connections it closed (`wait_closed`)."""

    def __init__(self, respond: Callable[[int], bytes | None], close_after: int = 0) -> None:
        self.respond = respond
        self.close_after = close_after
        self.connections = 0
        self.requests = 0
        self.closed = 0
        self._lock = threading.Lock()
        self._closing = threading.Condition(self._lock)
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
            threading.Thread(target=self._serve_then_count, args=(conn,), daemon=True).start()

    def _serve_then_count(self, conn: socket.socket) -> None:
        try:
            self._serve(conn)  # (closes `conn` when it returns)
        finally:
            with self._closing:
                self.closed += 1
                self._closing.notify_all()

    def wait_closed(self, count: int) -> None:
        """Until this server has closed `count` connections (its FIN is then on its way)."""
        with self._closing:
            assert self._closing.wait_for(lambda: self.closed >= count, timeout=30)

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


def test_concurrency_beyond_the_connection_bound_waits_for_a_free_connection(
    fault_server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_session, "MAX_CONNECTIONS", 3)  # for sessions made from now on
    fault_server.latency = 0.05

    async def go() -> None:
        replies = await asyncio.gather(*(afast(fault_server) for _ in range(9)))
        assert all(reply.attempts == 1 for reply in replies)

    asyncio.run(go())
    assert fault_server.connections == 3  # nine requests over three connections


def test_a_connection_the_server_closed_while_idle_is_not_reused(
    raw_server: Callable[..., RawServer],
) -> None:
    server = raw_server(lambda n: completion_bytes(), close_after=1)
    attempts = []
    for n in range(3):
        attempts.append(fast(server).attempts)
        server.wait_closed(n + 1)  # closed before the next request (racing it is an error)
    assert attempts == [1, 1, 1]  # no failed attempt
    assert server.connections == 3

    async def go() -> list[int]:
        replies = []
        for n in range(3, 6):
            replies.append((await afast(server)).attempts)
            await asyncio.to_thread(server.wait_closed, n + 1)
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


def test_the_session_closes_its_connections_when_its_loop_shuts_down(
    fault_server: FaultServer,
) -> None:
    sessions = []

    async def go() -> None:
        await asyncio.gather(*(afast(fault_server) for _ in range(5)))
        sessions.append(await http_session.session_for())
        assert fault_server.open_connections == 5

    asyncio.run(go())
    assert sessions[0].closed  # closed by asyncio.run's shutdown, not leaked
    wait_until(lambda: fault_server.open_connections == 0)


def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Poll `condition` (another thread makes it true) until it holds; fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true"
        time.sleep(0.01)


# -- HTTPS -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_https_verifies_the_server_against_the_trusted_authorities(
    monkeypatch: pytest.MonkeyPatch, driver: str
) -> None:
    with FaultServer(tls=True, reply="over TLS") as server:
        monkeypatch.setenv("SSL_CERT_FILE", loopback_certificate().ca_file)
        reply = fast(server) if driver == "sync" else asyncio.run(afast(server))
        assert reply.text == "over TLS"
        monkeypatch.setenv("SSL_CERT_FILE", __file__)  # a file holding no authority at all
        monkeypatch.setenv("SSL_CERT_DIR", str(Path(__file__).parent))
        with pytest.raises(ModelError, match="CERTIFICATE_VERIFY_FAILED") as caught:
            fast(server) if driver == "sync" else asyncio.run(afast(server))
        assert caught.value.attempts == 1 and not caught.value.retryable
        assert len(server.requests) == 1  # the untrusted server was sent nothing


# -- proxies ---------------------------------------------------------------------------------------


class ForwardProxy:
    """A loopback HTTP proxy on its own thread: forwards absolute-form requests (``http://``
    targets) and tunnels ``CONNECT`` (``https://``); counts both."""

    def __init__(self) -> None:
        self.forwarded = 0  # requests forwarded to an http:// server
        self.tunnels = 0  # CONNECT tunnels opened to an https:// server
        self._pipes: set[asyncio.Future[None]] = set()
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self._thread.start()
        started.wait()

    def _run(self, started: threading.Event) -> None:
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        started.set()
        self._loop.run_forever()
        server.close()
        tasks = asyncio.all_tasks(self._loop)
        for task in tasks:
            task.cancel()
        if tasks:
            self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: asyncio.StreamWriter | None = None
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, _, rest = head.partition(b"\r\n")
                method, target, version = request_line.split(b" ")
                if method == b"CONNECT":
                    host, port = target.decode().rsplit(":", 1)
                    up_reader, upstream = await asyncio.open_connection(host, int(port))
                    self.tunnels += 1
                    writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    await asyncio.gather(pipe(reader, upstream), pipe(up_reader, writer))
                    return
                length = int(rest.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                body = await reader.readexactly(length)
                parts = urlsplit(target.decode())
                if upstream is None:
                    up_reader, upstream = await asyncio.open_connection(parts.hostname, parts.port)
                    self._pipes.add(asyncio.ensure_future(pipe(up_reader, writer)))
                path = parts.path.encode() + (b"?" + parts.query.encode() if parts.query else b"")
                upstream.write(b"%s %s %s\r\n%s%s" % (method, path, version, rest, body))
                self.forwarded += 1
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.transport.abort()
            if upstream is not None:
                upstream.transport.abort()

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[ForwardProxy]:
    """A `ForwardProxy` named by HTTP_PROXY and HTTPS_PROXY (and no NO_PROXY)."""
    server = ForwardProxy()
    for name in ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", server.url)
    monkeypatch.setenv("HTTPS_PROXY", server.url)
    yield server
    server.close()


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_calls_go_through_the_proxy_the_environment_names(
    fault_server: FaultServer, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch, driver: str
) -> None:
    fault_server.reply = "proxied"

    def three_calls() -> list[str]:
        if driver == "sync":
            return [fast(fault_server).text for _ in range(3)]

        async def go() -> list[str]:
            return [(await afast(fault_server)).text for _ in range(3)]

        return asyncio.run(go())

    assert three_calls() == ["proxied"] * 3
    assert proxy.forwarded == 3 and len(fault_server.requests) == 3
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    assert three_calls() == ["proxied"] * 3
    assert proxy.forwarded == 3 and len(fault_server.requests) == 6  # straight to the server


def test_https_goes_through_a_connect_tunnel(
    proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", loopback_certificate().ca_file)
    with FaultServer(tls=True, reply="tunnelled") as server:
        assert asyncio.run(afast(server)).text == "tunnelled"
        assert (proxy.tunnels, proxy.forwarded, len(server.requests)) == (1, 0, 1)


def test_the_key_never_reaches_messages(raw_server: Callable[..., RawServer]) -> None:
    key = "sk-live-9f8e7d6c5b4a39281706"
    body = json.dumps({"error": {"message": f"Incorrect API key provided: {key}"}}).encode()
    answer = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    server = raw_server(lambda n: answer)
    with pytest.raises(ModelError) as caught:
        complete(MESSAGES, model="openai/m", api_base=server.base_url, api_key=key)
    assert caught.value.status == 401 and caught.value.attempts == 1
    assert key not in str(caught.value)
    from kaizen.llm.http import openai_compat

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
