"""HTTP/2 for the fast model path: many concurrent calls multiplexed on one connection.

Rides on the `h2` package (sans-IO, pure Python; the ``http2`` extra), imported only when a
connection is opened. `kaizen.llm.openai_compat` decides when to use it (`negotiated` remembers
what each https endpoint answered in ALPN) and falls back to `kaizen.llm.http1` otherwise.

- `AsyncPool` (one per endpoint, mode and event loop) sends each request as a stream of a shared
  connection. A connection carries at most the server's ``MAX_CONCURRENT_STREAMS``; a request
  beyond every open connection's limit opens another (at most `max_connections`), then waits for
  a free stream. A new connection waits for the server's SETTINGS before it takes streams, so the
  limit is known before it is reached.
- Modes: ``"alpn"`` (https: offer ``h2`` and ``http/1.1`` and use what the server picks; when it
  picks HTTP/1.1, `NotNegotiated` tells the caller to use HTTP/1.1 and the answer is cached) and
  ``"h2"`` (http: h2c with prior knowledge; https: ALPN ``h2`` only).
- GOAWAY: the connection takes no new streams (the next request opens another), and the
  requests in flight on it fail as on a dropped connection, since `h2` reads no frame after a
  GOAWAY (a graceful shutdown's last responses are lost; the retry rules resend them).
- Flow control: request bodies are sent as the server's windows allow (waiting for its
  WINDOW_UPDATE); received data is acknowledged as it arrives.
- `SyncPool` serves blocking callers (threads) by running the same pool on one background event
  loop, so threads share its connections too.

Errors are `kaizen.llm.http1`'s, so the retry rules treat both versions alike: a connection that
is lost, a stream the server resets or a GOAWAY that leaves a request unprocessed are
`ServerDisconnectedError` (a `ConnectionError`), bytes that break HTTP/2 a `ProtocolError`, and no
complete response within the attempt's time a `TimeoutError` (the stream is then cancelled with
RST_STREAM, the connection kept). A server that does not speak HTTP/2 when told to
(``http_version="2"``) is a `ConfigError`, not retried. No message quotes a request header, so
credentials stay out.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib.util
import threading
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from kaizen import process
from kaizen.errors import ConfigError
from kaizen.llm.http1 import Origin, ProtocolError, Response, ServerDisconnectedError

__all__ = [
    "MAX_CONNECTIONS",
    "AsyncPool",
    "NotNegotiated",
    "SyncPool",
    "async_pool",
    "available",
    "negotiated",
    "sync_pool",
]

MAX_CONNECTIONS = 10  # per endpoint, mode and loop; a new one opens only when the others are full
_WINDOW = 16 * 1024 * 1024  # what we let the server send before acknowledging (per stream)
_T = TypeVar("_T")

Headers = Sequence[tuple[bytes, bytes]]


class NotNegotiated(Exception):
    """The https server chose HTTP/1.1 in ALPN: send the request over HTTP/1.1 instead."""


_available: bool | None = None


def available() -> bool:
    """Whether the `h2` package is installed (without importing it)."""
    global _available
    if _available is None:
        _available = importlib.util.find_spec("h2") is not None
    return _available


# what each https origin chose in ALPN: "h2" or "http/1.1" (for the process's life)
_negotiated: dict[Origin, str] = {}


def negotiated(origin: Origin) -> str | None:
    """The protocol `origin` chose when last asked (``"h2"``, ``"http/1.1"``), or None."""
    return _negotiated.get(origin)


@dataclass(slots=True, eq=False)
class _Stream:
    """One request's response as it arrives."""

    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    pieces: list[bytes] = field(default_factory=list)
    head_done: bool = False
    done: bool = False
    error: BaseException | None = None
    waiter: asyncio.Future[None] | None = None  # woken by news on this stream
    window: asyncio.Future[None] | None = None  # woken when the server widens a window

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def fail(self, error: BaseException) -> None:
        if not self.done and self.error is None:
            self.error = error
        self.wake()
        self.widen()

    def widen(self) -> None:
        window = self.window
        if window is not None and not window.done():
            window.set_result(None)

    def take_body(self) -> bytes:
        pieces = self.pieces
        if not pieces:
            return b""
        self.pieces = []
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)


