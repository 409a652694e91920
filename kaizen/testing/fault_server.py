"""A real OpenAI-compatible chat server on loopback that injects latency and faults.

Reliability tests (and benchmarks) point litellm's `openai/` provider at it with
`api_base=server.base_url, api_key="test"`, so every byte goes over real HTTP through the same
client code a production call uses. Faults are queued and applied to the next requests in order:

- ``"429"``: rate limited, with a ``Retry-After`` header (seconds);
- ``"500"`` / ``"503"``: server errors;
- ``"timeout"``: the server stalls past any sane client timeout, then closes the connection;
- ``"drop"``: the connection is closed without a response;
- ``"malformed"``: status 200 with a body that is not valid JSON;
- ``"schema_violation"``: a well-formed reply whose content is JSON violating the requested schema;
- ``"401"`` / ``"403"`` / ``"400"`` / ``"404"`` / ``"422"``: client errors a caller must not retry.

A reply may also be `ToolCalls`: the assistant message then asks for tool calls (its
``tool_calls``, finish reason ``"tool_calls"``). Streamed requests (``"stream": true``) get
server-sent events in chunked transfer encoding, one HTTP chunk per event, sent one by one: text
in pieces, each tool call in fragments (id and name first, then its arguments in two halves),
and a last usage event when ``stream_options.include_usage`` asks for it.

``tls=True`` serves HTTPS with a certificate of `kaizen.testing.tls` (clients trust it with
``SSL_CERT_FILE``); `connections` counts the connections accepted, `open_connections` those
still open.

Without a configured reply the server answers with a minimal instance of the schema the request
asked for (``response_format`` json_schema), or a short text when there is none. Stdlib only: an
asyncio server on its own thread, so a hundred concurrent requests at 200 ms latency finish in
about 200 ms and `stop()` cuts off whatever is still sleeping.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ToolCalls:
    """A reply asking for tool calls: `calls` are (name, arguments) pairs, the arguments a dict
    (sent as JSON text) or a string sent as it is (it may be invalid JSON on purpose)."""

    calls: tuple[tuple[str, dict[str, Any] | str], ...]
    content: str | None = None


Reply = str | dict[str, Any] | list[Any] | ToolCalls
ReplySource = Reply | Callable[[dict[str, Any]], Reply] | None

FAULT_KINDS = frozenset(
    {"429", "500", "503", "timeout", "drop", "malformed", "schema_violation"}
    | {"400", "401", "403", "404", "422"}
)

_ERROR_BODIES: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Injected fault: the request is invalid."),
    401: ("invalid_request_error", "Injected fault: incorrect API key provided."),
    403: ("permission_error", "Injected fault: this key may not use this model."),
    404: ("invalid_request_error", "Injected fault: the model does not exist."),
    422: ("invalid_request_error", "Injected fault: unprocessable request."),
    429: ("rate_limit_error", "Injected fault: rate limit reached, retry later."),
    500: ("server_error", "Injected fault: the server had an error."),
    503: ("server_error", "Injected fault: the server is overloaded."),
}


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected fault. `retry_after` (seconds) applies to 429; `stall` to "timeout"."""

    kind: str
    retry_after: float | None = None
    stall: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(
                f"unknown fault {self.kind!r}; choose one of {', '.join(sorted(FAULT_KINDS))}"
            )


@dataclass(frozen=True, slots=True)
class ServedRequest:
    """One request the server received: its path, JSON body (None if unparsable), fault applied."""

    path: str
    body: dict[str, Any] | None
    fault: str | None
    received: float


