"""`ScriptedModel`: a scriptable model for tests, served through litellm like any real provider.

    from kaizen.testing import ScriptedModel

    model = ScriptedModel([{"answer": "Paris", "confidence": 0.9}])
    agent = kaizen.create_agent("qa", signature="question -> answer, confidence: float",
                                config={"model": model})
    assert agent.execute(question="Capital of France?").answer == "Paris"
    assert model.calls[0].response_format["type"] == "json_schema"

Each instance is registered under a unique litellm model name (``kaizen-scripted/<name>-<n>``) and
answered by Kaizen's ``kaizen-scripted`` custom provider, so a test exercises the real call path:
litellm, Kaizen's retries and error mapping, usage accounting. Nothing is mocked.

Replies come from a list (consumed in order), a dict (the first key found in the last message's
text picks the reply) or a callable ``(messages) -> reply``. A reply is one of:

- a dict or list: sent as JSON text;
- a str: sent as-is (use it for malformed output);
- an exception instance: raised by the provider (it reaches the caller as `ModelError`, chained);
- an int HTTP status or ``ScriptedModel.status(429, retry_after=1)``: raised as the litellm
  exception for that status, so Kaizen's retry rules apply exactly as for a real provider;
- ``ScriptedModel.reply(content, latency=..., finish_reason=...)`` to set per-reply details;
- ``ScriptedModel.tool_call(name, arguments)``: a turn that calls one tool;
  ``ScriptedModel.tool_calls([(name, arguments), ...])``: several in one turn. ``arguments`` is a
  dict, or a str sent as-is (use it for invalid JSON).

For an agent with tools (a request that offers ``tools``), a dict reply is a call to
``complete`` with the dict as its arguments, and a str reply is plain text (a turn without a
tool call). For the JSON tool protocol (the embedded model's), tool calls are sent as the JSON
text ``{"tool": ..., "arguments": ...}`` that protocol reads. Streaming requests (``stream=True``)
are answered in chunks: text a few characters at a time, each tool call's arguments in pieces.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kaizen.llm import litellm_adapter

SCRIPTED_PROVIDER = "kaizen-scripted"
_STREAM_PIECE = 8  # characters of text per streamed chunk

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
        inner = (self.response_format or {}).get("json_schema") or {}
        return isinstance(inner, dict) and inner.get("name") == "tool_call"


@dataclass(frozen=True, slots=True)
class _Outcome:
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
        litellm_adapter.register_provider(SCRIPTED_PROVIDER, make_scripted_handler)

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
        # a copy in another process answers under the same name: register it there
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._calls = []
        _instances[self._key] = self
        litellm_adapter.register_provider(SCRIPTED_PROVIDER, make_scripted_handler)

    def __repr__(self) -> str:
        return f"ScriptedModel({self.model_name!r}, calls={len(self._calls)})"

    def __str__(self) -> str:
        return self.model_name

    # -- serving ---------------------------------------------------------------------------
    def _take(self, messages: Messages, optional_params: dict[str, Any], timeout: Any) -> _Outcome:
        params = {k: v for k, v in optional_params.items() if k not in ("response_format",)}
        params.pop("max_retries", None)
        if isinstance(timeout, int | float):
            params["timeout"] = float(timeout)
        response_format = optional_params.get("response_format")
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

    def _outcome(self, value: Any, call: ScriptedCall, number: int) -> _Outcome:
        latency, finish = self.latency, "stop"
        if isinstance(value, ScriptedReply):
            latency = self.latency if value.latency is None else value.latency
            finish = value.finish_reason
            value = value.content
        if isinstance(value, Mapping) and call.tools:  # an agent with tools: this finishes
            value = ScriptedToolCalls((("complete", value),))
        if isinstance(value, Mapping) and call.json_tool_protocol and "tool" not in value:
            value = {"tool": "complete", "arguments": dict(value)}
        if isinstance(value, ScriptedToolCalls):
            calls = tuple(
                (f"call_{number}_{index}", name, _arguments_text(arguments))
                for index, (name, arguments) in enumerate(value.calls)
            )
            if call.tools or not call.json_tool_protocol:
                return _Outcome(value.text, None, latency, "tool_calls", calls)
            _, name, arguments = calls[0]  # the JSON protocol carries one call per turn
            return _Outcome(
                f'{{"tool": {json.dumps(name)}, "arguments": {arguments}}}', None, latency, finish
            )
        if isinstance(value, type) and issubclass(value, BaseException):
            value = value(f"scripted {value.__name__}")
        if isinstance(value, BaseException | ScriptedStatus):
            return _Outcome(None, value, latency, finish)
        if isinstance(value, int) and not isinstance(value, bool):
            return _Outcome(None, ScriptedStatus(value), latency, finish)
        if value is None:
            raise ScriptError(f"{self.model_name}: a reply of None is not a reply; script text")
        text = value if isinstance(value, str) else json.dumps(value)
        return _Outcome(text, None, latency, finish)


def _arguments_text(arguments: Any) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments)


def _tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


def _lookup(model: str) -> ScriptedModel:
    key = model.split("/", 1)[1] if model.startswith(f"{SCRIPTED_PROVIDER}/") else model
    scripted = _instances.get(key)
    if scripted is None:
        raise ScriptError(
            f"no live ScriptedModel is registered as {SCRIPTED_PROVIDER}/{key}; pass the "
            "ScriptedModel object itself as the model and keep a reference to it"
        )
    return scripted


def status_error(status: int, *, retry_after: float | None, message: str | None, model: str) -> Any:
    """The litellm exception a provider raises for HTTP `status` (with a Retry-After header)."""
    import httpx

    litellm = litellm_adapter.load_litellm()
    headers = {} if retry_after is None else {"retry-after": f"{retry_after:g}"}
    request = httpx.Request("POST", f"http://{SCRIPTED_PROVIDER}.invalid/v1/chat/completions")
    response = httpx.Response(status, headers=headers, request=request)
    text = message or f"scripted HTTP {status}"
    common = {"message": text, "llm_provider": SCRIPTED_PROVIDER, "model": model}
    if status == 408:
        return litellm.Timeout(**common, headers=headers)
    by_status = {
        400: litellm.BadRequestError,
        401: litellm.AuthenticationError,
        403: litellm.PermissionDeniedError,
        404: litellm.NotFoundError,
        422: litellm.UnprocessableEntityError,
        429: litellm.RateLimitError,
        500: litellm.InternalServerError,
        503: litellm.ServiceUnavailableError,
    }
    cls = by_status.get(status)
    if cls is not None:
        return cls(**common, response=response)
    return litellm.APIError(status_code=status, request=request, **common)


def make_scripted_handler() -> Any:
    """The litellm custom handler serving every ``kaizen-scripted/...`` model."""
    from litellm import CustomLLM
    from litellm import Timeout as LiteLLMTimeout

    def finish(outcome: _Outcome, model: str, messages: Messages, response: Any) -> Any:
        from litellm.types.utils import Usage

        if outcome.error is not None:
            error = outcome.error
            if isinstance(error, ScriptedStatus):
                raise status_error(
                    error.status, retry_after=error.retry_after, message=error.message, model=model
                )
            raise error
        text = outcome.text or ""
        choice = response.choices[0]
        choice.message.content = (text or None) if outcome.tool_calls else text
        if outcome.tool_calls:
            from litellm.types.utils import ChatCompletionMessageToolCall, Function

            choice.message.tool_calls = [
                ChatCompletionMessageToolCall(
                    id=call_id, type="function", function=Function(name=name, arguments=arguments)
                )
                for call_id, name, arguments in outcome.tool_calls
            ]
        choice.finish_reason = outcome.finish_reason
        response.model = f"{SCRIPTED_PROVIDER}/{model}"
        litellm_adapter.set_response_cost(response, 0.0)  # free by definition
        prompt = sum(_tokens(str(m.get("content", ""))) for m in messages)
        completion = _tokens(text + "".join(a for _, _, a in outcome.tool_calls))
        response.usage = Usage(
            prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
        )
        return response

    def stream_chunks(outcome: _Outcome, messages: Messages) -> Iterator[dict[str, Any]]:
        """The reply as litellm's generic streaming chunks: text in pieces, then each tool
        call in two fragments (name and id first, arguments split), usage last."""
        text = outcome.text or ""
        pieces: list[dict[str, Any]] = [
            {"text": text[i : i + _STREAM_PIECE], "tool_use": None}
            for i in range(0, len(text), _STREAM_PIECE)
        ]
        for index, (call_id, name, arguments) in enumerate(outcome.tool_calls):
            half = len(arguments) // 2
            for part, fragment in enumerate((arguments[:half], arguments[half:])):
                function = {"name": name if part == 0 else None, "arguments": fragment}
                tool_use = {
                    "id": call_id if part == 0 else None,
                    "type": "function",
                    "function": function,
                    "index": index,
                }
                pieces.append({"text": "", "tool_use": tool_use})
        if not pieces:
            pieces.append({"text": "", "tool_use": None})
        prompt = sum(_tokens(str(m.get("content", ""))) for m in messages)
        completion = _tokens(text + "".join(a for _, _, a in outcome.tool_calls))
        for number, piece in enumerate(pieces):
            last = number == len(pieces) - 1
            yield {
                **piece,
                "is_finished": last,
                "finish_reason": outcome.finish_reason if last else "",
                "index": 0,
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                }
                if last
                else None,
            }

    def take(
        model: str, messages: Messages, optional_params: dict[str, Any] | None, timeout: Any
    ) -> tuple[_Outcome, float]:
        """The scripted outcome of a request, and how long to wait before answering."""
        outcome = _lookup(model)._take(messages, optional_params or {}, timeout)
        return outcome, delay(outcome, timeout)[0]

    def check_time(outcome: _Outcome, model: str, wait: float, timeout: Any) -> None:
        """Raise litellm's timeout when the scripted latency ran into the caller's timeout."""
        if delay(outcome, timeout)[1]:
            raise timed_out(model, wait)

    def delay(outcome: _Outcome, timeout: Any) -> tuple[float, bool]:
        """How long to wait, and whether the wait runs into the caller's timeout."""
        limit = float(timeout) if isinstance(timeout, int | float) else None
        if limit is not None and outcome.latency > limit:
            return limit, True
        return outcome.latency, False

    def timed_out(model: str, limit: float) -> Exception:
        return LiteLLMTimeout(
            message=f"scripted reply slower than the {limit:g}s timeout",
            model=model,
            llm_provider=SCRIPTED_PROVIDER,
        )

    class ScriptedHandler(CustomLLM):
        def completion(
            self,
            model: str,
            messages: Messages,
            *args: Any,
            model_response: Any = None,
            optional_params: dict[str, Any] | None = None,
            timeout: Any = None,
            **kwargs: Any,
        ) -> Any:
            outcome, wait = take(model, messages, optional_params, timeout)
            time.sleep(wait)
            check_time(outcome, model, wait, timeout)
            return finish(outcome, model, messages, model_response)

        def streaming(  # type: ignore[override]
            self,
            model: str,
            messages: Messages,
            *args: Any,
            optional_params: dict[str, Any] | None = None,
            timeout: Any = None,
            **kwargs: Any,
        ) -> Iterator[dict[str, Any]]:
            outcome, wait = take(model, messages, optional_params, timeout)
            time.sleep(wait)
            check_time(outcome, model, wait, timeout)
            if outcome.error is not None:
                finish(outcome, model, messages, None)  # raises the scripted error
            yield from stream_chunks(outcome, messages)

        async def astreaming(  # type: ignore[override]
            self,
            model: str,
            messages: Messages,
            *args: Any,
            optional_params: dict[str, Any] | None = None,
            timeout: Any = None,
            **kwargs: Any,
        ) -> AsyncIterator[dict[str, Any]]:
            outcome, wait = take(model, messages, optional_params, timeout)
            await asyncio.sleep(wait)
            check_time(outcome, model, wait, timeout)
            if outcome.error is not None:
                finish(outcome, model, messages, None)
            for chunk in stream_chunks(outcome, messages):
                await asyncio.sleep(0)
                yield chunk

        async def acompletion(
            self,
            model: str,
            messages: Messages,
            *args: Any,
            model_response: Any = None,
            optional_params: dict[str, Any] | None = None,
            timeout: Any = None,
            **kwargs: Any,
        ) -> Any:
            outcome, wait = take(model, messages, optional_params, timeout)
            await asyncio.sleep(wait)
            check_time(outcome, model, wait, timeout)
            return finish(outcome, model, messages, model_response)

    return ScriptedHandler()


__all__ = [
    "SCRIPTED_PROVIDER",
    "ScriptError",
    "ScriptedCall",
    "ScriptedModel",
    "ScriptedReply",
    "ScriptedStatus",
    "ScriptedToolCalls",
    "make_scripted_handler",
    "status_error",
]
