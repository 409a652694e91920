"""Executors: the ways a ready node is run. The driver hands every ready node to one of them.

- `Inline` calls a sync node's `run()` right here, in the driver's thread: chosen for a sync node
  that is alone (nothing else ready or running) when the runtime owns the loop (`execute()`),
  so a chain of sync nodes never hops threads.
- `Threads` calls `run()` in the runtime's worker pool: the other sync nodes.
- `InlineAsync` awaits `arun()` in the driver's own task: an async node that is alone.
- `Tasks` awaits `arun()` on the event loop; the first step runs at once, and only a node that
  suspends becomes a task: other async nodes.
- `Supervised` runs each attempt on a thread or the loop, under the node's timeout and retries
  (`kaizen.retrying.next_attempt`): nodes whose `ExecutionPolicy` has a timeout or retries.

`choose(p, alone)` picks one; the fast paths are these choices, not branches of the driver.
Whichever runs it, a node is called by `kaizen.runtime.attempt` (`run_attempt` for a sync node,
`arun_attempt` for an async one): context, middleware, the call and its outcome, in one place.

Every executor reports to the driver (a `Reporter`): `started(index, time)` when the node really
begins, `retrying(...)` before each retry, and last `finished(outcome)`. Executors on the
driver's own thread report directly; worker threads report through the run's `Inbox`, which
wakes the driver's loop once per batch. A node begins only with one of the run's `Slots` (its
`max_concurrency`), taken by the executor at the moment the node begins: ready sync nodes are
queued to the pool at once and take their slot when a worker starts them, so a wide fan-out
needs no round trip to the driver per node. Retry and timeout policy live in `Supervised` alone,
for every kind of node. A sync node cannot be interrupted: on a timeout it is abandoned in its
own daemon thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from functools import cached_property
from time import time as now
from typing import Any, Protocol

from kaizen.aio import resume
from kaizen.retrying import next_attempt
from kaizen.runtime.attempt import (
    Job,
    Outcome,
    arun_attempt,
    failed,
    node_retry_policy,
    run_attempt,
)
from kaizen.runtime.pool import Slots, WorkerPool
from kaizen.workflow.plan import NodePlan

__all__ = [
    "Executor",
    "ExecutorSet",
    "Executors",
    "Inbox",
    "Job",
    "OnTheLoop",
    "Outcome",
    "Reporter",
    "Started",
    "Submitter",
]


# -- what executors handle and report ------------------------------------------------------------


@dataclass(slots=True)
class Started:
    index: int
    time: float


Report = Started | Outcome


class Reporter(Protocol):
    """What executors tell the driver (on the driver's thread)."""

    def started(self, index: int, time: float) -> None: ...

    def retrying(self, index: int, attempt: int, error: BaseException, wait: float) -> None: ...

    def finished(self, outcome: Outcome) -> None: ...


@dataclass(slots=True, eq=False)
class Inbox:
    """Where worker threads report to the driver; the driver drains it and waits on it. A batch
    of reports wakes the loop once. `loop` is set when the run first needs its event loop."""

    loop: asyncio.AbstractEventLoop | None = None
    items: deque[Report] = field(default_factory=deque)
    waiter: asyncio.Future[None] | None = None
    wake_pending: bool = False

    def put_threadsafe(self, item: Report) -> None:
        """From a worker thread."""
        self.items.append(item)
        if not self.wake_pending and self.loop is not None:
            self.wake_pending = True
            with contextlib.suppress(RuntimeError):  # the loop is gone: the run was abandoned
                self.loop.call_soon_threadsafe(self.wake)

    def wake(self) -> None:
        """Resume the driver if it waits (loop thread only)."""
        self.wake_pending = False
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        """Until there is something to read, or `wake()` (at once if there is something)."""
        if self.items:
            return
        assert self.loop is not None
        self.waiter = self.loop.create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None


# -- the executors -------------------------------------------------------------------------------


class Inline:
    """Calls a sync node in the driver's own thread. Only for a node that is alone, so no slot
    is needed (nothing else runs) and nothing waits behind it.

    Every executor's `submit(job)` returns None, or (`InlineAsync` only) a coroutine the driver
    must await before going on."""

    def __init__(self, report: Reporter) -> None:
        self.report = report

    def submit(self, job: Job) -> None:
        started = job.started = now()
        self.report.started(job.plan.index, started)
        self.report.finished(run_attempt(job))


class InlineAsync:
    """Runs an async node that is alone in the driver's own task: its coroutine is stepped right
    here and, if it suspends, `submit` returns what the driver awaits (nothing else could run
    meanwhile). No task, no context copy, no slot."""

    def __init__(self, report: Reporter) -> None:
        self.report = report

    def submit(self, job: Job) -> Coroutine[Any, Any, None] | None:
        started = job.started = now()
        self.report.started(job.plan.index, started)
        coro = arun_attempt(job)
        try:
            pending = coro.send(None)
        except StopIteration as done:
            self.report.finished(done.value)
            return None
        return self._rest(coro, pending)

    async def _rest(self, coro: Coroutine[Any, Any, Outcome], pending: Any) -> None:
        outcome: Outcome = await resume(coro, pending)
        self.report.finished(outcome)


class Threads:
    """Runs sync nodes in the runtime's worker pool; each takes its slot when a worker starts it."""

    def __init__(self, pool: WorkerPool, slots: Slots, inbox: Inbox, context: contextvars.Context):
        self.pool = pool
        self.slots = slots
        self.inbox = inbox
        self.context = context

    def submit(self, job: Job) -> None:
        self.pool.submit(self._work, job)

    def _work(self, job: Job) -> None:
        if self.slots.acquire(job, self):
            self._run(job)

    def resume(self, job: Job) -> None:
        """A slot was handed to parked `job` (by whichever thread freed it): queue it again."""
        self.pool.submit(self._resumed, job)

    def _resumed(self, job: Job) -> None:
        if self.slots.resume(job):
            self._run(job)

    def _run(self, job: Job) -> None:
        inbox = self.inbox
        inbox.put_threadsafe(Started(job.plan.index, job.started))  # type: ignore[arg-type]
        outcome = _in_thread(self.context.copy(), job)
        self.slots.release()
        inbox.put_threadsafe(outcome)

    def attempt(self, job: Job, *, dedicated: bool) -> asyncio.Future[Outcome]:
        """One supervised attempt (its slot is the supervisor's): a loop future of its outcome.
        `dedicated`: a thread of its own, so that a timed-out attempt can be abandoned."""
        loop = self.inbox.loop
        assert loop is not None
        future: asyncio.Future[Outcome] = loop.create_future()
        context = self.context.copy()

        def resolve(outcome: Outcome) -> None:
            if not future.done():  # else timed out or cancelled: the outcome is discarded
                future.set_result(outcome)

        def work() -> None:
            if self.slots.closed:
                return
            outcome = _in_thread(context, job)
            with contextlib.suppress(RuntimeError):  # the loop is gone: attempt abandoned
                loop.call_soon_threadsafe(resolve, outcome)

        if dedicated:
            name = f"kaizen:{job.plan.node_id}"
            threading.Thread(target=work, name=name, daemon=True).start()
        else:
            self.pool.submit(work)
        return future


class OnTheLoop:
    """What executors whose nodes begin on the event loop share: a node takes a slot or is
    parked, and a parked node is started on the loop once a slot is handed to it."""

    slots: Slots
    inbox: Inbox

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        loop = self.inbox.loop
        assert loop is not None, "loop executors run only once the run has its event loop"
        return loop

    def submit(self, job: Job) -> None:
        if self.slots.acquire(job, self):
            self._start(job)

    def resume(self, job: Job) -> None:
        """A slot was handed to parked `job`, maybe from a worker thread: start it on the loop."""
        self.loop.call_soon_threadsafe(self._resumed, job)

    def _resumed(self, job: Job) -> None:
        if self.slots.resume(job):
            self._start(job)

    def _start(self, job: Job) -> None:
        raise NotImplementedError


class Tasks(OnTheLoop):
    """Runs async nodes on the loop. The first step runs at once (as Python 3.12's eager tasks
    do): a node that finishes without suspending never becomes a task."""

    def __init__(self, slots: Slots, report: Reporter, inbox: Inbox, context: contextvars.Context):
        self.slots = slots
        self.report = report
        self.inbox = inbox
        self.context = context
        self.tasks: dict[int, asyncio.Task[Any]] = {}

    def _start(self, job: Job) -> None:
        self.report.started(job.plan.index, job.started)  # type: ignore[arg-type]
        context = self.context.copy()
        coro = arun_attempt(job)
        try:
            pending = context.run(coro.send, None)
        except StopIteration as done:
            self._finished(done.value)
            return
        self.track(job.plan, _finish(coro, pending), context)

    def track(
        self, p: NodePlan, coro: Coroutine[Any, Any, Outcome], context: contextvars.Context
    ) -> None:
        """Run `coro` (it reports a node's outcome) as a task that fail-fast can cancel."""
        task = self.loop.create_task(coro, name=f"kaizen:{p.node_id}", context=context)
        self.tasks[p.index] = task
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Outcome]) -> None:
        if task.cancelled():
            return  # the driver stopped the run and recorded the node already
        outcome = task.result()
        self.tasks.pop(outcome.index, None)
        self._finished(outcome)

    def _finished(self, outcome: Outcome) -> None:
        self.slots.release()
        self.report.finished(outcome)
        self.inbox.wake()  # when this runs from a loop callback, the driver has news

    def cancel_all(self) -> list[asyncio.Task[Any]]:
        """Cancel every running task; returns them (they get a moment to clean up)."""
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        self.tasks.clear()
        return tasks


