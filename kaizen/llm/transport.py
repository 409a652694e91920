"""How a prepared request reaches a model and comes back normalised: the transports.

A transport takes the keyword arguments `kaizen.llm.call.prepare` built (the OpenAI chat
completions shape litellm takes: ``model``, ``messages``, ``timeout``, ``response_format``,
``tools``, ``tool_choice``, ...) and returns a `RawReply`: the text, the tool calls the model
asked for, token counts, cost and finish reason. Every transport raises the exceptions the retry
rules of `kaizen.llm.retry` classify (litellm's, httpx's or the OpenAI SDK's), so retries,
typed errors and hooks stay in one place (`kaizen.llm.call.model_call`) whatever carried the
call.

With ``on_text`` given, a transport streams: it calls ``on_text(delta)`` for each piece of
reply text as it arrives, assembles streamed tool-call fragments by their index, and decides
that a turn has no tool call only at the end of the stream. The `RawReply` it returns is the
same as without streaming.

`LITELLM` serves every provider (and Kaizen's own, the embedded and scripted models).
`FAST_TRANSPORTS` holds faster transports for the requests they can carry: `LOCAL` calls the
embedded model in-process without litellm (whose import alone costs seconds, and which adds
nothing to a call that never leaves the process), and the pooled OpenAI-compatible path of
`kaizen.llm.http.openai_compat` adds itself when `kaizen.llm` is imported, and the test models'
in-process `kaizen.testing.scripted.ScriptedTransport` when `kaizen.testing` is. `transport_for`
picks the transport for a request; ``transport="litellm"`` still sends an embedded-model or
scripted call through litellm's custom provider, the same code behind it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import kaizen.llm.litellm_adapter as adapter
from kaizen.errors import ConfigError
from kaizen.llm.embedded import LOCAL_PROVIDER

__all__ = [
    "FAST_TRANSPORTS",
    "LITELLM",
    "LOCAL",
    "LitellmTransport",
    "LocalTransport",
    "OnText",
    "RawReply",
    "ToolCallRequest",
    "Transport",
    "transport_for",
]

OnText = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class ToolCallRequest:
    """One tool call a model asked for: `arguments` is the JSON text exactly as it was sent
    (it may be invalid JSON; the tool loop reports that to the model)."""

    id: str
    name: str
    arguments: str


@dataclass(slots=True)
class RawReply:
    """A model's answer to one request, whatever transport carried it."""

    text: str
    tool_calls: tuple[ToolCallRequest, ...] = ()
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    finish_reason: str | None = None
    raw: Any = field(default=None, repr=False)
    queue_time: float = 0.0  # seconds the call waited for the model before generating


class Transport(Protocol):
    """Sends one request (no retries: `model_call` owns them)."""

    name: str

    def send(self, *, kwargs: Mapping[str, Any], on_text: OnText | None = None) -> RawReply: ...

    async def asend(
        self, *, kwargs: Mapping[str, Any], on_text: OnText | None = None
    ) -> RawReply: ...


class LitellmTransport:
    """Through `litellm.completion` / `litellm.acompletion` (`kaizen.llm.litellm_adapter`)."""

    name = "litellm"

    def send(self, *, kwargs: Mapping[str, Any], on_text: OnText | None = None) -> RawReply:
        model = str(kwargs["model"])
        if on_text is None or not _streams(model):
            return _whole(from_litellm(adapter.completion(**kwargs), model), on_text)
        stream = adapter.completion(**_streaming(kwargs))
        assembler = StreamAssembler(on_text)
        for chunk in stream:
            assembler.add(_chunk_dict(chunk))
        return assembler.reply(model, cost=_stream_cost(assembler, model))

    async def asend(self, *, kwargs: Mapping[str, Any], on_text: OnText | None = None) -> RawReply:
        model = str(kwargs["model"])
        if on_text is None or not _streams(model):
            return _whole(from_litellm(await adapter.acompletion(**kwargs), model), on_text)
        stream = await adapter.acompletion(**_streaming(kwargs))
        assembler = StreamAssembler(on_text)
        async for chunk in stream:
            assembler.add(_chunk_dict(chunk))
        return assembler.reply(model, cost=_stream_cost(assembler, model))


LITELLM = LitellmTransport()


class LocalTransport:
    """The embedded model (``local/...``), called in-process: `kaizen.llm.embedded.generate`, the
    function litellm's custom provider calls too. Its errors (`LocalModelError`,
    `LocalModelTruncated`, `DecodeTimeout`) reach the retry rules as they are. It answers
    streamed requests with the whole reply as one piece."""

    name = "local"

    def send(self, *, kwargs: Mapping[str, Any], on_text: OnText | None = None) -> RawReply:
        from kaizen.llm import embedded

        model = str(kwargs["model"])
        embedded.check_model(model)
        reply = embedded.generate(list(kwargs["messages"]), kwargs, kwargs.get("timeout"), model)
        return _whole(_from_local(reply), on_text)

    async def asend(self, *, kwargs: Mapping[str, Any], on_text: OnText | None = None) -> RawReply:
        from kaizen.llm import embedded

        model = str(kwargs["model"])
        embedded.check_model(model)
        reply = await embedded.agenerate(
            list(kwargs["messages"]), kwargs, kwargs.get("timeout"), model
        )
        return _whole(_from_local(reply), on_text)


def _from_local(reply: Any) -> RawReply:
    return RawReply(
        text=reply.text,
        prompt_tokens=reply.usage["prompt_tokens"],
        completion_tokens=reply.usage["completion_tokens"],
        cost=0.0,  # free by definition
        finish_reason=reply.finish_reason or "stop",
        raw=reply,
        queue_time=reply.queue_time,
    )


