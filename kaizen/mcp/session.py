"""One MCP server's session, lived on Kaizen's MCP loop: `Session` opens and replaces its
`Connection` (an ``mcp.Client`` entered and exited by one owner task) and runs each operation
within a time limit; `Redactor` hides the server's secrets in every message.

A session that finds its connection dropped opens a new one and tries once more; connections
still open when the interpreter exits are closed then (`kaizen.mcp.loop.at_exit`).
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import IO, Any, TypeVar

from kaizen import process
from kaizen.mcp import loop
from kaizen.mcp.errors import MCPConnectionError, MCPError, MCPTimeoutError

__all__ = ["CLOSE_GRACE", "ClientFactory", "Redactor", "Session"]

_T = TypeVar("_T")

CLOSE_GRACE = 5.0  # seconds a closing session may take before its task is cancelled
_STDERR_TAIL = 600  # characters of a stdio server's stderr quoted in a connection error

# (client, errlog): a new, not yet entered mcp.Client, and the file a stdio server's stderr goes to
ClientFactory = Callable[[], tuple[Any, IO[str] | None]]


class Redactor:
    """Replaces secret values in text with ``***``."""

    def __init__(self, secrets: Sequence[str]) -> None:
        # longest first, so a secret containing another is replaced whole; very short values
        # ("1", "on") are too common to be worth hiding and would garble every message
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


class Session:
    """One server's session state, touched only on the MCP loop: the live `Connection`, a lock
    so concurrent first calls open one session, and the bounded run of one operation."""

    def __init__(
        self, factory: ClientFactory, name: str, redact: Redactor, connect_timeout: float
    ) -> None:
        self.factory = factory
        self.name = name
        self.redact = redact
        self.connect_timeout = connect_timeout
        self.connection: Connection | None = None
        self._lock: asyncio.Lock | None = None

    async def run(self, what: str, operation: Callable[[Any], Awaitable[_T]], timeout: float) -> _T:
        """`operation(client)` within `timeout`, on a live session; a dropped session is
        replaced once."""
        for attempt in (1, 2):
            connection = await self._live()
            try:
                async with asyncio.timeout(timeout):
                    return await operation(connection.client)
            except TimeoutError:
                if connection.lost:  # the session went while we waited: treat as a drop
                    detail = "the session closed"
                else:
                    raise MCPTimeoutError(
                        f"MCP server {self.name!r}: {what} got no answer within {timeout:g}s "
                        "(raise the server's timeout= if it needs longer)",
                        server=self.name,
                    ) from None
            except MCPError:  # the operation's own verdict (a tool error), not a failure
                raise
            except Exception as exc:
                if not _is_connection_lost(exc):
                    raise MCPError(
                        f"MCP server {self.name!r}: {what} failed: {self._describe(exc)}",
                        server=self.name,
                    ) from None
                detail = self._describe(exc)
            connection.lost = True
            if connection.closed:
                raise MCPConnectionError(
                    f"MCP server {self.name!r}: the session was closed while {what} was running",
                    server=self.name,
                )
            if attempt == 2:
                raise MCPConnectionError(
                    f"MCP server {self.name!r}: {what}: the session dropped, was restarted, and "
                    f"dropped again ({detail}{connection.stderr_tail(self.redact)}); check that "
                    "the server runs on its own",
                    server=self.name,
                )
        raise AssertionError("unreachable")

    async def _live(self) -> Connection:
        connection = self.connection
        if connection is not None and not connection.lost:
            return connection
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            connection = self.connection
            if connection is not None and not connection.lost:
                return connection
            if connection is not None:
                self.connection = None
                await connection.close()
            connection = Connection(self.factory)
            try:
                await connection.open(self.connect_timeout)
            except TimeoutError:
                stderr = connection.stderr_tail(self.redact)
                connection.close_errlog()
                raise MCPTimeoutError(
                    f"MCP server {self.name!r} did not finish connecting within "
                    f"{self.connect_timeout:g}s{stderr} (raise connect_timeout= if it starts "
                    "slowly)",
                    server=self.name,
                ) from None
            except Exception as exc:
                stderr = connection.stderr_tail(self.redact)
                connection.close_errlog()
                raise MCPConnectionError(
                    f"MCP server {self.name!r}: cannot connect: {self._describe(exc)}{stderr}",
                    server=self.name,
                ) from None
            self.connection = connection
            return connection

    async def close(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.closed = True  # calls still running on it fail instead of reconnecting
            await connection.close()

    @staticmethod
    def close_soon(session: Session) -> None:
        """Close `session` without waiting (its `MCPServer` was garbage-collected)."""
        if session.connection is not None:
            loop.submit_if_running(session.close())

    def _describe(self, exc: BaseException) -> str:
        return self.redact(_describe(exc))


class Connection:
    """One live session: an ``mcp.Client`` entered by its own owner task, which waits until it
    is told to close and then exits the client itself."""

    def __init__(self, factory: ClientFactory) -> None:
        self.factory = factory
        self.client: Any = None
        self.lost = False
        self.closed = False  # closed on purpose (`MCPServer.close`), not dropped
        self.errlog: IO[str] | None = None
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def open(self, timeout: float) -> None:
        ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._own(ready), name="kaizen:mcp-session")
        _live_connections.add(self)
        try:
            self.client = await asyncio.wait_for(asyncio.shield(ready), timeout)
        except BaseException:
            await self.close(keep_errlog=True)
            raise

    async def _own(self, ready: asyncio.Future[Any]) -> None:
        try:
            client, self.errlog = self.factory()
            async with client:
                ready.set_result(client)
                await self._closing.wait()
        except Exception as exc:
            if not ready.done():
                ready.set_exception(exc)
        except BaseException:  # cancelled (closing did not finish in time)
            if not ready.done():
                ready.cancel()
            raise
        finally:
            self.lost = True

    async def close(self, *, keep_errlog: bool = False) -> None:
        self.lost = True
        self._closing.set()
        task = self._task
        if task is not None and not task.done():
            done, _ = await asyncio.wait({task}, timeout=CLOSE_GRACE)
            if not done:
                task.cancel()
                await asyncio.wait({task}, timeout=CLOSE_GRACE)
        _live_connections.discard(self)
        if not keep_errlog:
            self.close_errlog()

    def stderr_tail(self, redact: Callable[[str], str]) -> str:
        """'; server stderr: ...' with the last lines a stdio server wrote, or ''."""
        errlog = self.errlog
        if errlog is None or errlog.closed:
            return ""
        try:
            errlog.flush()
            size = errlog.seek(0, os.SEEK_END)
            errlog.seek(max(0, size - 4 * _STDERR_TAIL))
            text = errlog.read()
        except (OSError, ValueError):
            return ""
        lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
        tail = " | ".join(lines[-6:])[-_STDERR_TAIL:]
        return f"; server stderr: {redact(tail)}" if tail else ""

    def close_errlog(self) -> None:
        if self.errlog is not None and not self.errlog.closed:
            self.errlog.close()


_live_connections: weakref.WeakSet[Connection] = weakref.WeakSet()


async def _close_live_connections() -> None:
    await asyncio.gather(*(c.close() for c in list(_live_connections)), return_exceptions=True)


loop.at_exit(_close_live_connections)


def _is_connection_lost(exc: BaseException) -> bool:
    """True when `exc` says the session's transport is gone (not that a request failed)."""
    import anyio
    import httpx2
    from mcp.shared.exceptions import MCPError as SDKError
    from mcp_types import CONNECTION_CLOSED

    if isinstance(exc, BaseExceptionGroup):
        return any(_is_connection_lost(e) for e in exc.exceptions)
    if isinstance(exc, SDKError):
        return exc.code == CONNECTION_CLOSED
    lost = (
        anyio.ClosedResourceError,
        anyio.BrokenResourceError,
        anyio.EndOfStream,
        ConnectionError,
        EOFError,
        httpx2.TransportError,  # connection refused or reset
    )
    return isinstance(exc, lost)


def _describe(exc: BaseException) -> str:
    """A one-line account of `exc`, exception groups unwrapped to their leaves."""
    if isinstance(exc, BaseExceptionGroup):
        leaves = [_describe(e) for e in exc.exceptions]
        return "; ".join(dict.fromkeys(leaves))
    text = " ".join(str(exc).split()) or "(no message)"
    return f"{type(exc).__name__}: {text}"


process.register("mcp.session", _live_connections.clear, fork_only=True)
