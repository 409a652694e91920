"""Executors: the ways a ready node is run. The driver hands every ready node to one of them.

- `Inline` calls a sync node's `run()` right here, in the driver's thread: chosen for a sync node
  that is alone (nothing else ready or running) when the runtime owns the loop (`execute()`),
  so a chain of sync nodes never hops threads.
- `Threads` calls `run()` in the runtime's worker pool: the other sync nodes.
- `Tasks` awaits `arun()` on the event loop; the first step runs at once, and only a node that
  suspends becomes a task: async nodes.
- `Supervised` runs each attempt on a thread or the loop, under the node's timeout and retries
  (tenacity): nodes whose `ExecutionPolicy` has a timeout or retries.

`choose(p, alone)` picks one; the fast paths are these choices, not branches of the driver.

Every executor reports to the driver through the run's `Inbox`, from whatever thread it is on:
`Started(index, time)` when the node really begins, `Retrying(...)` before each retry, and last
the `Outcome`. A node begins only with one of the run's `Slots` (its `max_concurrency`), taken by
the executor at the moment the node begins: ready sync nodes are queued to the pool at once and
take their slot when a worker starts them, so a wide fan-out needs no round trip to the driver
per node. Retry, timeout and failure policy live in `Supervised` alone, for every kind of node.
A sync node cannot be interrupted: on a timeout it is abandoned in its own daemon thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections import deque
from collections.abc import Coroutine, Generator, Mapping
from dataclasses import dataclass, field
from time import time as now
from typing import Any

from kaizen.errors import VetoError
from kaizen.runtime.context import NodeContext, node_context_var
from kaizen.runtime.pool import Slots, WorkerPool
from kaizen.workflow.plan import NodePlan

__all__ = [
    "Executors",
    "Inbox",
    "Job",
    "Outcome",
    "Retrying",
    "Started",
]


# -- what executors handle and report ------------------------------------------------------------


@dataclass(slots=True, eq=False)
class Job:
    """One node to run: its plan, its inputs, its context (attempt 1; `Supervised` makes one
    per attempt), and when it began (set under the slots' lock, so fail-fast knows)."""

    plan: NodePlan
    inputs: dict[str, Any]
    context: NodeContext
    started: float | None = None

    def begin(self) -> None:
        self.started = now()


@dataclass(slots=True)
class Started:
    index: int
    time: float


@dataclass(slots=True)
class Retrying:
    index: int
    attempt: int  # the attempt that failed
    error: BaseException
    wait: float


@dataclass(slots=True)
class Outcome:
    """How a node ended: its outputs, or the error of its last attempt."""

    index: int
    outputs: dict[str, Any] | None
    error: BaseException | None
    started: float
    finished: float
    attempts: int = 1


Report = Started | Retrying | Outcome


@dataclass(slots=True, eq=False)
class Inbox:
    """Where executors report to the driver, from any thread; the driver drains and waits on it.
    A batch of reports from worker threads wakes the loop once."""

    loop: asyncio.AbstractEventLoop
    items: deque[Report] = field(default_factory=deque)
    waiter: asyncio.Future[None] | None = None
    wake_pending: bool = False

    def put(self, item: Report) -> None:
        """From the loop's own thread."""
        self.items.append(item)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def put_threadsafe(self, item: Report) -> None:
        """From any other thread."""
        self.items.append(item)
        if not self.wake_pending:
            self.wake_pending = True
            with contextlib.suppress(RuntimeError):  # the loop is gone: the run was abandoned
                self.loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        self.wake_pending = False
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        """Until there is something to read (at once if there is)."""
        if self.items:
            return
        self.waiter = self.loop.create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None


# -- calling a node: the one sync and the one async way ------------------------------------------


def run_sync_node(job: Job) -> dict[str, Any]:
    """Call the node's `run()` with its context set; its checked outputs, or what it raised."""
    token = node_context_var.set(job.context)
    try:
        return checked(job.plan, job.plan.node.run(**job.inputs))
    finally:
        node_context_var.reset(token)


async def run_async_node(job: Job) -> dict[str, Any]:
    """Await the node's `arun()` with its context set; its checked outputs, or what it raised."""
    token = node_context_var.set(job.context)
    try:
        return checked(job.plan, await job.plan.node.arun(**job.inputs))
    finally:
        node_context_var.reset(token)


def call_sync(job: Job) -> Outcome:
    started = job.started if job.started is not None else now()
    try:
        outputs = run_sync_node(job)
    except Exception as exc:
        return Outcome(job.plan.index, None, exc, started, now(), job.context.attempt)
    return Outcome(job.plan.index, outputs, None, started, now(), job.context.attempt)


async def call_async(job: Job) -> Outcome:
    started = job.started if job.started is not None else now()
    try:
        outputs = await run_async_node(job)
    except Exception as exc:
        return Outcome(job.plan.index, None, exc, started, now(), job.context.attempt)
    return Outcome(job.plan.index, outputs, None, started, now(), job.context.attempt)


def checked(p: NodePlan, outputs: Any) -> dict[str, Any]:
    """A node's return value, checked to be a dict of its declared output ports."""
    if type(outputs) is not dict:
        if not isinstance(outputs, Mapping):
            raise TypeError(
                f"node {p.node_id!r} ({p.node_type}) returned {type(outputs).__name__}; "
                "run()/arun() must return a dict of output port values"
            )
        outputs = dict(outputs)
    for port in outputs:
        if port not in p.outputs:
            declared = ", ".join(sorted(p.outputs)) or "none"
            raise TypeError(
                f"node {p.node_id!r} ({p.node_type}) returned unknown output port {port!r} "
                f"(declared outputs: {declared})"
            )
    return outputs


def _outcome_of_crash(job: Job, exc: BaseException) -> Outcome:
    started = job.started if job.started is not None else now()
    return Outcome(job.plan.index, None, exc, started, now(), job.context.attempt)


# -- the executors -------------------------------------------------------------------------------


class Inline:
    """Calls a sync node in the driver's own thread. Only for a node that is alone, so no slot
    is needed (nothing else runs) and nothing waits behind it."""

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    def submit(self, job: Job) -> None:
        job.begin()
        self.inbox.put(Started(job.plan.index, job.started))  # type: ignore[arg-type]
        self.inbox.put(call_sync(job))


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
        if self.slots.acquire(job.begin, lambda: self.pool.submit(self._resume, job)):
            self._run(job)

    def _resume(self, job: Job) -> None:
        if self.slots.resume(job.begin):
            self._run(job)

    def _run(self, job: Job) -> None:
        inbox = self.inbox
        inbox.put_threadsafe(Started(job.plan.index, job.started))  # type: ignore[arg-type]
        try:
            outcome = self.context.copy().run(call_sync, job)
        except BaseException as exc:  # never let a worker thread die silently
            outcome = _outcome_of_crash(job, exc)
        self.slots.release()
        inbox.put_threadsafe(outcome)

    def attempt(self, job: Job, *, dedicated: bool) -> asyncio.Future[dict[str, Any]]:
        """One supervised attempt (its slot is the supervisor's): a loop future of the outputs.
        `dedicated`: a thread of its own, so that a timed-out attempt can be abandoned."""
        loop = self.inbox.loop
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        context = self.context.copy()

        def resolve(outcome: Outcome) -> None:
            if future.done():
                return  # timed out or cancelled: the result is discarded
            if outcome.error is not None:
                future.set_exception(outcome.error)
            else:
                future.set_result(outcome.outputs)  # type: ignore[arg-type]

        def work() -> None:
            if self.slots.closed:
                return
            try:
                outcome = context.run(call_sync, job)
            except BaseException as exc:
                outcome = _outcome_of_crash(job, exc)
            with contextlib.suppress(RuntimeError):  # the loop is gone: attempt abandoned
                loop.call_soon_threadsafe(resolve, outcome)

        if dedicated:
            name = f"kaizen:{job.plan.node_id}"
            threading.Thread(target=work, name=name, daemon=True).start()
        else:
            self.pool.submit(work)
        return future


class Tasks:
    """Runs async nodes on the loop. The first step runs at once (as Python 3.12's eager tasks
    do): a node that finishes without suspending never becomes a task."""

    def __init__(self, slots: Slots, inbox: Inbox, context: contextvars.Context) -> None:
        self.slots = slots
        self.inbox = inbox
        self.context = context
        self.tasks: dict[int, asyncio.Task[Any]] = {}

    def submit(self, job: Job) -> None:
        loop = self.inbox.loop
        if self.slots.acquire(job.begin, lambda: loop.call_soon_threadsafe(self._resume, job)):
            self._start(job)

    def _resume(self, job: Job) -> None:
        if self.slots.resume(job.begin):
            self._start(job)

    def _start(self, job: Job) -> None:
        self.inbox.put(Started(job.plan.index, job.started))  # type: ignore[arg-type]
        context = self.context.copy()
        coro = call_async(job)
        try:
            pending = context.run(coro.send, None)
        except StopIteration as done:
            self._finished(done.value)
            return
        self.track(job.plan, _finish(_Resume(coro, pending)), context)

    def track(
        self, p: NodePlan, coro: Coroutine[Any, Any, Outcome], context: contextvars.Context
    ) -> None:
        """Run `coro` (it reports a node's outcome) as a task that fail-fast can cancel."""
        task = self.inbox.loop.create_task(coro, name=f"kaizen:{p.node_id}", context=context)
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
        self.inbox.put(outcome)

    def cancel_all(self) -> list[asyncio.Task[Any]]:
        """Cancel every running task; returns them (they get a moment to clean up)."""
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        self.tasks.clear()
        return tasks


class Supervised:
    """Runs a node under its `ExecutionPolicy`: a timeout per attempt and retries with backoff
    (tenacity), whether the node is sync or async. Holds one slot for all its attempts."""

    def __init__(self, threads: Threads, tasks: Tasks) -> None:
        self.threads = threads
        self.tasks = tasks

    def submit(self, job: Job) -> None:
        loop = self.tasks.inbox.loop
        slots = self.tasks.slots
        if slots.acquire(job.begin, lambda: loop.call_soon_threadsafe(self._resume, job)):
            self._start(job)

    def _resume(self, job: Job) -> None:
        if self.tasks.slots.resume(job.begin):
            self._start(job)

    def _start(self, job: Job) -> None:
        self.tasks.inbox.put(Started(job.plan.index, job.started))  # type: ignore[arg-type]
        self.tasks.track(job.plan, self._supervise(job), self.tasks.context.copy())

    async def _supervise(self, job: Job) -> Outcome:
        from tenacity import (
            AsyncRetrying,
            retry_if_exception,
            stop_after_attempt,
            wait_exponential,
            wait_none,
        )

        p, policy = job.plan, job.plan.node.policy
        inbox = self.tasks.inbox

        def retryable(exc: BaseException) -> bool:
            return isinstance(exc, policy.retry_on) and not isinstance(exc, VetoError)

        def before_sleep(state: Any) -> None:
            error = state.outcome.exception()  # tenacity sleeps only after a failed attempt
            wait = state.next_action.sleep if state.next_action else 0.0
            inbox.put(Retrying(p.index, state.attempt_number, error, wait))

        retrying = AsyncRetrying(
            stop=stop_after_attempt(policy.retries + 1),
            wait=wait_exponential(multiplier=policy.backoff) if policy.backoff else wait_none(),
            retry=retry_if_exception(retryable),
            before_sleep=before_sleep,
            reraise=True,
        )
        started = job.started if job.started is not None else now()
        attempt = 0
        try:
            async for try_ in retrying:
                with try_:
                    attempt = try_.retry_state.attempt_number
                    outputs = await self._attempt(job, attempt)
        except Exception as exc:
            return Outcome(p.index, None, exc, started, now(), attempt)
        return Outcome(p.index, outputs, None, started, now(), attempt)

    async def _attempt(self, job: Job, attempt: int) -> dict[str, Any]:
        """One attempt, under the timeout; raises what the node raised, or TimeoutError."""
        p = job.plan
        timeout = p.node.policy.timeout
        context = job.context
        this = Job(
            p,
            job.inputs,
            NodeContext(context.run_id, context.node_id, attempt, context.record, context.hooks),
            job.started,
        )
        if p.is_async:
            call: Any = run_async_node(this)
        else:
            call = self.threads.attempt(this, dedicated=timeout is not None)
        if timeout is None:
            return await call
        try:
            return await asyncio.wait_for(call, timeout)
        except TimeoutError:
            raise TimeoutError(
                f"node {p.node_id!r} attempt {attempt} timed out after {timeout:g} s"
            ) from None


class Executors:
    """A run's executors, and the choice of one per node."""

    def __init__(
        self,
        pool: WorkerPool,
        slots: Slots,
        inbox: Inbox,
        context: contextvars.Context,
        *,
        inline_allowed: bool,
    ) -> None:
        self.inline = Inline(inbox)
        self.threads = Threads(pool, slots, inbox, context)
        self.tasks = Tasks(slots, inbox, context)
        self.supervised = Supervised(self.threads, self.tasks)
        self.inline_allowed = inline_allowed

    def choose(self, p: NodePlan, *, alone: bool) -> Inline | Threads | Tasks | Supervised:
        if p.needs_policy:
            return self.supervised
        if p.is_async:
            return self.tasks
        if alone and self.inline_allowed:
            return self.inline
        return self.threads


# -- eager task start ----------------------------------------------------------------------------


class _Resume:
    """An awaitable that drives a coroutine whose first step already ran and yielded `pending`."""

    __slots__ = ("coro", "pending")

    def __init__(self, coro: Coroutine[Any, Any, Outcome], pending: Any) -> None:
        self.coro = coro
        self.pending = pending

    def __await__(self) -> Generator[Any, Any, Outcome]:
        coro, pending = self.coro, self.pending
        while True:
            try:
                sent = yield pending
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


async def _finish(resume: _Resume) -> Outcome:
    return await resume
