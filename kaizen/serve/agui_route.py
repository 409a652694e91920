"""`POST /ag-ui` on `kaizen serve`: a served agent or workflow spoken to with the AG-UI protocol
(a ``RunAgentInput`` in, AG-UI events out as Server-Sent Events). `mount_ag_ui` adds the route;
the translation between Kaizen's run events and AG-UI's is `kaizen.serve.agui` (extra
``ag-ui``), imported on the first request, so a server without the extra answers 501 saying
what to install. A ``RunAgentInput`` with ``resume`` answers a waiting run's interrupts (or
cancels it) and streams the rest of it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse

from kaizen.serve.openapi import json_response
from kaizen.serve.replies import error_response, no_run_response, read_json_body
from kaizen.serve.runs import RunManager, ServedRun
from kaizen.serve.sse import KEEPALIVE, live_events
from kaizen.serve.target import RequestProblems, ServedTarget
from kaizen.store.db import Store

__all__ = ["mount_ag_ui"]


def mount_ag_ui(
    app: FastAPI,
    served: ServedTarget,
    manager: RunManager,
    store: Store,
    *,
    max_body: int,
    keepalive: float,
) -> None:
    """Add ``POST /ag-ui`` to `app` (see the module docstring)."""

    @app.post(
        "/ag-ui",
        summary="Run it with the AG-UI protocol: a RunAgentInput in, AG-UI events out (SSE)",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            "responses": {
                "200": {"description": "AG-UI events", "content": {"text/event-stream": {}}},
                "400": json_response("The body is not JSON", "Problem"),
                "404": json_response("A resume names no run of this server", "Problem"),
                "409": json_response("The resumed run waits for no answer", "Problem"),
                "413": json_response("The body is too large", "Problem"),
                "422": json_response("Not a RunAgentInput this target can run", "Problem"),
                "501": json_response("The ag-ui extra is not installed", "Problem"),
            },
        },
    )
    async def ag_ui(request: Request) -> Response:
        try:
            from kaizen.serve import agui
        except ModuleNotFoundError as exc:
            if not (exc.name or "").startswith("ag_ui"):
                raise
            return error_response(501, "AG-UI needs the ag-ui extra: pip install 'kaizen[ag-ui]'")
        body = await read_json_body(request, max_body)
        if isinstance(body, Response):
            return body
        try:
            started = await _agui_run(agui, body)
        except agui.AguiInputError as exc:
            return error_response(422, f"not a RunAgentInput {served.name!r} can run", exc.problems)
        except RequestProblems as problems:
            return error_response(422, f"the inputs do not fit {served.name!r}", problems.problems)
        if isinstance(started, Response):
            return started
        stream, run, after = started
        return StreamingResponse(
            _agui_frames(agui, stream, run, after),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def _agui_run(agui: Any, body: Any) -> Any:
        """(the AG-UI stream, the served run, the events already sent) for a RunAgentInput;
        an error response for a resume that cannot be taken."""
        from kaizen.errors import (
            InterruptAnswerError,
            RunNotFoundError,
            RunNotWaitingError,
            UnknownInterruptError,
        )
        from kaizen.store.served import load_served_events

        run_input = agui.parse_input(body)
        if not run_input.resume:
            inputs = agui.inputs_of(run_input, served.request_schema)
            run = manager.submit(inputs, served.check(inputs))
            await manager.committed()
            return agui.AguiStream(run_input, run.run_id), run, 0
        run_id, answers, cancelled = agui.answers_of(run_input)
        stream = agui.AguiStream(run_input, run_id)
        events = await asyncio.to_thread(load_served_events, store, run_id, 0)
        try:
            if cancelled:
                await manager.cancel_waiting(run_id)
                return stream, None, 0
            run = await manager.resume(run_id, answers, None)
        except RunNotFoundError:
            return no_run_response(run_id)
        except RunNotWaitingError as exc:
            return error_response(409, str(exc))
        except UnknownInterruptError as exc:
            problem = f"{run_id}:{exc.interrupt_id} is no open interrupt"
            return error_response(422, str(exc), [("resume.interruptId", problem)])
        except InterruptAnswerError as exc:
            return error_response(422, str(exc), [("resume.payload", exc.problem)])
        return stream, run, events[-1].seq if events else 0

    async def _agui_frames(
        agui: Any, stream: Any, run: ServedRun | None, after: int
    ) -> AsyncIterator[bytes]:
        for event in stream.start():
            yield agui.encode(event)
        if run is None:  # a resume that cancelled the run
            for event in stream.end("cancelled"):
                yield agui.encode(event)
            return
        async for item in live_events(run, after, keepalive, manager.committed):
            if item is None:
                yield KEEPALIVE
                continue
            for event in stream.feed(item[1], json.loads(item[2])):
                yield agui.encode(event)
        for event in stream.end(run.status, run.results, run.error):  # (waiting, or lost)
            yield agui.encode(event)
