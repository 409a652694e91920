"""The one background event loop every Kaizen MCP session lives on.

Each MCP session is entered and exited by one task on this loop (anyio's cancel scopes must be
left by the task that entered them: python-sdk #79, #577, #671). Callers on any thread or event
loop hand coroutines over with `submit` and wait for them: `wait` blocks a thread, `await_`
suspends a coroutine on the caller's own loop. The loop runs in one daemon thread, started on
first use; at interpreter exit the registered closers run on it, then it stops.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from kaizen import process

__all__ = ["at_exit", "await_", "in_loop_thread", "submit", "submit_if_running", "wait"]

_T = TypeVar("_T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_closers: list[Callable[[], Awaitable[None]]] = []
_EXIT_GRACE = 10.0  # seconds the exit closers may take together


def _running_loop() -> asyncio.AbstractEventLoop:
    global _loop, _thread
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            started = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(started.set)
                loop.run_forever()

            thread = threading.Thread(target=run, name="kaizen:mcp", daemon=True)
            thread.start()
            started.wait()
            _loop, _thread = loop, thread
            atexit.register(_shutdown)
        return _loop


def in_loop_thread() -> bool:
    """True on the background loop's own thread (where blocking on it would deadlock)."""
    return _thread is not None and threading.current_thread() is _thread


def submit(coro: Coroutine[Any, Any, _T]) -> concurrent.futures.Future[_T]:
    """Run `coro` as a task on the background loop."""
    return asyncio.run_coroutine_threadsafe(coro, _running_loop())


def wait(coro: Coroutine[Any, Any, _T], timeout: float | None) -> _T:
    """Run `coro` on the background loop and block this thread for its result. `timeout` is a
    backstop (the coroutine enforces its own limits): past it the task is cancelled and
    `TimeoutError` raised."""
    if in_loop_thread():
        coro.close()
        raise RuntimeError(
            "a blocking MCP call was made on Kaizen's MCP loop itself; use the async form (await)"
        )
    future = submit(coro)
    try:
        return future.result(timeout)
    except TimeoutError:  # concurrent.futures.TimeoutError is TimeoutError
        if future.done():  # the coroutine's own timeout error
            raise
        future.cancel()
        raise TimeoutError(f"no answer within {timeout:.0f}s") from None
    except BaseException:
        future.cancel()  # KeyboardInterrupt while waiting: stop the work too
        raise


def submit_if_running(coro: Coroutine[Any, Any, Any]) -> None:
    """Run `coro` on the background loop if it is running (never starts one); else drop it."""
    loop = _loop
    if loop is None or loop.is_closed() or not loop.is_running():
        coro.close()
        return
    try:
        asyncio.run_coroutine_threadsafe(coro, loop)
    except RuntimeError:  # closed meanwhile
        coro.close()


async def await_(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run `coro` on the background loop and await its result from any other loop (cancelling
    the awaiting task cancels the work)."""
    if in_loop_thread():
        return await coro
    return await asyncio.wrap_future(submit(coro))


def at_exit(closer: Callable[[], Awaitable[None]]) -> Callable[[], None]:
    """Run `closer()` on the loop at interpreter exit (bounded); returns a function that
    unregisters it."""
    _closers.append(closer)

    def remove() -> None:
        if closer in _closers:
            _closers.remove(closer)

    return remove


def _shutdown() -> None:
    loop = _loop
    if loop is None or loop.is_closed() or not loop.is_running():
        return

    async def close_all() -> None:
        closers = list(_closers)
        _closers.clear()
        await asyncio.gather(*(closer() for closer in closers), return_exceptions=True)

    future = asyncio.run_coroutine_threadsafe(close_all(), loop)
    try:
        future.result(_EXIT_GRACE)
    except Exception:  # exiting anyway: what did not close in time is left to the OS
        future.cancel()
    loop.call_soon_threadsafe(loop.stop)
    if _thread is not None:
        _thread.join(2.0)


def _forget_loop() -> None:
    """After a fork: the loop's thread and sessions are the parent's; the child starts its own."""
    global _loop, _thread
    _loop = None
    _thread = None
    _closers.clear()


process.register("mcp.loop", _forget_loop, fork_only=True)
