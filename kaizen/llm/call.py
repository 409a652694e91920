"""A model call, written once: `prepare` the request, then the `model_call` flow, driven by
`complete` (sync) or `acomplete` (asyncio).

`prepare` resolves the model (`kaizen.llm.models.resolve_model`), asks for structured output
(a json_schema ``response_format``) when the model supports it, and switches litellm's and the
OpenAI SDK's own retries off. `model_call` is a flow (`kaizen.flow`): it yields the call to the
request's transport (`kaizen.llm.transport`: litellm, or a faster path where one applies;
streaming when given ``on_text``) and the waits between attempts, applies the retry policy of
`kaizen.llm.retry` (decided by `kaizen.retrying.next_attempt`, as every retry in Kaizen is),
and returns a `ModelReply` (text, tool calls, usage and cost, latency, attempts) or raises
`ModelError`. Inside a running node (`kaizen.call_context`: the node context protocol, so this
layer does not import the runtime) it also fires the model-call moments of the lifecycle hooks,
once per call: the budget refuses the call there, and the run record counts its usage. Anything
that drives flows can run it: an agent's exchange yields from it, so tools and streaming later
add steps to one flow.

Resilience (`kaizen.llm.resilience`) is part of the same flow: each attempt first waits its turn
at the model's rate limiter (a `Sleep` step; a 429's Retry-After pauses every caller of that
model) and passes its circuit breaker (`CircuitOpenError` at once while open); each outcome is
reported to the breaker. When the call fails for good with a failure another model may not have
(retryable ones, an open circuit), the request's ``fallbacks`` are tried in order, each with its
own retries, breaker and limiter; the reply says who answered and why the others did not.

litellm is imported on first call (`kaizen.llm.litellm_adapter`), never at import time.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import kaizen.llm.litellm_adapter as adapter
from kaizen import seams
from kaizen.call_context import (
    CallContext,
    after_model_call,
    before_model_call,
    current_call_context,
    model_call_request,
    updated_kwargs,
)
from kaizen.errors import CircuitOpenError, ConfigError, ModelError
from kaizen.flow import Call, Flow, Sleep, run_async, run_sync
from kaizen.llm.embedded import LOCAL_PROVIDER, make_local_handler
from kaizen.llm.models import (
    ModelHandle,
    ModelSpec,
    StructuredOutputMode,
    model_name,
    resolve_model,
    response_format_for,
    uses_structured_output,
)
from kaizen.llm.resilience import (
    BreakerSettings,
    BreakerState,
    breaker_for,
    breaker_settings,
    counts_against_breaker,
    falls_back,
    limiter_for,
    node_announcer,
    rate_limit_settings,
)
from kaizen.llm.retry import model_error, model_retry_policy, retry_after, root_cause, status_of
from kaizen.llm.transport import OnText, RawReply, ToolCallRequest, transport_for
from kaizen.moments import BreakerChanged, Usage
from kaizen.retrying import next_attempt

__all__ = [
    "DEFAULT_TIMEOUT",
    "ModelReply",
    "ModelRequest",
    "ToolCallRequest",
    "acomplete",
    "complete",
    "model_call",
    "prepare",
]

DEFAULT_TIMEOUT = 60.0  # seconds per attempt when the caller gives none: nothing may hang
DEFAULT_BACKOFF = 0.5  # first retry waits about this long, doubling after each failure
MAX_WAIT = 30.0  # cap on any single wait, Retry-After included

adapter.register_provider(LOCAL_PROVIDER, make_local_handler)


@dataclass
class ModelReply:
    """One successful model call."""

    text: str
    model: str
    usage: Usage = field(default_factory=Usage)
    latency: float = 0.0  # seconds, all attempts and waits included
    attempts: int = 1
    finish_reason: str | None = None
    raw_response: Any = None
    tool_calls: tuple[ToolCallRequest, ...] = ()  # the tools the model asked to call
    queue_time: float = 0.0  # seconds of `latency` the last attempt waited for the model
    # the models tried before this one answered, each with why it did not: (model, reason)
    fallbacks: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """One model call, ready to send: the litellm arguments, the retry budget and the transport
    (``"auto"``: the fastest that applies; ``"litellm"``: always litellm)."""

    model: str
    kwargs: Mapping[str, Any] = field(repr=False)  # may hold the API key: never shown
    retries: int = 3
    backoff: float = DEFAULT_BACKOFF
    max_wait: float = MAX_WAIT
    transport: str = "auto"
    cache: Any = None  # the agent's cache option (kaizen.store.calls); None: the runtime's
    breaker: BreakerSettings | None = None  # None: no circuit breaker for this call
    rate_limit: tuple[float | None, float | None] = (None, None)  # requests, tokens per minute
    fallbacks: tuple[ModelRequest, ...] = ()  # tried in order when this model fails for good


def prepare(
    messages: list[dict[str, Any]],
    *,
    model: ModelSpec | None = None,
    response_schema: Mapping[str, Any] | None = None,
    schema_name: str = "output",
    temperature: float | None = None,
    max_tokens: int | None = None,
    timeout: float | None = None,
    retries: int = 3,
    api_base: str | None = None,
    api_key: str | None = None,
    structured_output: StructuredOutputMode = "auto",
    backoff: float = DEFAULT_BACKOFF,
    max_wait: float = MAX_WAIT,
    transport: str = "auto",
    cache: Any = None,
    circuit_breaker: bool | Mapping[str, Any] | None = None,
    rate_limit: Mapping[str, Any] | None = None,
    fallbacks: Sequence[ModelSpec | Mapping[str, Any]] = (),
    **extra: Any,
) -> ModelRequest:
    """The request for one call: `timeout` is per attempt (default 60 s); `retries` more
    attempts on retryable failures, the first after about `backoff` seconds, no wait longer than
    `max_wait` (Retry-After included). `circuit_breaker` (True or {failure_threshold, window,
    reset_timeout}), `rate_limit` ({requests_per_minute, tokens_per_minute}) and `fallbacks`
    (models, or dicts with ``model`` and e.g. ``api_base``/``api_key``) are described in
    `kaizen.llm.resilience`. Other keyword arguments go to litellm as they are."""
    if not messages:
        raise ValueError("a model call needs at least one message")
    if retries < 0:
        raise ConfigError(f"retries must be 0 or more, not {retries}")
    if backoff < 0 or max_wait < 0:
        raise ConfigError(
            f"backoff and max_wait must be 0 or more seconds, not {backoff} and {max_wait}"
        )
    resolved = resolve_model(model)
    name = model_name(resolved)
    kwargs: dict[str, Any] = {
        "model": name,
        "messages": messages,
        "timeout": DEFAULT_TIMEOUT if timeout is None else float(timeout),
        "num_retries": 0,  # retries are ours alone (backoff, Retry-After, typed errors)
        "max_retries": 0,
        **extra,
    }
    if temperature is not None:
        kwargs["temperature"] = temperature
    if max_tokens is not None:
        kwargs["max_tokens"] = max_tokens
    if api_base is not None:
        kwargs["api_base"] = api_base
    if api_key is not None:
        kwargs["api_key"] = api_key
    if response_schema is not None and uses_structured_output(resolved, structured_output):
        kwargs["response_format"] = response_format_for(response_schema, schema_name)
    breaker = breaker_settings(circuit_breaker)
    limits = rate_limit_settings(rate_limit)
    primary = ModelRequest(
        name, kwargs, retries, float(backoff), float(max_wait), transport, cache, breaker, limits
    )
    if not fallbacks:
        return primary
    return dataclasses.replace(
        primary, fallbacks=tuple(_fallback(primary, option) for option in fallbacks)
    )


def _fallback(primary: ModelRequest, option: ModelSpec | Mapping[str, Any]) -> ModelRequest:
    """The request for a fallback model: the primary's, sent to another model. A fallback
    given as a model (a name or a handle such as a ScriptedModel) reaches its provider on its
    own terms (the primary's api_base and api_key stay behind); a dict may give its own
    (``{"model": ..., "api_base": ..., "api_key": ...}``)."""
    given: dict[str, Any] = dict(option) if isinstance(option, Mapping) else {"model": option}
    model = given.get("model")
    if not (isinstance(model, str) and model.strip()) and not isinstance(model, ModelHandle):
        raise ConfigError(f"fallbacks: each entry needs a model name or handle, got {option!r}")
    unknown = set(given) - {"model", "api_base", "api_key", "transport"}
    if unknown:
        raise ConfigError(f"fallbacks: unknown key(s) {sorted(unknown)} in {option!r}")
    name = model_name(resolve_model(given["model"]))
    kwargs = {k: v for k, v in primary.kwargs.items() if k not in ("api_base", "api_key")}
    kwargs["model"] = name
    kwargs.update({k: given[k] for k in ("api_base", "api_key") if k in given})
    transport = given.get("transport", primary.transport)
    return dataclasses.replace(primary, model=name, kwargs=kwargs, transport=transport)


def model_call(request: ModelRequest, on_text: OnText | None = None) -> Flow[ModelReply]:
    """The flow of one call: attempts, waits, the reply (see the module docstring). With
    `on_text`, the reply streams: each piece of text goes to `on_text` as it arrives. Inside a
    node whose hooks hold middleware (`kaizen.runtime.middleware`), the call is made inside it:
    a middleware may change the request, answer instead of the model, or refuse."""
    context = current_call_context()
    middleware = context.hooks.middleware if context is not None else ()
    if context is None or not middleware:
        return (yield from _models(request, on_text))
    call = model_call_request(context.run_id, context.node_id, request.kwargs)
    ran, answer = before_model_call(middleware, call)
    if answer is None:
        request = dataclasses.replace(
            request,
            kwargs=updated_kwargs(request.kwargs, call),
            fallbacks=tuple(
                dataclasses.replace(other, kwargs=updated_kwargs(other.kwargs, call))
                for other in request.fallbacks
            ),
        )
        reply = yield from _models(request, on_text)
    elif isinstance(answer, ModelReply):
        reply = answer
    else:  # a str: the answer's text, from no model
        reply = ModelReply(text=str(answer), model=request.model, attempts=0, finish_reason="stop")
    result: ModelReply = after_model_call(middleware, ran, call, reply)
    return result


def _models(request: ModelRequest, on_text: OnText | None) -> Flow[ModelReply]:
    """The request's model, then its fallbacks in order, until one answers."""
    passed_over: list[tuple[str, str]] = []
    candidates = (request, *request.fallbacks)
    for number, candidate in enumerate(candidates, 1):
        try:
            reply = yield from _one_model(candidate, on_text, tuple(passed_over))
        except ModelError as exc:
            if number == len(candidates) or not falls_back(exc):
                if passed_over:
                    exc.add_note(
                        "models tried before: "
                        + "; ".join(f"{model}: {why}" for model, why in passed_over)
                    )
                raise
            passed_over.append((candidate.model, _why(exc)))
            continue
        return reply
    raise AssertionError("unreachable: a request has at least one model")


def _why(error: ModelError) -> str:
    if isinstance(error, CircuitOpenError):
        return "circuit open"
    return f"HTTP {error.status}" if error.status is not None else "failed (connection)"


def _one_model(
    request: ModelRequest, on_text: OnText | None, passed_over: tuple[tuple[str, str], ...]
) -> Flow[ModelReply]:
    """One model's part of the call: its attempts, with its breaker and rate limiter
    (`passed_over`: the models tried before it, for the reply)."""
    context = current_call_context()
    if context is not None:  # a hook may refuse the call here (the budget)
        context.model_call_started(model=request.model, messages=request.kwargs["messages"])
    # the store's step: a replayed or cached reply, else None (kaizen.store.calls, provided
    # through kaizen.seams: the store is a layer above)
    node_id = context.node_id if context is not None else None
    step = seams.model_call_steps.get()(request.kwargs, request.cache, node_id)
    served = step.lookup() if step is not None else None
    if served is not None:
        return _served(served, request.model, step.cache_hit, context)  # type: ignore[union-attr]
    transport = transport_for(request.model, request.kwargs, request.transport)
    call = Call(transport.send, transport.asend, {"kwargs": request.kwargs, "on_text": on_text})
    started = time.perf_counter()
    breaker = breaker_for(request.model, request.breaker) if request.breaker else None
    limiter = limiter_for(request.model, *request.rate_limit) if any(request.rate_limit) else None
    estimate = _token_estimate(request.kwargs) if limiter is not None else 0
    policy = model_retry_policy(request.retries, request.backoff, request.max_wait)
    attempt = 0
    while True:
        attempt += 1
        if limiter is not None:
            turn = limiter.reserve(estimate)
            if turn > 0:
                yield Sleep(turn)
        probe = False
        try:
            if breaker is not None:
                probe = breaker.admit()
            response = yield call
        except CircuitOpenError as opened:
            if context is not None:
                latency = time.perf_counter() - started
                context.model_call_finished(
                    usage=Usage(), model=request.model, latency=latency, error=opened
                )
            raise
        except Exception as exc:
            if breaker is not None:
                if counts_against_breaker(exc):
                    breaker.failed(probe)
                else:
                    breaker.released(probe)
            if limiter is not None and status_of(exc) == 429:
                limiter.pause(retry_after(exc) or request.backoff)
            wait = next_attempt(policy, attempt, exc)
            if wait is None:
                secrets = [str(request.kwargs.get("api_key") or "")]
                error = model_error(exc, request.model, attempt, secrets)
                if context is not None:
                    latency = time.perf_counter() - started
                    context.model_call_finished(
                        usage=Usage(), model=request.model, latency=latency, error=error
                    )
                raise error from root_cause(exc)
            yield Sleep(wait)
            continue
        except BaseException:  # cancelled mid-attempt: no verdict on the model
            if breaker is not None:
                breaker.released(probe)
            raise
        if breaker is not None:
            breaker.succeeded(probe)
        reply = _reply(response, request.model, attempt, time.perf_counter() - started)
        reply.fallbacks = passed_over
        if limiter is not None:
            limiter.settle(estimate, reply.usage.prompt_tokens + reply.usage.completion_tokens)
        if step is not None:
            step.keep(response)
        if context is not None:
            context.model_call_finished(
                usage=reply.usage, model=request.model, latency=reply.latency, reply=reply
            )
        return reply


def _token_estimate(kwargs: Mapping[str, Any]) -> int:
    """Tokens a request will use, guessed before it is sent (about 4 characters a token, plus
    the reply's ceiling); the rate limiter settles the difference once usage is known."""
    characters = sum(len(str(message.get("content") or "")) for message in kwargs["messages"])
    return characters // 4 + int(kwargs.get("max_tokens") or 0)


def _breaker_changed(state: BreakerState, previous: str) -> None:
    """A breaker moved during a call: tell the hooks of the node that made it, if any."""
    context = current_call_context()
    if context is not None:
        context.fire(BreakerChanged(context.run_id, context.node_id, state.model, state, previous))


node_announcer.append(_breaker_changed)


def complete(messages: list[dict[str, Any]], **options: Any) -> ModelReply:
    """Call a model once (plus retries) and return its reply; options as for `prepare`."""
    return run_sync(model_call(prepare(messages, **options)))


async def acomplete(messages: list[dict[str, Any]], **options: Any) -> ModelReply:
    """`complete` for asyncio: waits (latency, backoff) never block the event loop."""
    return await run_async(model_call(prepare(messages, **options)))


def _served(
    served: Mapping[str, Any], model: str, cache_hit: bool, context: CallContext | None
) -> ModelReply:
    """A reply the store served (replayed or cached): it costs nothing."""
    calls = tuple(ToolCallRequest(*call) for call in served["tool_calls"])
    raw = RawReply(served["text"], calls, served["prompt_tokens"], served["completion_tokens"],
                   0.0, served["finish_reason"])  # fmt: skip
    reply = _reply(raw, model, 0, 0.0)
    reply.usage.cache_hits = int(cache_hit)
    if context is not None:
        context.model_call_finished(usage=reply.usage, model=model, reply=reply)
    return reply


def _reply(response: RawReply, model: str, attempts: int, latency: float) -> ModelReply:
    return ModelReply(
        text=response.text,
        model=model,
        usage=Usage(
            prompt_tokens=response.prompt_tokens,
            completion_tokens=response.completion_tokens,
            cost=response.cost,
            calls=1,
        ),
        latency=latency,
        attempts=attempts,
        finish_reason=response.finish_reason,
        raw_response=response.raw,
        tool_calls=response.tool_calls,
        queue_time=response.queue_time,
    )
