"""The fast path for OpenAI-compatible servers: chat completions over pooled keep-alive HTTP.

litellm spends milliseconds of CPU on every call (request preparation, the OpenAI SDK, pricing),
all of it on the one event loop that carries a run's concurrent calls. For the requests it can
carry, this transport sends the same JSON straight to ``{api_base}/chat/completions`` over the
running loop's aiohttp session (`kaizen.llm.http.session`: pooled connections, proxies from the
environment, certificates verified as the standard library does) and reads the reply itself.

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
`ConnectionError`s, a certificate that fails verification is the `ssl` error (not retried).
aiohttp's own exceptions never leave: they hold the request, and with it the key.

Written once: `asend` is the exchange; `send` (the sync driver's side of `model_call`) runs it
to completion with `kaizen.aio.run_blocking`, on the calling thread's reusable event loop, whose
session keeps that thread's connections warm between calls.

The timeout is per attempt: the whole exchange without streaming; when streaming, the wait for
a connection and the response head, then each wait for more of the stream.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import kaizen.llm.litellm_adapter as adapter
from kaizen import process
from kaizen.aio import NEED_LOOP, run_blocking, running_loop
from kaizen.errors import ConfigError
from kaizen.llm.http.session import proxy_for, session_for, ssl_context
from kaizen.llm.transport import (
    FAST_TRANSPORTS,
    OnText,
    RawReply,
    StreamAssembler,
    ToolCallRequest,
)

if TYPE_CHECKING:
    import aiohttp

__all__ = [
    "NAME",
    "OPENAI_COMPATIBLE",
    "PASSED_THROUGH",
    "HTTPStatusError",
    "MalformedResponseError",
    "OpenAICompatibleTransport",
    "ProtocolError",
    "ServerDisconnectedError",
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
    }
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


class ServerDisconnectedError(ConnectionError):
    """The server closed the connection before a complete response."""


class ProtocolError(ConnectionError):
    """The server's bytes are not an HTTP response."""


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
    """One ``api_base`` and key: where requests go and the headers every request carries
    (holding the key: never shown)."""

    url: Any  # a `yarl.URL`, parsed once (aiohttp would parse a string at every request)
    label: str  # scheme://host:port/path, for messages
    scheme: str
    host: str
    headers: Mapping[str, str] = field(repr=False)

    def request_headers(self, extra_headers: Mapping[str, str] | None) -> Mapping[str, str]:
        if not extra_headers:
            return self.headers
        for name, value in extra_headers.items():
            if any(c in f"{name}{value}" for c in "\r\n"):
                raise ConfigError(f"extra_headers: header {name!r} holds a line break")
        return {**self.headers, **extra_headers}


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
    try:
        parts.port  # noqa: B018  (raises on an invalid port)
    except ValueError:
        raise ConfigError(f"api_base {base!r} has an invalid port") from None
    path = parts.path.rstrip("/") + "/chat/completions"
    url = f"{parts.scheme}://{parts.netloc}{path}" + (f"?{parts.query}" if parts.query else "")
    if key is None:
        key = os.environ.get("OPENAI_API_KEY") or None
    if key is None:
        raise HTTPStatusError(
            401,
            {},
            "no API key: pass api_key=... or set OPENAI_API_KEY (a server that needs none "
            "accepts any value, such as api_key='none')",
        )
    headers = {
        "Authorization": f"Bearer {key}",
        "Content-Type": "application/json",
        "Accept": "application/json",
        "User-Agent": "kaizen",
    }
    label = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
    from yarl import URL  # aiohttp's own URL type

    return _Endpoint(URL(url), label, parts.scheme, parts.hostname or "", headers)


def _timeout(kwargs: Mapping[str, Any]) -> float:
    value = kwargs.get("timeout")
    return _DEFAULT_TIMEOUT if value is None else float(value)


