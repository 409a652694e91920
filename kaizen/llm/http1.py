"""A small HTTP/1.1 client with pooled keep-alive connections: what the fast model path rides on.

Why not httpx: measured on a 2-core machine against the loopback `FaultServer`, 100 concurrent
POSTs cost 0.25 s through `httpx.AsyncClient` and 8 ms over plain asyncio streams; a model call
carries one small JSON request and one small JSON reply, and the parsing below is all it needs.

- `ResponseParser` is sans-IO: bytes in, status / headers / body out. It reads Content-Length,
  chunked and read-until-close bodies, skips 1xx heads, and says whether the connection may be
  reused. Both clients feed it.
- `AsyncPool` (one per endpoint and event loop) keeps idle connections and opens at most
  `max_connections`; callers beyond that wait for a free one. Connections are asyncio protocols
  (no stream objects, no tasks per request). The pool closes its connections when its loop shuts
  down (`asyncio.run`, `asyncio.Runner.close`: the loop's async-generator shutdown hook).
- `SyncPool` (one per endpoint, shared by threads) does the same over blocking sockets.

An idle connection the server closed is noticed before reuse (asyncio reports the close; a
blocking socket is polled), so a request is never silently sent twice: a connection that breaks
after a request went out is an error for the caller's retry rules, not retried here.

Errors: `ServerDisconnectedError` (a `ConnectionError`: closed before a full response),
`ProtocolError` (not HTTP), `TimeoutError` (no full response within the attempt's time). None
of them quotes a request header, so credentials never reach a message.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import select
import socket
import threading
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from kaizen import process

__all__ = [
    "MAX_CONNECTIONS",
    "AsyncPool",
    "Origin",
    "ProtocolError",
    "Response",
    "ResponseParser",
    "ServerDisconnectedError",
    "SyncPool",
]

MAX_CONNECTIONS = 100  # per endpoint and event loop (async), per endpoint (sync)
_MAX_HEAD = 64 * 1024
_READ_SIZE = 256 * 1024


class ServerDisconnectedError(ConnectionError):
    """The server closed the connection before a complete response."""


class ProtocolError(ConnectionError):
    """The server's bytes are not an HTTP/1.1 response."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where connections go: ``http`` or ``https``, host and port."""

    scheme: str
    host: str
    port: int

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Response:
    """A complete response. `headers` has lower-case names."""

    status: int
    headers: dict[str, str]
    body: bytes


