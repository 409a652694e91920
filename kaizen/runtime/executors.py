"""Executors: the ways a ready node is run. The driver hands every ready node to one of them.

- `Inline` calls a sync node's `run()` right here, in the driver's thread: chosen for a sync node
  that is alone (nothing else ready or running) when the runtime owns the loop (`execute()`),
  so a chain of sync nodes never hops threads.
- `Threads` calls `run()` in the runtime's worker pool: the other sync nodes.
- `InlineAsync` awaits `arun()` in the driver's own task: an async node that is alone.
- `Tasks` awaits `arun()` on the event loop; the first step runs at once, and only a node that
  suspends becomes a task: other async nodes.
- `Supervised` runs each attempt on a thread or the loop, under the node's timeout and retries
  (tenacity): nodes whose `ExecutionPolicy` has a timeout or retries.

`choose(p, alone)` picks one; the fast paths are these choices, not branches of the driver.

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
import logging
import threading
from collections import deque
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from time import time as now
from typing import Any, Protocol

from kaizen.aio import resume
from kaizen.errors import VetoError
from kaizen.runtime.context import NodeContext, node_context_var
from kaizen.runtime.hooks import HookSet
from kaizen.runtime.middleware import NodeCall, arun_node, run_node
from kaizen.runtime.pool import Slots, WorkerPool
from kaizen.runtime.record import RunRecord
from kaizen.workflow.plan import NodePlan

_log = logging.getLogger("kaizen.runtime")

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


class RunView(Protocol):
    """What a job needs to know of its run."""

    run_id: str
    record: RunRecord
    max_concurrency: int

    def hooks_for(self, index: int) -> HookSet: ...


class Job:
    """One attempt of one node: its plan, its inputs, its run, the attempt number, and when it
    began (set under the slots' lock, so fail-fast knows). Its `NodeContext` is made only when
    the node asks for it (`current_node_context()`)."""

    __slots__ = ("_context", "announced", "attempt", "inputs", "plan", "run", "started")

    def __init__(
        self,
        plan: NodePlan,
        inputs: dict[str, Any],
        run: RunView,
        attempt: int = 1,
        started: float | None = None,
    ) -> None:
        self.plan = plan
        self.inputs = inputs
        self.run = run
        self.attempt = attempt
        self.started = started
        self.announced = False  # the hooks heard that it began (the driver's business)
        self._context: NodeContext | None = None

    def begin(self) -> None:
        self.started = now()

    @property
    def context(self) -> NodeContext:
        context = self._context
        if context is None:
            run, p = self.run, self.plan
            context = self._context = NodeContext(
                run.run_id,
                p.node_id,
                self.attempt,
                run.record,
                run.hooks_for(p.index),
                run.max_concurrency,
            )
        return context


@dataclass(slots=True)
class Started:
    index: int
    time: float


@dataclass(slots=True)
class Outcome:
    """How a node ended: its outputs, or the error of its last attempt; and, when it left out
    output ports others read, its own word on why (`Node.unproduced_reason`)."""

    index: int
    outputs: dict[str, Any] | None
    error: BaseException | None
    started: float
    finished: float
    attempts: int = 1
    explanation: str | None = None


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


# -- calling a node: the one sync and the one async way ------------------------------------------


def call_sync(job: Job) -> Outcome:
    """Call the node's `run()` with its context set: its checked outputs, or the error it
    raised, as an `Outcome`."""
    p = job.plan
    started = job.started if job.started is not None else now()
    token = node_context_var.set(job)
    try:
        middleware = job.run.hooks_for(p.index).middleware
        if middleware:
            call = NodeCall(job.run.run_id, p.node_id, p.node_type, job.attempt, dict(job.inputs))
            outputs = checked(p, run_node(middleware, call, p.node.run))
        else:
            outputs = checked(p, p.node.run(**job.inputs))
    except Exception as exc:
        return Outcome(p.index, None, exc, started, now(), job.attempt)
    finally:
        node_context_var.reset(token)
    explanation = None if p.fed_ports.issubset(outputs) else explain(p, outputs)
    return Outcome(p.index, outputs, None, started, now(), job.attempt, explanation)


async def call_async(job: Job) -> Outcome:
    """Await the node's `arun()` with its context set: its checked outputs, or the error it
    raised, as an `Outcome`."""
    p = job.plan
    started = job.started if job.started is not None else now()
    token = node_context_var.set(job)
    try:
        middleware = job.run.hooks_for(p.index).middleware
        if middleware:
            call = NodeCall(job.run.run_id, p.node_id, p.node_type, job.attempt, dict(job.inputs))
            outputs = checked(p, await arun_node(middleware, call, p.node.arun))
        else:
            outputs = checked(p, await p.node.arun(**job.inputs))
    except Exception as exc:
        return Outcome(p.index, None, exc, started, now(), job.attempt)
    finally:
        node_context_var.reset(token)
    explanation = None if p.fed_ports.issubset(outputs) else explain(p, outputs)
    return Outcome(p.index, outputs, None, started, now(), job.attempt, explanation)


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


def explain(p: NodePlan, outputs: Mapping[str, Any]) -> str | None:
    """The node's own word on why output ports others read were not produced, if it has one."""
    try:
        return p.node.unproduced_reason(outputs)
    except Exception:  # an explanation must never break the run
        _log.exception("%r.unproduced_reason() failed", p.node)
        return None


def _outcome_of_crash(job: Job, exc: BaseException) -> Outcome:
    started = job.started if job.started is not None else now()
    return Outcome(job.plan.index, None, exc, started, now(), job.attempt)


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
        self.report.finished(call_sync(job))


class InlineAsync:
    """Runs an async node that is alone in the driver's own task: its coroutine is stepped right
    here and, if it suspends, `submit` returns what the driver awaits (nothing else could run
    meanwhile). No task, no context copy, no slot."""

    def __init__(self, report: Reporter) -> None:
        self.report = report

    def submit(self, job: Job) -> Coroutine[Any, Any, None] | None:
        started = job.started = now()
        self.report.started(job.plan.index, started)
        coro = call_async(job)
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
        assert loop is not None
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
        coro = call_async(job)
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
    (tenacity), whether the node is sync or async. Holds one slot for all its attempts."""

    def __init__(self, threads: Threads, tasks: Tasks) -> None:
        self.threads = threads
        self.tasks = tasks
        self.slots = tasks.slots
        self.inbox = tasks.inbox

    def _start(self, job: Job) -> None:
        self.tasks.report.started(job.plan.index, job.started)  # type: ignore[arg-type]
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
        report = self.tasks.report

        def retryable(exc: BaseException) -> bool:
            return isinstance(exc, policy.retry_on) and not isinstance(exc, VetoError)

        def before_sleep(state: Any) -> None:
            error = state.outcome.exception()  # tenacity sleeps only after a failed attempt
            wait = state.next_action.sleep if state.next_action else 0.0
            report.retrying(p.index, state.attempt_number, error, wait)

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
        explanation = None if p.fed_ports.issubset(outputs) else explain(p, outputs)
        return Outcome(p.index, outputs, None, started, now(), attempt, explanation)

    async def _attempt(self, job: Job, attempt: int) -> dict[str, Any]:
        """One attempt, under the timeout; raises what the node raised, or TimeoutError."""
        p = job.plan
        timeout = p.node.policy.timeout
        this = Job(p, job.inputs, job.run, attempt, job.started)
        if p.is_async:
            call: Any = _raising(call_async(this))
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
    """A run's executors, and the choice of one per node."""

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
        self.threads = Threads(pool, slots, inbox, context)
        self.tasks = Tasks(slots, report, inbox, context)
        self.supervised = Supervised(self.threads, self.tasks)
        self.inline_allowed = inline_allowed

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
        return self.tasks.cancel_all()


async def _raising(call: Coroutine[Any, Any, Outcome]) -> dict[str, Any]:
    """The outputs of an async node's attempt, or the error it raised (for the supervisor)."""
    outcome = await call
    if outcome.error is not None:
        raise outcome.error
    assert outcome.outputs is not None
    return outcome.outputs


async def _finish(coro: Coroutine[Any, Any, Outcome], pending: Any) -> Outcome:
    """The rest of a node coroutine whose first step ran eagerly and yielded `pending`."""
    outcome: Outcome = await resume(coro, pending)
    return outcome
