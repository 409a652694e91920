"""`ScriptedModel` behind litellm: the custom provider ``kaizen-scripted`` that answers a call sent
with ``transport="litellm"`` (or a user's own `litellm.completion` on a scripted model's name).

By default a scripted model is answered in-process (`kaizen.testing.scripted.ScriptedTransport`);
this provider serves the same script through litellm, so a test can exercise litellm's own path
(its callbacks, its exception types). Importing this module registers the provider with
`kaizen.llm.litellm_adapter` (which imports litellm only when a call needs it); `kaizen.testing`
imports it, so a `ScriptedModel` unpickled in another process (a Ray worker) is served there too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from kaizen.llm import litellm_adapter
from kaizen.testing.scripted import (
    SCRIPTED_PROVIDER,
    Messages,
    ScriptedOutcome,
    ScriptedStatus,
    chunks,
    lookup,
    usage,
    wait,
)

__all__ = ["make_scripted_handler", "status_error"]


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


def _generic_chunk(chunk: Mapping[str, Any]) -> dict[str, Any]:
    """An OpenAI-shaped chunk of `chunks` as the generic streaming chunk litellm's custom
    providers yield."""
    choice = chunk["choices"][0]
    delta = choice["delta"]
    calls = delta.get("tool_calls")
    tool_use = None
    if calls:
        call = calls[0]
        function = call["function"]
        tool_use = {
            "id": call.get("id"),
            "type": "function",
            "function": {"name": function.get("name"), "arguments": function["arguments"]},
            "index": call["index"],
        }
    finish = choice["finish_reason"]
    return {
        "text": delta.get("content") or "",
        "tool_use": tool_use,
        "is_finished": finish is not None,
        "finish_reason": finish or "",
        "index": 0,
        "usage": chunk.get("usage"),
    }


def make_scripted_handler() -> Any:
    """The litellm custom handler serving every ``kaizen-scripted/...`` model."""
    from litellm import CustomLLM
    from litellm import Timeout as LiteLLMTimeout

    def finish(outcome: ScriptedOutcome, model: str, messages: Messages, response: Any) -> Any:
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
        prompt, completion = usage(outcome, messages)
        response.usage = Usage(
            prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
        )
        return response

    def take(
        model: str, messages: Messages, kwargs: Mapping[str, Any]
    ) -> tuple[ScriptedOutcome, float, bool]:
        """The scripted outcome of a request (`kwargs`: what litellm passed the handler), how
        long to wait before answering, and whether that wait runs into the caller's timeout."""
        timeout = kwargs.get("timeout")
        outcome = lookup(model).take(messages, kwargs.get("optional_params") or {}, timeout)
        return (outcome, *wait(outcome, timeout))

    def check_time(model: str, seconds: float, timed_out: bool) -> None:
        """Raise litellm's timeout when the scripted latency ran into the caller's timeout."""
        if timed_out:
            raise LiteLLMTimeout(
                message=f"scripted reply slower than the {seconds:g}s timeout",
                model=model,
                llm_provider=SCRIPTED_PROVIDER,
            )

    class ScriptedHandler(CustomLLM):
        # litellm passes model_response, optional_params and timeout by keyword
        def completion(self, model: str, messages: Messages, *args: Any, **kwargs: Any) -> Any:
            outcome, seconds, timed_out = take(model, messages, kwargs)
            time.sleep(seconds)
            check_time(model, seconds, timed_out)
            return finish(outcome, model, messages, kwargs.get("model_response"))

        async def acompletion(
            self, model: str, messages: Messages, *args: Any, **kwargs: Any
        ) -> Any:
            outcome, seconds, timed_out = take(model, messages, kwargs)
            await asyncio.sleep(seconds)
            check_time(model, seconds, timed_out)
            return finish(outcome, model, messages, kwargs.get("model_response"))

        def streaming(  # type: ignore[override]
            self, model: str, messages: Messages, *args: Any, **kwargs: Any
        ) -> Iterator[dict[str, Any]]:
            outcome, seconds, timed_out = take(model, messages, kwargs)
            time.sleep(seconds)
            check_time(model, seconds, timed_out)
            if outcome.error is not None:
                finish(outcome, model, messages, None)  # raises the scripted error
            for chunk in chunks(outcome, messages):
                yield _generic_chunk(chunk)

        async def astreaming(  # type: ignore[override]
            self, model: str, messages: Messages, *args: Any, **kwargs: Any
        ) -> AsyncIterator[dict[str, Any]]:
            outcome, seconds, timed_out = take(model, messages, kwargs)
            await asyncio.sleep(seconds)
            check_time(model, seconds, timed_out)
            if outcome.error is not None:
                finish(outcome, model, messages, None)
            for chunk in chunks(outcome, messages):
                await asyncio.sleep(0)
                yield _generic_chunk(chunk)

    return ScriptedHandler()


litellm_adapter.register_provider(SCRIPTED_PROVIDER, make_scripted_handler)