class ResponseParser:
    """One response, parsed from the bytes given to `feed` (and `feed_eof` at the end)."""

    __slots__ = (
        "_buffer",
        "_chunk_state",
        "_mode",
        "_pieces",
        "_remaining",
        "done",
        "head_done",
        "headers",
        "keep_alive",
        "status",
    )

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._pieces: list[bytes] = []
        self._mode = ""  # "length" | "chunked" | "close"
        self._remaining = 0
        self._chunk_state = "size"
        self.status = 0
        self.headers: dict[str, str] = {}
        self.head_done = False
        self.done = False
        self.keep_alive = True

    def feed(self, data: bytes) -> None:
        """Take more bytes of the response; raises `ProtocolError` on bytes that are not HTTP."""
        if self.done:
            if data:  # bytes after a complete response: nothing can be trusted on this connection
                self.keep_alive = False
            return
        if not self.head_done:
            self._buffer += data
            if not self._parse_head():
                return
            data = bytes(self._buffer)
            self._buffer.clear()
        if self._mode == "length":
            self._feed_length(data)
        elif self._mode == "chunked":
            self._buffer += data
            self._feed_chunked()
        else:
            if data:
                self._pieces.append(data)

    def feed_eof(self) -> None:
        """The server closed the connection: the end of a read-until-close body, else an error."""
        if self.done:
            return
        self.keep_alive = False
        if self.head_done and self._mode == "close":
            self.done = True
            return
        raise ServerDisconnectedError(
            "the server closed the connection before a complete response"
            if self.head_done or self._buffer
            else "the server closed the connection without a response"
        )

    def take_body(self) -> bytes:
        """The body bytes received since the last call (all of it, for a complete response)."""
        pieces = self._pieces
        if not pieces:
            return b""
        body = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        self._pieces = []
        return body

    # -- internals -------------------------------------------------------------------------------
    def _parse_head(self) -> bool:
        buffer = self._buffer
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > _MAX_HEAD:
                    raise ProtocolError("the response head is larger than 64 KiB")
                return False
            head = bytes(buffer[:end]).decode("latin-1")
            del buffer[: end + 4]
            status_line, _, header_block = head.partition("\r\n")
            version, _, rest = status_line.partition(" ")
            code = rest[:3]
            if not version.startswith("HTTP/1.") or not code.isdigit():
                raise ProtocolError(f"not an HTTP/1.x response: {status_line[:60]!r}")
            status = int(code)
            if 100 <= status < 200:  # 100 Continue and friends: the real head follows
                continue
            headers: dict[str, str] = {}
            for line in header_block.split("\r\n"):
                name, sep, value = line.partition(":")
                if sep:
                    key = name.strip().lower()
                    value = value.strip()
                    headers[key] = f"{headers[key]}, {value}" if key in headers else value
            self.status = status
            self.headers = headers
            self.head_done = True
            connection = headers.get("connection", "").lower()
            if version == "HTTP/1.0":
                self.keep_alive = "keep-alive" in connection
            elif "close" in connection:
                self.keep_alive = False
            self._choose_framing(status, headers)
            return True

    def _choose_framing(self, status: int, headers: dict[str, str]) -> None:
        if status in (204, 304):
            self.done = True
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self._mode = "chunked"
        elif "content-length" in headers:
            try:
                length = int(headers["content-length"])
            except ValueError:
                raise ProtocolError("the response's Content-Length is not a number") from None
            if length < 0:
                raise ProtocolError("the response's Content-Length is negative")
            self._mode = "length"
            self._remaining = length
            self.done = length == 0
        else:
            self._mode = "close"
            self.keep_alive = False

    def _feed_length(self, data: bytes) -> None:
        if not data:
            return
        remaining = self._remaining
        if len(data) > remaining:
            self.keep_alive = False  # more bytes than announced
            data = data[:remaining]
        self._pieces.append(data)
        self._remaining = remaining - len(data)
        if self._remaining == 0:
            self.done = True

    def _feed_chunked(self) -> None:
        buffer = self._buffer
        while buffer:
            state = self._chunk_state
            if state == "data":
                taken = bytes(buffer[: self._remaining])
                del buffer[: len(taken)]
                self._pieces.append(taken)
                self._remaining -= len(taken)
                if self._remaining == 0:
                    self._chunk_state = "crlf"
                continue
            if state == "crlf":
                if len(buffer) < 2:
                    return
                if buffer[:2] != b"\r\n":
                    raise ProtocolError("a chunk of the response does not end with CRLF")
                del buffer[:2]
                self._chunk_state = "size"
                continue
            end = buffer.find(b"\r\n")
            if end < 0:
                if len(buffer) > 4096:
                    raise ProtocolError("a chunk-size line of the response is too long")
                return
            line = bytes(buffer[:end])
            del buffer[: end + 2]
            if state == "trailer":
                if not line:
                    self.done = True
                    if buffer:
                        self.keep_alive = False
                    return
                continue
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size {line[:20]!r} in the response") from None
            if size == 0:
                self._chunk_state = "trailer"
            else:
                self._remaining = size
                self._chunk_state = "data"


def _expired(timeout: float) -> TimeoutError:
    return TimeoutError(f"no complete response within the timeout ({timeout:g} s)")


# -- asyncio ---------------------------------------------------------------------------------------


