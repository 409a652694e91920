"""How `kaizen serve` reads a request body and answers with a problem: the JSON body within the
server's size limit (`read_json_body`), and the error responses every route gives
(`error_response`: ``{"detail": ..., "fields": [{"field", "message"}]}``; `no_run_response`).
Shared by the native API (`kaizen.serve.app`) and the AG-UI route (`kaizen.serve.agui_route`).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

__all__ = ["error_response", "no_run_response", "read_json_body"]


async def read_json_body(request: Request, limit: int) -> Any:
    """The JSON body (an empty body is ``{}``), or the error response to send instead."""
    too_big = f"the request body is larger than {limit} bytes (the server's limit)"
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return error_response(413, too_big, [("body", too_big)])
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return error_response(413, too_big, [("body", too_big)])
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        why = f"is not JSON ({exc})"
        return error_response(400, f"the request body {why}", [("body", why)])


def error_response(
    status: int,
    detail: str,
    fields: list[tuple[str, str]] | None = None,
    *,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    content: dict[str, Any] = {"detail": detail}
    if fields:
        content["fields"] = [{"field": f, "message": m} for f, m in fields]
    return JSONResponse(content, status_code=status, headers=headers)


def no_run_response(run_id: str) -> JSONResponse:
    return error_response(404, f"no run {run_id!r} on this server (or in its store)")