class Supervised(OnTheLoop):
    """Runs a node under its `ExecutionPolicy`: a timeout per attempt and retries with backoff
    (`kaizen.retrying.next_attempt`), whether the node is sync or async. Holds one slot for all
    its attempts."""

    def __init__(self, threads: Threads, tasks: Tasks) -> None:
        self.threads = threads
        self.tasks = tasks
        self.slots = tasks.slots
        self.inbox = tasks.inbox

    def _start(self, job: Job) -> None:
        self.tasks.report.started(job.plan.index, job.started)  # type: ignore[arg-type]
        self.tasks.track(job.plan, self._supervise(job), self.tasks.context.copy())

    async def _supervise(self, job: Job) -> Outcome:
        """Attempts until one succeeds or the policy says stop: the last one's outcome."""
        p = job.plan
        policy = node_retry_policy(p.node.policy)
        number = 1
        while True:
            outcome = await self._attempt(job.again(number))
            if outcome.error is None:
                return outcome
            wait = next_attempt(policy, number, outcome.error)
            if wait is None:
                return outcome
            self.tasks.report.retrying(p.index, number, outcome.error, wait)
            if wait:
                await asyncio.sleep(wait)
            number += 1

    async def _attempt(self, job: Job) -> Outcome:
        """One attempt, under the timeout (a `TimeoutError` outcome when it runs past it)."""
        p = job.plan
        timeout = p.node.policy.timeout
        if p.is_async:
            attempt: Any = arun_attempt(job)
        else:
            attempt = self.threads.attempt(job, dedicated=timeout is not None)
        if timeout is None:
            outcome: Outcome = await attempt
            return outcome
        try:
            return await asyncio.wait_for(attempt, timeout)
        except TimeoutError:
            error = TimeoutError(
                f"node {p.node_id!r} attempt {job.attempt} timed out after {timeout:g} s"
            )
            return failed(job, error)