class _Connection(asyncio.Protocol):
    """One keep-alive connection on an event loop; carries one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser: ResponseParser | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.streaming = False
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        if parser is None:  # nothing was asked: a server talking out of turn
            self.lost = True
            self.close()
            return
        try:
            parser.feed(data)
        except ProtocolError as exc:
            self._wake(exc)
            return
        if parser.done or (self.streaming and parser.head_done):
            self._wake(None)

    def eof_received(self) -> bool | None:
        return None  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        parser = self.parser
        if parser is None or parser.done:
            return
        try:
            parser.feed_eof()
        except ServerDisconnectedError as error:
            self._wake(error)
            return
        self._wake(None)

    def _wake(self, error: BaseException | None) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.abort()


class AsyncPool:
    """Keep-alive connections to one origin on one event loop (see the module docstring)."""

    def __init__(
        self,
        origin: Origin,
        loop: asyncio.AbstractEventLoop,
        max_connections: int = MAX_CONNECTIONS,
        ssl_context: Any = None,
    ) -> None:
        self.origin = origin
        self.loop = loop
        self.max_connections = max_connections
        self._ssl = ssl_context
        self._idle: list[_Connection] = []
        self._open = 0
        self._waiters: deque[asyncio.Future[_Connection | None]] = deque()
        self._connections: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self.opened = 0  # connections opened over the pool's life (tests check reuse with it)
        self._closer: Any = None

    async def request(self, head: bytes, body: bytes, timeout: float) -> Response:
        """Send one request and wait for its complete response (`timeout`: the whole attempt)."""
        loop = self.loop
        deadline = loop.time() + timeout
        connection = await self._acquire(deadline, timeout)
        waiter = loop.create_future()
        parser = ResponseParser()
        connection.parser = parser
        connection.waiter = waiter
        connection.streaming = False
        expire = loop.call_at(deadline, _time_out, waiter, timeout)
        try:
            assert connection.transport is not None
            connection.transport.write(head + body)
            await waiter
        finally:
            expire.cancel()
            self._release(connection)
        return Response(parser.status, parser.headers, parser.take_body())

    async def stream(
        self, head: bytes, body: bytes, timeout: float
    ) -> tuple[int, dict[str, str], AsyncIterator[bytes]]:
        """Send one request; return the status, headers and the body as it arrives. `timeout`
        bounds the wait for the head and then each wait for more of the body."""
        loop = self.loop
        connection = await self._acquire(loop.time() + timeout, timeout)
        parser = ResponseParser()
        connection.parser = parser
        connection.streaming = True
        try:
            assert connection.transport is not None
            connection.transport.write(head + body)
            while not parser.head_done:
                await self._wait(connection, timeout)
        except BaseException:
            self._release(connection)
            raise
        return parser.status, parser.headers, self._body(connection, timeout)

    async def _body(self, connection: _Connection, timeout: float) -> AsyncIterator[bytes]:
        parser = connection.parser
        assert parser is not None
        try:
            while True:
                data = parser.take_body()
                if data:
                    yield data
                    continue
                if parser.done:
                    return
                await self._wait(connection, timeout)
        finally:
            self._release(connection)

    async def _wait(self, connection: _Connection, timeout: float) -> None:
        """Until the connection's next bytes (or its end, or `timeout` seconds)."""
        waiter = self.loop.create_future()
        connection.waiter = waiter
        expire = self.loop.call_later(timeout, _time_out, waiter, timeout)
        try:
            await waiter
        finally:
            expire.cancel()
            connection.waiter = None

    async def _acquire(self, deadline: float, timeout: float) -> _Connection:
        idle = self._idle
        while idle:
            connection = idle.pop()
            if not connection.lost:
                return connection
            self._forget(connection)
        if self._open >= self.max_connections:
            waiter: asyncio.Future[_Connection | None] = self.loop.create_future()
            self._waiters.append(waiter)
            expire = self.loop.call_at(deadline, _time_out, waiter, timeout)
            try:
                handed = await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    self._give_back(waiter.result())  # handed over, then cancelled: not lost
                raise
            finally:
                expire.cancel()
            if handed is not None:
                return handed
        self._open += 1  # a slot is ours: counted before the await so others see it taken
        try:
            return await asyncio.wait_for(self._connect(), max(deadline - self.loop.time(), 0))
        except BaseException:
            self._open -= 1
            self._hand_over(None)
            raise

    async def _connect(self) -> _Connection:
        if self._closer is None:
            self._closer = _close_on_shutdown(self)
            await self._closer.__anext__()  # registered with the loop's asyncgen shutdown
        origin = self.origin
        _, connection = await self.loop.create_connection(
            _Connection,
            origin.host,
            origin.port,
            ssl=self._ssl,
            server_hostname=origin.host if self._ssl is not None else None,
        )
        self.opened += 1
        self._connections.add(connection)
        return connection

    def _release(self, connection: _Connection) -> None:
        parser = connection.parser
        connection.parser = None
        connection.waiter = None
        if parser is None or not parser.done or not parser.keep_alive or connection.lost:
            connection.close()
            self._forget(connection)
            return
        if not self._hand_over(connection):
            self._idle.append(connection)

    def _give_back(self, connection: _Connection | None) -> None:
        if connection is None:  # a free slot
            self._hand_over(None)
        elif not self._hand_over(connection):
            self._idle.append(connection)

    def _forget(self, connection: _Connection) -> None:
        self._open -= 1
        self._connections.discard(connection)
        self._hand_over(None)

    def _hand_over(self, connection: _Connection | None) -> bool:
        """Give a waiting caller `connection` (None: a free slot to open one). True if taken."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return True
        return False

    def close(self) -> None:
        """Close every connection (idle or not) of this pool."""
        for connection in list(self._connections):
            connection.close()
        self._idle.clear()
        self._connections = weakref.WeakSet()

    def close_sockets(self) -> None:
        """Shut the sockets down without the (closed) loop: the fallback for loops that were
        closed without shutting down their async generators."""
        for connection in list(self._connections):
            transport = connection.transport
            sock = transport.get_extra_info("socket") if transport is not None else None
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self._idle.clear()
        self._connections = weakref.WeakSet()


def _time_out(waiter: asyncio.Future[Any], timeout: float) -> None:
    if not waiter.done():
        waiter.set_exception(_expired(timeout))


async def _close_on_shutdown(pool: AsyncPool) -> AsyncIterator[None]:
    """Kept suspended by its pool; the loop's shutdown (`loop.shutdown_asyncgens()`, which
    `asyncio.run` and `asyncio.Runner` call) closes it, and with it the pool's connections."""
    try:
        yield
        yield  # never reached: the pool never resumes it
    finally:
        pool.close()


