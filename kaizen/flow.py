"""One flow, two drivers: logic that talks to the outside world, written once, run sync or async.

A *flow* is a generator that yields effects and receives their results (the shape of httpx's
`auth_flow`). The flow holds every decision (what to send, whether to retry, how to read the
reply) and performs no I/O itself; a driver performs the effects:

- `Call(sync_fn, async_fn, kwargs, timeout=None)`: the sync driver calls `sync_fn(**kwargs)`, the
  async driver awaits `async_fn(**kwargs)`. The result is sent back into the flow; an exception
  is thrown into the flow at the `yield`, where it can be handled (a retry) or left to propagate
  (so is a pause for a person, `kaizen.interrupts.NodePaused`; an interrupt, an exit or a
  cancellation is not: it passes the flow by).
  With a `timeout` (seconds), a call that runs past it throws `EffectTimeout` into the flow
  instead (the sync function runs in a worker thread, which is left to finish; its result is
  dropped). A `TimeoutError` the function raises itself is thrown in as it is, never mistaken
  for the deadline.
- `Sleep(seconds)`: `time.sleep` or `await asyncio.sleep`.
- `Each(flows, limit)`: drive several flows concurrently, at most `limit` of their effects at
  once; the result is their return values in order. The sync driver steps every flow in its
  own thread and performs their effects in worker threads; the async driver runs each flow as
  a task. A flow that raises ends `Each` with that error.

`run_sync(flow)` and `await run_async(flow)` drive a flow to its return value. Flows compose with
`yield from`: an agent's exchange yields from a model call's flow, and both drivers serve the
whole conversation. New steps (tool calls, streaming) are new effects or new flow code, never a
second copy of the logic.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import time
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, TypeVar

from kaizen import process

__all__ = ["Call", "Each", "Effect", "EffectTimeout", "Flow", "Sleep", "run_async", "run_sync"]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Call:
    """Call `sync(**kwargs)` (sync driver) or await `async_(**kwargs)` (async driver), within
    `timeout` seconds when one is given (`EffectTimeout` past it)."""

    sync: Callable[..., Any]
    async_: Callable[..., Awaitable[Any]]
    kwargs: Mapping[str, Any]
    timeout: float | None = None


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait `seconds` (blocking the thread on the sync driver, not the loop on the async one)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Each:
    """Drive `flows` concurrently, at most `limit` effects at once; their results in order."""

    flows: Sequence[Generator[Any, Any, Any]]
    limit: int


class EffectTimeout(Exception):
    """A `Call` ran past its timeout (thrown into the flow that yielded it)."""


Effect = Call | Sleep | Each
Flow = Generator[Effect, Any, _T]


@functools.cache
def _threads() -> ThreadPoolExecutor:
    """The worker threads of the sync driver (shared; made on first use)."""
    return ThreadPoolExecutor(max_workers=64, thread_name_prefix="kaizen-flow")


# after a fork the pool's threads are not in the child
process.register("flow", _threads.cache_clear, fork_only=True)


# What a driver lets pass without throwing it into the flow: the process or the task is ending.
# Anything else an effect raises (a `BaseException` that means something to the flow too, such
# as `kaizen.interrupts.NodePaused`, a pause for a person) is thrown in at the flow's `yield`.
_PASSING = (KeyboardInterrupt, SystemExit, GeneratorExit, asyncio.CancelledError)


def _step(flow: Flow[Any], value: Any, error: BaseException | None) -> tuple[Effect | None, Any]:
    """Send `value` (or throw `error`) into `flow`: its next effect, or (None, its result)."""
    try:
        return (flow.send(value) if error is None else flow.throw(error)), None
    except StopIteration as stop:
        return None, stop.value


def run_sync(flow: Flow[_T]) -> _T:
    """Drive `flow` to its return value, performing its effects in this thread (a `Call` with a
    timeout in a worker thread)."""
    value: Any = None
    error: BaseException | None = None
    while True:
        effect, result = _step(flow, value, error)
        if effect is None:
            return result
        value = error = None
        try:
            value = _perform_sync(effect)
        except _PASSING:
            raise
        except BaseException as exc:
            error = exc


def _perform_sync(effect: Effect) -> Any:
    if type(effect) is Call:
        if effect.timeout is None:
            return effect.sync(**effect.kwargs)
        future = _submit(effect)
        done, _ = wait([future], timeout=effect.timeout)
        if not done:
            future.cancel()  # a thread already running is left to finish
            raise _timed_out(effect)
        return future.result()
    if type(effect) is Sleep:
        time.sleep(effect.seconds)
        return None
    if type(effect) is Each:
        return _each_sync(effect)
    raise TypeError(f"a flow yielded {effect!r}, which is not an effect")


def _submit(effect: Call) -> Future[Any]:
    context = contextvars.copy_context()
    return _threads().submit(lambda: context.run(effect.sync, **effect.kwargs))


def _each_sync(each: Each) -> list[Any]:
    """`Each` on the sync driver: the flows step here, their effects run in worker threads."""
    if len(each.flows) == 1:
        return [run_sync(each.flows[0])]
    results: list[Any] = [None] * len(each.flows)
    waiting: list[tuple[int, Effect]] = []  # effects not yet started, in the order yielded
    running: dict[Future[Any], tuple[int, Call | None, float | None]] = {}

    def advance(index: int, value: Any, error: BaseException | None) -> None:
        effect, result = _step(each.flows[index], value, error)
        if effect is None:
            results[index] = result
        else:
            waiting.append((index, effect))

    for index in range(len(each.flows)):
        advance(index, None, None)
    while waiting or running:
        while waiting and len(running) < max(1, each.limit):
            index, effect = waiting.pop(0)
            if type(effect) is Call:
                call: Call | None = effect
                future = _submit(effect)
            else:
                run = contextvars.copy_context().run
                call, future = None, _threads().submit(run, _perform_sync, effect)
            timeout = None if call is None else call.timeout
            deadline = None if timeout is None else time.perf_counter() + timeout
            running[future] = (index, call, deadline)
        deadlines = [d for _, _, d in running.values() if d is not None]
        wait_for = max(0.0, min(deadlines) - time.perf_counter()) if deadlines else None
        done, _ = wait(running, timeout=wait_for, return_when=FIRST_COMPLETED)
        for future in done:
            index, _, _ = running.pop(future)
            error = future.exception()
            advance(index, None if error else future.result(), error)
        now = time.perf_counter()
        for future, (index, call, deadline) in list(running.items()):
            if call is not None and deadline is not None and now >= deadline:
                del running[future]  # the thread runs on; its result is dropped
                future.cancel()
                advance(index, None, _timed_out(call))
    return results


def _timed_out(call: Call) -> EffectTimeout:
    return EffectTimeout(f"over its {call.timeout:g} s timeout")


async def run_async(flow: Flow[_T]) -> _T:
    """Drive `flow` to its return value, awaiting its effects on the running event loop."""
    return await _run_async(flow, None)


async def _run_async(flow: Flow[_T], gate: asyncio.Semaphore | None) -> _T:
    value: Any = None
    error: BaseException | None = None
    while True:
        effect, result = _step(flow, value, error)
        if effect is None:
            return result
        value = error = None
        try:
            if gate is None or type(effect) is Each:
                value = await _perform_async(effect)
            else:
                async with gate:
                    value = await _perform_async(effect)
        except _PASSING:
            raise
        except BaseException as exc:
            error = exc


async def _perform_async(effect: Effect) -> Any:
    if type(effect) is Call:
        if effect.timeout is None:
            return await effect.async_(**effect.kwargs)
        try:
            async with asyncio.timeout(effect.timeout) as scope:
                return await effect.async_(**effect.kwargs)
        except TimeoutError:
            if scope.expired():
                raise _timed_out(effect) from None
            raise  # the function's own TimeoutError
    if type(effect) is Sleep:
        await asyncio.sleep(effect.seconds)
        return None
    if type(effect) is Each:
        if len(effect.flows) == 1:
            return [await _run_async(effect.flows[0], None)]
        gate = asyncio.Semaphore(max(1, effect.limit))
        return list(await asyncio.gather(*(_run_async(f, gate) for f in effect.flows)))
    raise TypeError(f"a flow yielded {effect!r}, which is not an effect")
