"""`ScriptedModel`: a scriptable model for tests, answered in-process through the transport seam.

    from kaizen.testing import ScriptedModel

    model = ScriptedModel([{"answer": "Paris", "confidence": 0.9}])
    agent = kaizen.create_agent("qa", signature="question -> answer, confidence: float",
                                config={"model": model})
    assert agent.execute(question="Capital of France?").answer == "Paris"
    assert model.calls[0].response_format["type"] == "json_schema"

Each instance answers to a unique model name (``kaizen-scripted/<name>-<n>``). A call to it goes
through Kaizen's real call flow (`kaizen.llm.call.model_call`: retries, error mapping, usage
accounting, hooks, the store) and reaches `ScriptedTransport`, the transport for these names
(`kaizen.llm.transport.FAST_TRANSPORTS`), which answers in the process: no litellm on the path,
so tests stay fast. ``transport="litellm"`` sends the same call through litellm's custom provider
instead (`kaizen.testing.scripted_litellm`), the same script behind it. Nothing is mocked.

Replies come from a list (consumed in order), a dict (the first key found in the last message's
text picks the reply) or a callable ``(messages) -> reply``. A reply is one of:

- a dict or list: sent as JSON text;
- a str: sent as-is (use it for malformed output);
- an exception instance: raised by the model (it reaches the caller as `ModelError`, chained);
- an int HTTP status or ``ScriptedModel.status(429, retry_after=1)``: raised as an HTTP error
  with that status (`ScriptedHTTPError`), so Kaizen's retry rules apply exactly as for a real
  provider;
- ``ScriptedModel.reply(content, latency=..., finish_reason=...)`` to set per-reply details;
- ``ScriptedModel.tool_call(name, arguments)``: a turn that calls one tool;
  ``ScriptedModel.tool_calls([(name, arguments), ...])``: several in one turn. ``arguments`` is a
  dict, or a str sent as-is (use it for invalid JSON).

For an agent with tools (a request that offers ``tools``), a dict reply is a call to
``complete`` with the dict as its arguments, and a str reply is plain text (a turn without a
tool call). For the JSON tool protocol (the embedded model's), tool calls are sent as the JSON
text ``{"tool": ..., "arguments": ...}`` that protocol reads. Streaming requests are answered in
chunks: text a few characters at a time, each tool call's arguments in pieces. A reply slower
than the call's timeout raises `TimeoutError` once the timeout has passed (retried like any
timeout).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kaizen.llm.embedded.schema import asks_for_a_tool_call
from kaizen.llm.transport import FAST_TRANSPORTS, OnText, RawReply, StreamAssembler, ToolCallRequest

SCRIPTED_PROVIDER = "kaizen-scripted"
_STREAM_PIECE = 8  # characters of text per streamed chunk
# request keys that are not the model's parameters (`ScriptedCall.params` leaves them out)
_NOT_PARAMS = frozenset(
    {"model", "messages", "response_format", "num_retries", "max_retries", "timeout",
     "api_key", "api_base", "http_version", "stream_options"}
)  # fmt: skip

Messages = list[dict[str, Any]]

_instances: weakref.WeakValueDictionary[str, ScriptedModel] = weakref.WeakValueDictionary()
_ids = itertools.count(1)


class ScriptError(LookupError):
    """A `ScriptedModel` has no reply for a request (script exhausted or no key matched)."""


@dataclass(frozen=True, slots=True)
class ScriptedStatus:
    """An HTTP error a scripted reply raises (`retry_after` in seconds becomes a header)."""

    status: int
    retry_after: float | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class ScriptedReply:
    """A reply with details: its own latency (seconds) and finish reason."""

    content: Any
    latency: float | None = None
    finish_reason: str = "stop"


@dataclass(frozen=True, slots=True)
class ScriptedToolCalls:
    """A turn that calls tools: ``((name, arguments), ...)``, with optional text before them."""

    calls: tuple[tuple[str, Any], ...]
    text: str | None = None


@dataclass(frozen=True, slots=True)
class ScriptedCall:
    """One request a `ScriptedModel` received."""

    messages: Messages
    response_format: dict[str, Any] | None
    params: dict[str, Any] = field(default_factory=dict)  # temperature, max_tokens, timeout, ...

    @property
    def last_message(self) -> str:
        return str(self.messages[-1].get("content", "") or "") if self.messages else ""

    @property
    def tools(self) -> list[str]:
        """The names of the tools offered (native tool calling), ``complete`` included."""
        return [t["function"]["name"] for t in self.params.get("tools") or ()]

    @property
    def tool_choice(self) -> Any:
        return self.params.get("tool_choice")

    @property
    def json_tool_protocol(self) -> bool:
        """Whether the request asks for a tool call as JSON text (the JSON tool protocol)."""
        return asks_for_a_tool_call(self.response_format)


@dataclass(frozen=True, slots=True)
class ScriptedOutcome:
    """What the script says for one request: text and tool calls, or an error to raise."""

    text: str | None
    error: BaseException | ScriptedStatus | None
    latency: float
    finish_reason: str
    tool_calls: tuple[tuple[str, str, str], ...] = ()  # (id, name, arguments as JSON text)


class ScriptedModel:
    """A test model whose replies are scripted; usable wherever a model name is.

    `latency` (seconds) delays every reply (time.sleep on the sync path, asyncio.sleep on the async
    path, so concurrent async calls overlap). `calls` records every request, thread-safely.
    """

    def __init__(
        self,
        replies: Sequence[Any] | Mapping[str, Any] | Callable[[Messages], Any],
        *,
        latency: float = 0.0,
        name: str = "scripted",
    ) -> None:
        if isinstance(replies, str | bytes):
            raise TypeError(
                "ScriptedModel takes a list of replies, a dict or a callable; "
                f"wrap a single reply in a list: ScriptedModel([{replies!r}])"
            )
        if not (callable(replies) or isinstance(replies, Mapping | Sequence)):
            raise TypeError(
                f"ScriptedModel replies must be a list, dict or callable, not {type(replies)!r}"
            )
        self._replies = replies
        self.latency = latency
        self._key = f"{name}-{next(_ids)}"
        self.model_name = f"{SCRIPTED_PROVIDER}/{self._key}"
        self._lock = threading.Lock()
        self._position = 0
        self._calls: list[ScriptedCall] = []
        _instances[self._key] = self

    # -- building replies ------------------------------------------------------------------
    @staticmethod
    def status(
        code: int, *, retry_after: float | None = None, message: str | None = None
    ) -> ScriptedStatus:
        """A reply that fails with HTTP `code` (e.g. ``status(429, retry_after=1)``)."""
        return ScriptedStatus(code, retry_after, message)

    @staticmethod
    def reply(
        content: Any, *, latency: float | None = None, finish_reason: str = "stop"
    ) -> ScriptedReply:
        """A reply with its own latency or finish reason (e.g. ``"length"`` for truncation)."""
        return ScriptedReply(content, latency, finish_reason)

    @staticmethod
    def tool_call(
        name: str, arguments: Mapping[str, Any] | str | None = None, *, text: str | None = None
    ) -> ScriptedToolCalls:
        """A turn that calls tool `name` (``"complete"`` finishes an agent's loop); `text` is
        reply text sent before the call in the same turn."""
        return ScriptedToolCalls(((name, {} if arguments is None else arguments),), text)

    @staticmethod
    def tool_calls(
        calls: Sequence[tuple[str, Mapping[str, Any] | str]], *, text: str | None = None
    ) -> ScriptedToolCalls:
        """A turn that calls several tools at once: ``[(name, arguments), ...]``."""
        return ScriptedToolCalls(tuple((name, arguments) for name, arguments in calls), text)

    # -- inspection ------------------------------------------------------------------------
    @property
    def calls(self) -> list[ScriptedCall]:
        with self._lock:
            return list(self._calls)

    @property
    def remaining(self) -> int | None:
        """Replies left in a list script (None for dict and callable scripts)."""
        if callable(self._replies) or isinstance(self._replies, Mapping):
            return None
        with self._lock:
            return len(self._replies) - self._position

    # -- travelling (to a Ray worker) -------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        # the script and how far it got travel; the lock and the calls seen here do not
        with self._lock:
            state = {k: v for k, v in self.__dict__.items() if k not in ("_lock", "_calls")}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        # a copy in another process answers under the same name (importing this module there
        # put `ScriptedTransport` among the transports)
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._calls = []
        _instances[self._key] = self

    def __repr__(self) -> str:
        return f"ScriptedModel({self.model_name!r}, calls={len(self._calls)})"

    def __str__(self) -> str:
        return self.model_name

    # -- serving ---------------------------------------------------------------------------
    def take(self, messages: Messages, options: Mapping[str, Any], timeout: Any) -> ScriptedOutcome:
        """Record a request and return what the script says to it (`options`: the request's
        parameters; `timeout`: seconds per attempt, kept in the call's ``params``)."""
        params = {k: v for k, v in options.items() if k not in _NOT_PARAMS}
        if isinstance(timeout, int | float):
            params["timeout"] = float(timeout)
        response_format = options.get("response_format")
        call = ScriptedCall([dict(m) for m in messages], response_format, params)
        with self._lock:
            self._calls.append(call)
            number = len(self._calls)
            value = self._pick(call, number)
        if callable(self._replies):
            value = self._replies(call.messages)
        return self._outcome(value, call, number)

    def _pick(self, call: ScriptedCall, number: int) -> Any:
        """The raw scripted value for this call (runs under the lock)."""
        replies = self._replies
        if callable(replies):
            return None  # called outside the lock: user code may be slow or re-entrant
        if isinstance(replies, Mapping):
            text = call.last_message
            for key, value in replies.items():
                if str(key) in text:
                    return value
            keys = ", ".join(repr(k) for k in replies)
            raise ScriptError(
                f"{self.model_name}: no scripted key occurs in the last message "
                f"(keys: {keys}; last message: {text[:200]!r})"
            )
        if self._position >= len(replies):
            raise ScriptError(
                f"{self.model_name} is out of replies: it was scripted with {len(replies)} and "
                f"this is call {number}; add replies or use a dict/callable script"
            )
        value = replies[self._position]
        self._position += 1
        return value

    def _outcome(self, value: Any, call: ScriptedCall, number: int) -> ScriptedOutcome:
        latency, finish = self.latency, "stop"
        if isinstance(value, ScriptedReply):
            latency = self.latency if value.latency is None else value.latency
            finish = value.finish_reason
            value = value.content
        if isinstance(value, Mapping):
            if call.params.get("tools"):  # an agent with tools: this finishes
                value = ScriptedToolCalls((("complete", value),))
            elif call.json_tool_protocol and "tool" not in value:
                value = {"tool": "complete", "arguments": dict(value)}
            else:
                return ScriptedOutcome(json.dumps(value), None, latency, finish)
        if isinstance(value, str):
            return ScriptedOutcome(value, None, latency, finish)
        if isinstance(value, ScriptedToolCalls):
            calls = tuple(
                (f"call_{number}_{index}", name, _arguments_text(arguments))
                for index, (name, arguments) in enumerate(value.calls)
            )
            if call.tools or not call.json_tool_protocol:
                return ScriptedOutcome(value.text, None, latency, "tool_calls", calls)
            _, name, arguments = calls[0]  # the JSON protocol carries one call per turn
            return ScriptedOutcome(
                f'{{"tool": {json.dumps(name)}, "arguments": {arguments}}}', None, latency, finish
            )
        if isinstance(value, type) and issubclass(value, BaseException):
            value = value(f"scripted {value.__name__}")
        if isinstance(value, BaseException | ScriptedStatus):
            return ScriptedOutcome(None, value, latency, finish)
        if isinstance(value, int) and not isinstance(value, bool):
            return ScriptedOutcome(None, ScriptedStatus(value), latency, finish)
        if value is None:
            raise ScriptError(f"{self.model_name}: a reply of None is not a reply; script text")
        text = value if isinstance(value, str) else json.dumps(value)
        return ScriptedOutcome(text, None, latency, finish)


def _arguments_text(arguments: Any) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments)


def _tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


def lookup(model: str) -> ScriptedModel:
    """The live `ScriptedModel` answering to `model` (``kaizen-scripted/<key>`` or ``<key>``)."""
    key = model.split("/", 1)[1] if model.startswith(f"{SCRIPTED_PROVIDER}/") else model
    scripted = _instances.get(key)
    if scripted is None:
        raise ScriptError(
            f"no live ScriptedModel is registered as {SCRIPTED_PROVIDER}/{key}; pass the "
            "ScriptedModel object itself as the model and keep a reference to it"
        )
    return scripted


def usage(outcome: ScriptedOutcome, messages: Messages) -> tuple[int, int]:
    """Deterministic (prompt, completion) token counts: about four characters a token."""
    prompt = sum(_tokens(str(message.get("content", ""))) for message in messages)
    completion = _tokens((outcome.text or "") + "".join(a for _, _, a in outcome.tool_calls))
    return prompt, completion


def wait(outcome: ScriptedOutcome, timeout: Any) -> tuple[float, bool]:
    """How long to wait before answering, and whether that wait runs into the caller's timeout
    (then the call fails once the timeout has passed)."""
    limit = float(timeout) if isinstance(timeout, int | float) else None
    if limit is not None and outcome.latency > limit:
        return limit, True
    return outcome.latency, False


def chunks(outcome: ScriptedOutcome, messages: Messages) -> Iterator[dict[str, Any]]:
    """The reply as streamed chat-completion chunks (the OpenAI shape): text in pieces, then each
    tool call in two fragments (id and name with the first half of its arguments, then the
    rest), the finish reason and the usage in the last chunk."""
    text = outcome.text or ""
    deltas: list[dict[str, Any]] = [
        {"content": text[i : i + _STREAM_PIECE]} for i in range(0, len(text), _STREAM_PIECE)
    ]
    for index, (call_id, name, arguments) in enumerate(outcome.tool_calls):
        half = len(arguments) // 2
        first = {"index": index, "id": call_id, "type": "function"}
        deltas.append(
            {"tool_calls": [{**first, "function": {"name": name, "arguments": arguments[:half]}}]}
        )
        rest = {"index": index, "type": "function", "function": {"arguments": arguments[half:]}}
        deltas.append({"tool_calls": [rest]})
    if not deltas:
        deltas.append({"content": ""})
    prompt, completion = usage(outcome, messages)
    for number, delta in enumerate(deltas):
        last = number == len(deltas) - 1
        choice = {
            "index": 0,
            "delta": delta,
            "finish_reason": outcome.finish_reason if last else None,
        }
        chunk: dict[str, Any] = {"choices": [choice]}
        if last:
            chunk["usage"] = {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }
        yield chunk


class ScriptedHTTPError(Exception):
    """The HTTP error a scripted status reply raises: `status_code` and `headers` (with
    ``retry-after``) are what the retry rules of `kaizen.llm.retry` read."""

    def __init__(self, status: ScriptedStatus) -> None:
        self.status_code = status.status
        self.headers = (
            {} if status.retry_after is None else {"retry-after": f"{status.retry_after:g}"}
        )
        self.llm_provider = SCRIPTED_PROVIDER
        super().__init__(status.message or f"scripted HTTP {status.status}")


def _raise(outcome: ScriptedOutcome, timed_out: bool, seconds: float) -> None:
    """Raise what the outcome says to raise: a timeout, a scripted error, else nothing."""
    if timed_out:
        raise TimeoutError(f"scripted reply slower than the {seconds:g}s timeout")
    error = outcome.error
    if isinstance(error, ScriptedStatus):
        raise ScriptedHTTPError(error)
    if error is not None:
        raise error


class ScriptedTransport:
    """Carries calls to ``kaizen-scripted/...`` models: asks the `ScriptedModel` in-process and
    returns its reply as a `RawReply` (free; usage from `usage`). Streams (``on_text``) in the
    chunks of `chunks`, through the same `StreamAssembler` as the HTTP transports."""

    name = "scripted"

    def send(self, *, kwargs: Mapping[str, Any], on_text: OnText | None = None) -> RawReply:
        outcome, messages, timeout = _ask(kwargs, on_text)
        seconds, timed_out = wait(outcome, timeout)
        if seconds > 0:
            time.sleep(seconds)
        _raise(outcome, timed_out, seconds)
        if on_text is None:
            return _whole(outcome, messages)
        assembler = StreamAssembler(on_text)
        for chunk in chunks(outcome, messages):
            assembler.add(chunk)
        return assembler.reply(str(kwargs["model"]), raw=_response())

    async def asend(self, *, kwargs: Mapping[str, Any], on_text: OnText | None = None) -> RawReply:
        outcome, messages, timeout = _ask(kwargs, on_text)
        seconds, timed_out = wait(outcome, timeout)
        if seconds > 0:
            await asyncio.sleep(seconds)
        _raise(outcome, timed_out, seconds)
        if on_text is None:
            return _whole(outcome, messages)
        assembler = StreamAssembler(on_text)
        for chunk in chunks(outcome, messages):
            await asyncio.sleep(0)  # a stream arrives piece by piece: let others run between
            assembler.add(chunk)
        return assembler.reply(str(kwargs["model"]), raw=_response())


def _ask(
    kwargs: Mapping[str, Any], on_text: OnText | None
) -> tuple[ScriptedOutcome, Messages, Any]:
    messages = list(kwargs["messages"])
    options = kwargs if on_text is None else {**kwargs, "stream": True}
    timeout = kwargs.get("timeout")
    return lookup(str(kwargs["model"])).take(messages, options, timeout), messages, timeout


def _whole(outcome: ScriptedOutcome, messages: Messages) -> RawReply:
    prompt, completion = usage(outcome, messages)
    text = outcome.text or ""
    return RawReply(
        text=text,
        tool_calls=tuple(ToolCallRequest(*call) for call in outcome.tool_calls),
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost=0.0,  # free by definition
        finish_reason=outcome.finish_reason,
        raw=_response(),
    )


def _response() -> dict[str, str]:
    """What a provider's reply carries beside the message: its id, as an OpenAI server's."""
    return {"id": f"chatcmpl-scripted-{os.urandom(6).hex()}"}


def _is_scripted(model: str, kwargs: Mapping[str, Any]) -> bool:
    return model.startswith(f"{SCRIPTED_PROVIDER}/")


SCRIPTED_TRANSPORT = ScriptedTransport()
if not any(transport.name == SCRIPTED_TRANSPORT.name for transport, _ in FAST_TRANSPORTS):
    FAST_TRANSPORTS.append((SCRIPTED_TRANSPORT, _is_scripted))


__all__ = [
    "SCRIPTED_PROVIDER",
    "SCRIPTED_TRANSPORT",
    "ScriptError",
    "ScriptedCall",
    "ScriptedHTTPError",
    "ScriptedModel",
    "ScriptedOutcome",
    "ScriptedReply",
    "ScriptedStatus",
    "ScriptedToolCalls",
    "ScriptedTransport",
    "chunks",
    "lookup",
    "usage",
    "wait",
]
