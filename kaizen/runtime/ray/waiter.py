"""The waiter: one thread per `RayRuntime` calling `ray.wait` on every outstanding ObjectRef,
whatever its run, and handing the finished (and the timed-out) to their executor on its run's
event loop (`RayExecutor.settle` / `expire`). `ray` is imported lazily.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable
from time import time as now
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kaizen.runtime.ray.executor import RayExecutor

__all__ = ["Waiter"]

_POLL = 0.01  # seconds: how soon the waiter notices refs submitted while it waits on others


class Waiter:
    """One thread per runtime calling `ray.wait` on every outstanding ref, whatever its run;
    finished and timed-out refs go to their executor on its run's event loop."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._watched: dict[Any, tuple[RayExecutor, float | None]] = {}
        self._closed = False
        self._thread: threading.Thread | None = None

    def watch(self, ref: Any, executor: RayExecutor, deadline: float | None) -> None:
        with self._cond:
            self._watched[ref] = (executor, deadline)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="kaizen:ray", daemon=True)
                self._thread.start()
            self._cond.notify()

    def forget(self, refs: Iterable[Any]) -> None:
        with self._cond:
            for ref in refs:
                self._watched.pop(ref, None)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _work(self) -> None:
        import ray

        while True:
            with self._cond:
                while not self._watched and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                refs = list(self._watched)
                deadlines = [d for _, d in self._watched.values() if d is not None]
            timeout = _POLL
            if deadlines:
                timeout = max(0.0, min(timeout, min(deadlines) - now()))
            try:
                ready, rest = ray.wait(refs, num_returns=1, timeout=timeout)
                if ready and rest:
                    more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
                    ready.extend(more)
            except Exception:  # Ray shut down under us: the runs are lost with it
                if not ray.is_initialized():
                    with self._cond:
                        self._watched.clear()
                        self._thread = None  # the next watch (Ray started again) starts one
                    return
                continue
            moment = now()
            settled: dict[RayExecutor, list[Any]] = {}
            expired: list[tuple[RayExecutor, Any]] = []
            with self._cond:
                for ref in ready:
                    entry = self._watched.pop(ref, None)
                    if entry is not None:
                        settled.setdefault(entry[0], []).append(ref)
                if deadlines:
                    for ref, (executor, deadline) in list(self._watched.items()):
                        if deadline is not None and deadline <= moment:
                            del self._watched[ref]
                            expired.append((executor, ref))
            for executor, done in settled.items():
                _call_on_loop(executor, executor.settle, done)
            for executor, ref in expired:
                _call_on_loop(executor, executor.expire, ref)


def _call_on_loop(executor: RayExecutor, call: Callable[..., None], argument: Any) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is gone: the run was abandoned
        executor.loop.call_soon_threadsafe(call, argument)
