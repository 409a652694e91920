"""The run browser's routes: HTML pages rendered on the server from the store, under ``/ui``.

    GET  /ui                              the runs, newest first (status, workflow, run id, pages)
    GET  /ui/runs/{id}[?node=N]           one run: graph, timeline, totals, nodes; N's panel open
    GET  /ui/runs/{id}/state.json         node statuses now (the page refreshes itself from it)
    GET  /ui/runs/{id}/outputs/{node}     one node's stored outputs, whole, as JSON
    GET  /ui/compare?a=ID&b=ID            two runs side by side, node by node
    GET  /ui/new                          a form for a new run, from the target's input schema
    GET  /ui/login, POST /ui/login        the API key, kept in a same-site cookie (keys set)
    GET  /ui/static/{file}                the page's CSS and JavaScript (shipped in the wheel)

Pages only read. Every action (start, cancel, answer, retry, replay) is a ``fetch`` from the
page to the server's own HTTP API (`kaizen.serve.app`), the one a program uses, so the keys,
checks and errors are those of the API. Without `actions` the pages offer none.

Whatever goes wrong becomes a page that says what and what to do (a missing run, a locked or
damaged store), never a stack trace. Values are escaped by Jinja2's autoescape everywhere; the
drawn graph is Graphviz's SVG, whose text Graphviz escapes.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from kaizen.errors import StoreError
from kaizen.serve.openapi import KEY_COOKIE
from kaizen.serve.ui import views
from kaizen.store.browse import BROWSER_STATUSES, run_details, runs_page, stored_outputs
from kaizen.store.browse import workflow_names as stored_workflow_names

if TYPE_CHECKING:
    import jinja2

    from kaizen.serve.target import ServedTarget
    from kaizen.store.db import Store

__all__ = ["browser_router", "login_redirect", "login_routes"]

log = logging.getLogger("kaizen.serve")

PAGE_SIZE = 50
VALUE_LIMIT = 1 << 20  # bytes of a node's outputs read for a page (more: a download link)
_STATIC = {"ui.css": "text/css; charset=utf-8", "ui.js": "text/javascript; charset=utf-8"}
_HEADERS = {
    # the pages load nothing from elsewhere and run no inline script
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


@functools.cache
def _templates() -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("kaizen.serve.ui", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["when"] = views.time_text
    env.filters["took"] = views.duration_text
    env.filters["usd"] = views.cost_text
    env.filters["url"] = lambda text: quote(str(text), safe="")
    env.globals["icons"] = views.STATUS_ICONS
    return env


def browser_router(
    store: Store,
    *,
    target: ServedTarget | None = None,
    actions: bool = False,
    keys: bool = False,
) -> APIRouter:
    """The run browser's routes over `store`. `target`: the served agent or workflow (for
    the new-run form); `actions`: offer start, cancel, answer, retry and replay (through the
    HTTP API); `keys`: the server asks for API keys (the login page stores one)."""
    router = APIRouter(prefix="/ui", include_in_schema=False)
    base = {"actions": actions, "target": target.name if target else None, "keys": keys}

    def page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = _templates().get_template(name).render(**base, **context)
        return HTMLResponse(html, status_code=status, headers=_HEADERS)

    def problem(status: int, title: str, detail: str) -> HTMLResponse:
        return page("problem.html", status, title=title, detail=detail)

    def guarded(
        handler: Callable[..., Awaitable[Response]],
    ) -> Callable[..., Awaitable[Response]]:
        """A page whose store cannot be read says so instead of failing."""

        @functools.wraps(handler)
        async def answer(*args: Any, **kwargs: Any) -> Response:
            try:
                return await handler(*args, **kwargs)
            except StoreError as exc:
                return problem(503, "The store cannot be read", f"{exc}")
            except sqlite3.DatabaseError as exc:
                return problem(
                    503,
                    "The store cannot be read",
                    f"{store.path}: {exc}. Is it a Kaizen store? Check the path "
                    "given to --store, or restore the file from a backup.",
                )
            except Exception:
                log.exception("kaizen ui: a page failed")
                return problem(
                    500,
                    "This page failed",
                    "The server's log has the details. Nothing was changed.",
                )

        return answer

    async def read(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, store, *args, **kwargs)

    @router.get("", response_class=HTMLResponse)
    @guarded
    async def runs_list(
        status: str | None = None,
        workflow: str | None = None,
        q: str | None = None,
        before: str | None = None,
    ) -> Response:
        if status and status not in BROWSER_STATUSES:
            return problem(
                400,
                "Unknown status",
                f"{status!r} is not a status; one of {', '.join(BROWSER_STATUSES)}.",
            )
        cursor = _cursor(before)
        rows, following = await read(
            runs_page,
            status=status or None,
            workflow=workflow or None,
            search=(q or "").strip() or None,
            before=cursor,
            limit=PAGE_SIZE,
        )
        names = await read(stored_workflow_names)
        filters = {"status": status or "", "workflow": workflow or "", "q": q or ""}
        next_url = None
        if following is not None:
            query = {k: v for k, v in filters.items() if v}
            query["before"] = f"{following[0]!r}:{following[1]}"
            next_url = "/ui?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items())
        return page(
            "runs.html",
            rows=rows,
            statuses=list(BROWSER_STATUSES),
            workflows=names,
            filters=filters,
            next_url=next_url,
            first_page=cursor is None,
        )

    @router.get("/runs/{run_id}", response_class=HTMLResponse)
    @guarded
    async def run_page(run_id: str, node: str | None = None) -> Response:
        details = await read(run_details, run_id, value_limit=VALUE_LIMIT)
        if details is None:
            return _no_run(problem, run_id, store)
        view = views.run_view(details, node)
        if node is not None and view.panel is None:
            return problem(404, "No such node", f"Run {run_id} has no node {node!r}.")
        graph = await asyncio.to_thread(_graph_svg, details)
        timeline = _timeline_svg(details)
        state = {
            "run_id": run_id,
            "statuses": view.statuses,
            "status": view.status,
            "last_event": view.last_event,
            "served": view.served,
        }
        return page("run.html", run=view, graph=graph, timeline=timeline, state=state)

    @router.get("/runs/{run_id}/state.json")
    @guarded
    async def run_state(run_id: str) -> Response:
        details = await read(run_details, run_id, value_limit=0, calls=False)
        if details is None:
            return JSONResponse({"detail": f"no run {run_id!r}"}, 404)
        view = views.run_view(details)
        return JSONResponse({"status": view.status, "statuses": view.statuses})

    @router.get("/runs/{run_id}/outputs/{node_id:path}")
    @guarded
    async def node_outputs(run_id: str, node_id: str) -> Response:
        stored = await read(stored_outputs, run_id, node_id)
        if stored is None:
            return JSONResponse({"detail": f"run {run_id!r} stored no outputs of {node_id!r}"}, 404)
        if stored.encoding != "json":
            return JSONResponse({"detail": f"the outputs are pickled ({stored.size} bytes)"}, 415)
        return JSONResponse(stored.value, headers={"X-Content-Type-Options": "nosniff"})

    @router.get("/compare", response_class=HTMLResponse)
    @guarded
    async def compare(request: Request, a: str = "", b: str = "") -> Response:
        picked = request.query_params.getlist("pick")
        if not (a or b) and len(picked) == 2:
            a, b = picked
        if not a or not b:
            return page("compare.html", left=None, right=None, rows=[], a=a, b=b)
        left = await read(run_details, a.strip(), value_limit=VALUE_LIMIT)
        right = await read(run_details, b.strip(), value_limit=VALUE_LIMIT)
        for run_id, found in ((a, left), (b, right)):
            if found is None:
                return _no_run(problem, run_id, store)
        if picked and left.started > right.started:  # ticked in the list: the older run is A
            left, right, a, b = right, left, b, a
        rows = views.compare_views(left, right)
        return page(
            "compare.html",
            left=views.run_view(left),
            right=views.run_view(right),
            rows=rows,
            a=a,
            b=b,
        )

    @router.get("/new", response_class=HTMLResponse)
    @guarded
    async def new_run() -> Response:
        if target is None or not actions:
            return problem(
                404,
                "No runs can be started here",
                "This run browser serves no agent or workflow, or is read-only. "
                "Start runs from `kaizen serve TARGET` (its /ui page), or "
                "`kaizen ui --target module:attr --allow-actions`.",
            )
        fields = _form_fields(target.request_schema)
        return page("new.html", fields=fields)

    @router.get("/login", response_class=HTMLResponse)
    async def login_page(next: str = "/ui") -> Response:
        return page("login.html", next=_local(next))

    @router.get("/static/{name}")
    async def static(name: str) -> Response:
        if name not in _STATIC:
            return Response("not found", 404, media_type="text/plain")
        data = resources.files("kaizen.serve.ui").joinpath("static", name).read_bytes()
        return Response(data, media_type=_STATIC[name], headers={"Cache-Control": "max-age=300"})

    return router


def login_routes(keys: tuple[str, ...]) -> APIRouter:
    """``POST /ui/login``: a key from the login form, checked in constant time, kept in an
    HttpOnly same-site cookie (so no other site's page can send it)."""
    import hmac
    from urllib.parse import parse_qs

    router = APIRouter(prefix="/ui", include_in_schema=False)

    @router.post("/login")
    async def login(request: Request) -> Response:
        body = (await request.body())[:8192].decode("utf-8", "replace")
        form = {k: v[0] for k, v in parse_qs(body).items() if v}
        given = form.get("key", "").strip().encode()
        found = False
        for key in keys:
            found |= hmac.compare_digest(given, key.encode())
        if not found:
            html = (
                _templates()
                .get_template("problem.html")
                .render(
                    actions=False,
                    target=None,
                    keys=True,
                    title="Wrong key",
                    detail="That is not one of this server's API keys (KAIZEN_SERVE_KEYS).",
                )
            )
            return HTMLResponse(html, status_code=401, headers=_HEADERS)
        response = RedirectResponse(_local(form.get("next", "/ui")), status_code=303)
        response.set_cookie(KEY_COOKIE, given.decode(), httponly=True, samesite="strict", path="/")
        return response

    return router


def _local(url: str) -> str:
    """`url` when it is a path on this server (never an open redirect), else /ui."""
    return url if url.startswith("/") and not url.startswith("//") else "/ui"


def login_redirect(path: str) -> Response:
    """Where a page request without a key goes (the API answers 401 JSON instead)."""
    return RedirectResponse(f"/ui/login?next={quote(_local(path), safe='')}", status_code=303)


def _cursor(before: str | None) -> tuple[float, str] | None:
    if not before:
        return None
    moment, _, run_id = before.partition(":")
    try:
        return float(moment), run_id
    except ValueError:
        return None


def _no_run(
    problem: Callable[[int, str, str], HTMLResponse], run_id: str, store: Store
) -> Response:
    return problem(
        404,
        "No such run",
        f"The store {store.path} has no run {run_id!r}: the id may be mistyped, or the "
        "run was pruned (`kaizen runs prune`). The runs list shows what is there.",
    )


_DRAWN: OrderedDict[str, str] = OrderedDict()  # workflow fingerprint -> its drawn graph
_DRAWN_KEPT = 64
_drawn_lock = threading.Lock()  # (pages are drawn on worker threads)


def _graph_svg(details: Any) -> str | None:
    """The run's workflow drawn as inline SVG (None: the store has no shape of it), laid out
    once per workflow version (fingerprint) per process."""
    if details.shape is None:
        return None
    key = str(details.fingerprint)
    with _drawn_lock:
        drawn = _DRAWN.get(key)
        if drawn is not None:
            _DRAWN.move_to_end(key)
            return drawn
    from kaizen.errors import RenderError
    from kaizen.render.graph import build_dot, svg_text

    dot = build_dot(details.shape, link_of=lambda node: f"?node={quote(node, safe='')}")
    try:
        svg = svg_text(str(dot.source))
    except RenderError as exc:
        log.warning("kaizen ui: the graph cannot be drawn: %s", exc)
        return None
    drawn = svg[max(svg.find("<svg"), 0) :]
    with _drawn_lock:
        _DRAWN[key] = drawn
        while len(_DRAWN) > _DRAWN_KEPT:
            _DRAWN.popitem(last=False)
    return drawn


def _timeline_svg(details: Any) -> str | None:
    record = views.record_of(details)
    if record is None or not record.nodes:
        return None
    from kaizen.render.timeline import timeline_svg

    return timeline_svg(record)


def _form_fields(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The new-run form's fields: one per input, its widget from the input's JSON schema."""
    required = set(schema.get("required") or ())
    fields = []
    for name, prop in (schema.get("properties") or {}).items():
        kind = prop.get("type") if isinstance(prop, dict) else None
        widget = {
            "string": "text",
            "integer": "number",
            "number": "number",
            "boolean": "checkbox",
        }.get(kind if isinstance(kind, str) else "", "json")
        fields.append(
            {
                "name": name,
                "widget": widget,
                "kind": kind if isinstance(kind, str) else "json",
                "required": name in required,
                "description": (prop or {}).get("description", ""),
                "default": json.dumps(prop["default"]) if "default" in (prop or {}) else "",
            }
        )
    return fields