class FaultServer:
    """OpenAI-compatible `/v1/chat/completions` on 127.0.0.1 with scripted latency and faults.

    Use as a context manager (``with FaultServer(latency=0.2) as server: ...``) or call
    `start()` / `stop()`. `inject("429", "drop")` queues faults for the next requests;
    `requests` lists every request served so far.
    """

    def __init__(
        self,
        *,
        latency: float = 0.0,
        reply: ReplySource = None,
        faults: Iterable[str | Fault] = (),
        retry_after: float = 1.0,
        stall: float = 30.0,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: bool = False,
    ) -> None:
        self.latency = latency
        self.reply = reply
        self.retry_after = retry_after
        self.stall = stall
        self._host = host
        self._port = port
        self.tls = tls
        self.connections = 0  # connections accepted so far
        self.open_connections = 0  # of those, the ones not closed yet
        self._lock = threading.Lock()
        self._faults: deque[Fault] = deque()
        self._requests: list[ServedRequest] = []
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._bound_port: int | None = None
        self.inject(*faults)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> FaultServer:
        """Listen on a free loopback port (or the one given) in a background thread."""
        if self._thread is not None:
            return self
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                server = loop.run_until_complete(
                    asyncio.start_server(
                        self._accepted, self._host, self._port, backlog=1024, ssl=self._tls()
                    )
                )
            except BaseException as exc:  # reported to start()'s caller
                failure.append(exc)
                started.set()
                loop.close()
                return
            self._bound_port = int(server.sockets[0].getsockname()[1])
            started.set()
            try:
                loop.run_forever()
            finally:
                server.close()
                tasks = asyncio.all_tasks(loop)
                for task in tasks:
                    task.cancel()
                if tasks:
                    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                loop.close()

        self._thread = threading.Thread(target=run, name="kaizen-fault-server", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop serving; requests in flight (sleeping through latency or a stall) are cut off."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._thread = None
        self._loop = None
        self._bound_port = None

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _tls(self) -> Any:
        if not self.tls:
            return None
        from kaizen.testing.tls import loopback_certificate

        return loopback_certificate().server_context()

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            self.connections += 1
            self.open_connections += 1
        try:
            await _Connection(self, reader, writer).serve()
        finally:
            with self._lock:
                self.open_connections -= 1

    @property
    def port(self) -> int:
        if self._bound_port is None:
            raise RuntimeError("FaultServer is not running; call start() or use it as a context")
        return self._bound_port

    @property
    def base_url(self) -> str:
        """The `api_base` to give litellm, e.g. ``http://127.0.0.1:40123/v1``."""
        return f"{'https' if self.tls else 'http'}://{self._host}:{self.port}/v1"

    # -- faults and log --------------------------------------------------------------------
    def inject(self, *faults: str | Fault) -> None:
        """Queue faults; each applies to one of the next requests, in order."""
        parsed = [f if isinstance(f, Fault) else Fault(str(f)) for f in faults]
        with self._lock:
            self._faults.extend(parsed)

    @property
    def pending_faults(self) -> list[str]:
        with self._lock:
            return [f.kind for f in self._faults]

    @property
    def requests(self) -> list[ServedRequest]:
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        """Forget queued faults and the request log (reuse one server across tests)."""
        with self._lock:
            self._faults.clear()
            self._requests.clear()
            self.connections = 0

    # -- used by the handler ---------------------------------------------------------------
    def _admit(self, path: str, body: dict[str, Any] | None) -> Fault | None:
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
            self._requests.append(
                ServedRequest(path, body, fault.kind if fault else None, time.time())
            )
            return fault

    def _completion(self, body: dict[str, Any], *, violate: bool) -> dict[str, Any]:
        schema = requested_schema(body)
        if violate:
            content = json.dumps(schema_violation(schema))
        else:
            source = self.reply
            reply = source(body) if callable(source) else source
            if reply is None:
                reply = example_for_schema(schema) if schema is not None else "Hello from Kaizen."
            if isinstance(reply, ToolCalls):
                return self._envelope(body, _tool_call_message(reply, next(self._ids)))
            content = reply if isinstance(reply, str) else json.dumps(reply)
        return self._envelope(body, {"role": "assistant", "content": content})

    def _envelope(self, body: dict[str, Any], message: dict[str, Any]) -> dict[str, Any]:
        content = message.get("content") or ""
        for call in message.get("tool_calls") or ():
            content += call["function"]["name"] + call["function"]["arguments"]
        prompt_chars = sum(len(str(m.get("content", ""))) for m in body.get("messages", []))
        return {
            "id": f"chatcmpl-kaizen-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": str(body.get("model", "fault-server")),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_chars // 4 + 1,
                "completion_tokens": len(content) // 4 + 1,
                "total_tokens": prompt_chars // 4 + len(content) // 4 + 2,
            },
        }


