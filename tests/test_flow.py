"""One flow, two drivers (`kaizen.flow`): the same flow gives the same result, retries and errors
driven sync or async; an agent's exchange is one such flow."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from kaizen.flow import Call, Flow, Sleep, run_async, run_sync


class Flaky:
    """A service that fails `failures` times, then answers; sync and async faces."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def call(self, question: str) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"down ({self.calls})")
        return question.upper()

    async def acall(self, question: str) -> str:
        await asyncio.sleep(0)
        return self.call(question)


def ask_with_retries(service: Flaky, question: str, retries: int) -> Flow[tuple[str, int]]:
    """The decisions, written once: call, wait a little after a failure, give up after retries."""
    for attempt in range(1, retries + 2):
        try:
            answer = yield Call(service.call, service.acall, {"question": question})
        except ConnectionError:
            if attempt > retries:
                raise
            yield Sleep(0.01)
            continue
        return answer, attempt
    raise AssertionError("unreachable")


@pytest.mark.parametrize("failures", [0, 1, 2])
def test_both_drivers_give_the_same_result(failures: int) -> None:
    sync_service, async_service = Flaky(failures), Flaky(failures)
    started = time.perf_counter()
    by_sync = run_sync(ask_with_retries(sync_service, "hi", retries=2))
    assert time.perf_counter() - started >= 0.01 * failures  # the waits really happened
    by_async = asyncio.run(run_async(ask_with_retries(async_service, "hi", retries=2)))
    assert by_sync == by_async == ("HI", failures + 1)
    assert sync_service.calls == async_service.calls == failures + 1


def test_an_error_the_flow_does_not_handle_reaches_the_caller_from_both_drivers() -> None:
    with pytest.raises(ConnectionError, match=r"down \(2\)"):
        run_sync(ask_with_retries(Flaky(5), "hi", retries=1))
    with pytest.raises(ConnectionError, match=r"down \(2\)"):
        asyncio.run(run_async(ask_with_retries(Flaky(5), "hi", retries=1)))


def test_waits_do_not_block_the_event_loop() -> None:
    def napper() -> Flow[str]:
        yield Sleep(3600)  # a wait that blocked the loop would hang the test into its timeout
        return "woke"

    async def main() -> tuple[list[tuple[str, int]], bool]:
        napping = asyncio.ensure_future(run_async(napper()))
        await asyncio.sleep(0)  # the napper is waiting now
        flows = [run_async(ask_with_retries(Flaky(3), "x", retries=3)) for _ in range(20)]
        answers = await asyncio.gather(*flows)  # each waits three times meanwhile
        still_napping = not napping.done()
        napping.cancel()
        return answers, still_napping

    answers, still_napping = asyncio.run(main())
    assert answers == [("X", 4)] * 20 and still_napping


def test_a_flow_that_yields_something_else_is_a_clear_error() -> None:
    def odd() -> Flow[Any]:
        yield "not an effect"  # type: ignore[misc]

    with pytest.raises(TypeError, match="not an effect"):
        run_sync(odd())
