"""Circuit breakers, fallbacks and rate limits (kaizen.llm.resilience), over real HTTP.

Every test runs on both transports against the loopback FaultServer; nothing is mocked. Each
test uses its own model name, since breakers and limiters are shared per model in the process.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import kaizen
from kaizen.errors import CircuitOpenError, ConfigError, ModelError
from kaizen.llm import acomplete, complete
from kaizen.llm.resilience import RateLimiter, limiter_for, reset_resilience
from kaizen.testing.fault_server import Fault, FaultServer

pytestmark = pytest.mark.timeout(60)

MESSAGES = [{"role": "user", "content": "hello"}]
BREAKER = {"failure_threshold": 3, "window": 30, "reset_timeout": 0.3}


@pytest.fixture(autouse=True)
def fresh_state() -> Iterator[None]:
    reset_resilience()
    yield
    reset_resilience()


@pytest.fixture(params=("litellm", "openai-compatible"))
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def model() -> str:
    return f"openai/m-{uuid.uuid4().hex[:8]}"


def call(server: FaultServer, model: str, transport: str, **options: Any) -> Any:
    options.setdefault("backoff", 0.01)
    options.setdefault("timeout", 5.0)
    options.setdefault("retries", 0)
    return complete(
        MESSAGES, model=model, api_base=server.base_url, api_key="test", transport=transport,
        **options,
    )  # fmt: skip


def test_the_breaker_opens_fails_fast_and_recovers_after_a_probe(
    fault_server: FaultServer, model: str, transport: str
) -> None:
    moves: list[tuple[str, str]] = []
    stop = kaizen.watch_breakers(lambda state, previous: moves.append((previous, state.state)))
    try:
        fault_server.inject("500", "503", "500")
        for _ in range(3):
            with pytest.raises(ModelError) as failed:
                call(fault_server, model, transport, circuit_breaker=BREAKER)
            assert not isinstance(failed.value, CircuitOpenError)
        served = len(fault_server.requests)
        with pytest.raises(CircuitOpenError) as opened:
            call(fault_server, model, transport, circuit_breaker=BREAKER)
        assert len(fault_server.requests) == served  # failed at once: nothing was sent
        assert opened.value.model == model and opened.value.until > time.time()
        (state,) = [b for b in kaizen.breakers() if b.model == model]
        assert state.state == "open" and state.opened == 1
        time.sleep(0.35)  # past reset_timeout: one probe goes through and closes it
        reply = call(fault_server, model, transport, circuit_breaker=BREAKER)
        assert reply.text
        (state,) = [b for b in kaizen.breakers() if b.model == model]
        assert state.state == "closed" and state.failures == 0
    finally:
        stop()
    assert moves == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_a_failed_probe_opens_the_circuit_again(
    fault_server: FaultServer, model: str, transport: str
) -> None:
    fault_server.inject("500", "500", "500", "500")
    for _ in range(3):
        with pytest.raises(ModelError):
            call(fault_server, model, transport, circuit_breaker=BREAKER)
    time.sleep(0.35)
    with pytest.raises(ModelError) as probe:
        call(fault_server, model, transport, circuit_breaker=BREAKER)
    assert probe.value.status == 500
    with pytest.raises(CircuitOpenError):
        call(fault_server, model, transport, circuit_breaker=BREAKER)


def test_request_errors_and_429s_do_not_open_the_circuit(
    fault_server: FaultServer, model: str, transport: str
) -> None:
    fault_server.inject(*["400"] * 3, *[Fault("429", retry_after=0)] * 3)
    for _ in range(6):
        with pytest.raises(ModelError) as failed:
            call(fault_server, model, transport, circuit_breaker=BREAKER)
        assert not isinstance(failed.value, CircuitOpenError)
    assert call(fault_server, model, transport, circuit_breaker=BREAKER).text


def test_breaker_transitions_reach_the_hooks_of_the_node_that_moved_it(
    fault_server: FaultServer, model: str
) -> None:
    seen: list[tuple[str, str]] = []

    class Watch(kaizen.BreakerHook):
        def on_breaker_change(self, event: kaizen.BreakerChanged) -> None:
            seen.append((event.node_id, event.state.state))

    config = {"model": model, "api_base": fault_server.base_url, "api_key": "test",
              "retries": 0, "circuit_breaker": {**BREAKER, "failure_threshold": 1}}  # fmt: skip
    agent = kaizen.create_agent("watched", "question -> answer", config, hooks=[Watch()])
    fault_server.inject("500")
    with pytest.raises(ModelError):
        agent.execute(question="q")
    assert seen == [("watched", "open")]


def test_a_fallback_answers_and_the_metadata_says_why(
    fault_server: FaultServer, model: str, transport: str
) -> None:
    with FaultServer() as backup:
        backup.reply = {"answer": "from the backup"}
        fallback = {"model": "openai/backup", "api_base": backup.base_url, "api_key": "test"}
        config = {"model": model, "api_base": fault_server.base_url, "api_key": "test",
                  "retries": 1, "transport": transport, "fallbacks": [fallback]}  # fmt: skip
        fault_server.inject("503", "503")
        agent = kaizen.create_agent("resilient", "question -> answer", config)
        result = agent.execute(question="q")
    assert result.answer == "from the backup"
    assert result.metadata["model"] == "openai/backup"
    assert result.metadata["fallbacks"] == [{"model": model, "reason": "HTTP 503"}]


def test_an_open_circuit_moves_straight_to_the_fallback(
    fault_server: FaultServer, model: str, transport: str
) -> None:
    with FaultServer() as backup:
        fallback = {"model": "openai/backup", "api_base": backup.base_url, "api_key": "test"}
        options = {"circuit_breaker": {**BREAKER, "failure_threshold": 1}, "fallbacks": [fallback]}
        fault_server.inject("500")
        first = call(fault_server, model, transport, **options)
        second = call(fault_server, model, transport, **options)
    assert first.fallbacks == ((model, "HTTP 500"),)
    assert second.fallbacks == ((model, "circuit open"),)
    assert len(fault_server.requests) == 1  # the open circuit sent nothing more


def test_request_errors_never_fall_back(
    fault_server: FaultServer, model: str, transport: str
) -> None:
    with FaultServer() as backup:
        fallback = {"model": "openai/backup", "api_base": backup.base_url, "api_key": "test"}
        fault_server.inject("400")
        with pytest.raises(ModelError) as failed:
            call(fault_server, model, transport, fallbacks=[fallback])
        assert failed.value.status == 400
        assert backup.requests == []


def test_when_every_model_fails_the_error_names_them_all(
    fault_server: FaultServer, model: str, transport: str
) -> None:
    fault_server.inject("500", "500")
    fallback = {"model": "openai/second", "api_base": fault_server.base_url, "api_key": "test"}
    with pytest.raises(ModelError) as failed:
        call(fault_server, model, transport, fallbacks=[fallback])
    assert f"{model}: HTTP 500" in "".join(failed.value.__notes__)


def test_a_429_storm_pauses_every_caller_for_its_retry_after(
    fault_server: FaultServer, model: str, transport: str
) -> None:
    fault_server.inject(Fault("429", retry_after=0.3))
    limits = {"requests_per_minute": 6000}

    async def calls() -> list[Any]:
        first = asyncio.ensure_future(
            acomplete(
                MESSAGES,
                model=model,
                api_base=fault_server.base_url,
                api_key="test",
                transport=transport,
                retries=2,
                rate_limit=limits,
            )
        )
        limiter = limiter_for(model, 6000, None)
        deadline = time.monotonic() + 30
        while limiter.paused_for == 0.0:  # until the 429 has arrived and paused the model
            assert time.monotonic() < deadline, "the 429 never paused the model's callers"
            await asyncio.sleep(0.005)
        started = time.monotonic()
        second = await acomplete(
            MESSAGES, model=model, api_base=fault_server.base_url, api_key="test",
            transport=transport, rate_limit=limits,
        )  # fmt: skip
        return [await first, second, time.monotonic() - started]

    first, second, waited = asyncio.run(calls())
    assert first.attempts == 2 and second.attempts == 1
    assert waited >= 0.15  # the second caller was never told, yet it waited


def test_requests_per_minute_spaces_the_calls(
    fault_server: FaultServer, model: str, transport: str
) -> None:
    limits = {"requests_per_minute": 600}  # 10 a second, a burst of 10
    for _ in range(12):
        call(fault_server, model, transport, rate_limit=limits)
    times = [r.received for r in fault_server.requests]
    assert times[-1] - times[0] >= 0.15  # the two beyond the burst waited their turn


def test_the_token_bucket_reserves_and_settles() -> None:
    limiter = RateLimiter(None, 600)  # 10 tokens a second, bucket of 10
    assert limiter.reserve(10) == 0.0
    assert limiter.reserve(10) == pytest.approx(1.0, abs=0.05)  # in debt: wait for it
    limiter.settle(estimated=10, actual=0)  # the call used nothing: the debt is forgiven
    assert limiter.reserve(0) == pytest.approx(0.0, abs=0.05)


def test_bad_resilience_config_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="failure_threshold"):
        kaizen.create_agent("a", config={"circuit_breaker": {"failure_treshold": 2}})
    with pytest.raises(ConfigError, match="requests_per_minute"):
        kaizen.create_agent("b", config={"rate_limit": {"requests_per_minute": -1}})
    with pytest.raises(ConfigError, match="model name"):
        complete(MESSAGES, model="openai/x", api_key="k", fallbacks=[{"api_base": "x"}])


def test_a_thousand_concurrent_calls_with_ten_percent_faults_all_end(
    fault_server: FaultServer, model: str
) -> None:
    """1,000 calls, every tenth faulted (500, 429, drop, timeout, malformed): each ends in a
    reply or a typed error, nothing hangs, and the monitor counts every call."""
    kinds = ["500", Fault("429", retry_after=0.05), "drop", Fault("timeout", stall=2.0),
             "malformed"]  # fmt: skip
    for n in range(100):
        fault_server.inject(kinds[n % len(kinds)])
    agent = kaizen.create_agent("load", "question -> answer", {
        "model": model, "api_base": fault_server.base_url, "api_key": "test", "retries": 0,
        "timeout": 1.0, "raise_on_error": False})  # fmt: skip
    monitor = agent.get_execution_monitor()

    async def run_all() -> list[Any]:
        return await asyncio.gather(*(agent.execute_async(question=f"q{n}") for n in range(1000)))

    started = time.monotonic()
    results = asyncio.run(asyncio.wait_for(run_all(), timeout=30))
    wall = time.monotonic() - started
    failed = [r for r in results if not r.success]
    assert len(results) == 1000
    assert all(isinstance(r.error, kaizen.KaizenError) for r in failed)
    assert len(failed) >= 100  # every fault (retries=0); under load, client timeouts too
    summary = monitor.summary()
    assert summary["calls"] == 1000 and summary["errors"] == len(failed)
    print(f"\n1000 calls, 100 faults: {len(failed)} typed errors, wall {wall:.2f}s; {summary}")


def test_a_model_object_is_a_fallback_as_it_is_a_model() -> None:
    """Issue 21 item 6: whatever `model` accepts, `fallbacks` accepts (a ScriptedModel here)."""
    from kaizen.testing import ScriptedModel

    primary = ScriptedModel([ScriptedModel.status(503)], name="down")
    backup = ScriptedModel([{"answer": "from the backup"}, "backup text"], name="backup")
    config = {"model": primary, "retries": 0,
              "fallbacks": [backup, {"model": backup}, "openai/unused"]}  # fmt: skip
    agent = kaizen.create_agent("objects", "question -> answer", config)
    result = agent.execute(question="q")
    assert result.answer == "from the backup"
    assert result.metadata["model"] == backup.model_name
    assert result.metadata["fallbacks"] == [{"model": primary.model_name, "reason": "HTTP 503"}]
    reply = complete(MESSAGES, model=ScriptedModel([500]), retries=0, fallbacks=[backup])
    assert reply.model == backup.model_name


def test_a_fallback_that_is_no_model_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"fallbacks\.0.*model name.*int"):
        kaizen.create_agent("bad", config={"fallbacks": [42]})
