"""Retry policy, written once: `RetryPolicy` says which failures are retried, how many times and
how long to wait; `next_attempt(policy, attempt, error)` is the decision after a failed attempt.

Every retry in Kaizen asks this module: a node's `ExecutionPolicy` (the `Supervised` executor
and the Ray executor, through `kaizen.runtime.attempt.node_retry_policy`), a Ray worker that died
(`worker_retries`), and a model call (`kaizen.llm.retry.model_retry_policy`, whose
classification says which provider errors are worth another try and reads Retry-After). Callers
keep their own clocks: they sleep (or schedule) the wait this module returns, so it stays pure
and sits at the bottom layer, importing nothing of Kaizen.

The waits: `backoff` seconds before the first retry, doubling after each further failure, with
`jitter` (a random factor in [1 - jitter, 1]) spreading callers that failed together; a
Retry-After the error carries replaces the backoff; `max_wait` caps any one wait.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["RetryPolicy", "next_attempt"]

_MAX_DOUBLINGS = 64  # beyond this a wait is astronomically long anyway; keeps floats finite


def _every_exception(error: BaseException) -> bool:
    return isinstance(error, Exception)


def _no_retry_after(error: BaseException) -> float | None:
    return None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """`retries` more attempts after the first, for the errors `retryable` accepts (default:
    any `Exception`; never a cancellation or an interrupt). `retry_after(error)` reads a wait the
    error itself asks for (a 429's Retry-After), or None."""

    retries: int = 0
    backoff: float = 0.0
    max_wait: float | None = None
    jitter: float = 0.0
    retryable: Callable[[BaseException], bool] = field(default=_every_exception)
    retry_after: Callable[[BaseException], float | None] = field(default=_no_retry_after)

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries!r}")
        if self.backoff < 0:
            raise ValueError(f"backoff must be >= 0 seconds, got {self.backoff!r}")
        if self.max_wait is not None and self.max_wait < 0:
            raise ValueError(f"max_wait must be >= 0 seconds or None, got {self.max_wait!r}")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"jitter must be between 0 and 1, got {self.jitter!r}")


def next_attempt(
    policy: RetryPolicy,
    attempt: int,
    error: BaseException,
    *,
    uniform: Callable[[float, float], float] = random.uniform,
) -> float | None:
    """Attempt number `attempt` (1 for the first) failed with `error`: the seconds to wait before
    the next one, or None to stop (the attempts are used up, or `error` is not retried).

    `uniform(a, b)` draws the jitter (pass a seeded one for repeatable waits)."""
    if attempt > policy.retries or not policy.retryable(error):
        return None
    asked = policy.retry_after(error)
    if asked is not None and asked >= 0:
        wait = asked
    else:
        wait = policy.backoff * 2.0 ** min(max(attempt - 1, 0), _MAX_DOUBLINGS)
        if policy.jitter and wait:
            wait *= uniform(1.0 - policy.jitter, 1.0)
    if policy.max_wait is not None:
        wait = min(wait, policy.max_wait)
    return max(wait, 0.0)
