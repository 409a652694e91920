"""`MCPServer`: the tools of an MCP server as a Kaizen toolset (``tools=[server]``).

    fs = MCPServer.stdio("npx", args=["-y", "@modelcontextprotocol/server-filesystem", "."],
                         prefix="fs_")
    web = MCPServer.http("https://example.com/mcp", headers={"Authorization": "Bearer ..."})
    agent = kaizen.create_agent("helper", "task -> result", tools=[fs, web])

How it holds together:

- One session per server (`kaizen.mcp.session`), opened on first use. Its ``mcp.Client`` is
  entered and exited by one owner task on Kaizen's background MCP loop (`kaizen.mcp.loop`);
  calls from any thread or event loop are handed to that loop and awaited there, so nobody
  leaves an anyio cancel scope from another task, and every wait is bounded (connect, list,
  call).
- The tool list is fetched once and cached; `refresh()` forgets it. Tool names get the optional
  `prefix`; names a model API would refuse are made safe (``fs.read`` -> ``fs_read``). `call`
  takes the server's own name first, then the name as listed (a server may name its tools
  ``git_*`` and be given ``prefix="git_"``).
- A call that finds the session dropped (the server process died, the connection closed) starts
  a new session and tries once more; a second drop is an `MCPConnectionError`. (A call during
  which the server died may therefore run twice.)
- A timeout cancels the call (the server is told) and raises `MCPTimeoutError`; the session stays
  usable. An ``isError`` result, or a JSON-RPC "invalid params" error (-32602: an unknown tool,
  arguments refused), raises `MCPToolError` with the server's text. Results become text as
  `kaizen.mcp.results` describes.
- Values of `env` and `headers`, and a URL's credentials and query, are secrets: reprs show names
  only, and error messages have them replaced by ``***``.

The ``mcp`` SDK is imported only when a session opens (it costs about a second).
"""

from __future__ import annotations

import os
import re
import tempfile
import weakref
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import IO, Any
from urllib.parse import urlsplit

from kaizen.errors import ConfigError
from kaizen.logs import host_logging_kept
from kaizen.mcp import loop
from kaizen.mcp.errors import MCPTimeoutError, MCPToolError
from kaizen.mcp.results import error_text, result_text
from kaizen.mcp.session import CLOSE_GRACE, ClientFactory, Redactor, Session
from kaizen.tools.tool import Tool
from kaizen.tools.toolset import Toolset

__all__ = ["MCPServer"]

_TOOL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
_PREFIX = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_LIST_PAGES = 100  # a server whose tool list never ends cannot hang us
_INVALID_PARAMS = -32602  # JSON-RPC: how some servers answer a call of a tool they do not have


