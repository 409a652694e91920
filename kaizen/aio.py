"""Event loops, in one place: detecting a running loop, and running a coroutine from sync code.

- `running_loop()` is the one way Kaizen asks "is an event loop running in this thread?".
- `run_blocking(coro)` runs a coroutine to completion from synchronous code and returns its
  result. With no loop running in this thread it first steps the coroutine right here, with no
  loop at all: a run whose nodes all run inline finishes that way (an event loop per call costs
  ~0.1 ms). A coroutine that needs a loop says so by awaiting `NEED_LOOP`, and continues on this
  thread's reusable loop. When a loop is already running here (a notebook cell, a node that
  calls `execute()`), the coroutine runs on a fresh loop in a new thread and the caller waits,
  so its loop is never re-entered. Either way the caller's context variables are visible inside,
  and what the coroutine sets in them stays inside.
- `resume(coro, pending)` is an awaitable that continues a coroutine already stepped by hand.
- `call_in_thread(fn)` runs a blocking call in a fresh thread and waits for it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import threading
import weakref
from collections.abc import Callable, Coroutine, Generator
from typing import Any, TypeVar

__all__ = ["NEED_LOOP", "call_in_thread", "resume", "run_blocking", "running_loop"]

_T = TypeVar("_T")
_local = threading.local()


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread, or None."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None  # returned outside the except clause's body: no exception context leaks


class _NeedLoop:
    """Awaited by a coroutine that must continue on an event loop (see `run_blocking`)."""

    def __await__(self) -> Generator[Any, Any, None]:
        yield _NEED_LOOP_SIGNAL


_NEED_LOOP_SIGNAL = object()
NEED_LOOP = _NeedLoop()


def run_blocking(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run `coro` to completion from synchronous code (see the module docstring)."""
    context = contextvars.copy_context()
    if running_loop() is not None:
        return call_in_thread(lambda: context.run(asyncio.run, coro), "kaizen:run-blocking")
    try:
        pending = context.run(coro.send, None)
    except StopIteration as done:
        return done.value
    if pending is not _NEED_LOOP_SIGNAL:
        coro.close()
        raise RuntimeError(
            "a coroutine run by run_blocking awaited a loop-bound object before NEED_LOOP"
        )
    return _run_on_thread_loop(resume(coro, None), context)


def call_in_thread(call: Callable[[], _T], thread_name: str = "kaizen:call") -> _T:
    """Run `call` in a fresh thread and wait for it; what it raises is raised here."""
    box: list[_T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            box.append(call())
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=target, name=thread_name)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return box[0]


def _run_on_thread_loop(awaitable: Any, context: contextvars.Context) -> Any:
    box: list[Any] = []

    async def main() -> None:
        # The result goes through `box`, not the task: asyncio.Runner formats its main task
        # (result included) after every run, which would cost a repr of the whole result.
        box.append(await awaitable)

    _thread_runner().run(main(), context=context)
    return box[0]


def _thread_runner() -> asyncio.Runner:
    """This thread's reusable event loop runner, closed when the thread ends (or at exit)."""
    runner: asyncio.Runner | None = getattr(_local, "runner", None)
    if runner is None:
        runner = asyncio.Runner()
        _local.runner = runner
        thread = threading.current_thread()
        if thread is threading.main_thread():
            atexit.register(_close_runner, runner)
        else:
            weakref.finalize(thread, _close_runner, runner)
    return runner


def _close_runner(runner: asyncio.Runner) -> None:
    """Close a thread's runner, cancelling what libraries left on its loop (litellm's workers)."""
    if running_loop() is None:
        runner.close()
    else:  # finalised on a thread whose own loop runs: no cleanup run possible, just close it
        runner.get_loop().close()


class resume:
    """An awaitable that continues `coro`, whose last step (taken by hand) yielded `pending`:
    `pending` goes to the task running this, and what comes back is sent on into `coro`."""

    __slots__ = ("coro", "pending")

    def __init__(self, coro: Coroutine[Any, Any, Any], pending: Any) -> None:
        self.coro = coro
        self.pending = pending

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, pending = self.coro, self.pending
        while True:
            try:
                sent = yield pending
            except GeneratorExit:  # this awaitable is being closed: close the coroutine too
                coro.close()
                raise
            except BaseException as exc:  # cancellation, thrown in by the task
                try:
                    pending = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    pending = coro.send(sent)
                except StopIteration as stop:
                    return stop.value
