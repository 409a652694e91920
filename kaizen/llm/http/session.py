"""One aiohttp `ClientSession` per event loop: the pooled connections the fast path rides on.

A model call carries one small JSON request and one small JSON reply; what matters is reusing
keep-alive connections and opening a bounded number of them. `session_for()` returns the running
loop's session, made on first use:

- a `TCPConnector` bounded to `MAX_CONNECTIONS` connections (callers beyond that wait for a free
  one), keeping idle connections for reuse;
- proxies from the environment, as curl and requests take them: `proxy_for()` reads
  ``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``ALL_PROXY`` / ``NO_PROXY`` (either case) at each request,
  with the standard library's rules (`urllib.request`), and the request goes through the proxy it
  names. (aiohttp's own ``trust_env=True`` does the same lookup on a worker thread for every
  request: 0.8 ms a call under load, more than the rest of the exchange; so the session leaves it
  off and is given the proxy instead. Credentials go in the proxy URL, not in ``.netrc``.)
- certificates verified as the standard library does it: `ssl_context()` is
  ``ssl.create_default_context()``, made again when ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` change.

The session is closed with its loop: the loop's async-generator shutdown (`asyncio.run`,
`asyncio.Runner.close`, which `kaizen.aio`'s thread loops use) closes it, so no session outlives
its loop and none is reported unclosed. A loop closed without that shutdown has its session
dropped (detached, its sockets left to the garbage collector) when the next session is made.

aiohttp is imported on first use: `import kaizen.llm` does not pay for it.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

from kaizen import process

if TYPE_CHECKING:
    import ssl

    import aiohttp

__all__ = ["MAX_CONNECTIONS", "proxy_for", "session_for", "ssl_context"]

#: Connections one event loop's session keeps open at most (all endpoints together).
MAX_CONNECTIONS = 100

_lock = threading.Lock()
_sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}
# the suspended generators that close each session at its loop's shutdown (held: a collected
# generator would be finalised, closing its session, at once)
_closers: dict[asyncio.AbstractEventLoop, AsyncGenerator[None, None]] = {}
_ssl_contexts: dict[tuple[str | None, str | None], ssl.SSLContext] = {}
_PROXY_VARIABLES = tuple(
    name
    for scheme in ("http", "https", "all", "no")
    for name in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY")
)
_proxies: dict[tuple[str | None, ...], str | None] = {}


async def session_for() -> aiohttp.ClientSession:
    """The running loop's session (made, and tied to the loop's shutdown, on first use)."""
    loop = asyncio.get_running_loop()
    session = _sessions.get(loop)
    if session is not None and not session.closed:
        return session
    session = _make_session()
    with _lock:
        _drop_sessions_of_closed_loops()
        _sessions[loop] = session
    closer = _closers[loop] = _close_on_shutdown(loop, session)
    await closer.__anext__()  # now suspended: the loop's shutdown_asyncgens() will finish it
    return session


def _make_session() -> aiohttp.ClientSession:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=MAX_CONNECTIONS)
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),  # an API server's cookies are not kept
        trust_env=False,  # proxies come from `proxy_for`, without a thread hop per request
        timeout=aiohttp.ClientTimeout(total=None),  # each request brings its own
        auto_decompress=True,
    )


async def _close_on_shutdown(
    loop: asyncio.AbstractEventLoop, session: aiohttp.ClientSession
) -> AsyncGenerator[None, None]:
    """Kept suspended; the loop's `shutdown_asyncgens()` resumes it into `finally`, which closes
    the session on its own loop."""
    try:
        yield
        yield  # never reached: nothing resumes it but the shutdown
    finally:
        with _lock:
            if _sessions.get(loop) is session:
                del _sessions[loop]
                del _closers[loop]
        await session.close()


def _drop_sessions_of_closed_loops() -> None:
    for loop, session in list(_sessions.items()):
        if loop.is_closed():
            session.detach()  # nothing can run on a closed loop; marked closed, not warned about
            del _sessions[loop]
            _closers.pop(loop, None)


def ssl_context() -> ssl.SSLContext:
    """The standard library's default context (system CAs, ``SSL_CERT_FILE``/``SSL_CERT_DIR``),
    made once per value of those variables: creating one loads the CA store (milliseconds)."""
    where = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    context = _ssl_contexts.get(where)
    if context is None:
        import ssl

        context = _ssl_contexts[where] = ssl.create_default_context()
    return context


def proxy_for(scheme: str, host: str) -> str | None:
    """The proxy the environment names for `scheme`://`host` (None: connect directly). The
    answer is kept per value of the proxy variables, so a changed environment counts at once."""
    environ = os.environ
    key = (scheme, host, *(environ.get(name) for name in _PROXY_VARIABLES))
    try:
        return _proxies[key]
    except KeyError:
        pass
    import urllib.request

    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(scheme) or proxies.get("all")
    if proxy and urllib.request.proxy_bypass(host):  # reads NO_PROXY
        proxy = None
    _proxies[key] = proxy
    return proxy


def _forget_sessions() -> None:
    """After a fork: the child makes its own sessions (its parent's sockets and loops are not
    its own)."""
    _sessions.clear()
    _closers.clear()


process.register("llm.http.session", _forget_sessions, fork_only=True)