class MCPServer(Toolset):
    """The tools of one MCP server. Make one with `MCPServer.stdio`, `MCPServer.http` or
    `MCPServer.in_memory`; pass it in ``tools=[...]``; call its tools directly with `call` /
    `acall`; `close()` it (or use ``with``) when done. Sessions left open are closed at exit.
    """

    def __init__(
        self,
        factory: ClientFactory,
        *,
        name: str,
        described: str,
        secrets: Sequence[str] = (),
        prefix: str | None = None,
        timeout: float = 30.0,
        connect_timeout: float = 30.0,
    ) -> None:
        """Use the `stdio`, `http` and `in_memory` constructors."""
        if prefix is not None and prefix != "" and not _PREFIX.fullmatch(prefix):
            raise ConfigError(
                f"MCP server {name!r}: prefix {prefix!r} must start with a letter or '_' and use "
                "letters, digits, '_' or '-' (e.g. 'fs_')"
            )
        for label, value in (("timeout", timeout), ("connect_timeout", connect_timeout)):
            if value is None or value <= 0:
                raise ConfigError(f"MCP server {name!r}: {label} must be positive seconds")
        self.name = name
        self.prefix = prefix or ""
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self._described = described
        self._session = Session(factory, name, Redactor(secrets), self.connect_timeout)
        self._tools: list[Tool] | None = None
        self._server_names: dict[str, str] = {}  # tool name as Kaizen shows it -> the server's
        weakref.finalize(self, Session.close_soon, self._session)

    # -- constructors ----------------------------------------------------------------------------

    @classmethod
    def stdio(
        cls,
        command: str,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        *,
        cwd: str | os.PathLike[str] | None = None,
        prefix: str | None = None,
        timeout: float = 30.0,
        connect_timeout: float = 30.0,
        name: str | None = None,
    ) -> MCPServer:
        """A server started as a subprocess (`command` `args`) that speaks MCP on stdin/stdout.

        `env` is added to a minimal inherited environment (``PATH``, ``HOME``, ...); its values
        are treated as secrets. The server's stderr is kept in a temporary file; its last lines
        are quoted when the server cannot start or dies.
        """
        if not isinstance(command, str) or not command:
            raise ConfigError("MCPServer.stdio needs a command, e.g. MCPServer.stdio('npx', ...)")
        arguments = [str(a) for a in args]
        environment = {str(k): str(v) for k, v in (env or {}).items()}
        folder = os.fspath(cwd) if cwd is not None else None

        def factory() -> tuple[Any, IO[str] | None]:
            with host_logging_kept():
                from mcp import Client, StdioServerParameters
                from mcp.client.stdio import stdio_client

            params = StdioServerParameters(
                command=command, args=arguments, env=environment or None, cwd=folder
            )
            # closed by the session when it ends (a `with` would close it too early)
            errlog = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")  # noqa: SIM115
            return Client(stdio_client(params, errlog=errlog), cache=None), errlog

        return cls(factory, name=name or os.path.basename(command),
                   described=_described("stdio", command, "env", environment),
                   secrets=list(environment.values()), prefix=prefix, timeout=timeout,
                   connect_timeout=connect_timeout)  # fmt: skip

    @classmethod
    def http(
        cls,
        url: str,
        headers: Mapping[str, str] | None = None,
        *,
        prefix: str | None = None,
        timeout: float = 30.0,
        connect_timeout: float = 30.0,
        name: str | None = None,
    ) -> MCPServer:
        """A server at `url` over MCP's Streamable HTTP transport. `headers` (e.g.
        ``Authorization``) go with every request; their values are treated as secrets, as are
        credentials and the query in `url`."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"MCPServer.http needs an http(s) URL, not {_safe_url(url)!r}")
        sent_headers = {str(k): str(v) for k, v in (headers or {}).items()}
        secrets = [*sent_headers.values(), parts.password or "", parts.username or ""]
        secrets += [value for _, value in _query_pairs(parts.query)]

        def factory() -> tuple[Any, IO[str] | None]:
            with host_logging_kept():
                from mcp import Client

            return Client(_http_transport(url, sent_headers), cache=None), None

        return cls(factory, name=name or _safe_url(url),
                   described=_described("http", _safe_url(url), "headers", sent_headers),
                   secrets=secrets, prefix=prefix, timeout=timeout,
                   connect_timeout=connect_timeout)  # fmt: skip

    @classmethod
    def in_memory(
        cls,
        server: Any,
        *,
        prefix: str | None = None,
        timeout: float = 30.0,
        connect_timeout: float = 30.0,
        name: str | None = None,
    ) -> MCPServer:
        """A server object of the SDK (``mcp.server.MCPServer`` or a low-level
        ``mcp.server.Server``) served in this process, with no transport: for tests, notebooks
        and tools you write yourself. Its handlers run on Kaizen's MCP loop."""
        server_name = getattr(server, "name", None)
        if not isinstance(server_name, str) or not hasattr(server, "run"):
            raise ConfigError(
                f"MCPServer.in_memory takes an SDK server (mcp.server.MCPServer), not "
                f"{type(server).__name__}"
            )

        def factory() -> tuple[Any, IO[str] | None]:
            with host_logging_kept():
                from mcp import Client

            return Client(server, cache=None), None

        return cls(
            factory,
            name=name or server_name,
            described=f"MCPServer.in_memory({server_name!r}",
            prefix=prefix,
            timeout=timeout,
            connect_timeout=connect_timeout,
        )

    def __repr__(self) -> str:
        prefix = f", prefix={self.prefix!r}" if self.prefix else ""
        return f"{self._described}{prefix}, timeout={self.timeout:g})"

    # -- the toolset -----------------------------------------------------------------------------

    def list_tools(self) -> list[Tool]:
        """The server's tools as Kaizen tools (asked once, then cached; see `refresh`)."""
        tools = self._tools
        if tools is None:
            tools = self._wait(self._fetch_tools())
        return list(tools)

    async def alist_tools(self) -> list[Tool]:
        """`list_tools` for async code."""
        tools = self._tools
        if tools is None:
            tools = await loop.await_(self._fetch_tools())
        return list(tools)

    def refresh(self) -> None:
        """Forget the cached tool list: the next `list_tools` asks the server again."""
        self._tools = None

    def call(self, tool: str, arguments: Mapping[str, Any] | None = None) -> str:
        """Call `tool` (the server's own name, or the name as listed here, with the prefix) and
        return the text a model would read; `MCPToolError`, `MCPTimeoutError` or
        `MCPConnectionError` if not."""
        return self._wait(self._call_named(tool, dict(arguments or {})))

    async def acall(self, tool: str, arguments: Mapping[str, Any] | None = None) -> str:
        """`call` for async code (the call runs on Kaizen's MCP loop; cancelling waits no more
        and cancels the call)."""
        return await loop.await_(self._call_named(tool, dict(arguments or {})))

    # -- lifetime --------------------------------------------------------------------------------

    def close(self) -> None:
        """End the session (a stdio server's process is stopped). A later call opens a new one."""
        if self._session.connection is not None:
            self._wait(self._session.close(), backstop=2 * CLOSE_GRACE + 5)

    async def aclose(self) -> None:
        """`close` for async code."""
        if self._session.connection is not None:
            await loop.await_(self._session.close())

    def __enter__(self) -> MCPServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> MCPServer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- on the MCP loop -------------------------------------------------------------------------

    async def _fetch_tools(self) -> list[Tool]:
        specs = await self._session.run("listing tools", _list_all_tools, self.timeout)
        names: dict[str, str] = {}
        tools = []
        for spec in specs:
            local = _unique(_tool_name(self.prefix, spec.name), names)
            names[local] = spec.name
            tools.append(self._tool(local, spec))
        self._server_names = names
        self._tools = tools
        return tools

    def _tool(self, local: str, spec: Any) -> Tool:
        remote = spec.name

        async def call_remote(**arguments: Any) -> str:
            return await loop.await_(self._call(remote, arguments))

        schema = dict(spec.input_schema or {})
        schema.setdefault("type", "object")
        schema.setdefault("properties", {})
        description = spec.description or getattr(spec, "title", None) or ""
        return Tool(call_remote, name=local, description=description, parameters=schema)

    async def _call_named(self, tool: str, arguments: dict[str, Any]) -> str:
        if self._tools is None:  # the names are resolved against the server's list
            await self._fetch_tools()
        return await self._call(self._server_name(tool), arguments)

    async def _call(self, tool: str, arguments: dict[str, Any]) -> str:
        async def call_tool(client: Any) -> Any:
            from mcp.shared.exceptions import MCPError as SDKError

            try:
                return await client.call_tool(tool, arguments)
            except SDKError as exc:
                if exc.code != _INVALID_PARAMS:  # (unknown tool, or arguments it refuses)
                    raise
                message = self._session.redact(exc.message or "invalid tool call")
                raise MCPToolError(message, server=self.name, tool=tool) from None

        result = await self._session.run(f"tool {tool!r}", call_tool, self.timeout)
        if result.is_error:
            message = self._session.redact(error_text(result))
            raise MCPToolError(message, server=self.name, tool=tool)
        return result_text(result)

    # -- helpers ---------------------------------------------------------------------------------

    def _server_name(self, tool: str) -> str:
        """The server's name for `tool`: its own name first (a server may name its tools with
        the very prefix given here), then the name as listed here, then `tool` unprefixed."""
        names = self._server_names
        if tool in names.values():
            return tool
        known = names.get(tool)
        if known is not None:
            return known
        if self.prefix and tool.startswith(self.prefix):
            return tool[len(self.prefix) :]
        return tool

    def _wait(self, coro: Any, backstop: float | None = None) -> Any:
        # the coroutine enforces its own limits; this only guards against a stuck loop
        limit = backstop or 2 * (self.connect_timeout + self.timeout) + 10
        try:
            return loop.wait(coro, limit)
        except TimeoutError as exc:
            if isinstance(exc, MCPTimeoutError):
                raise
            raise MCPTimeoutError(
                f"MCP server {self.name!r}: no answer within {limit:.0f}s", server=self.name
            ) from None