# -- blocking sockets -----------------------------------------------------------------------------


class _SyncConnection:
    __slots__ = ("sock",)

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def usable(self) -> bool:
        """False when the server closed the idle connection (or sent bytes out of turn)."""
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class SyncPool:
    """Keep-alive connections to one origin over blocking sockets, shared by threads."""

    def __init__(
        self, origin: Origin, max_connections: int = MAX_CONNECTIONS, ssl_context: Any = None
    ) -> None:
        self.origin = origin
        self._ssl = ssl_context
        self._idle: list[_SyncConnection] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_connections)
        self.opened = 0

    def request(self, head: bytes, body: bytes, timeout: float) -> Response:
        """Send one request and read its complete response (`timeout`: the whole attempt)."""
        deadline = time.monotonic() + timeout
        parser = ResponseParser()
        connection = self._acquire(deadline, timeout)
        try:
            connection.sock.sendall(head + body)
            while not parser.done:
                self._read(connection, parser, deadline, timeout)
        finally:
            self._release(connection, parser)
        return Response(parser.status, parser.headers, parser.take_body())

    def stream(
        self, head: bytes, body: bytes, timeout: float
    ) -> tuple[int, dict[str, str], Iterator[bytes]]:
        """`AsyncPool.stream` over a blocking socket."""
        parser = ResponseParser()
        connection = self._acquire(time.monotonic() + timeout, timeout)
        try:
            connection.sock.sendall(head + body)
            while not parser.head_done:
                self._read(connection, parser, time.monotonic() + timeout, timeout)
        except BaseException:
            self._release(connection, parser)
            raise
        return parser.status, parser.headers, self._body(connection, parser, timeout)

    def _body(
        self, connection: _SyncConnection, parser: ResponseParser, timeout: float
    ) -> Iterator[bytes]:
        try:
            while True:
                data = parser.take_body()
                if data:
                    yield data
                    continue
                if parser.done:
                    return
                self._read(connection, parser, time.monotonic() + timeout, timeout)
        finally:
            self._release(connection, parser)

    @staticmethod
    def _read(
        connection: _SyncConnection, parser: ResponseParser, deadline: float, timeout: float
    ) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _expired(timeout)
        connection.sock.settimeout(left)
        try:
            data = connection.sock.recv(_READ_SIZE)
        except TimeoutError:
            raise _expired(timeout) from None
        if data:
            parser.feed(data)
        else:
            parser.feed_eof()

    def _acquire(self, deadline: float, timeout: float) -> _SyncConnection:
        if not self._slots.acquire(timeout=max(deadline - time.monotonic(), 0)):
            raise _expired(timeout)
        try:
            while True:
                with self._lock:
                    connection = self._idle.pop() if self._idle else None
                if connection is None:
                    break
                if connection.usable():
                    return connection
                connection.close()
            return self._connect(deadline, timeout)
        except BaseException:
            self._slots.release()
            raise

    def _connect(self, deadline: float, timeout: float) -> _SyncConnection:
        origin = self.origin
        left = deadline - time.monotonic()
        if left <= 0:
            raise _expired(timeout)
        try:
            sock = socket.create_connection((origin.host, origin.port), timeout=left)
        except TimeoutError:
            raise _expired(timeout) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._ssl is not None:
            sock = self._ssl.wrap_socket(sock, server_hostname=origin.host)
        self.opened += 1
        return _SyncConnection(sock)

    def _release(self, connection: _SyncConnection, parser: ResponseParser) -> None:
        try:
            if parser.done and parser.keep_alive:
                with self._lock:
                    self._idle.append(connection)
            else:
                connection.close()
        finally:
            self._slots.release()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


