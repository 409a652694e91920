"""A model call, written once: `prepare` the request, then the `model_call` flow, driven by
`complete` (sync) or `acomplete` (asyncio).

`prepare` resolves the model (`kaizen.llm.models.resolve_model`), asks for structured output
(a json_schema ``response_format``) when the model supports it, and switches litellm's and the
OpenAI SDK's own retries off. `model_call` is a flow (`kaizen.flow`): it yields the call to the
request's transport (`kaizen.llm.transport`: litellm, or a faster path where one applies;
streaming when given ``on_text``) and the waits between attempts, applies the retry rules of
`kaizen.llm.retry`, and returns a `ModelReply` (text, tool calls, usage and cost, latency,
attempts) or raises `ModelError`. Inside a running
node it also fires the model-call moments of the lifecycle hooks, once per call: the budget
refuses the call there, and the run record counts its usage. Anything that drives flows can run
it: an agent's exchange yields from it, so tools and streaming later add steps to one flow.

litellm is imported on first call (`kaizen.llm.litellm_adapter`), never at import time.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kaizen.llm.litellm_adapter as adapter
from kaizen.errors import ConfigError
from kaizen.flow import Call, Flow, Sleep, run_async, run_sync
from kaizen.llm.local import LOCAL_PROVIDER, make_local_handler
from kaizen.llm.models import (
    ModelSpec,
    StructuredOutputMode,
    model_name,
    resolve_model,
    response_format_for,
    uses_structured_output,
)
from kaizen.llm.retry import model_error, retry_wait, root_cause
from kaizen.llm.transport import OnText, RawReply, ToolCallRequest, transport_for
from kaizen.runtime.context import NodeContext, current_node_context
from kaizen.runtime.record import Usage
from kaizen.store.calls import model_call_step

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
    **extra: Any,
) -> ModelRequest:
    """The request for one call: `timeout` is per attempt (default 60 s); `retries` more
    attempts on retryable failures, the first after about `backoff` seconds, no wait longer than
    `max_wait` (Retry-After included). Other keyword arguments go to litellm as they are."""
    if not messages:
        raise ValueError("a model call needs at least one message")
    if retries < 0:
        raise ConfigError(f"retries must be 0 or more, not {retries}")
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
    return ModelRequest(name, kwargs, retries, float(backoff), float(max_wait), transport, cache)


def model_call(request: ModelRequest, on_text: OnText | None = None) -> Flow[ModelReply]:
    """The flow of one call: attempts, waits, the reply (see the module docstring). With
    `on_text`, the reply streams: each piece of text goes to `on_text` as it arrives."""
    context = current_node_context()
    if context is not None:  # a hook may refuse the call here (the budget)
        context.model_call_started(model=request.model, messages=request.kwargs["messages"])
    # the store's step: a replayed or cached reply, else None (kaizen.store.calls)
    node_id = context.node_id if context is not None else None
    step = model_call_step(request.kwargs, request.cache, node_id)
    served = step.lookup() if step is not None else None
    if served is not None:
        return _served(served, request.model, step.cache_hit, context)  # type: ignore[union-attr]
    transport = transport_for(request.model, request.kwargs, request.transport)
    call = Call(transport.send, transport.asend, {"kwargs": request.kwargs, "on_text": on_text})
    started = time.perf_counter()
    attempt = 0
    while True:
        attempt += 1
        try:
            response = yield call
        except Exception as exc:
            wait = retry_wait(
                exc,
                attempt,
                retries=request.retries,
                backoff=request.backoff,
                max_wait=request.max_wait,
            )
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
        reply = _reply(response, request.model, attempt, time.perf_counter() - started)
        if step is not None:
            step.keep(response)
        if context is not None:
            context.model_call_finished(
                usage=reply.usage, model=request.model, latency=reply.latency, reply=reply
            )
        return reply


def complete(messages: list[dict[str, Any]], **options: Any) -> ModelReply:
    """Call a model once (plus retries) and return its reply; options as for `prepare`."""
    return run_sync(model_call(prepare(messages, **options)))


async def acomplete(messages: list[dict[str, Any]], **options: Any) -> ModelReply:
    """`complete` for asyncio: waits (latency, backoff) never block the event loop."""
    return await run_async(model_call(prepare(messages, **options)))


def _served(
    served: Mapping[str, Any], model: str, cache_hit: bool, context: NodeContext | None
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
