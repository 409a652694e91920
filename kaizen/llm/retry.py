"""Which model-call failures are worth retrying, how long to wait, and the error a caller gets.

One retry layer only: litellm's and the OpenAI SDK's own retries are switched off, and these
rules decide. Retried: 408/409/425/429 (honouring Retry-After), 5xx, timeouts, dropped
connections; never authentication (401/403) or request errors (400/404/422). Waits grow
exponentially from `backoff` with jitter, capped at `max_wait` (`model_retry_policy`, applied by
`kaizen.retrying.next_attempt`, the one retry decision of Kaizen). A call that fails for good raises
`ModelError(provider, status, retryable, attempts)` with the provider's own error chained and its
message quoted, and advice on what to do. Pure functions: the call flow applies them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from kaizen.errors import ModelError
from kaizen.llm.litellm_adapter import is_kaizen_provider, provider_of
from kaizen.retrying import RetryPolicy

__all__ = [
    "is_retryable",
    "model_error",
    "model_retry_policy",
    "redact",
    "retry_after",
    "root_cause",
    "status_of",
]

_RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
# how SDKs say that no key was given at all (the OpenAI SDK raises it, litellm maps it to a 500)
_MISSING_KEY = re.compile(
    r"missing credentials|api[_ ]key (?:client option )?must be set|no api key", re.IGNORECASE
)
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


def model_retry_policy(retries: int, backoff: float, max_wait: float) -> RetryPolicy:
    """The retry policy of a model call: `retries` more attempts on the failures
    `is_retryable` accepts, waits growing from `backoff` with jitter, or the error's
    Retry-After, none longer than `max_wait` (`kaizen.retrying.next_attempt` applies it)."""
    return RetryPolicy(
        retries=retries,
        backoff=backoff,
        max_wait=max_wait,
        jitter=0.5,  # spreads callers that failed together
        retryable=is_retryable,
        retry_after=retry_after,
    )


def root_cause(exc: BaseException) -> BaseException:
    """The error to chain: a provider's own exception when litellm wrapped one from Kaizen's
    providers (a script, the local model), else `exc` itself."""
    original = _wrapped_original(exc)
    return original if original is not None else exc


def _wrapped_original(exc: BaseException) -> BaseException | None:
    """litellm turns any exception a custom provider raises into APIConnectionError; unwrap it."""
    if type(exc).__name__ != "APIConnectionError" or not type(exc).__module__.startswith("litellm"):
        return None
    if not is_kaizen_provider(getattr(exc, "llm_provider", None)):
        return None
    for inner in (exc.__cause__, exc.__context__):
        if inner is not None and not type(inner).__module__.startswith(
            ("litellm", "openai", "httpx")
        ):
            return inner
    return None


def status_of(exc: BaseException) -> int | None:
    """The HTTP status a provider error carries (408 for timeouts, 401 for a key that is
    missing, which some SDKs report as a 500 before any request is sent), if any."""
    if _is_timeout(exc):
        return 408
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int):
        return None
    if status >= 500 and _MISSING_KEY.search(str(exc)):
        return 401
    return status


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


def model_error(
    exc: BaseException, model: str, attempts: int, secrets: Iterable[str] = ()
) -> ModelError:
    """The `ModelError` for a call to `model` that failed for good with `exc`; `secrets` (the
    call's API key) and anything shaped like a key are blanked out of the quoted message."""
    original = _wrapped_original(exc)
    shown = original if original is not None else exc
    status = None if original is not None else status_of(exc)
    provider: Any = getattr(exc, "llm_provider", None) or provider_of(model)
    retryable = is_retryable(exc)
    detail = redact(" ".join(str(shown).split()), secrets)
    if len(detail) > 300:
        detail = detail[:297] + "..."
    what = f"HTTP {status}" if status is not None else type(shown).__name__
    message = f"model {model!r} failed after {attempts} attempt(s): {what}"
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


# API keys as providers print them back ("Incorrect API key provided: sk-abc...xyz"), masked or not
_KEY_SHAPES = re.compile(r"\b(?:sk|pk|rk|key|api[_-]?key)[-_][A-Za-z0-9*._-]{6,}", re.IGNORECASE)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every given secret, and every key-shaped token, replaced by `[redacted]`."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    return _KEY_SHAPES.sub("[redacted]", text)