class _Connection(asyncio.Protocol):
    """One HTTP/2 connection: an `h2.connection.H2Connection` fed by an asyncio transport."""

    def __init__(self, pool: AsyncPool) -> None:
        import h2.config
        import h2.connection

        self.pool = pool
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(
                client_side=True,
                header_encoding="latin-1",
                # our request headers are built lower-case and checked (openai_compat)
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
            )
        )
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, _Stream] = {}
        self.ready: asyncio.Future[None] = pool.loop.create_future()  # the server's SETTINGS
        self.refused = False  # ALPN chose another protocol: never spoke HTTP/2
        self.going_away = False  # GOAWAY received or closing: no new streams
        self.lost = False
        self._first_bytes = b""
        self._flush_soon = False

    # -- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None and ssl_object.selected_alpn_protocol() != "h2":
            self.refused = True
            return
        from h2.settings import SettingCodes

        self.h2.initiate_connection()
        self.h2.update_settings(
            {SettingCodes.ENABLE_PUSH: 0, SettingCodes.INITIAL_WINDOW_SIZE: _WINDOW}
        )
        self.h2.increment_flow_control_window(_WINDOW)
        self.flush()

    def data_received(self, data: bytes) -> None:
        import h2.exceptions

        if self.refused:
            return
        if not self.ready.done() and len(self._first_bytes) < 64:
            self._first_bytes += data[:64]
            first = self._first_bytes
            # an HTTP/2 server's first frame is SETTINGS (type 4 at byte 3); an HTTP/1.1 server
            # answers the preface with a status line, which h2 would wait on as a huge frame
            if len(first) >= 9 and (first[3] != 4 or first.startswith(b"HTTP/")):
                self._broken(None)
                return
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self._broken(exc)
            return
        for event in events:
            self._on_event(event)
        self.flush()

    def eof_received(self) -> bool | None:
        return None  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.going_away = True
        error = ServerDisconnectedError(
            "the server closed the HTTP/2 connection before a complete response"
        )
        if not self.ready.done():
            self.ready.set_exception(error)
            self.ready.exception()  # retrieved: whoever waits gets it; nobody may be waiting
        for stream in self.streams.values():
            stream.fail(error)
        self.streams.clear()
        self.pool._forget(self)

    # -- events ----------------------------------------------------------------------------------
    def _on_event(self, event: Any) -> None:
        import h2.events as ev

        if isinstance(event, ev.DataReceived):
            self._on_data(event)
        elif isinstance(event, ev.ResponseReceived):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                self._on_head(stream, event.headers or ())
        elif isinstance(event, ev.StreamEnded):
            stream = self.streams.pop(event.stream_id, None)
            if stream is not None:
                stream.done = True
                stream.wake()
                self.pool._wake_waiters()
        elif isinstance(event, ev.StreamReset):
            stream = self.streams.pop(event.stream_id, None)
            if stream is not None:
                code = int(event.error_code or 0)
                stream.fail(
                    ServerDisconnectedError(f"the server reset the HTTP/2 stream (code {code})")
                )
                self.pool._wake_waiters()
        elif isinstance(event, ev.WindowUpdated):
            if event.stream_id == 0:
                for stream in self.streams.values():
                    stream.widen()
            elif (stream := self.streams.get(event.stream_id)) is not None:
                stream.widen()
        elif isinstance(event, ev.RemoteSettingsChanged):
            if not self.ready.done():
                self.ready.set_result(None)
            for stream in self.streams.values():  # INITIAL_WINDOW_SIZE may have grown
                stream.widen()
            self.pool._wake_waiters()
        elif isinstance(event, ev.ConnectionTerminated):
            self._on_goaway(int(event.error_code or 0), event.last_stream_id)

    def _on_head(self, stream: _Stream, headers: Sequence[tuple[Any, Any]]) -> None:
        # names and values are str: the connection decodes them (header_encoding)
        fields: dict[str, str] = {}
        status = 0
        for name, value in headers:
            if name == ":status":
                status = int(value)
            elif not name.startswith(":"):
                fields[name] = f"{fields[name]}, {value}" if name in fields else value
        stream.status = status
        stream.headers = fields
        stream.head_done = True
        stream.wake()

    def _on_data(self, event: Any) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.pieces.append(event.data)
            stream.wake()
        with contextlib.suppress(Exception):  # a stream we reset: the connection window counts
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)

    def _on_goaway(self, error_code: int, last_stream_id: int | None) -> None:
        """The server stops taking streams. Those above `last_stream_id` were never processed;
        the others might still be answered, but `h2` reads no frame after a GOAWAY, so every
        stream in flight fails as a dropped connection would (the retry rules resend it)."""
        self.going_away = True
        self.pool._retire(self)
        for stream_id, stream in self.streams.items():
            if last_stream_id is None or stream_id > last_stream_id:
                why = "did not process this request"
            else:
                why = "may have processed this request, but no response follows a GOAWAY here"
            stream.fail(
                ServerDisconnectedError(
                    f"the server is closing the HTTP/2 connection (GOAWAY, error code "
                    f"{error_code}) and {why}"
                )
            )
        self.streams.clear()
        self.pool._wake_waiters()
        self.close()

    def _broken(self, exc: Exception | None) -> None:
        error: Exception
        if not self.ready.done() and (exc is None or not self._first_bytes.startswith(b"\x00")):
            error = ConfigError(  # a setting to change, not a fault to retry
                f"the server at {self.pool.origin.host_header} does not speak HTTP/2 "
                f"(it sent {self._first_bytes[:24]!r}); use http_version='1.1'"
            )
        else:
            error = ProtocolError(f"the server broke the HTTP/2 protocol: {exc}")
        if not self.ready.done():
            self.ready.set_exception(error)
            self.ready.exception()
        for stream in self.streams.values():
            stream.fail(error)
        self.streams.clear()
        self.close()

    # -- sending ---------------------------------------------------------------------------------
    def flush(self) -> None:
        """Send what h2 has framed, once per turn of the loop: the requests many callers start
        together leave in one write (one system call instead of one each)."""
        if not self._flush_soon:
            self._flush_soon = True
            self.pool.loop.call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._flush_soon = False
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.lost:
            self.transport.write(data)

    @property
    def free_streams(self) -> int:
        if self.going_away or self.lost or not self.ready.done():
            return 0
        limit = self.h2.remote_settings.max_concurrent_streams
        return int(limit) - len(self.streams)

    def start(self, headers: Headers, body: bytes) -> tuple[int, _Stream]:
        stream_id = self.h2.get_next_available_stream_id()
        stream = _Stream()
        self.streams[stream_id] = stream
        self.h2.send_headers(stream_id, headers, end_stream=not body)
        return stream_id, stream

    async def send_body(
        self, stream_id: int, stream: _Stream, body: bytes, deadline: float, timeout: float
    ) -> None:
        """Send `body` as the flow-control windows allow."""
        view = memoryview(body)
        sent = 0
        while sent < len(body):
            if stream.error is not None:
                raise stream.error
            if stream.done:  # the server answered before reading it all (an error status)
                return
            allowed = min(
                self.h2.local_flow_control_window(stream_id), self.h2.max_outbound_frame_size
            )
            if allowed <= 0:
                self.flush()
                stream.window = self.pool.loop.create_future()
                await _until(stream.window, self.pool.loop, deadline, timeout)
                continue
            piece = bytes(view[sent : sent + allowed])
            sent += len(piece)
            self.h2.send_data(stream_id, piece, end_stream=sent == len(body))
        self.flush()

    def cancel(self, stream_id: int) -> None:
        """Give up on a stream (timeout, caller gone): RST_STREAM, so the server stops too."""
        import h2.errors

        tracked = self.streams.pop(stream_id, None) is not None
        state = self.h2.streams.get(stream_id)
        if state is not None and not state.closed and not self.lost:
            with contextlib.suppress(Exception):  # closed on h2's side meanwhile
                self.h2.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
                self.flush()
        if tracked:
            self.pool._wake_waiters()
        if self.going_away and not self.streams:
            self.close()

    def close(self) -> None:
        self.going_away = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.going_away = True
        if self.transport is not None:
            self.transport.abort()


