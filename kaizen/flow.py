"""One flow, two drivers: logic that talks to the outside world, written once, run sync or async.

A *flow* is a generator that yields effects and receives their results (the shape of httpx's
`auth_flow`). The flow holds every decision (what to send, whether to retry, how to read the
reply) and performs no I/O itself; a driver performs the effects:

- `Call(sync_fn, async_fn, kwargs)`: the sync driver calls `sync_fn(**kwargs)`, the async driver
  awaits `async_fn(**kwargs)`. The result is sent back into the flow; an exception is thrown
  into the flow at the `yield`, where it can be handled (a retry) or left to propagate.
- `Sleep(seconds)`: `time.sleep` or `await asyncio.sleep`.

`run_sync(flow)` and `await run_async(flow)` drive a flow to its return value. Flows compose with
`yield from`: an agent's exchange yields from a model call's flow, and both drivers serve the
whole conversation. New steps (tool calls, streaming) are new effects or new flow code, never a
second copy of the logic.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["Call", "Effect", "Flow", "Sleep", "run_async", "run_sync"]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Call:
    """Call `sync(**kwargs)` (sync driver) or await `async_(**kwargs)` (async driver)."""

    sync: Callable[..., Any]
    async_: Callable[..., Awaitable[Any]]
    kwargs: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait `seconds` (blocking the thread on the sync driver, not the loop on the async one)."""

    seconds: float


Effect = Call | Sleep
Flow = Generator[Effect, Any, _T]


def run_sync(flow: Flow[_T]) -> _T:
    """Drive `flow` to its return value, performing its effects in this thread."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = flow.send(value) if error is None else flow.throw(error)
        except StopIteration as stop:
            return stop.value
        value = error = None
        try:
            if type(effect) is Call:
                value = effect.sync(**effect.kwargs)
            elif type(effect) is Sleep:
                time.sleep(effect.seconds)
            else:
                raise TypeError(f"a flow yielded {effect!r}, which is not an effect")
        except Exception as exc:
            error = exc


async def run_async(flow: Flow[_T]) -> _T:
    """Drive `flow` to its return value, awaiting its effects on the running event loop."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = flow.send(value) if error is None else flow.throw(error)
        except StopIteration as stop:
            return stop.value
        value = error = None
        try:
            if type(effect) is Call:
                value = await effect.async_(**effect.kwargs)
            elif type(effect) is Sleep:
                await asyncio.sleep(effect.seconds)
            else:
                raise TypeError(f"a flow yielded {effect!r}, which is not an effect")
        except Exception as exc:
            error = exc