def _is_local(model: str, kwargs: Mapping[str, Any]) -> bool:
    return model.startswith(f"{LOCAL_PROVIDER}/")


LOCAL = LocalTransport()


#: (transport, applies(model, kwargs)) pairs, tried in order when the choice is "auto".
FAST_TRANSPORTS: list[tuple[Transport, Callable[[str, Mapping[str, Any]], bool]]] = [
    (LOCAL, _is_local)
]


def transport_for(model: str, kwargs: Mapping[str, Any], choice: str = "auto") -> Transport:
    """The transport for a request. ``choice``: ``"auto"`` (the first fast transport that can
    carry it, else litellm), ``"litellm"``, or a fast transport's name (``"openai-compatible"``)
    to force it."""
    if choice == "auto":
        for transport, applies in FAST_TRANSPORTS:
            if applies(model, kwargs):
                return transport
        return LITELLM
    if choice == LITELLM.name:
        return LITELLM
    for transport, _ in FAST_TRANSPORTS:
        if transport.name == choice:
            return transport
    names = ["auto", LITELLM.name, *(t.name for t, _ in FAST_TRANSPORTS)]
    raise ConfigError(f"unknown transport {choice!r}; choose one of {', '.join(names)}")


def from_litellm(response: Any, model: str) -> RawReply:
    """A litellm `ModelResponse` as a `RawReply`."""
    choice = response.choices[0] if getattr(response, "choices", None) else None
    message = getattr(choice, "message", None)
    usage = getattr(response, "usage", None)
    cost = 0.0 if adapter.is_kaizen_model(model) else adapter.response_cost(response, model)
    return RawReply(
        text=getattr(message, "content", None) or "",
        tool_calls=tuple(_tool_calls(getattr(message, "tool_calls", None) or ())),
        prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        cost=cost or 0.0,
        finish_reason=getattr(choice, "finish_reason", None),
        raw=response,
        queue_time=adapter.queue_time(response),
    )


def _tool_calls(calls: Iterable[Any]) -> Iterable[ToolCallRequest]:
    for number, call in enumerate(calls):
        function = _get(call, "function")
        arguments = _get(function, "arguments")
        if not isinstance(arguments, str):  # some providers send an object, not JSON text
            arguments = json.dumps(arguments if arguments is not None else {})
        yield ToolCallRequest(
            id=str(_get(call, "id") or f"call_{number}"),
            name=str(_get(function, "name") or ""),
            arguments=arguments,
        )


def _get(value: Any, name: str) -> Any:
    if isinstance(value, Mapping):
        return value.get(name)
    return getattr(value, name, None)


class StreamAssembler:
    """Builds one `RawReply` from the chunks of a streamed chat completion (plain dicts in the
    OpenAI chunk shape). Tool-call fragments are joined by their ``index``: a call's id and name
    come in its first fragment, its arguments in pieces; text may come before, between or after
    them. Usage, when the server sends it, comes in the last chunk."""

    def __init__(self, on_text: OnText | None = None) -> None:
        self._on_text = on_text
        self._text: list[str] = []
        self._calls: dict[int, dict[str, Any]] = {}
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.finish_reason: str | None = None

    def add(self, chunk: Mapping[str, Any]) -> None:
        usage = chunk.get("usage")
        if isinstance(usage, Mapping):
            self.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            self.completion_tokens = int(usage.get("completion_tokens") or 0)
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if text:
                self._text.append(text)
                if self._on_text is not None:
                    self._on_text(text)
            for fragment in delta.get("tool_calls") or ():
                self._add_fragment(fragment)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]

    def _add_fragment(self, fragment: Mapping[str, Any]) -> None:
        index = fragment.get("index")
        if index is None:
            index = len(self._calls)
        call = self._calls.setdefault(int(index), {"id": None, "name": "", "arguments": []})
        if fragment.get("id"):
            call["id"] = fragment["id"]
        function = fragment.get("function") or {}
        name = function.get("name")
        if name:
            # Most providers send the name once, some in pieces, and some repeat it whole in
            # every fragment: a fragment that repeats the name so far replaces it (as litellm's
            # chunk builder assigns it), so `get_weather` never becomes `get_weatherget_weather`.
            known = call["name"]
            call["name"] = name if known and name.startswith(known) else known + name
        if function.get("arguments"):
            call["arguments"].append(function["arguments"])

    @property
    def text(self) -> str:
        return "".join(self._text)

    def reply(self, model: str, *, cost: float = 0.0, raw: Any = None) -> RawReply:
        calls = tuple(
            ToolCallRequest(
                id=str(call["id"] or f"call_{index}"),
                name=call["name"],
                arguments="".join(call["arguments"]),
            )
            for index, call in sorted(self._calls.items())
        )
        return RawReply(
            text=self.text,
            tool_calls=calls,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            cost=cost,
            finish_reason=self.finish_reason,
            raw=raw,
        )


def _streams(model: str) -> bool:
    """Whether the model's provider streams: the embedded model answers whole replies."""
    return adapter.provider_of(model) != LOCAL_PROVIDER


def _whole(reply: RawReply, on_text: OnText | None) -> RawReply:
    """A reply that did not stream, given to `on_text` in one piece."""
    if on_text is not None and reply.text:
        on_text(reply.text)
    return reply


def _streaming(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    return {**kwargs, "stream": True, "stream_options": {"include_usage": True}}


def _chunk_dict(chunk: Any) -> Mapping[str, Any]:
    if isinstance(chunk, Mapping):
        return chunk
    dump = getattr(chunk, "model_dump", None)
    return dump() if callable(dump) else dict(chunk)


def _stream_cost(assembler: StreamAssembler, model: str) -> float:
    if adapter.is_kaizen_model(model):
        return 0.0
    return adapter.token_cost(model, assembler.prompt_tokens, assembler.completion_tokens)
