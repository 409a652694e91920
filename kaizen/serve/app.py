"""`create_app`: the FastAPI application of `kaizen serve` (an agent or a workflow over HTTP).

    POST /runs                 the inputs as a JSON object -> 202 {"run_id", "status", ...}
    GET  /runs/{id}            status, results, error and the RunRecord (JSON)
    GET  /runs/{id}/events     Server-Sent Events: ids, replay after Last-Event-ID, keepalives
    POST /runs/{id}/cancel     202 while it stops; 409 when it had finished
    POST /runs/{id}/resume     answers for a waiting run's interrupts; it goes on
    POST /runs/{id}/retry      a failed or cancelled run resumed from its checkpoints
    POST /runs/{id}/replay     a new run, its model and tool calls from a recorded run's
    POST /ag-ui                AG-UI: a RunAgentInput in, its events out (agui_route.py)
    GET  /ui                   the run browser (kaizen.serve.ui), unless ui=False
    GET  /openapi.json         request and response schemas from the target's inputs, outputs
    GET  /health               {"status": "ok"} (for load balancers)

Runs are started and tracked by `kaizen.serve.runs.RunManager` and live in the store
(`kaizen.store.served`), so a restarted server still answers for finished runs.

Auth: with API keys (`keys=`, else ``KAIZEN_SERVE_KEYS``, comma-separated), every endpoint but
``/openapi.json`` and ``/health`` asks for ``Authorization: Bearer <key>`` or ``X-API-Key:
<key>`` and answers 401 otherwise. Keys are compared in constant time and never written anywhere.

Errors are JSON: ``{"detail": "...", "fields": [{"field": ..., "message": ...}]}``: 400 (body
not JSON), 413 (body over `max_body` bytes), 422 (unknown input, missing input, wrong type: each
field named), 401, 404 (no such run), 409 (cancel a finished run).

FastAPI is imported here, so only when a server is made (the ``serve`` extra).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from kaizen.serve.agui_route import mount_ag_ui
from kaizen.serve.leases import DEFAULT_LEASE_EXPIRY, DEFAULT_LEASE_INTERVAL, Leases
from kaizen.serve.openapi import (
    KEY_COOKIE,
    PUBLIC,
    UI_PUBLIC,
    UI_STATIC,
    components,
    declare_denied,
    description,
    json_body,
    json_response,
)
from kaizen.serve.replies import error_response, no_run_response, read_json_body
from kaizen.serve.runs import RunManager, ServedRun
from kaizen.serve.sse import (
    KEEPALIVE,
    encode_event,
    live_events,
    parse_last_event_id,
    stored_frames,
)
from kaizen.serve.target import RequestProblems, ServedTarget, served_target
from kaizen.store.db import Store, StorePath
from kaizen.store.served import load_served_run, request_cancel

if TYPE_CHECKING:
    from kaizen.runtime.local import LocalRuntime

__all__ = ["DEFAULT_KEEPALIVE", "DEFAULT_MAX_BODY", "create_app", "keys_from_environment"]

DEFAULT_MAX_BODY = 1 << 20  # bytes of a POST /runs body
DEFAULT_KEEPALIVE = 15.0  # seconds between keepalive comments on an idle event stream
KEYS_VARIABLE = "KAIZEN_SERVE_KEYS"


def keys_from_environment() -> tuple[str, ...]:
    """The API keys in ``KAIZEN_SERVE_KEYS`` (comma-separated; none: no auth)."""
    return tuple(k.strip() for k in os.environ.get(KEYS_VARIABLE, "").split(",") if k.strip())


def create_app(
    target: Any,
    *,
    store: StorePath | Store | None = None,
    keys: Iterable[str] | None = None,
    max_body: int = DEFAULT_MAX_BODY,
    keepalive: float = DEFAULT_KEEPALIVE,
    runtime: LocalRuntime | None = None,
    max_active: int = 512,
    recover: bool = True,
    stream_content: bool = True,
    lease_interval: float = DEFAULT_LEASE_INTERVAL,
    lease_expiry: float = DEFAULT_LEASE_EXPIRY,
    ui: bool = True,
    actions: bool = True,
    record: bool = False,
    a2a: bool = True,
) -> FastAPI:
    """The app serving `target`: an `Agent`, a built `Workflow`, a `WorkflowBuilder`, or a
    ``module:attr`` naming one (as `kaizen mcp serve` reads it).

    `store`: where runs live (default: the store of `runtime`, where it checkpoints; without
    one ``$KAIZEN_HOME/kaizen.db``, else ``.kaizen/kaizen.db``).
    `keys`: API keys (None: ``KAIZEN_SERVE_KEYS``; empty: no auth). `max_body`: the largest
    request body in bytes. `keepalive`: seconds between keepalive comments on an idle event
    stream. `runtime`: the `LocalRuntime` runs execute on (default: a new one). `max_active`:
    runs executing at once (the others wait, ``queued``). `recover`: take over the runs a
    worker that died left unfinished (its leases expired), at start and while serving, and
    resume them from their checkpoints; several workers on one store may all do so (each run
    is taken by one). `lease_interval` / `lease_expiry`: how often this worker renews its
    leases, and how long one lasts unrenewed (docs/serve.md, "When a server dies").
    `stream_content`: send agents' replies as ``content`` events as they arrive (streamed
    model calls cost about 4x the CPU of plain ones; off: only the other events).
    `ui`: serve the run browser at ``/ui`` (`kaizen.serve.ui`). `actions`: accept requests
    that change runs (start, cancel, resume, retry, replay); off, they answer 403 (a read-only
    server, as `kaizen ui` without ``--allow-actions``). `record`: record every model and tool
    call of each run (for the run browser's prompts and replies, and for replay). `a2a`: serve
    the A2A protocol too (`kaizen.serve.a2a`: the agent card and ``POST /a2a``) when the
    ``a2a`` extra is installed.
    """
    served = _resolve(target)
    # the runtime's own store (its checkpoints) holds its served runs too, unless told otherwise
    the_store = Store.open(store if store is not None or runtime is None else runtime.store)
    api_keys = tuple(keys) if keys is not None else keys_from_environment()
    leases = Leases(the_store, lease_interval, lease_expiry)
    manager = RunManager(
        served, the_store, runtime=runtime, max_active=max_active,
        stream_content=stream_content, leases=leases, take_over=recover, record=record,
    )  # fmt: skip

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await manager.open()
        try:
            yield
        finally:
            await manager.close()

    app = FastAPI(
        title=f"kaizen serve: {served.name}",
        description=description(served),
        version="1",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.manager = manager
    app.state.target = served
    app.state.store = the_store

    if not actions:
        app.add_middleware(_ReadOnly)
    if api_keys:
        app.add_middleware(_RequireKey, keys=api_keys)
    if a2a and _installed("a2a"):
        from kaizen.serve.a2a import mount_a2a

        mount_a2a(app, served, manager, keepalive)
    if ui:
        from kaizen.serve.ui.pages import browser_router, login_routes

        app.include_router(browser_router(the_store, target=served, actions=actions,
                                          keys=bool(api_keys)))  # fmt: skip
        if api_keys:
            app.include_router(login_routes(api_keys))

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post(
        "/runs",
        status_code=202,
        summary=f"Start a run of {served.name}",
        openapi_extra={
            "requestBody": json_body("RunParameters"),
            "responses": {
                "202": json_response("The run started", "RunCreated"),
                "400": json_response("The body is not JSON", "Problem"),
                "413": json_response("The body is too large", "Problem"),
                "422": json_response("An input is unknown, missing or mistyped", "Problem"),
            },
        },
    )
    async def start_run(request: Request) -> Response:
        body = await read_json_body(request, max_body)
        if isinstance(body, Response):
            return body
        try:
            parameters = served.check(body)
        except RequestProblems as problems:
            return error_response(422, f"the inputs do not fit {served.name!r}", problems.problems)
        run = manager.submit(body, parameters)
        await manager.committed()  # from here on, every worker on the store knows the run
        links = _links(run.run_id)
        return JSONResponse(
            {"run_id": run.run_id, "status": run.status, **links},
            status_code=202,
            headers={"Location": links["url"]},
        )

    @app.get(
        "/runs/{run_id}",
        summary="A run's status, results and record",
        openapi_extra={
            "responses": {
                "200": json_response("The run", "Run"),
                "404": json_response("No such run", "Problem"),
            }
        },
    )
    async def get_run(run_id: str) -> Response:
        run = manager.live(run_id)
        if run is not None:
            return JSONResponse(_live_state(run, served.name))
        row = await asyncio.to_thread(load_served_run, the_store, run_id)
        if row is None:
            return no_run_response(run_id)
        return JSONResponse(
            {
                "run_id": row.run_id,
                "target": row.target,
                "status": row.status,
                "created": row.created,
                "finished": row.finished,
                "parameters": row.parameters,
                "results": row.results,
                "error": row.error,
                "record": row.record,
                **_links(row.run_id),
            },
        )

    @app.get(
        "/runs/{run_id}/events",
        summary="The run's events as Server-Sent Events (replay with Last-Event-ID)",
        openapi_extra={
            "responses": {
                "200": {"description": "text/event-stream", "content": {"text/event-stream": {}}},
                "404": json_response("No such run", "Problem"),
            }
        },
    )
    async def run_events(run_id: str, request: Request) -> Response:
        after = parse_last_event_id(request.headers.get("last-event-id"))
        run = manager.live(run_id)
        if run is not None:
            frames = _live_frames(run, after, keepalive, manager.committed)
        else:
            row = await asyncio.to_thread(load_served_run, the_store, run_id)
            if row is None:
                return no_run_response(run_id)
            frames = stored_frames(the_store, run_id, after, keepalive)
        return StreamingResponse(
            frames,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.post(
        "/runs/{run_id}/cancel",
        status_code=202,
        summary="Cancel a run",
        openapi_extra={
            "responses": {
                "202": json_response("The run is being cancelled", "RunCancelling"),
                "404": json_response("No such run", "Problem"),
                "409": json_response("The run had finished", "Problem"),
            }
        },
    )
    async def cancel_run(run_id: str) -> Response:
        run = manager.live(run_id)
        if run is not None and run.status != "waiting":  # (a waiting run is the store's)
            if run.is_finished or not manager.cancel(run_id):
                return error_response(
                    409, f"run {run_id!r} has finished ({run.status}); nothing to cancel"
                )
            # ... and in the store, for the worker holding it if its lease moved meanwhile
            await asyncio.to_thread(request_cancel, the_store, run_id)
            return JSONResponse({"run_id": run_id, "status": "cancelling", **_links(run_id)}, 202)
        row = await asyncio.to_thread(load_served_run, the_store, run_id)
        if row is None:
            return no_run_response(run_id)
        if row.status == "waiting":
            from kaizen.errors import RunNotWaitingError

            try:
                await manager.cancel_waiting(run_id)
            except RunNotWaitingError as exc:  # a resume took it first
                return error_response(409, str(exc))
            if run is not None:
                manager.forget(run)
            return JSONResponse({"run_id": run_id, "status": "cancelling", **_links(run_id)}, 202)
        if not row.is_finished and await asyncio.to_thread(request_cancel, the_store, run_id):
            return JSONResponse({"run_id": run_id, "status": "cancelling", **_links(run_id)}, 202)
        row = await asyncio.to_thread(load_served_run, the_store, run_id)  # it moved meanwhile?
        if row is not None and row.status == "waiting":
            return await cancel_run(run_id)
        if (
            row is None
            or row.is_finished
            or not await asyncio.to_thread(request_cancel, the_store, run_id)
        ):
            status = row.status if row is not None else "gone"
            return error_response(409, f"run {run_id!r} has finished ({status}); nothing to cancel")
        return JSONResponse({"run_id": run_id, "status": "cancelling", **_links(run_id)}, 202)

    @app.post(
        "/runs/{run_id}/resume",
        status_code=202,
        summary="Answer a waiting run's interrupts and continue it",
        openapi_extra={
            "requestBody": json_body("ResumeRequest"),
            "responses": {
                "202": json_response("The answers were taken; the run goes on", "RunCreated"),
                "400": json_response("The body is not JSON", "Problem"),
                "404": json_response("No such run", "Problem"),
                "409": json_response("The run waits for no answer", "Problem"),
                "413": json_response("The body is too large", "Problem"),
                "422": json_response(
                    "An answer names no open interrupt, or does not match its schema", "Problem"
                ),
            },
        },
    )
    async def resume_run(run_id: str, request: Request) -> Response:
        from kaizen.errors import (
            InterruptAnswerError,
            RunNotFoundError,
            RunNotWaitingError,
            UnknownInterruptError,
        )

        body = await read_json_body(request, max_body)
        if isinstance(body, Response):
            return body
        problems = _resume_problems(body)
        if problems:
            return error_response(422, "the body is {\"answers\": {interrupt_id: answer}, \"by\": "
                          "name}", problems)  # fmt: skip
        try:
            run = await manager.resume(run_id, body.get("answers") or {}, body.get("by"))
        except RunNotFoundError:
            return no_run_response(run_id)
        except RunNotWaitingError as exc:
            return error_response(409, str(exc))
        except UnknownInterruptError as exc:
            return error_response(422, str(exc), [(f"answers.{exc.interrupt_id}", "no such open "
                                           "interrupt")])  # fmt: skip
        except InterruptAnswerError as exc:
            return error_response(422, str(exc), [(f"answers.{exc.interrupt_id}", exc.problem)])
        links = _links(run.run_id)
        return JSONResponse({"run_id": run.run_id, "status": run.status, **links}, 202)

    @app.post(
        "/runs/{run_id}/retry",
        status_code=202,
        summary="Resume a failed or cancelled run from its checkpoints",
        openapi_extra={
            "responses": {
                "202": json_response("The run goes on under its own id", "RunCreated"),
                "404": json_response("No such run", "Problem"),
                "409": json_response("The run did not fail, or is resumed already", "Problem"),
            }
        },
    )
    async def retry_run(run_id: str) -> Response:
        from kaizen.errors import RunNotFoundError
        from kaizen.serve.runs import RunConflictError

        try:
            run = await manager.retry(run_id)
        except RunNotFoundError:
            return no_run_response(run_id)
        except RunConflictError as exc:
            return error_response(409, str(exc))
        await manager.committed()
        return JSONResponse({"run_id": run.run_id, "status": run.status, **_links(run.run_id)},
                            202)  # fmt: skip

    @app.post(
        "/runs/{run_id}/replay",
        status_code=202,
        summary="Replay a recorded run: a new run, every model and tool call from the recording",
        openapi_extra={
            "responses": {
                "202": json_response("The replay started (a new run id)", "RunCreated"),
                "404": json_response("No such run, or it was not recorded", "Problem"),
            }
        },
    )
    async def replay_run(run_id: str) -> Response:
        from kaizen.errors import RunNotFoundError

        try:
            run = await manager.replay(run_id)
        except RunNotFoundError as exc:
            return error_response(404, str(exc))
        await manager.committed()
        links = _links(run.run_id)
        return JSONResponse({"run_id": run.run_id, "status": run.status, **links}, 202,
                            headers={"Location": links["url"]})  # fmt: skip

    mount_ag_ui(app, served, manager, the_store, max_body=max_body, keepalive=keepalive)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(
                title=app.title, version=app.version, description=app.description,
                routes=app.routes,
            )  # fmt: skip
            schema.setdefault("components", {}).setdefault("schemas", {}).update(components(served))
            if api_keys:
                schema["components"]["securitySchemes"] = {
                    "bearer": {"type": "http", "scheme": "bearer"},
                    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                }
                schema["security"] = [{"bearer": []}, {"apiKey": []}]
                declare_denied(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


_DENIED = (
    "missing or invalid API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>` "
    "with one of the server's keys (KAIZEN_SERVE_KEYS)"
)


def _cookie(header: bytes, name: str) -> bytes:
    """The value of cookie `name` in a ``Cookie`` header (empty when absent)."""
    for part in header.split(b";"):
        key, _, value = part.strip().partition(b"=")
        if key == name.encode():
            return value.strip()
    return b""


class _ReadOnly:
    """ASGI middleware: 403 for every request that would change a run (a read-only server)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] not in ("GET", "HEAD", "OPTIONS")
            and (scope["path"] not in UI_PUBLIC)
        ):
            from kaizen.serve.ui.app import READ_ONLY

            await error_response(403, READ_ONLY)(scope, receive, send)
            return
        await self.app(scope, receive, send)