_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class _Connection:
    """Serves one keep-alive HTTP/1.1 connection on the server's event loop."""

    def __init__(
        self, owner: FaultServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.owner = owner
        self.reader = reader
        self.writer = writer

    async def serve(self) -> None:
        try:
            while await self._one_request():
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            # stop() cancels connections mid-sleep; ending quietly keeps asyncio's stream
            # callback from logging the cancellation as an error.
            pass
        finally:
            self.writer.transport.abort()

    async def _one_request(self) -> bool:
        """Handle one request; False when the connection must close."""
        head = await self.reader.readuntil(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, path, _version = [*request_line.split(" ", 2), "", ""][:3]
        headers = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length") or 0)
        raw = await self.reader.readexactly(length) if length else b""
        keep_alive = headers.get("connection", "").lower() != "close"
        if method == "GET":
            if path.rstrip("/").endswith("/models"):
                self._send_json(200, {"object": "list", "data": [{"id": "fault-server"}]})
            else:
                self._send_error(404)
            await self.writer.drain()
            return keep_alive
        return await self._post(path, raw) and keep_alive

    async def _post(self, path: str, raw: bytes) -> bool:
        owner = self.owner
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        body = parsed if isinstance(parsed, dict) else None
        fault = owner._admit(path, body)
        if owner.latency > 0:
            await asyncio.sleep(owner.latency)
        kind = fault.kind if fault else None
        if not path.rstrip("/").endswith("/chat/completions"):
            self._send_error(404)
        elif body is None:
            self._send_error(400)
        elif kind == "drop":
            return False
        elif kind == "timeout":
            await asyncio.sleep(fault.stall if fault and fault.stall is not None else owner.stall)
            return False
        elif kind == "malformed":
            self._send(200, b'{"id": "chatcmpl-broken", "choices": [{"index": 0, "mes')
        elif kind is not None and kind.isdigit():
            self._send_error(int(kind), retry_after=fault.retry_after if fault else None)
        else:
            completion = owner._completion(body, violate=kind == "schema_violation")
            if body.get("stream"):
                options = body.get("stream_options")
                usage = isinstance(options, dict) and bool(options.get("include_usage"))
                await self._send_stream(completion, usage)
            else:
                self._send_json(200, completion)
        await self.writer.drain()
        return True

    def _send(
        self,
        status: int,
        payload: bytes,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        lines = [
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(payload)}",
            *(f"{name}: {value}" for name, value in (headers or {}).items()),
        ]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload)

    def _send_json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(data).encode(), headers)

    def _send_error(self, status: int, *, retry_after: float | None = None) -> None:
        kind, message = _ERROR_BODIES.get(status, ("server_error", f"Injected HTTP {status}."))
        headers: dict[str, str] = {}
        if status == 429:
            seconds = self.owner.retry_after if retry_after is None else retry_after
            headers["Retry-After"] = _format_seconds(seconds)
        body = {"error": {"message": message, "type": kind, "param": None, "code": str(status)}}
        self._send_json(status, body, headers)

    async def _send_stream(self, completion: dict[str, Any], with_usage: bool) -> None:
        """The completion as server-sent events, one HTTP chunk each (chunked encoding)."""
        self.writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        base = {k: completion[k] for k in ("id", "created", "model")}
        base["object"] = "chat.completion.chunk"
        choice = completion["choices"][0]
        for delta, finish in _stream_deltas(choice["message"], choice["finish_reason"]):
            event = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            await self._send_event(json.dumps(event))
        if with_usage:
            await self._send_event(
                json.dumps({**base, "choices": [], "usage": completion["usage"]})
            )
        await self._send_event("[DONE]")
        self.writer.write(b"0\r\n\r\n")

    async def _send_event(self, data: str) -> None:
        event = f"data: {data}\n\n".encode()
        self.writer.write(b"%x\r\n%s\r\n" % (len(event), event))
        await self.writer.drain()