Executor = Inline | InlineAsync | Threads | Tasks | Supervised


class Submitter(Protocol):
    """What the driver hands a ready node to: `submit(job)` returns None, or a coroutine the
    driver must await before going on."""

    def submit(self, job: Job) -> Coroutine[Any, Any, None] | None: ...


class ExecutorSet(Protocol):
    """A run's executors as the driver sees them: the choice of one per node, the one that
    runs a node in the driver's own thread (`inline`: the driver needs no event loop for it),
    and cancelling whatever still runs when the run stops (returns the tasks to wait for)."""

    @property
    def inline(self) -> Submitter | None: ...

    def choose(self, p: NodePlan, alone: bool) -> Submitter: ...

    def cancel_all(self) -> list[asyncio.Task[Any]]: ...


class Executors:
    """A run's executors, and the choice of one per node. Those a run may never need (threads,
    tasks, supervision) are made on first use: most of a short run's fixed cost otherwise."""

    def __init__(
        self,
        pool: WorkerPool,
        slots: Slots,
        report: Reporter,
        inbox: Inbox,
        context: contextvars.Context,
        inline_allowed: bool,
    ) -> None:
        self.inline = Inline(report)
        self.inline_async = InlineAsync(report)
        self.inline_allowed = inline_allowed
        self._parts = (pool, slots, report, inbox, context)

    @cached_property
    def threads(self) -> Threads:
        pool, slots, _, inbox, context = self._parts
        return Threads(pool, slots, inbox, context)

    @cached_property
    def tasks(self) -> Tasks:
        _, slots, report, inbox, context = self._parts
        return Tasks(slots, report, inbox, context)

    @cached_property
    def supervised(self) -> Supervised:
        return Supervised(self.threads, self.tasks)

    def choose(self, p: NodePlan, alone: bool) -> Executor:
        """Supervised for a node with a policy; an async node in the driver's task when it is
        `alone`, else as a task; a sync node inline when it is `alone` and the runtime owns the
        loop, else in the worker threads."""
        if p.needs_policy:
            return self.supervised
        if p.is_async:
            return self.inline_async if alone else self.tasks
        if alone and self.inline_allowed:
            return self.inline
        return self.threads

    def cancel_all(self) -> list[asyncio.Task[Any]]:
        """Cancel the running async nodes (sync ones cannot be interrupted: they are abandoned)."""
        tasks: Tasks | None = self.__dict__.get("tasks")  # made only if some node needed it
        return tasks.cancel_all() if tasks is not None else []


def _in_thread(context: contextvars.Context, job: Job) -> Outcome:
    """A sync node's attempt in a worker thread, in `context`: whatever escapes it (an
    interrupt) is its outcome too, so no worker thread dies silently."""
    try:
        return context.run(run_attempt, job)
    except BaseException as exc:
        return failed(job, exc)


async def _finish(coro: Coroutine[Any, Any, Outcome], pending: Any) -> Outcome:
    """The rest of a node coroutine whose first step ran eagerly and yielded `pending`."""
    outcome: Outcome = await resume(coro, pending)
    return outcome
