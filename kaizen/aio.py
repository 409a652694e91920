"""Event loops, in one place: detecting a running loop, and running a coroutine from sync code.

- `running_loop()` is the one way Kaizen asks "is an event loop running in this thread?".
- `run_blocking(coro)` runs a coroutine to completion from synchronous code and returns its
  result. With no loop running in this thread it uses the thread's own reusable loop (a new loop
  per call costs ~0.2 ms); when one is running (a notebook cell, a node that calls `execute()`),
  it runs the coroutine on a fresh loop in a new thread and waits, so the caller's loop is never
  re-entered. Either way the caller's context variables are visible inside.
- `call_in_thread(fn)` runs a blocking call in a fresh thread and waits for it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["call_in_thread", "run_blocking", "running_loop"]

_T = TypeVar("_T")
_local = threading.local()


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread, or None."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None  # returned outside the except clause's body: no exception context leaks


def run_blocking(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run `coro` to completion from synchronous code (see the module docstring)."""
    if running_loop() is None:
        return _run_on_thread_loop(coro)
    context = contextvars.copy_context()
    return call_in_thread(lambda: context.run(asyncio.run, coro), "kaizen:run-blocking")


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


def _run_on_thread_loop(coro: Coroutine[Any, Any, _T]) -> _T:
    box: list[_T] = []

    async def main() -> None:
        # The result goes through `box`, not the task: asyncio.Runner formats its main task
        # (result included) after every run, which would cost a repr of the whole result.
        box.append(await coro)

    _thread_runner().run(main(), context=contextvars.copy_context())
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
