"""Resilience per (provider, model), shared by every agent in the process: circuit breakers,
rate limits, and which failures move a call on to a fallback model.

- `CircuitBreaker`: closed → open after `failure_threshold` failed attempts within `window`
  seconds → after `reset_timeout` seconds half-open, letting one probe through → closed when the
  probe succeeds (open again when it fails). While open, calls fail at once with
  `kaizen.CircuitOpenError` (which model, until when). Failures that count: server errors,
  timeouts and dropped connections; not 429 (the rate limiter's business) and not request
  errors (4xx: the request is at fault, not the model). Every transition is reported to the
  `BreakerHook`s of the running node and to process-wide watchers (`watch_breakers`).
- `RateLimiter`: a token bucket per (provider, model) for requests and for tokens per minute,
  by reservation (a caller learns how long to wait; the wait is a `Sleep` step of the call flow,
  so sync and async calls share one bucket). A 429's Retry-After pauses the whole bucket, so
  every caller of that model waits, not just the one that was told. aiolimiter is asyncio-only
  and these buckets serve threads too, hence Kaizen's own.
- `falls_back(error)`: a failure another model may succeed at (the retryable ones once retries
  are spent, and an open circuit); request errors (400-class) never move to a fallback.

The state is per process (`breakers()` shows it); settings come from agent config keys
``circuit_breaker`` and ``rate_limit``, the latest one given for a model applies. The call flow
(`kaizen.llm.call.model_call`) applies all of it; there is still one retry layer only.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from kaizen import process
from kaizen.errors import CircuitOpenError, ConfigError, ModelError
from kaizen.llm.litellm_adapter import provider_of
from kaizen.llm.retry import is_retryable, status_of

__all__ = [
    "BreakerSettings",
    "BreakerState",
    "CircuitBreaker",
    "RateLimiter",
    "breaker_for",
    "breaker_settings",
    "breakers",
    "counts_against_breaker",
    "falls_back",
    "limiter_for",
    "rate_limit_settings",
    "reset_resilience",
    "watch_breakers",
]

State = Literal["closed", "open", "half_open"]
BreakerWatcher = Callable[["BreakerState", str], None]  # (new state, previous state name)


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    failure_threshold: int = 5  # failed attempts within `window` that open the circuit
    window: float = 60.0  # seconds
    reset_timeout: float = 30.0  # seconds open before a probe is let through


@dataclass(frozen=True, slots=True)
class BreakerState:
    """A snapshot of one breaker: `until` is when an open circuit lets a probe through."""

    provider: str | None
    model: str
    state: State
    failures: int
    until: float | None
    opened: int  # times it has opened


def breaker_settings(option: bool | Mapping[str, Any] | None) -> BreakerSettings | None:
    """The agent config ``circuit_breaker`` as settings (None: no breaker); `ConfigError` for
    unknown keys or bad values."""
    if option is None or option is False:
        return None
    if option is True:
        return BreakerSettings()
    unknown = set(option) - {"failure_threshold", "window", "reset_timeout"}
    if unknown:
        raise ConfigError(
            f"circuit_breaker: unknown key(s) {sorted(unknown)}; "
            "use failure_threshold, window, reset_timeout"
        )
    settings = BreakerSettings(**option)
    if settings.failure_threshold < 1 or settings.window <= 0 or settings.reset_timeout <= 0:
        raise ConfigError(
            "circuit_breaker: failure_threshold must be at least 1, window and reset_timeout "
            f"positive seconds (got {dict(option)})"
        )
    return settings


class CircuitBreaker:
    """The breaker of one (provider, model). Thread-safe; see the module docstring."""

    def __init__(self, model: str, settings: BreakerSettings) -> None:
        self.model = model
        self.provider = provider_of(model)
        self.settings = settings
        self._state: State = "closed"
        self._failures: deque[float] = deque()
        self._until: float | None = None  # time.time() when an open circuit half-opens
        self._probing = False
        self._opened = 0
        self._lock = threading.Lock()

    def snapshot(self) -> BreakerState:
        with self._lock:
            return self._snapshot()

    def _snapshot(self) -> BreakerState:
        return BreakerState(
            self.provider, self.model, self._state, len(self._failures), self._until, self._opened
        )

    def admit(self) -> bool:
        """Before an attempt: True when it is the half-open probe, False for an ordinary call;
        raises `CircuitOpenError` while open (or while another probe is out)."""
        changed: tuple[BreakerState, str] | None = None
        with self._lock:
            now = time.time()
            if self._state == "open" and self._until is not None and now >= self._until:
                changed = self._move("half_open")
            if self._state == "closed":
                probe = False
            elif self._state == "half_open" and not self._probing:
                self._probing = probe = True
            else:
                until = self._until if self._state == "open" else now + 0.0
                error = CircuitOpenError(
                    f"model {self.model!r}: circuit open after {self.settings.failure_threshold} "
                    f"failures; calls fail at once until {time.ctime(until)} (then one probe is "
                    "tried). Configure 'fallbacks' to answer with another model meanwhile.",
                    model=self.model,
                    until=until or now,
                    provider=self.provider,
                )
                probe = None
        if changed is not None:
            _announce(*changed)
        if probe is None:
            raise error
        return probe

    def succeeded(self, probe: bool) -> None:
        changed = None
        with self._lock:
            if probe:
                self._probing = False
            self._failures.clear()
            if self._state != "closed":
                changed = self._move("closed")
                self._until = None
        if changed is not None:
            _announce(*changed)

    def failed(self, probe: bool) -> None:
        changed = None
        with self._lock:
            now = time.time()
            if probe:
                self._probing = False
            failures = self._failures
            failures.append(now)
            while failures and failures[0] < now - self.settings.window:
                failures.popleft()
            if probe or (
                self._state == "closed" and len(failures) >= self.settings.failure_threshold
            ):
                self._until = now + self.settings.reset_timeout
                self._opened += 1
                changed = self._move("open")
        if changed is not None:
            _announce(*changed)

    def released(self, probe: bool) -> None:
        """An attempt ended without a verdict (cancelled): a probe slot is freed."""
        if probe:
            with self._lock:
                self._probing = False

    def _move(self, state: State) -> tuple[BreakerState, str]:
        previous = self._state
        self._state = state
        return self._snapshot(), previous


class RateLimiter:
    """Token buckets of one (provider, model): requests and (optionally) tokens per minute.

    `reserve(tokens)` takes a request and `tokens` from the buckets at once and returns the
    seconds to wait before sending (buckets may go into debt: later callers wait longer, so the
    rate holds on average); `settle(estimated, actual)` corrects the token bucket once the
    usage is known; `pause(seconds)` holds every caller back (a 429's Retry-After)."""

    def __init__(self, requests_per_minute: float | None, tokens_per_minute: float | None) -> None:
        self._lock = threading.Lock()
        self._paused_until = 0.0
        self.configure(requests_per_minute, tokens_per_minute)

    def configure(self, requests_per_minute: float | None, tokens_per_minute: float | None) -> None:
        with self._lock:
            now = time.monotonic()
            self.requests_per_minute = requests_per_minute
            self.tokens_per_minute = tokens_per_minute
            # bursts of a second's worth (at least one call): the rate holds smoothly
            self._requests = _Bucket(requests_per_minute, now)
            self._tokens = _Bucket(tokens_per_minute, now)

    def reserve(self, tokens: int = 0) -> float:
        with self._lock:
            now = time.monotonic()
            wait = max(self._requests.take(1, now), self._tokens.take(tokens, now))
            return max(wait, self._paused_until - now)

    def settle(self, estimated: int, actual: int) -> None:
        with self._lock:
            self._tokens.level -= actual - estimated

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    @property
    def paused_for(self) -> float:
        """Seconds every caller is still held back by a pause (0: none)."""
        with self._lock:
            return max(0.0, self._paused_until - time.monotonic())


class _Bucket:
    __slots__ = ("capacity", "last", "level", "rate")

    def __init__(self, per_minute: float | None, now: float) -> None:
        self.rate = per_minute / 60.0 if per_minute else 0.0  # per second; 0: unlimited
        self.capacity = max(1.0, self.rate)
        self.level = self.capacity
        self.last = now

    def take(self, amount: float, now: float) -> float:
        if not self.rate:
            return 0.0
        self.level = min(self.capacity, self.level + (now - self.last) * self.rate)
        self.last = now
        self.level -= amount
        return 0.0 if self.level >= 0 else -self.level / self.rate


def rate_limit_settings(option: Mapping[str, Any] | None) -> tuple[float | None, float | None]:
    """The agent config ``rate_limit`` as (requests per minute, tokens per minute)."""
    if not option:
        return None, None
    unknown = set(option) - {"requests_per_minute", "tokens_per_minute"}
    if unknown:
        raise ConfigError(
            f"rate_limit: unknown key(s) {sorted(unknown)}; "
            "use requests_per_minute, tokens_per_minute"
        )
    rpm, tpm = option.get("requests_per_minute"), option.get("tokens_per_minute")
    for name, value in (("requests_per_minute", rpm), ("tokens_per_minute", tpm)):
        if value is not None and (not isinstance(value, int | float) or value <= 0):
            raise ConfigError(f"rate_limit: {name} must be a positive number, got {value!r}")
    return rpm, tpm


_lock = threading.Lock()
_breakers: dict[str, CircuitBreaker] = {}
_limiters: dict[str, RateLimiter] = {}
_watchers: list[BreakerWatcher] = []
# hands a transition to the running node's hooks (set by kaizen.llm.call: no import cycle)
node_announcer: list[Callable[[BreakerState, str], None]] = []


def breaker_for(model: str, settings: BreakerSettings) -> CircuitBreaker:
    """The process's breaker for `model` (made on first use; `settings` replace older ones)."""
    breaker = _breakers.get(model)
    if breaker is None:
        with _lock:
            breaker = _breakers.setdefault(model, CircuitBreaker(model, settings))
    breaker.settings = settings
    return breaker


def limiter_for(model: str, rpm: float | None, tpm: float | None) -> RateLimiter:
    """The process's rate limiter for `model` (made on first use; new limits replace old)."""
    limiter = _limiters.get(model)
    if limiter is None:
        with _lock:
            limiter = _limiters.setdefault(model, RateLimiter(rpm, tpm))
    if (limiter.requests_per_minute, limiter.tokens_per_minute) != (rpm, tpm):
        limiter.configure(rpm, tpm)
    return limiter


def breakers() -> list[BreakerState]:
    """Every circuit breaker of this process, as it is now (`kaizen.breakers()`)."""
    return [breaker.snapshot() for breaker in list(_breakers.values())]


def watch_breakers(watcher: BreakerWatcher) -> Callable[[], None]:
    """Call `watcher(state, previous)` on every breaker transition in the process, whatever
    node (if any) made the call; returns a function that stops watching."""
    _watchers.append(watcher)
    return lambda: _watchers.remove(watcher) if watcher in _watchers else None


def reset_resilience() -> None:
    """Forget every breaker and rate limiter (tests; a process that changed providers)."""
    with _lock:
        _breakers.clear()
        _limiters.clear()


def _announce(state: BreakerState, previous: str) -> None:
    for announce in node_announcer:
        announce(state, previous)
    for watcher in list(_watchers):
        try:
            watcher(state, previous)
        except Exception:  # a watcher is an observer: it never breaks a call
            import logging

            logging.getLogger("kaizen.resilience").exception("breaker watcher failed")


def counts_against_breaker(exc: BaseException) -> bool:
    """Failures that say the model is unwell: 5xx, timeouts, dropped connections (not 429)."""
    return is_retryable(exc) and status_of(exc) != 429


def falls_back(error: BaseException) -> bool:
    """Whether a fallback model should be tried after `error` (see the module docstring)."""
    if isinstance(error, CircuitOpenError):
        return True
    return isinstance(error, ModelError) and error.retryable


def _forget() -> None:
    """Forget breakers, limiters and watchers (`kaizen.process.reset`, and after a fork)."""
    _breakers.clear()
    _limiters.clear()
    _watchers.clear()


process.register("llm.resilience", _forget)
