"""The loopback fault server over HTTP/2: the same OpenAI-compatible fake, spoken with `h2`.

`H2FaultServer` is a `FaultServer` (same replies, latency and faults, same request log) whose
connections speak HTTP/2: cleartext connections are h2c with prior knowledge (the client sends
the HTTP/2 preface at once), and with ``tls=True`` the server offers ALPN ``h2`` and
``http/1.1`` and serves each connection in what the client picked (HTTP/1.1 as `FaultServer`).

HTTP/2 specifics: `max_concurrent_streams` is announced in the server's SETTINGS (streams
beyond it are refused by the client library before they are sent); request and response bodies
follow flow control (the server acknowledges what it reads, and waits for the client's
WINDOW_UPDATE before sending more than the window allows); ``"drop"`` closes the connection,
``"goaway"`` sends GOAWAY naming the previous stream as the last one processed (so this request
was not) and closes the connection; ``"timeout"`` stalls, then resets the stream. `goaway()`
sends a graceful GOAWAY on every open connection (the server goes on answering the streams in
flight). `protocols` lists what each accepted connection spoke; `peak_streams` is the most
requests one connection carried at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from kaizen.testing.fault_server import (
    _ERROR_BODIES,
    FaultServer,
    _format_seconds,
    _stream_deltas,
)

__all__ = ["H2FaultServer"]


class H2FaultServer(FaultServer):
    """`FaultServer` over HTTP/2 (h2c with prior knowledge; with ``tls=True``, ALPN)."""

    alpn_protocols = ("h2", "http/1.1")

    def __init__(self, *, max_concurrent_streams: int = 100, **options: Any) -> None:
        super().__init__(**options)
        self.max_concurrent_streams = max_concurrent_streams
        self.protocols: list[str] = []  # what each accepted connection spoke, in order
        self.peak_streams = 0  # the most requests one connection carried at once
        self._h2_connections: set[_H2Connection] = set()

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        if ssl_object is not None and ssl_object.selected_alpn_protocol() != "h2":
            self.protocols.append("http/1.1")
            await super()._serve_connection(reader, writer)
            return
        self.protocols.append("h2")
        connection = _H2Connection(self, reader, writer)
        self._h2_connections.add(connection)
        try:
            await connection.serve()
        finally:
            self._h2_connections.discard(connection)

    def goaway(self) -> None:
        """Send a graceful GOAWAY on every open HTTP/2 connection (from any thread)."""
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._goaway_all)

    def _goaway_all(self) -> None:
        for connection in list(self._h2_connections):
            connection.goaway()


class _H2Connection:
    """Serves one HTTP/2 connection: each request on its own task."""

    def __init__(
        self, owner: H2FaultServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        import h2.config
        import h2.connection

        self.owner = owner
        self.reader = reader
        self.writer = writer
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(
                client_side=False,
                header_encoding="utf-8",
                validate_outbound_headers=False,  # ours are well-formed; saves CPU per answer
                normalize_outbound_headers=False,
            )
        )
        self.requests: dict[int, tuple[dict[str, str], bytearray]] = {}
        self.windows: dict[int, asyncio.Event] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.answering = 0
        self.closed = False
        self._flush_soon = False

    async def serve(self) -> None:
        import h2.events as ev
        import h2.exceptions
        from h2.settings import SettingCodes

        h2conn = self.h2
        h2conn.initiate_connection()
        h2conn.update_settings(
            {SettingCodes.MAX_CONCURRENT_STREAMS: self.owner.max_concurrent_streams}
        )
        self.flush()
        try:
            while not self.closed:
                data = await self.reader.read(65536)
                if not data:
                    break
                try:
                    events = h2conn.receive_data(data)
                except h2.exceptions.ProtocolError:
                    self._flush_now()
                    break
                for event in events:
                    if isinstance(event, ev.RequestReceived):
                        fields = {str(k): str(v) for k, v in event.headers or ()}
                        self.requests[event.stream_id] = (fields, bytearray())
                    elif isinstance(event, ev.DataReceived):
                        entry = self.requests.get(event.stream_id)
                        if entry is not None:
                            entry[1].extend(event.data)
                        h2conn.acknowledge_received_data(
                            event.flow_controlled_length, event.stream_id
                        )
                    elif isinstance(event, ev.StreamEnded):
                        entry = self.requests.pop(event.stream_id, None)
                        if entry is not None:
                            task = asyncio.ensure_future(self.answer(event.stream_id, *entry))
                            self.tasks.add(task)
                            task.add_done_callback(self.tasks.discard)
                    elif isinstance(event, ev.StreamReset):
                        self.requests.pop(event.stream_id, None)
                        self.widen(event.stream_id)
                    elif isinstance(event, ev.WindowUpdated | ev.RemoteSettingsChanged):
                        self.widen(getattr(event, "stream_id", 0))
                    elif isinstance(event, ev.ConnectionTerminated):
                        self.closed = True
                self.flush()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.closed = True
            for task in list(self.tasks):
                task.cancel()
            self.writer.transport.abort()

    def flush(self) -> None:
        """Write what h2 framed, once per turn of the loop (answers ready together leave in
        one write)."""
        if not self._flush_soon:
            self._flush_soon = True
            asyncio.get_running_loop().call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._flush_soon = False
        data = self.h2.data_to_send()
        if data and not self.closed:
            self.writer.write(data)

    def widen(self, stream_id: int) -> None:
        if stream_id == 0:
            for waiting in self.windows.values():
                waiting.set()
        elif (one := self.windows.get(stream_id)) is not None:
            one.set()

    def goaway(self) -> None:
        """A graceful GOAWAY written beside `h2` (whose state machine would refuse to answer
        the streams in flight after its own), as a server shutting down gracefully sends it."""
        from hyperframe.frame import GoAwayFrame

        if not self.closed:
            last = self.h2.highest_inbound_stream_id or 0
            self.writer.write(GoAwayFrame(0, last_stream_id=last, error_code=0).serialize())

    async def answer(self, stream_id: int, headers: dict[str, str], raw: bytearray) -> None:
        self.answering += 1
        self.owner.peak_streams = max(self.owner.peak_streams, self.answering)
        try:
            await self._answer(stream_id, headers, raw)
        finally:
            self.answering -= 1

    async def _answer(self, stream_id: int, headers: dict[str, str], raw: bytearray) -> None:
        owner = self.owner
        path = headers.get(":path", "")
        try:
            parsed = json.loads(bytes(raw)) if raw else None
        except ValueError:
            parsed = None
        body = parsed if isinstance(parsed, dict) else None
        fault = owner._admit(path, body)
        if owner.latency > 0:
            await asyncio.sleep(owner.latency)
        kind = fault.kind if fault else None
        if self.closed:
            return
        if not path.rstrip("/").endswith("/chat/completions"):
            await self.send_error(stream_id, 404)
        elif body is None:
            await self.send_error(stream_id, 400)
        elif kind == "drop":
            self.closed = True
            self.writer.transport.abort()
        elif kind == "goaway":
            self.h2.close_connection(last_stream_id=max(stream_id - 2, 0))
            self._flush_now()
            self.closed = True
            self.writer.transport.close()
        elif kind == "timeout":
            await asyncio.sleep(fault.stall if fault and fault.stall is not None else owner.stall)
            with contextlib.suppress(Exception):
                self.h2.reset_stream(stream_id)
                self.flush()
        elif kind == "malformed":
            await self.send(
                stream_id, 200, b'{"id": "chatcmpl-broken", "choices": [{"index": 0, "mes'
            )
        elif kind is not None and kind.isdigit():
            await self.send_error(stream_id, int(kind), fault.retry_after if fault else None)
        else:
            completion = owner._completion(body, violate=kind == "schema_violation")
            if body.get("stream"):
                options = body.get("stream_options")
                usage = isinstance(options, dict) and bool(options.get("include_usage"))
                await self.send_stream(stream_id, completion, usage)
            else:
                await self.send(stream_id, 200, json.dumps(completion).encode())

    async def send(
        self,
        stream_id: int,
        status: int,
        payload: bytes,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        fields = [
            (":status", str(status)),
            ("content-type", content_type),
            ("content-length", str(len(payload))),
            *((name.lower(), value) for name, value in (headers or {}).items()),
        ]
        self.h2.send_headers(stream_id, fields, end_stream=not payload)
        self.flush()
        if payload:
            await self.send_data(stream_id, payload, end_stream=True)

    async def send_error(
        self, stream_id: int, status: int, retry_after: float | None = None
    ) -> None:
        kind, message = _ERROR_BODIES.get(status, ("server_error", f"Injected HTTP {status}."))
        headers: dict[str, str] = {}
        if status == 429:
            seconds = self.owner.retry_after if retry_after is None else retry_after
            headers["retry-after"] = _format_seconds(seconds)
        body = {"error": {"message": message, "type": kind, "param": None, "code": str(status)}}
        await self.send(stream_id, status, json.dumps(body).encode(), headers)

    async def send_data(self, stream_id: int, payload: bytes, *, end_stream: bool) -> None:
        """Send `payload` as flow control allows (waiting for the client's WINDOW_UPDATE)."""
        h2conn = self.h2
        sent = 0
        while not self.closed:
            allowed = min(
                h2conn.local_flow_control_window(stream_id), h2conn.max_outbound_frame_size
            )
            if allowed <= 0 and sent < len(payload):
                event = self.windows.setdefault(stream_id, asyncio.Event())
                event.clear()
                await event.wait()
                continue
            piece = payload[sent : sent + allowed]
            sent += len(piece)
            last = sent >= len(payload)
            h2conn.send_data(stream_id, piece, end_stream=end_stream and last)
            self.flush()
            if last:
                break
        self.windows.pop(stream_id, None)

    async def send_stream(
        self, stream_id: int, completion: dict[str, Any], with_usage: bool
    ) -> None:
        """The completion as server-sent events, one DATA frame each."""
        self.h2.send_headers(stream_id, [(":status", "200"), ("content-type", "text/event-stream")])
        self.flush()
        base = {k: completion[k] for k in ("id", "created", "model")}
        base["object"] = "chat.completion.chunk"
        choice = completion["choices"][0]
        events = [
            json.dumps({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": end}]})
            for delta, end in _stream_deltas(choice["message"], choice["finish_reason"])
        ]
        if with_usage:
            events.append(json.dumps({**base, "choices": [], "usage": completion["usage"]}))
        events.append("[DONE]")
        for number, data in enumerate(events):
            await self.send_data(
                stream_id, f"data: {data}\n\n".encode(), end_stream=number == len(events) - 1
            )
            await asyncio.sleep(0)  # one event at a time, as a streaming server sends them