def _stream_deltas(
    message: dict[str, Any], finish_reason: str
) -> list[tuple[dict[str, Any], str | None]]:
    """The deltas a streaming server sends for `message`: text in up to three pieces, each tool
    call as a first fragment (id, name) and its arguments in two halves."""
    deltas: list[tuple[dict[str, Any], str | None]] = [({"role": "assistant"}, None)]
    content = message.get("content") or ""
    step = max(1, -(-len(content) // 3))
    deltas += [({"content": content[i : i + step]}, None) for i in range(0, len(content), step)]
    for index, call in enumerate(message.get("tool_calls") or ()):
        function = call["function"]
        first = {"index": index, "id": call["id"], "type": "function"}
        deltas.append(({"tool_calls": [{**first, "function": {"name": function["name"]}}]}, None))
        arguments = function["arguments"]
        half = len(arguments) // 2
        for piece in (arguments[:half], arguments[half:]):
            if piece:
                fragment = {"index": index, "function": {"arguments": piece}}
                deltas.append(({"tool_calls": [fragment]}, None))
    deltas.append(({}, finish_reason))
    return deltas


def _tool_call_message(reply: ToolCalls, number: int) -> dict[str, Any]:
    calls = [
        {
            "id": f"call_{number}_{index}",
            "type": "function",
            "function": {
                "name": name,
                "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
            },
        }
        for index, (name, arguments) in enumerate(reply.calls)
    ]
    return {"role": "assistant", "content": reply.content, "tool_calls": calls}


def _format_seconds(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


# -- schemas ---------------------------------------------------------------------------------
def requested_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON Schema a chat request asks the reply to follow, if any."""
    fmt = body.get("response_format")
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_schema" and isinstance(fmt.get("json_schema"), dict):
        schema = fmt["json_schema"].get("schema")
        return schema if isinstance(schema, dict) else None
    schema = fmt.get("schema")
    return schema if isinstance(schema, dict) else None


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        node: Any = root
        for part in ref[2:].split("/"):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        return node if isinstance(node, dict) else {}
    return schema


def example_for_schema(schema: dict[str, Any] | None, root: dict[str, Any] | None = None) -> Any:
    """A small value that satisfies `schema` (objects get every property, arrays one item)."""
    if schema is None:
        return {}
    root = schema if root is None else root
    schema = _resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = [o for o in schema.get(key, []) if isinstance(o, dict)]
        non_null = [o for o in options if o.get("type") != "null"]
        if options:
            return example_for_schema((non_null or options)[0], root)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        props = schema.get("properties", {})
        return {name: example_for_schema(sub, root) for name, sub in props.items()}
    if kind == "array":
        items = schema.get("items")
        count = max(1, int(schema.get("minItems", 1)))
        return [example_for_schema(items if isinstance(items, dict) else {}, root)] * count
    if kind == "string":
        return "example"[: int(schema.get("maxLength", 7))]
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return float(schema.get("minimum", 0.5))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return "example"


def schema_violation(schema: dict[str, Any] | None) -> Any:
    """Valid JSON that `schema` rejects: every property gets a value of the wrong type."""
    if schema is None:
        return ["not", "the", "expected", "shape"]
    schema = _resolve(schema, schema)
    props = schema.get("properties")
    if isinstance(props, dict) and props:
        return {name: _wrong_value(_resolve(sub, schema)) for name, sub in props.items()}
    return _wrong_value(schema)


def _wrong_value(schema: dict[str, Any]) -> Any:
    kind = schema.get("type")
    if kind == "string" or "enum" in schema:
        return 12345
    if kind in ("integer", "number", "boolean"):
        return "not a " + kind
    if kind == "array":
        return "not a list"
    if kind == "object":
        return ["not", "an", "object"]
    return {"unexpected": "value"}


__all__ = [
    "FAULT_KINDS",
    "Fault",
    "FaultServer",
    "ServedRequest",
    "ToolCalls",
    "example_for_schema",
    "requested_schema",
    "schema_violation",
]
