"""Threads for sync nodes: the runtime's `WorkerPool`, and `Slots`, a run's concurrency bound.

`WorkerPool` belongs to a runtime and outlives its runs. `Slots` belongs to one run: at most
`limit` of its nodes run at once, whichever executor runs them. A node that finds no free slot is
*parked* with a way to resume it; whoever frees the next slot resumes it (the slot passes to it
directly). `close()` (fail-fast, cancellation) drops the parked nodes and lets no other start.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["Slots", "WorkerPool"]


class Beginning(Protocol):
    """A node about to begin: `begin()` marks the moment (under the slots' lock)."""

    def begin(self) -> None: ...


class Resumer(Protocol):
    """An executor that parked a node: `resume(job)` starts it once a slot is handed to it."""

    def resume(self, job: Any) -> None: ...


class Slots:
    """A run's `max_concurrency`, shared by every executor, any thread.

    `closed` is True once the run stopped (read it freely; it only ever turns True)."""

    __slots__ = ("_free", "_lock", "_parked", "closed")

    def __init__(self, limit: int) -> None:
        self._lock = threading.Lock()
        self._free = limit
        self._parked: deque[tuple[Resumer, Beginning]] = deque()
        self.closed = False

    def acquire(self, job: Beginning, owner: Resumer) -> bool:
        """Take a slot and `job.begin()` (True); or, none being free, park the job with its
        executor, whose `resume(job)` is called once a slot is handed to it (False). After
        `close()`: False, nothing parked.

        `begin` runs under the lock, so a `close()` either comes first (the node never begins)
        or finds it begun."""
        with self._lock:
            if self.closed:
                return False
            if self._free:
                self._free -= 1
                job.begin()
                return True
            self._parked.append((owner, job))
            return False

    def resume(self, job: Beginning) -> bool:
        """For a parked job given a slot by `release`: `job.begin()` (True), unless the run has
        stopped meanwhile (the slot is freed, False)."""
        with self._lock:
            if self.closed:
                self._free += 1
                return False
            job.begin()
            return True

    def release(self) -> None:
        """Free a slot, or hand it straight to the oldest parked job."""
        with self._lock:
            if not self._parked or self.closed:
                self._free += 1
                return
            owner, job = self._parked.popleft()
        owner.resume(job)

    def close(self) -> None:
        """No node begins any more; parked jobs are dropped."""
        with self._lock:
            self.closed = True
            self._parked.clear()


class WorkerPool:
    """Daemon threads that run submitted calls; at most `max_workers`, started on demand.

    Leaner than `ThreadPoolExecutor`: no `Future` per call (the call reports its own outcome), and
    workers wake each other in a chain: a submit wakes one worker, and a worker that takes a call
    while more are queued wakes one more. Trivial calls are then drained by one thread without a
    thread switch per call, while blocking calls still spread over the threads within a few
    wake-ups. Daemon threads, so a sync node abandoned after a timeout never blocks exit.
    """

    def __init__(self, max_workers: int) -> None:
        self.max_workers = max_workers
        self._calls: deque[tuple[Callable[..., None], tuple[Any, ...]]] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._idle = 0  # workers waiting and not yet woken
        self._waking = False  # an idle worker was woken and has not taken a call yet
        self._starting = 0  # threads started that have not taken a call yet
        self._threads = 0
        self._closed = False

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        with self._cond:
            self._calls.append((fn, args))
            self._bring_helper()

    def shutdown(self) -> None:
        """Let every worker exit once the calls already queued are done."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _bring_helper(self) -> None:
        """Wake an idle worker unless one is already waking, else start threads while calls
        outnumber the threads being started (lock held)."""
        if self._idle:
            if not self._waking:
                self._idle -= 1
                self._waking = True
                self._cond.notify()
            return
        # A node running a nested workflow holds its worker while it waits for the nested
        # nodes: give those a thread beyond the limit instead of deadlocking.
        nested = getattr(_worker_state, "busy", False)
        if self._starting < len(self._calls) and (self._threads < self.max_workers or nested):
            self._threads += 1
            self._starting += 1
            threading.Thread(
                target=self._work, name=f"kaizen-worker-{self._threads}", daemon=True
            ).start()

    def _work(self) -> None:
        cond, calls = self._cond, self._calls
        cond.acquire()
        self._starting -= 1
        try:
            while True:
                while not calls:
                    if self._closed:
                        self._threads -= 1
                        return
                    self._idle += 1
                    cond.wait()
                    self._waking = False
                fn, args = calls.popleft()
                if calls:
                    self._bring_helper()
                cond.release()
                _worker_state.busy = True
                try:
                    fn(*args)  # reports its own outcome and never raises
                finally:
                    _worker_state.busy = False
                    del fn, args
                    cond.acquire()
        finally:
            cond.release()


_worker_state = threading.local()