class _RequireKey:
    """ASGI middleware: 401 for a request to anything but `PUBLIC` without a valid key.

    A plain ASGI class rather than ``@app.middleware("http")``, whose per-request task group
    costs more than the rest of a POST /runs."""

    def __init__(self, app: Any, keys: tuple[str, ...]) -> None:
        self.app = app
        self.keys = [key.encode() for key in keys]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            or path in PUBLIC
            or path in UI_PUBLIC
            or path.startswith(UI_STATIC)
            or self._valid(scope)
        ):
            await self.app(scope, receive, send)
            return
        if path == "/ui" or path.startswith("/ui/"):  # a person at a browser: ask for the key
            from kaizen.serve.ui.pages import login_redirect

            query = scope.get("query_string", b"").decode("latin-1")
            await login_redirect(path + (f"?{query}" if query else ""))(scope, receive, send)
            return
        denied = error_response(401, _DENIED, headers={"WWW-Authenticate": "Bearer"})
        await denied(scope, receive, send)

    def _valid(self, scope: Any) -> bool:
        given = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    given = token.strip()
                    break
            elif name == b"x-api-key":
                given = value.strip()
            elif name == b"cookie" and not given:  # the run browser's pages (same-site cookie)
                given = _cookie(value, KEY_COOKIE)
        # compared with every key, in constant time: timing tells nothing about any of them
        found = False
        for key in self.keys:
            found |= hmac.compare_digest(given, key)
        return found


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _resolve(target: Any) -> ServedTarget:
    from kaizen.agents.agent import Agent
    from kaizen.mcp.serve import load_target
    from kaizen.workflow.workflow import Workflow

    if isinstance(target, ServedTarget):
        return target
    if isinstance(target, str):
        target = load_target(target)
    elif not isinstance(target, Agent | Workflow) and callable(getattr(target, "build", None)):
        target = target.build()
    if not isinstance(target, Agent | Workflow):
        raise TypeError(
            f"kaizen serve takes an Agent, a Workflow, a WorkflowBuilder or 'module:attr', "
            f"got {type(target).__name__}"
        )
    return served_target(target)


