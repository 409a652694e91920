"""`create_browser_app`: the run browser over a store alone (what `kaizen ui` serves).

The pages (`kaizen.serve.ui.pages`) and the part of the runs API they follow: the events of a
served run (``GET /runs/{id}/events``, read from the store as the run goes on, whichever process
runs it), and with `allow_actions` its cancel (``POST /runs/{id}/cancel``: the worker holding
the run sees the request and stops it). Actions that execute the workflow need it:
`kaizen ui --target module:attr` serves the whole API with `kaizen.serve.app.create_app`.
"""

from __future__ import annotations

import asyncio

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from kaizen.serve.sse import parse_last_event_id, stored_frames
from kaizen.serve.ui.pages import browser_router
from kaizen.store.db import Store, StorePath
from kaizen.store.served import load_served_run, request_cancel

__all__ = ["READ_ONLY", "create_browser_app"]

READ_ONLY = (
    "this run browser is read-only: start it with `kaizen ui --allow-actions` to act from it"
)
KEEPALIVE = 15.0  # seconds between keepalive comments on an idle event stream


def create_browser_app(
    store: StorePath | Store | None = None, *, allow_actions: bool = False
) -> FastAPI:
    """The run browser over `store` (default: ``$KAIZEN_HOME/kaizen.db``, else
    ``.kaizen/kaizen.db``); see the module docstring."""
    the_store = Store.open(store)
    app = FastAPI(title="kaizen ui", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store = the_store
    app.include_router(browser_router(the_store, actions=allow_actions))

    def missing(run_id: str) -> JSONResponse:
        return JSONResponse({"detail": f"no served run {run_id!r} in {the_store.path}"}, 404)

    @app.get("/", include_in_schema=False)
    async def home() -> Response:
        return RedirectResponse("/ui", status_code=307)

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/runs/{run_id}/events")
    async def events(run_id: str, request: Request) -> Response:
        row = await asyncio.to_thread(load_served_run, the_store, run_id)
        if row is None:
            return missing(run_id)
        after = parse_last_event_id(request.headers.get("last-event-id"))
        return StreamingResponse(
            stored_frames(the_store, run_id, after, KEEPALIVE),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.post("/runs/{run_id}/cancel")
    async def cancel(run_id: str) -> Response:
        if not allow_actions:
            return JSONResponse({"detail": READ_ONLY}, 403)
        row = await asyncio.to_thread(load_served_run, the_store, run_id)
        if row is None:
            return missing(run_id)
        if row.status in ("waiting", "waiting_approval"):
            return JSONResponse(
                {
                    "detail": f"run {run_id!r} waits for a person and no worker "
                    "holds it: cancel it through `kaizen serve` (POST "
                    "/runs/{id}/cancel), or `kaizen ui --target`"
                },
                409,
            )
        if row.is_finished or not await asyncio.to_thread(request_cancel, the_store, run_id):
            return JSONResponse(
                {"detail": f"run {run_id!r} has finished ({row.status}); nothing to cancel"}, 409
            )
        return JSONResponse({"run_id": run_id, "status": "cancelling"}, 202)

    return app