@functools.lru_cache(maxsize=64)
def _limits(timeout: float, *, streaming: bool) -> aiohttp.ClientTimeout:
    """aiohttp's timeouts for one attempt (see the module docstring); made once per value."""
    import aiohttp

    if streaming:
        return aiohttp.ClientTimeout(total=None, connect=timeout, sock_read=timeout)
    return aiohttp.ClientTimeout(total=timeout)


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
        """`asend`, run to completion from sync code (see the module docstring)."""
        return run_blocking(self._asend_on_a_loop(kwargs, on_text))

    async def _asend_on_a_loop(self, kwargs: Mapping[str, Any], on_text: OnText | None) -> RawReply:
        if running_loop() is None:  # stepped by hand (run_blocking): continue on a loop
            await NEED_LOOP
        # The thread's loop sat still between sync calls: one turn lets it see the connections
        # servers closed meanwhile, so an idle connection is not reused after its close.
        await asyncio.sleep(0)
        return await self.asend(kwargs=kwargs, on_text=on_text)

    async def asend(self, *, kwargs: Mapping[str, Any], on_text: OnText | None = None) -> RawReply:
        import aiohttp

        model = str(kwargs["model"])
        _check_model(model)
        endpoint = _endpoint(kwargs)
        timeout = _timeout(kwargs)
        body = request_body(kwargs, stream=on_text is not None)
        headers = endpoint.request_headers(kwargs.get("extra_headers"))
        session = await session_for()
        limits = _limits(timeout, streaming=on_text is not None)
        try:
            async with session.post(
                endpoint.url,
                data=body,
                headers=headers,
                timeout=limits,
                ssl=ssl_context() if endpoint.scheme == "https" else True,
                proxy=proxy_for(endpoint.scheme, endpoint.host),
            ) as response:
                if on_text is None or response.status >= 300:
                    payload = await response.read()
                    return _reply(_checked(response, payload, endpoint), model)
                events = _EventReader(StreamAssembler(on_text))
                async for piece in response.content.iter_any():
                    if events.feed(piece):
                        break
                return events.reply(model)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _transport_error(exc, endpoint, timeout) from None


OPENAI_COMPATIBLE = OpenAICompatibleTransport()
FAST_TRANSPORTS.append((OPENAI_COMPATIBLE, applies))


def _checked(response: Any, payload: bytes, endpoint: _Endpoint) -> dict[str, Any]:
    if response.status >= 300:
        headers = {name.lower(): value for name, value in response.headers.items()}
        raise _status_error(response.status, headers, payload, endpoint)
    try:
        data = json.loads(payload)
    except ValueError as exc:
        raise MalformedResponseError(
            f"the reply from {endpoint.label} is not valid JSON ({exc}): {payload[:120]!r}"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        raise MalformedResponseError(
            f"the reply from {endpoint.label} is not a chat completion: {payload[:120]!r}"
        )
    return data


def _transport_error(exc: BaseException, endpoint: _Endpoint, timeout: float) -> BaseException:
    """aiohttp's exception as one `kaizen.llm.retry` classifies, naming no request header."""
    import aiohttp

    where = endpoint.label
    if isinstance(exc, TimeoutError):  # aiohttp's timeouts subclass it
        return TimeoutError(f"no complete response from {where} within {timeout:g} s")
    if isinstance(exc, aiohttp.ClientSSLError):
        return exc.os_error if isinstance(exc.os_error, OSError) else ConnectionError(str(exc))
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return ServerDisconnectedError(
            f"{where} closed the connection before a complete response ({type(exc).__name__})"
        )
    if isinstance(exc, aiohttp.ClientResponseError):  # not HTTP: aiohttp's parser refused it
        return ProtocolError(f"the reply from {where} is not HTTP: {exc.message}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ConnectionError(f"cannot connect to {where}: {exc.os_error}")
    return ConnectionError(f"the exchange with {where} failed: {type(exc).__name__}: {exc}")


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
