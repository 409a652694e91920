"""The fast path for OpenAI-compatible servers: chat completions over pooled keep-alive HTTP.

litellm spends milliseconds of CPU on every call (request preparation, the OpenAI SDK, pricing),
all of it on the one event loop that carries a run's concurrent calls. For the requests it can
carry, this transport sends the same JSON straight to ``{api_base}/chat/completions`` over the
pooled connections of `kaizen.llm.http1` (or `kaizen.llm.http2`) and reads the reply itself.

HTTP version (``http_version``): ``"auto"`` (the default) offers HTTP/2 to ``https://``
endpoints in ALPN and uses it when the server picks it (the answer is remembered per endpoint),
HTTP/1.1 otherwise and for every ``http://`` endpoint; ``"2"`` forces HTTP/2 (h2c with prior
knowledge for ``http://``); ``"1.1"`` never uses HTTP/2. HTTP/2 needs the `h2` package (the
``http2`` extra); without it ``"auto"`` is HTTP/1.1.

It applies (`applies`) to an ``openai/<name>`` model with an ``http(s)://`` ``api_base`` (vLLM,
Ollama's and llama.cpp's OpenAI servers, a hosted OpenAI-compatible API, `FaultServer`) whose
request holds only parameters it knows how to send (`PASSED_THROUGH`); anything else, and every
other provider, goes to litellm. ``transport="openai-compatible"`` forces it (extra parameters
then go into the JSON body as they are), ``transport="litellm"`` forbids it.

What stays the same as on the litellm path: the request body (model name without its
``openai/`` prefix, messages, ``response_format``, ``tools`` / ``tool_choice``, sampling
parameters), the API key (``api_key``, else ``OPENAI_API_KEY``, else an authentication error),
the reply (text, tool calls, usage, finish reason), the cost (litellm's price map, looked up once
per model), streaming (server-sent events with ``include_usage``), and the errors
`kaizen.llm.retry` classifies: `HTTPStatusError` carries the status and the response headers
(``Retry-After``), timeouts are `TimeoutError`, broken connections and garbled replies are
`ConnectionError`s. Messages never quote the request's headers, so the key stays out of them.

The timeout is per attempt: the whole exchange without streaming; when streaming, the wait for
the response head and then each wait for more of the stream.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import kaizen.llm.litellm_adapter as adapter
from kaizen import process
from kaizen.aio import running_loop
from kaizen.errors import ConfigError
from kaizen.llm import http1, http2
from kaizen.llm.transport import (
    FAST_TRANSPORTS,
    OnText,
    RawReply,
    StreamAssembler,
    ToolCallRequest,
)

__all__ = [
    "NAME",
    "OPENAI_COMPATIBLE",
    "PASSED_THROUGH",
    "HTTPStatusError",
    "MalformedResponseError",
    "OpenAICompatibleTransport",
    "applies",
    "request_body",
]

NAME = "openai-compatible"
PREFIX = "openai/"

#: Chat-completion parameters sent as they are (litellm's openai provider does the same).
PASSED_THROUGH = frozenset(
    {
        "messages",
        "temperature",
        "top_p",
        "n",
        "stop",
        "max_tokens",
        "max_completion_tokens",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "user",
        "seed",
        "response_format",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "reasoning_effort",
        "service_tier",
    }
)
# Keys that steer the call rather than go into the body (retries are Kaizen's, never the SDK's).
_CONTROL = frozenset(
    {
        "model",
        "timeout",
        "api_base",
        "api_key",
        "num_retries",
        "max_retries",
        "extra_headers",
        "http_version",
    }
)
HTTP_VERSIONS = ("auto", "1.1", "2")
# HTTP/1.1 headers about the connection itself, which HTTP/2 forbids
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host", "te"}
)
_KNOWN = PASSED_THROUGH | _CONTROL
_DEFAULT_TIMEOUT = 600.0  # the OpenAI SDK's own default, for a request that names none


class HTTPStatusError(Exception):
    """The server answered with an error status. `status_code` and `headers` (lower-case names,
    ``retry-after`` among them) are what `kaizen.llm.retry` reads."""

    def __init__(self, status_code: int, headers: Mapping[str, str], message: str) -> None:
        self.status_code = status_code
        self.headers = dict(headers)
        self.llm_provider = "openai"
        super().__init__(message)


class MalformedResponseError(ConnectionError):
    """A reply that is not the JSON of a chat completion: garbled in transit or by the server,
    so retried like a broken connection."""


def applies(model: str, kwargs: Mapping[str, Any]) -> bool:
    """True when the fast path can carry this request exactly as litellm would."""
    if not model.startswith(PREFIX):
        return False
    base = kwargs.get("api_base")
    if not isinstance(base, str) or not base.startswith(("http://", "https://")):
        return False
    if not _KNOWN.issuperset(kwargs):
        return False
    response_format = kwargs.get("response_format")
    return response_format is None or isinstance(response_format, Mapping)


def request_body(kwargs: Mapping[str, Any], *, stream: bool = False) -> bytes:
    """The JSON body of the chat-completion request for `kwargs` (see `prepare`)."""
    model = str(kwargs["model"])
    body: dict[str, Any] = {"model": model.removeprefix(PREFIX)}
    for key, value in kwargs.items():
        if key not in _CONTROL and value is not None:
            body[key] = value
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True, slots=True)
class _Endpoint:
    """One ``api_base`` and key: where requests go and the head every request starts with
    (holding the key: never shown)."""

    origin: http1.Origin
    label: str  # scheme://host:port/path, for messages
    head: bytes = field(repr=False)
    fields: tuple[tuple[bytes, bytes], ...] = field(repr=False)  # the same, for HTTP/2

    def request_head(self, length: int, extra_headers: Mapping[str, str] | None) -> bytes:
        if not extra_headers:
            return self.head + b"Content-Length: %d\r\n\r\n" % length
        lines = []
        for name, value in extra_headers.items():
            text = f"{name}: {value}"
            if "\r" in text or "\n" in text:
                raise ConfigError(f"extra_headers: header {name!r} holds a line break")
            lines.append(text)
        extra = ("\r\n".join(lines) + "\r\n").encode("latin-1")
        return self.head + extra + b"Content-Length: %d\r\n\r\n" % length

    def request_fields(
        self, length: int, extra_headers: Mapping[str, str] | None
    ) -> list[tuple[bytes, bytes]]:
        """`request_head` for HTTP/2: lower-case names, no connection-specific headers."""
        fields = [*self.fields, (b"content-length", b"%d" % length)]
        for name, value in (extra_headers or {}).items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise ConfigError(f"extra_headers: header {name!r} holds a line break")
            if name.lower() not in _HOP_BY_HOP:
                fields.append((name.lower().encode("latin-1"), value.encode("latin-1")))
        return fields


_endpoints: dict[tuple[str, str | None], _Endpoint] = {}


def _endpoint(kwargs: Mapping[str, Any]) -> _Endpoint:
    base = kwargs.get("api_base")
    key = kwargs.get("api_key")
    cache_key = (str(base), key if isinstance(key, str) else None)
    found = _endpoints.get(cache_key)
    if found is None:
        found = _make_endpoint(base, cache_key[1])
        _endpoints[cache_key] = found
    return found


def _make_endpoint(base: Any, key: str | None) -> _Endpoint:
    if not isinstance(base, str) or not base.startswith(("http://", "https://")):
        raise ConfigError(
            f"the {NAME} transport needs an http:// or https:// api_base (got {base!r}); "
            "set api_base=..., or use transport='litellm'"
        )
    parts = urlsplit(base)
    if parts.username or parts.password:
        raise ConfigError(
            f"the {NAME} transport takes no credentials in api_base; pass api_key=... instead"
        )
    host = parts.hostname or ""
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ConfigError(f"api_base {base!r} has an invalid port") from None
    origin = http1.Origin(parts.scheme, host, port)
    path = parts.path.rstrip("/") + "/chat/completions"
    if parts.query:
        path += "?" + parts.query
    if key is None:
        key = os.environ.get("OPENAI_API_KEY") or None
    if key is None:
        raise HTTPStatusError(
            401,
            {},
            "no API key: pass api_key=... or set OPENAI_API_KEY (a server that needs none "
            "accepts any value, such as api_key='none')",
        )
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {origin.host_header}\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        "Accept: application/json\r\nUser-Agent: kaizen\r\n"
    ).encode("latin-1")
    fields = (
        (b":method", b"POST"),
        (b":scheme", parts.scheme.encode()),
        (b":authority", origin.host_header.encode("latin-1")),
        (b":path", path.encode("latin-1")),
        (b"authorization", f"Bearer {key}".encode("latin-1")),
        (b"content-type", b"application/json"),
        (b"accept", b"application/json"),
        (b"user-agent", b"kaizen"),
    )
    label = f"{parts.scheme}://{origin.host_header}{parts.path.rstrip('/')}"
    return _Endpoint(origin, label, head, fields)


def _http2_mode(origin: http1.Origin, kwargs: Mapping[str, Any]) -> str | None:
    """How this request uses HTTP/2 (`kaizen.llm.http2` modes), or None for HTTP/1.1."""
    version = kwargs.get("http_version") or "auto"
    if version not in HTTP_VERSIONS:
        raise ConfigError(
            f"http_version must be one of {', '.join(map(repr, HTTP_VERSIONS))}, not {version!r}"
        )
    if version == "1.1":
        return None
    if version == "2":
        if not http2.available():
            raise ConfigError(
                "http_version='2' needs the h2 package: pip install 'kaizen[http2]' "
                "(or use http_version='auto')"
            )
        return "h2"
    if origin.scheme != "https" or not http2.available():
        return None
    return None if http2.negotiated(origin) == "http/1.1" else "alpn"


def _timeout(kwargs: Mapping[str, Any]) -> float:
    value = kwargs.get("timeout")
    return _DEFAULT_TIMEOUT if value is None else float(value)


def _check_model(model: str) -> None:
    if not model.startswith(PREFIX):
        raise ConfigError(
            f"the {NAME} transport serves 'openai/<name>' models, not {model!r}; "
            "use transport='litellm' (or 'auto') for other providers"
        )


class OpenAICompatibleTransport:
    """Chat completions to an OpenAI-compatible ``api_base`` over pooled connections."""

    name = NAME

    def send(self, *, kwargs: Mapping[str, Any], on_text: OnText | None = None) -> RawReply:
        model = str(kwargs["model"])
        _check_model(model)
        endpoint = _endpoint(kwargs)
        timeout = _timeout(kwargs)
        body = request_body(kwargs, stream=on_text is not None)
        extra_headers = kwargs.get("extra_headers")
        mode = _http2_mode(endpoint.origin, kwargs)
        if mode is not None:
            pool2 = http2.sync_pool(endpoint.origin, mode)
            fields = endpoint.request_fields(len(body), extra_headers)
            try:
                return self._exchange(pool2, fields, body, timeout, endpoint, model, on_text)
            except http2.NotNegotiated:
                pass  # the server chose HTTP/1.1 (remembered for the next calls)
        pool = http1.sync_pool(endpoint.origin)
        head = endpoint.request_head(len(body), extra_headers)
        return self._exchange(pool, head, body, timeout, endpoint, model, on_text)

    def _exchange(
        self,
        pool: http1.SyncPool | http2.SyncPool,
        head: Any,
        body: bytes,
        timeout: float,
        endpoint: _Endpoint,
        model: str,
        on_text: OnText | None,
    ) -> RawReply:
        if on_text is None:
            response = pool.request(head, body, timeout)
            return _reply(_checked(response, endpoint), model)
        status, headers, pieces = pool.stream(head, body, timeout)
        if status >= 300:
            raise _status_error(status, headers, b"".join(pieces), endpoint)
        events = _EventReader(StreamAssembler(on_text))
        try:
            for piece in pieces:
                if events.feed(piece):
                    break
        finally:
            pieces.close()  # type: ignore[attr-defined]
        return events.reply(model)

    async def asend(self, *, kwargs: Mapping[str, Any], on_text: OnText | None = None) -> RawReply:
        model = str(kwargs["model"])
        _check_model(model)
        endpoint = _endpoint(kwargs)
        loop = running_loop()
        if loop is None:
            raise RuntimeError("asend needs a running event loop")
        timeout = _timeout(kwargs)
        body = request_body(kwargs, stream=on_text is not None)
        extra_headers = kwargs.get("extra_headers")
        mode = _http2_mode(endpoint.origin, kwargs)
        if mode is not None:
            pool2 = http2.async_pool(endpoint.origin, loop, mode)
            fields = endpoint.request_fields(len(body), extra_headers)
            try:
                return await self._aexchange(pool2, fields, body, timeout, endpoint, model, on_text)
            except http2.NotNegotiated:
                pass  # the server chose HTTP/1.1 (remembered for the next calls)
        pool = http1.async_pool(endpoint.origin, loop)
        head = endpoint.request_head(len(body), extra_headers)
        return await self._aexchange(pool, head, body, timeout, endpoint, model, on_text)

    async def _aexchange(
        self,
        pool: http1.AsyncPool | http2.AsyncPool,
        head: Any,
        body: bytes,
        timeout: float,
        endpoint: _Endpoint,
        model: str,
        on_text: OnText | None,
    ) -> RawReply:
        if on_text is None:
            response = await pool.request(head, body, timeout)
            return _reply(_checked(response, endpoint), model)
        status, headers, pieces = await pool.stream(head, body, timeout)
        if status >= 300:
            raise _status_error(status, headers, b"".join([p async for p in pieces]), endpoint)
        events = _EventReader(StreamAssembler(on_text))
        try:
            async for piece in pieces:
                if events.feed(piece):
                    break
        finally:
            await pieces.aclose()  # type: ignore[attr-defined]
        return events.reply(model)


OPENAI_COMPATIBLE = OpenAICompatibleTransport()
FAST_TRANSPORTS.append((OPENAI_COMPATIBLE, applies))


def _checked(response: http1.Response, endpoint: _Endpoint) -> dict[str, Any]:
    if response.status >= 300:
        raise _status_error(response.status, response.headers, response.body, endpoint)
    try:
        data = json.loads(response.body)
    except ValueError as exc:
        raise MalformedResponseError(
            f"the reply from {endpoint.label} is not valid JSON ({exc}): {response.body[:120]!r}"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        raise MalformedResponseError(
            f"the reply from {endpoint.label} is not a chat completion: {response.body[:120]!r}"
        )
    return data


def _status_error(
    status: int, headers: Mapping[str, str], body: bytes, endpoint: _Endpoint
) -> HTTPStatusError:
    detail = body[:500].decode("utf-8", "replace").strip()
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        error = parsed.get("error")
        message = error.get("message") if isinstance(error, dict) else error
        if message:
            detail = str(message)
    return HTTPStatusError(status, headers, f"HTTP {status} from {endpoint.label}: {detail}")


def _reply(data: dict[str, Any], model: str) -> RawReply:
    choices = data["choices"]
    choice = choices[0] if choices and isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    usage = data.get("usage") or {}
    prompt_tokens = int(usage.get("prompt_tokens") or 0)
    completion_tokens = int(usage.get("completion_tokens") or 0)
    return RawReply(
        text=_text(message.get("content")),
        tool_calls=tuple(_tool_calls(message.get("tool_calls") or ())),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cost=adapter.token_cost(model, prompt_tokens, completion_tokens),
        finish_reason=choice.get("finish_reason"),
        raw=data,
    )


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: keep the text ones
        return "".join(
            str(part.get("text") or "")
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return str(content)


def _tool_calls(calls: Iterable[Any]) -> Iterable[ToolCallRequest]:
    for number, call in enumerate(calls):
        if not isinstance(call, dict):
            continue
        function = call.get("function") or {}
        arguments = function.get("arguments")
        if not isinstance(arguments, str):  # some servers send an object, not JSON text
            arguments = json.dumps(arguments if arguments is not None else {})
        yield ToolCallRequest(
            id=str(call.get("id") or f"call_{number}"),
            name=str(function.get("name") or ""),
            arguments=arguments,
        )


class _EventReader:
    """Server-sent events of a streamed chat completion, fed to a `StreamAssembler`."""

    def __init__(self, assembler: StreamAssembler) -> None:
        self.assembler = assembler
        self._pending = b""
        self._data: list[str] = []
        self.finished = False

    def feed(self, piece: bytes) -> bool:
        """Take more of the stream; True once ``[DONE]`` arrived."""
        lines = (self._pending + piece).split(b"\n")
        self._pending = lines.pop()
        for raw in lines:
            line = raw.rstrip(b"\r").decode("utf-8")
            if not line:
                self._dispatch()
            elif line.startswith("data:"):
                self._data.append(line[5:].lstrip(" "))
            if self.finished:
                return True
        return False

    def _dispatch(self) -> None:
        if not self._data:
            return
        payload = "\n".join(self._data)
        self._data = []
        if payload.strip() == "[DONE]":
            self.finished = True
            return
        try:
            chunk = json.loads(payload)
        except ValueError as exc:
            raise MalformedResponseError(f"a streamed event is not valid JSON ({exc})") from None
        if not isinstance(chunk, dict):
            raise MalformedResponseError("a streamed event is not a JSON object")
        error = chunk.get("error")
        if error:
            message = error.get("message") if isinstance(error, dict) else error
            raise MalformedResponseError(f"the server reported an error mid-stream: {message}")
        self.assembler.add(chunk)

    def reply(self, model: str) -> RawReply:
        self._dispatch()  # a last event without its blank line
        assembler = self.assembler
        cost = adapter.token_cost(model, assembler.prompt_tokens, assembler.completion_tokens)
        return assembler.reply(model, cost=cost)


process.register("llm.openai_compat", _endpoints.clear)  # endpoints hold their pools
