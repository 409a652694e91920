"""Running the app: `serve` (what `kaizen serve` calls: uvicorn in the foreground, one or several
worker processes) and `BackgroundServer` (uvicorn on a thread of this process, for notebooks,
tests and benchmarks; port 0 picks a free port).

Several workers (`workers > 1`) are separate processes: uvicorn imports
`app_from_environment`, which reads the target and options `serve` put in the environment.
They share the store, so any worker answers for any run: its status and events are read from
the store while another worker runs it, and a cancel reaches it through the store. A worker
that dies leaves its runs to the others: their leases expire and another worker takes them
over (`kaizen.serve.leases`).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kaizen.store.db import is_store_url

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["BackgroundServer", "app_from_environment", "serve"]

_TARGET = "KAIZEN_SERVE_TARGET"
_STORE = "KAIZEN_SERVE_STORE"
_MAX_BODY = "KAIZEN_SERVE_MAX_BODY"
_STREAM_CONTENT = "KAIZEN_SERVE_STREAM_CONTENT"
_LEASES = "KAIZEN_SERVE_LEASES"  # "interval,expiry" in seconds
_FLAGS = "KAIZEN_SERVE_FLAGS"  # "record,actions": the options that are on


def serve(
    target: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    store: str | Path | None = None,
    max_body: int | None = None,
    log_level: str = "info",
    proxy_headers: bool = False,
    stream_content: bool = True,
    loaded: Any = None,
    lease_interval: float | None = None,
    lease_expiry: float | None = None,
    record: bool = False,
    actions: bool = True,
) -> None:
    """Serve `target` (``module:attr``) until stopped. `loaded`: the object `target` names,
    when the caller loaded it already (one worker serves it as it is; several import `target`
    each). A store file's path is made absolute here so every worker opens the same file (a
    ``postgresql://`` URL is passed on as it is).
    `record`, `actions`: as `create_app`'s."""
    import uvicorn

    from kaizen.serve.app import DEFAULT_MAX_BODY, create_app
    from kaizen.serve.leases import DEFAULT_LEASE_EXPIRY, DEFAULT_LEASE_INTERVAL

    limit = max_body or DEFAULT_MAX_BODY
    interval = lease_interval or DEFAULT_LEASE_INTERVAL
    expiry = lease_expiry or DEFAULT_LEASE_EXPIRY
    options: dict[str, Any] = {
        "host": host, "port": port, "log_level": log_level, "proxy_headers": proxy_headers,
        "server_header": False, "timeout_graceful_shutdown": 10,
    }  # fmt: skip
    if workers <= 1:
        app = create_app(
            target if loaded is None else loaded, store=store, max_body=limit,
            stream_content=stream_content, lease_interval=interval, lease_expiry=expiry,
            record=record, actions=actions,
        )  # fmt: skip
        uvicorn.run(app, **options)
        return
    os.environ[_TARGET] = target
    if store is not None:
        os.environ[_STORE] = (
            str(store) if is_store_url(store) else str(Path(store).expanduser().absolute())
        )
    os.environ[_MAX_BODY] = str(limit)
    os.environ[_STREAM_CONTENT] = "1" if stream_content else "0"
    os.environ[_LEASES] = f"{interval},{expiry}"
    os.environ[_FLAGS] = ",".join(
        name for name, on in (("record", record), ("actions", actions)) if on
    )
    uvicorn.run(
        "kaizen.serve.server:app_from_environment", factory=True, workers=workers, **options
    )


def app_from_environment() -> FastAPI:
    """The app of one worker process (see the module docstring)."""
    from kaizen.serve.app import DEFAULT_MAX_BODY, create_app
    from kaizen.serve.leases import DEFAULT_LEASE_EXPIRY, DEFAULT_LEASE_INTERVAL

    target = os.environ.get(_TARGET)
    if not target:
        raise RuntimeError(f"{_TARGET} is not set: start workers with `kaizen serve`")
    leases = os.environ.get(_LEASES, "").split(",")
    flags = set(os.environ.get(_FLAGS, "actions").split(","))
    return create_app(
        target,
        store=os.environ.get(_STORE) or None,
        max_body=int(os.environ.get(_MAX_BODY) or DEFAULT_MAX_BODY),
        stream_content=os.environ.get(_STREAM_CONTENT, "1") != "0",
        lease_interval=float(leases[0]) if leases[0] else DEFAULT_LEASE_INTERVAL,
        lease_expiry=float(leases[1]) if len(leases) > 1 else DEFAULT_LEASE_EXPIRY,
        record="record" in flags,
        actions="actions" in flags,
    )


class BackgroundServer:
    """Uvicorn serving `app` on a thread of this process (loopback by default).

        with BackgroundServer(create_app(workflow, store="runs.db")) as server:
            httpx.post(f"{server.url}/runs", json={...})

    `port=0` picks a free port (`server.port`, `server.url` once started). `stop()` shuts it
    down gracefully: running runs are cancelled and everything is written to the store.
    """

    def __init__(
        self,
        app: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
        access_log: bool = False,
    ) -> None:
        """Uvicorn's loggers (``uvicorn.error``, ``uvicorn.access``) are left to this process's
        logging configuration: a background server does not reconfigure its host's logging."""
        import uvicorn

        options: dict[str, Any] = {"host": host, "port": port, "log_level": log_level,
                                   "access_log": access_log, "server_header": False,
                                   "timeout_graceful_shutdown": 5, "log_config": None}  # fmt: skip
        self.config = uvicorn.Config(app, **options)
        self.server = uvicorn.Server(self.config)
        self.host = host
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        servers = getattr(self.server, "servers", None)
        if not servers:
            raise RuntimeError("the server has not started")
        return int(servers[0].sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> BackgroundServer:
        self._thread = threading.Thread(target=self.server.run, name="kaizen-serve", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the server stopped while starting (see its log)")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the server did not start within {timeout:g} s")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        if self._thread is None:
            return
        self.server.should_exit = True
        self._thread.join(timeout)
        self._thread = None

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