# -- requests and responses ------------------------------------------------------------------------


def _resume_problems(body: Any) -> list[tuple[str, str]]:
    """What is wrong with a resume's body (nothing: an empty list)."""
    if not isinstance(body, dict):
        return [("body", "must be a JSON object")]
    fields = ("answers", "by")
    problems = [(key, "is not a field of a resume") for key in body if key not in fields]
    if not isinstance(body.get("answers", {}), dict):
        problems.append(("answers", "must be an object: {interrupt_id: answer}"))
    if body.get("by") is not None and not isinstance(body["by"], str):
        problems.append(("by", "must be a string"))
    return problems


def _links(run_id: str) -> dict[str, str]:
    return {"url": f"/runs/{run_id}", "events": f"/runs/{run_id}/events"}


def _live_state(run: ServedRun, target: str) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "target": target,
        "status": run.status,
        "created": run.created,
        "finished": run.finished,
        "parameters": run.parameters,
        "results": run.results,
        "error": run.error,
        "record": run.record_dict(),
        **_links(run.run_id),
    }


async def _live_frames(
    run: ServedRun, after: int, keepalive: float, committed: Callable[[], Awaitable[None]]
) -> AsyncIterator[bytes]:
    """A live run's events as SSE frames (see `_live_events`)."""
    async for event in live_events(run, after, keepalive, committed):
        yield KEEPALIVE if event is None else encode_event(*event)