# -- helpers ---------------------------------------------------------------------------------------


async def _list_all_tools(client: Any) -> list[Any]:
    tools: list[Any] = []
    cursor: str | None = None
    for _ in range(_LIST_PAGES):
        page = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if cursor is None:
            break
    return tools


def _http_transport(url: str, headers: dict[str, str]) -> AbstractAsyncContextManager[Any]:
    """A Streamable HTTP transport with `headers` on every request (the SDK's own HTTP client
    with its default timeouts, closed with the transport)."""
    from contextlib import asynccontextmanager

    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    @asynccontextmanager
    async def transport() -> Any:
        async with (
            create_mcp_http_client(headers=headers or None) as http_client,
            streamable_http_client(url, http_client=http_client) as streams,
        ):
            yield streams

    return transport()


def _tool_name(prefix: str, name: str) -> str:
    """`prefix` + `name`, made acceptable to model APIs (letters, digits, '_' and '-', at most
    64, not starting with a digit)."""
    full = prefix + name
    if _TOOL_NAME.fullmatch(full):
        return full
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", full)
    if not safe or safe[0].isdigit() or safe[0] == "-":
        safe = "_" + safe
    return safe[:64]


def _unique(name: str, taken: Mapping[str, str]) -> str:
    if name not in taken:
        return name
    for n in range(2, 1000):
        candidate = f"{name[:60]}_{n}"
        if candidate not in taken:
            return candidate
    raise ConfigError(f"too many MCP tools named like {name!r}")


def _safe_url(url: str) -> str:
    """`url` without credentials, query or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}" if parts.scheme else host + parts.path


def _query_pairs(query: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    return parse_qsl(query, keep_blank_values=False)


def _described(factory: str, target: str, label: str, secret: Mapping[str, str]) -> str:
    """How a server is named in its repr and messages, up to its options: its factory, its
    command or URL, and the names of its secret values (never the values)."""
    names = ", ".join(map(repr, sorted(secret)))
    return f"MCPServer.{factory}({target!r}" + (f", {label}=[{names}]" if secret else "")