_pools_lock = threading.Lock()
_sync_pools: dict[tuple[Origin, int], SyncPool] = {}
_async_pools: dict[tuple[Origin, int, asyncio.AbstractEventLoop], AsyncPool] = {}


def sync_pool(origin: Origin, max_connections: int = MAX_CONNECTIONS) -> SyncPool:
    """The process's shared blocking pool for `origin`."""
    key = (origin, max_connections)
    pool = _sync_pools.get(key)
    if pool is None:
        with _pools_lock:
            pool = _sync_pools.get(key)
            if pool is None:
                pool = SyncPool(origin, max_connections, _ssl_context(origin))
                _sync_pools[key] = pool
    return pool


def async_pool(
    origin: Origin, loop: asyncio.AbstractEventLoop, max_connections: int = MAX_CONNECTIONS
) -> AsyncPool:
    """The pool for `origin` on `loop` (made on first use; pools of closed loops are dropped)."""
    key = (origin, max_connections, loop)
    pool = _async_pools.get(key)
    if pool is None:
        with _pools_lock:
            for stale_key, stale in list(_async_pools.items()):
                if stale.loop.is_closed():
                    stale.close_sockets()
                    del _async_pools[stale_key]
            pool = AsyncPool(origin, loop, max_connections, _ssl_context(origin))
            _async_pools[key] = pool
    return pool


def _ssl_context(origin: Origin) -> Any:
    if origin.scheme != "https":
        return None
    import ssl  # only for https endpoints: costs a few ms to import

    return ssl.create_default_context()


@atexit.register
def close_all() -> None:
    """Close every pooled connection in the process (idle sockets; at exit)."""
    with _pools_lock:
        pools = list(_sync_pools.values())
        loops = list(_async_pools.values())
        _sync_pools.clear()
        _async_pools.clear()
    for pool in pools:
        pool.close()
    for apool in loops:
        if apool.loop.is_closed() or not apool.loop.is_running():
            apool.close_sockets()
        else:
            apool.loop.call_soon_threadsafe(apool.close)


def _forget_pools() -> None:
    """Drop the process's pools (`kaizen.process`): a forked child must not share its parent's
    sockets. Connections close when their pool is collected."""
    _sync_pools.clear()
    _async_pools.clear()


process.register("llm.http1", _forget_pools)