async def _until(
    future: asyncio.Future[Any], loop: asyncio.AbstractEventLoop, deadline: float, timeout: float
) -> None:
    expire = loop.call_at(deadline, _time_out, future, timeout)
    try:
        await future
    finally:
        expire.cancel()


def _time_out(future: asyncio.Future[Any], timeout: float) -> None:
    if not future.done():
        future.set_exception(
            TimeoutError(f"no complete response within the timeout ({timeout:g} s)")
        )


class AsyncPool:
    """HTTP/2 connections to one origin on one event loop (see the module docstring)."""

    def __init__(
        self,
        origin: Origin,
        loop: asyncio.AbstractEventLoop,
        mode: str = "alpn",
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.origin = origin
        self.loop = loop
        self.mode = mode
        self.max_connections = max_connections
        self._ssl = _ssl_context(origin, mode)
        self._connections: list[_Connection] = []  # open, taking streams
        self._all: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._connecting: asyncio.Future[None] | None = None
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.opened = 0  # connections opened over the pool's life (tests count them)
        self._closer: Any = None

    async def request(self, headers: Headers, body: bytes, timeout: float) -> Response:
        """Send one request and wait for its complete response (`timeout`: the whole attempt)."""
        loop = self.loop
        deadline = loop.time() + timeout
        connection, stream_id, stream = await self._send(headers, body, deadline, timeout)
        try:
            while not stream.done:
                if stream.error is not None:
                    raise stream.error
                stream.waiter = loop.create_future()
                await _until(stream.waiter, loop, deadline, timeout)
            return Response(stream.status, stream.headers, stream.take_body())
        finally:
            connection.cancel(stream_id)  # a no-op once the stream ended

    async def stream(
        self, headers: Headers, body: bytes, timeout: float
    ) -> tuple[int, dict[str, str], AsyncIterator[bytes]]:
        """Send one request; return the status, headers and the body as it arrives. `timeout`
        bounds the wait for the head and then each wait for more of the body."""
        loop = self.loop
        connection, stream_id, stream = await self._send(
            headers, body, loop.time() + timeout, timeout
        )
        try:
            while not stream.head_done:
                if stream.error is not None:
                    raise stream.error
                if stream.done:
                    raise ServerDisconnectedError("the HTTP/2 stream ended without a response")
                stream.waiter = loop.create_future()
                await _until(stream.waiter, loop, loop.time() + timeout, timeout)
        except BaseException:
            connection.cancel(stream_id)
            raise
        return stream.status, stream.headers, self._body(connection, stream_id, stream, timeout)

    async def _body(
        self, connection: _Connection, stream_id: int, stream: _Stream, timeout: float
    ) -> AsyncIterator[bytes]:
        loop = self.loop
        try:
            while True:
                data = stream.take_body()
                if data:
                    yield data
                    continue
                if stream.done:
                    return
                if stream.error is not None:
                    raise stream.error
                stream.waiter = loop.create_future()
                await _until(stream.waiter, loop, loop.time() + timeout, timeout)
        finally:
            connection.cancel(stream_id)

    async def _send(
        self, headers: Headers, body: bytes, deadline: float, timeout: float
    ) -> tuple[_Connection, int, _Stream]:
        connection = await self._acquire(deadline, timeout)
        stream_id, stream = connection.start(headers, body)
        try:
            if body:
                await connection.send_body(stream_id, stream, body, deadline, timeout)
            else:
                connection.flush()
        except BaseException:
            connection.cancel(stream_id)
            raise
        return connection, stream_id, stream

    async def _acquire(self, deadline: float, timeout: float) -> _Connection:
        """A connection with a free stream: an open one, else a new one, else wait."""
        loop = self.loop
        while True:
            for connection in self._connections:
                if connection.free_streams > 0:
                    return connection
            if self._connecting is not None:  # one connection at a time: it may be enough
                await _until(asyncio.shield(self._connecting), loop, deadline, timeout)
                continue
            if len(self._connections) < self.max_connections:
                await self._open(deadline, timeout)
                continue
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            await _until(waiter, loop, deadline, timeout)

    async def _open(self, deadline: float, timeout: float) -> None:
        loop = self.loop
        connecting: asyncio.Future[None] = loop.create_future()
        self._connecting = connecting
        try:
            connection = await asyncio.wait_for(self._connect(), max(deadline - loop.time(), 0))
            try:
                await _until(asyncio.shield(connection.ready), loop, deadline, timeout)
            except BaseException:
                connection.abort()
                raise
            self._connections.append(connection)
            connecting.set_result(None)
        except BaseException as exc:
            # the others waiting on this connection try again themselves (and see the cause)
            if isinstance(exc, Exception):
                connecting.set_exception(exc)
                connecting.exception()
            else:
                connecting.cancel()
            raise
        finally:
            self._connecting = None

    async def _connect(self) -> _Connection:
        if self._closer is None:
            self._closer = _close_on_shutdown(self)
            await self._closer.__anext__()  # registered with the loop's asyncgen shutdown
        origin = self.origin
        _, connection = await self.loop.create_connection(
            lambda: _Connection(self),
            origin.host,
            origin.port,
            ssl=self._ssl,
            server_hostname=origin.host if self._ssl is not None else None,
        )
        self._all.add(connection)
        if self._ssl is not None:
            _negotiated[origin] = "http/1.1" if connection.refused else "h2"
        if connection.refused:
            connection.close()
            if self.mode == "alpn":
                raise NotNegotiated(f"{origin.host_header} chose HTTP/1.1")
            raise ConfigError(
                f"the server at {origin.host_header} does not offer HTTP/2 (ALPN); "
                "use http_version='auto' or '1.1'"
            )
        self.opened += 1
        return connection

    def _retire(self, connection: _Connection) -> None:
        """No new streams on `connection` (GOAWAY): later requests open another one."""
        with contextlib.suppress(ValueError):
            self._connections.remove(connection)
        self._wake_waiters()

    def _forget(self, connection: _Connection) -> None:
        self._retire(connection)
        self._all.discard(connection)

    def _wake_waiters(self) -> None:
        """A stream or connection slot may be free: let every waiter look again."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def close(self) -> None:
        """Close every connection of this pool."""
        for connection in list(self._all):
            connection.abort()
        self._connections.clear()

    def close_sockets(self) -> None:
        """Shut the sockets down without the (closed) loop."""
        import socket

        for connection in list(self._all):
            transport = connection.transport
            sock = transport.get_extra_info("socket") if transport is not None else None
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self._connections.clear()


async def _close_on_shutdown(pool: AsyncPool) -> AsyncIterator[None]:
    """Kept suspended by its pool; the loop's shutdown (`loop.shutdown_asyncgens()`) closes
    it, and with it the pool's connections (as in `kaizen.llm.http1`)."""
    try:
        yield
        yield  # never reached
    finally:
        pool.close()


def _ssl_context(origin: Origin, mode: str) -> Any:
    if origin.scheme != "https":
        return None
    import ssl

    context = ssl.create_default_context()
    context.set_alpn_protocols(["h2", "http/1.1"] if mode == "alpn" else ["h2"])
    return context


# -- blocking callers ------------------------------------------------------------------------------


class _Bridge:
    """One background event loop on a daemon thread, where blocking callers' requests run."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="kaizen-http2", daemon=True
        )
        self.thread.start()

    def run(self, awaitable: Awaitable[_T]) -> _T:
        future = asyncio.run_coroutine_threadsafe(_awaited(awaitable), self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # the caller is gone (KeyboardInterrupt): the stream is cancelled
            raise

    def stop(self) -> None:
        def shut() -> None:
            for pool in [p for k, p in _async_pools.items() if k[2] is self.loop]:
                pool.close()
            self.loop.stop()

        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(shut)
        self.thread.join(timeout=2)


async def _awaited(awaitable: Awaitable[_T]) -> _T:
    return await awaitable


class SyncPool:
    """`AsyncPool` for blocking callers: the requests run on a background event loop."""

    def __init__(self, pool: AsyncPool, bridge: _Bridge) -> None:
        self.pool = pool
        self._bridge = bridge

    @property
    def opened(self) -> int:
        return self.pool.opened

    def request(self, headers: Headers, body: bytes, timeout: float) -> Response:
        return self._bridge.run(self.pool.request(headers, body, timeout))

    def stream(
        self, headers: Headers, body: bytes, timeout: float
    ) -> tuple[int, dict[str, str], Iterator[bytes]]:
        status, fields, pieces = self._bridge.run(self.pool.stream(headers, body, timeout))
        return status, fields, self._body(pieces)

    def _body(self, pieces: AsyncIterator[bytes]) -> Iterator[bytes]:
        run = self._bridge.run
        try:
            while True:
                try:
                    yield run(pieces.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            run(pieces.aclose())  # type: ignore[attr-defined]


# -- the process's pools ---------------------------------------------------------------------------

_pools_lock = threading.Lock()
_async_pools: dict[tuple[Origin, str, asyncio.AbstractEventLoop], AsyncPool] = {}
_bridge: _Bridge | None = None


def async_pool(origin: Origin, loop: asyncio.AbstractEventLoop, mode: str = "alpn") -> AsyncPool:
    """The pool for `origin` in `mode` on `loop` (made on first use; pools of closed loops are
    dropped)."""
    key = (origin, mode, loop)
    pool = _async_pools.get(key)
    if pool is None:
        with _pools_lock:
            for stale_key, stale in list(_async_pools.items()):
                if stale.loop.is_closed():
                    stale.close_sockets()
                    del _async_pools[stale_key]
            pool = _async_pools.get(key)
            if pool is None:
                pool = AsyncPool(origin, loop, mode)
                _async_pools[key] = pool
    return pool


def sync_pool(origin: Origin, mode: str = "alpn") -> SyncPool:
    """The pool for blocking callers: `async_pool` on the process's background loop."""
    global _bridge
    if _bridge is None:
        with _pools_lock:
            if _bridge is None:
                _bridge = _Bridge()
    return SyncPool(async_pool(origin, _bridge.loop, mode), _bridge)


@atexit.register
def close_all() -> None:
    """Close every HTTP/2 connection of the process (at exit)."""
    global _bridge
    bridge, _bridge = _bridge, None
    if bridge is not None:
        bridge.stop()
    with _pools_lock:
        pools = list(_async_pools.values())
        _async_pools.clear()
    for pool in pools:
        if pool.loop.is_closed() or not pool.loop.is_running():
            pool.close_sockets()
        else:
            with contextlib.suppress(RuntimeError):
                pool.loop.call_soon_threadsafe(pool.close)


def _forget_pools() -> None:
    """Drop the process's pools and what origins negotiated (`kaizen.process`)."""
    _negotiated.clear()
    _async_pools.clear()


def _forget_bridge() -> None:
    global _bridge
    _bridge = None  # its thread is not in a forked child


process.register("llm.http2", _forget_pools)
process.register("llm.http2.bridge", _forget_bridge, fork_only=True)
