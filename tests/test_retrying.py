"""`kaizen.retrying.next_attempt`, the one retry decision: node policies, Ray's lost workers and
model calls all wait what it says, and stop when it says None."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kaizen import ExecutionPolicy
from kaizen.errors import NotPicklableError, VetoError
from kaizen.llm.retry import model_retry_policy
from kaizen.retrying import RetryPolicy, next_attempt
from kaizen.runtime.attempt import node_retry_policy

waits = st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False)
policies = st.builds(
    RetryPolicy,
    retries=st.integers(min_value=0, max_value=50),
    backoff=waits,
    max_wait=st.none() | waits,
    jitter=st.floats(min_value=0.0, max_value=1.0),
)
attempts = st.integers(min_value=1, max_value=10_000)


class Throttled(Exception):
    """An error that asks for a wait of its own (a 429's Retry-After)."""

    def __init__(self, after: float | None) -> None:
        super().__init__("throttled")
        self.after = after


def asked(error: BaseException) -> float | None:
    return getattr(error, "after", None)


@given(policies, attempts)
def test_a_wait_is_never_negative_and_never_over_the_cap(policy: RetryPolicy, attempt: int) -> None:
    wait = next_attempt(policy, attempt, RuntimeError("boom"))
    if wait is not None:
        assert wait >= 0.0
        if policy.max_wait is not None:
            assert wait <= policy.max_wait


@given(policies, attempts)
def test_the_attempts_stop_after_the_retries(policy: RetryPolicy, attempt: int) -> None:
    wait = next_attempt(policy, attempt, RuntimeError("boom"))
    assert (wait is None) == (attempt > policy.retries)


@given(policies, attempts)
def test_an_error_the_policy_does_not_retry_stops_at_once(
    policy: RetryPolicy, attempt: int
) -> None:
    fussy = RetryPolicy(
        policy.retries, policy.backoff, policy.max_wait, policy.jitter,
        retryable=lambda error: isinstance(error, ConnectionError),
    )  # fmt: skip
    assert next_attempt(fussy, attempt, ValueError("bad request")) is None
    assert next_attempt(fussy, 1, KeyboardInterrupt()) is None


@given(st.integers(min_value=1, max_value=40), st.floats(min_value=0.001, max_value=10.0))
def test_without_jitter_the_backoff_doubles(attempt: int, backoff: float) -> None:
    policy = RetryPolicy(retries=100, backoff=backoff)
    first = next_attempt(policy, attempt, RuntimeError())
    second = next_attempt(policy, attempt + 1, RuntimeError())
    assert first == pytest.approx(backoff * 2 ** (attempt - 1))
    assert second == pytest.approx(2 * first)  # type: ignore[operator]


@given(st.integers(min_value=1, max_value=30), st.floats(min_value=0.01, max_value=5.0))
def test_jitter_keeps_a_wait_between_the_fraction_and_the_full_backoff(
    attempt: int, backoff: float
) -> None:
    policy = RetryPolicy(retries=100, backoff=backoff, jitter=0.5)
    full = backoff * 2 ** (attempt - 1)
    wait = next_attempt(policy, attempt, RuntimeError(), uniform=random.Random(attempt).uniform)
    assert wait is not None
    assert 0.5 * full - 1e-9 <= wait <= full + 1e-9


@given(attempts, waits, st.floats(min_value=0.0, max_value=100.0))
def test_retry_after_replaces_the_backoff_and_keeps_to_the_cap(
    attempt: int, after: float, cap: float
) -> None:
    policy = RetryPolicy(retries=10_000, backoff=1.0, max_wait=cap, jitter=1.0, retry_after=asked)
    assert next_attempt(policy, attempt, Throttled(after)) == min(after, cap)
    # an error without one falls back to the backoff
    without = next_attempt(policy, 1, Throttled(None), uniform=lambda a, b: b)
    assert without == min(1.0, cap)


def test_a_policy_with_impossible_settings_is_refused() -> None:
    with pytest.raises(ValueError, match="retries"):
        RetryPolicy(retries=-1)
    with pytest.raises(ValueError, match="backoff"):
        RetryPolicy(backoff=-0.5)
    with pytest.raises(ValueError, match="jitter"):
        RetryPolicy(jitter=2.0)


def test_a_node_policy_retries_its_retry_on_errors_but_never_a_veto() -> None:
    policy = node_retry_policy(ExecutionPolicy(retries=2, backoff=0.25, retry_on=(OSError,)))
    assert next_attempt(policy, 1, ConnectionError()) == 0.25
    assert next_attempt(policy, 2, ConnectionError()) == 0.5
    assert next_attempt(policy, 3, ConnectionError()) is None  # two retries: three attempts
    assert next_attempt(policy, 1, ValueError()) is None  # not in retry_on
    everything = node_retry_policy(ExecutionPolicy(retries=5))
    assert next_attempt(everything, 1, VetoError("refused by a middleware")) is None
    unpicklable = NotPicklableError("x", node_id="n", port="p", direction="input", type_name="Lock")
    assert next_attempt(everything, 1, unpicklable) is None
    assert next_attempt(everything, 1, RuntimeError()) == 0.0


class ProviderError(Exception):
    def __init__(self, status: int, retry_after: str | None = None) -> None:
        super().__init__(f"HTTP {status}")
        self.status_code = status
        self.headers = {"retry-after": retry_after} if retry_after is not None else {}


def test_a_model_call_retries_what_the_provider_classification_allows() -> None:
    policy = model_retry_policy(retries=3, backoff=0.5, max_wait=30.0)
    assert next_attempt(policy, 1, ProviderError(401)) is None  # a bad key: never retried
    assert next_attempt(policy, 1, ProviderError(400)) is None
    wait = next_attempt(policy, 1, ProviderError(503))
    assert wait is not None and 0.25 <= wait <= 0.5
    assert next_attempt(policy, 2, ProviderError(429, retry_after="7")) == 7.0
    assert next_attempt(policy, 1, ProviderError(429, retry_after="120")) == 30.0  # capped
    assert next_attempt(policy, 4, ProviderError(503)) is None  # three retries used
