"""`LocalRuntime`: runs a `Workflow` on one machine as eager dataflow.

Read top to bottom: the public `LocalRuntime`, then `_Run` (one execution: the driver loop, how a
node is launched, how its outcome is settled and flows to its dependants, skips, fail-fast), then
the calls that actually invoke a node.

Scheduling. A node becomes ready the moment every one of its sources has settled (completed,
failed, or skipped); there are no supersteps, so a node never waits for an unrelated sibling.
The driver is a coroutine on an event loop: async nodes run there as tasks, sync nodes in a pool
of worker threads. At most `max_concurrency` nodes run at once, counted by one per-run slot count
that both sides respect: the driver takes a slot before it starts an async node (or a node with a
timeout or retries), while a ready sync node goes to the pool at once and takes its slot only when
a worker starts it (the worker then marks it RUNNING and has the driver announce it). A worker that
finds no slot free parks the call; whoever frees the next slot runs it. A wide sync fan-out then
needs no loop round trip per batch of `max_concurrency` nodes. Two shortcuts keep overhead at a
few microseconds per node without changing behaviour: a ready node that is alone (nothing else
ready or running, no timeout or retries) is called directly, with no task and no thread hop (sync
nodes only under `execute()`, where the runtime owns the loop: under `execute_async()` a blocking
call would stall the caller's loop); and worker threads report completions in batches, waking the
loop once.

Outputs. A node returns a dict of output port values; a port left out was *not produced*. A node
whose required input comes from a port that was not produced, from a skipped node, or from a failed
one (under `failure_policy="continue"`) is SKIPPED with a `skip_reason`, and so on downstream.
Nodes with `accepts_partial_inputs` (MergeNode) run once all their sources settled, with whatever
arrived, and are skipped only if nothing did.

Failures. Each attempt of a node may have a timeout; failed attempts are retried per the node's
`ExecutionPolicy` (tenacity). A sync node that times out cannot be killed (Python threads cannot be
interrupted): it is abandoned, keeps running in its daemon thread, and its result is discarded.
`fail_fast` cancels running async nodes, abandons running sync ones (CANCELLED in the record),
starts nothing new and raises `NodeExecutionError`; `continue` skips the failed node's dependants,
finishes every independent branch and returns, the record's status FAILED.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import contextvars
import logging
import threading
import time
import uuid
import weakref
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping
from typing import Any, Literal, TypeVar

from kaizen.budget import Budget
from kaizen.context import NodeContext, _current, current_node_context
from kaizen.errors import BudgetExceededError, NodeExecutionError
from kaizen.record import EventKind, NodeRun, NodeStatus, RunEvent, RunRecord, RunStatus
from kaizen.scheduler import ExecutionPlan, NodePlan, WorkerPool, bind_parameters, plan_for
from kaizen.workflow import Workflow

__all__ = ["EventCallback", "FailurePolicy", "LocalRuntime"]

_log = logging.getLogger("kaizen.runtime")
_T = TypeVar("_T")

FailurePolicy = Literal["fail_fast", "continue"]
EventCallback = Callable[[RunEvent], None]
Results = dict[str, dict[str, Any]]

_RUNNING = NodeStatus.RUNNING
_CANCEL_GRACE = 1.0  # seconds that cancelled async nodes get to finish their cleanup


class LocalRuntime:
    """Runs workflows in this process: async nodes on an event loop, sync nodes in threads.

    One runtime can run many workflows, several at once from different threads. It keeps the
    records of its last `keep_records` runs (`get_record(run_id)`, `last_record`).
    """

    def __init__(
        self,
        max_concurrency: int = 32,
        failure_policy: FailurePolicy = "fail_fast",
        budget: Budget | None = None,
        *,
        keep_records: int = 100,
    ) -> None:
        if not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ValueError(f"max_concurrency must be a positive int, got {max_concurrency!r}")
        if failure_policy not in ("fail_fast", "continue"):
            raise ValueError(
                f"failure_policy must be 'fail_fast' or 'continue', got {failure_policy!r}"
            )
        self.max_concurrency = max_concurrency
        self.failure_policy: FailurePolicy = failure_policy
        self.budget = budget
        self.keep_records = keep_records
        self._pool = WorkerPool(max_concurrency)
        weakref.finalize(self, self._pool.shutdown)
        self._subscribers: tuple[EventCallback, ...] = ()
        self._records: OrderedDict[str, tuple[RunRecord, dict[str, NodeExecutionError]]] = (
            OrderedDict()
        )
        self._lock = threading.Lock()

    def close(self) -> None:
        """Let the worker threads exit (they also do when the runtime is garbage-collected)."""
        self._pool.shutdown()

    def __enter__(self) -> LocalRuntime:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- events and records -------------------------------------------------------------------

    def subscribe(self, callback: EventCallback) -> Callable[[], None]:
        """Call `callback(event)` for every event of every later run; returns an unsubscribe.

        Callbacks run on the runtime's event loop thread, in event order; an exception in one is
        logged (logger `kaizen.runtime`) and does not disturb the run. Keep them quick.
        """
        with self._lock:
            self._subscribers = (*self._subscribers, callback)

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers = tuple(c for c in self._subscribers if c is not callback)

        return unsubscribe

    def get_record(self, run_id: str) -> RunRecord:
        """The record of a run of this runtime (it may still be running)."""
        with self._lock:
            entry = self._records.get(run_id)
        if entry is None:
            raise KeyError(
                f"no run {run_id!r} in this runtime (it keeps the last {self.keep_records} runs)"
            )
        return entry[0]

    @property
    def last_record(self) -> RunRecord | None:
        """The record of the most recently started run, or None before the first."""
        with self._lock:
            return next(reversed(self._records.values()))[0] if self._records else None

    def get_errors(self, run_id: str) -> dict[str, NodeExecutionError]:
        """The errors of a run's failed nodes, by node id (each chains the original exception)."""
        with self._lock:
            entry = self._records.get(run_id)
        if entry is None:
            raise KeyError(f"no run {run_id!r} in this runtime")
        return dict(entry[1])

    def _remember(self, record: RunRecord, errors: dict[str, NodeExecutionError]) -> None:
        with self._lock:
            self._records[record.run_id] = (record, errors)
            while len(self._records) > self.keep_records:
                self._records.popitem(last=False)

    # -- running ------------------------------------------------------------------------------

    def execute(
        self,
        workflow: Workflow,
        parameters: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        on_event: EventCallback | None = None,
    ) -> tuple[Results, str]:
        """Run `workflow` to the end; return `({node_id: {port: value}}, run_id)`.

        Results hold the nodes that completed. Raises `ParameterError` before anything runs if
        the parameters do not fit, and `NodeExecutionError` under `fail_fast` when a node fails.
        The run's `RunRecord` is `get_record(run_id)` (also after an error: `last_record`).
        """
        results, record = self.execute_with_record(
            workflow, parameters, run_id=run_id, on_event=on_event
        )
        return results, record.run_id

    def execute_with_record(
        self,
        workflow: Workflow,
        parameters: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        on_event: EventCallback | None = None,
    ) -> tuple[Results, RunRecord]:
        """Like `execute`, returning the `RunRecord` itself instead of the run id."""
        coro = self._run(workflow, parameters, run_id, on_event, inline_sync=True)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return _run_on_thread_loop(coro)
        if current_node_context() is not None:
            # A node running inline on our own loop runs a nested workflow: give it a thread.
            return _run_in_new_thread(coro)
        coro.close()
        raise RuntimeError(
            "LocalRuntime.execute() cannot run inside a running event loop; "
            "use `await runtime.execute_async(workflow, parameters)` there"
        )

    async def execute_async(
        self,
        workflow: Workflow,
        parameters: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        on_event: EventCallback | None = None,
    ) -> tuple[Results, str]:
        """`execute` for callers already in an event loop; sync nodes always run in threads."""
        results, record = await self._run(workflow, parameters, run_id, on_event)
        return results, record.run_id

    async def execute_async_with_record(
        self,
        workflow: Workflow,
        parameters: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        on_event: EventCallback | None = None,
    ) -> tuple[Results, RunRecord]:
        return await self._run(workflow, parameters, run_id, on_event)

    async def _run(
        self,
        workflow: Workflow,
        parameters: Mapping[str, Any] | None,
        run_id: str | None,
        on_event: EventCallback | None,
        *,
        inline_sync: bool = False,
    ) -> tuple[Results, RunRecord]:
        plan = plan_for(workflow)
        inputs = bind_parameters(plan, parameters)  # raises before any node runs
        listeners = self._subscribers if on_event is None else (*self._subscribers, on_event)
        run = _Run(self, workflow, plan, inputs, run_id or uuid.uuid4().hex, listeners)
        run.inline_sync = inline_sync
        self._remember(run.record, run.errors)
        run.emit(EventKind.RUN_STARTED, None, workflow=workflow.name, nodes=len(plan.nodes))
        try:
            await run.drive()
        except BaseException:  # cancelled, Ctrl-C, or a node raised KeyboardInterrupt inline
            run.abort(NodeStatus.CANCELLED, "cancelled: the run was interrupted")
            run.finish(RunStatus.CANCELLED)
            raise
        if run.abandoned_tasks:
            await asyncio.wait(run.abandoned_tasks, timeout=_CANCEL_GRACE)
        run.finish()
        if run.first_error is not None:
            error = run.first_error
            error.add_note(run.summary())
            raise error from error.__cause__
        return run.results, run.record


class _Outcome:
    """How one node's execution ended, as reported to the driver."""

    __slots__ = ("attempts", "error", "finished", "index", "outputs", "started")

    def __init__(
        self,
        index: int,
        outputs: dict[str, Any] | None,
        error: BaseException | None,
        started: float,
        finished: float,
        attempts: int = 1,
    ) -> None:
        self.index = index
        self.outputs = outputs
        self.error = error
        self.started = started
        self.finished = finished
        self.attempts = attempts


class _Run:
    """One execution of a workflow. All state changes happen on the loop thread."""

    def __init__(
        self,
        runtime: LocalRuntime,
        workflow: Workflow,
        plan: ExecutionPlan,
        inputs: list[dict[str, Any]],
        run_id: str,
        listeners: tuple[EventCallback, ...],
    ) -> None:
        self.plan = plan
        self.inputs = inputs
        self.listeners = listeners
        self.limit = runtime.max_concurrency
        self.fail_fast = runtime.failure_policy == "fail_fast"
        # the runtime's budget, else the one the workflow was built with (a pattern's budget)
        self.budget: Budget | None = (
            runtime.budget if runtime.budget is not None else getattr(workflow, "budget", None)
        )
        self.pool = runtime._pool
        self.inline_sync = False
        self.run_id = run_id
        self.node_runs = [NodeRun(p.node_id, p.node_type) for p in plan.nodes]
        self.record = RunRecord(
            run_id,
            workflow.name,
            started=time.time(),
            nodes={nr.node_id: nr for nr in self.node_runs},
        )
        self.results: Results = {}
        self.errors: dict[str, NodeExecutionError] = {}
        self.first_error: NodeExecutionError | None = None
        self.budget_skipped = False
        # scheduling state
        self.remaining = [p.n_sources for p in plan.nodes]
        self.lost: list[list[tuple[str, str, bool]] | None] = [None] * len(plan.nodes)
        self.ready: deque[int] = deque(plan.roots)
        self.skips: deque[tuple[int, str]] = deque()
        self.running = 0  # nodes started or handed to the pool, and not yet settled
        self.stopping = False
        # slots: nodes actually running (the driver's loop-held nodes plus sync calls in workers)
        self.slot_lock = threading.Lock()
        self.busy = 0
        self.parked: deque[tuple[NodePlan, dict[str, Any]]] = deque()  # sync calls awaiting a slot
        self.slot_wait: deque[NodePlan] = deque()  # loop-held nodes awaiting a slot
        self.tasks: dict[int, asyncio.Task[_Outcome]] = {}
        self.abandoned_tasks: list[asyncio.Task[_Outcome]] = []
        # outcomes for the driver to settle (and, as bare indices, sync nodes that workers
        # started, for it to announce), and how worker threads wake it
        self.completions: deque[_Outcome | int] = deque()
        self.loop = asyncio.get_running_loop()
        self.waiter: asyncio.Future[None] | None = None
        self.wake_scheduled = False
        self.context = contextvars.copy_context()
        self.usage_lock = threading.Lock()

    # -- the driver ---------------------------------------------------------------------------

    async def drive(self) -> None:
        """Start ready nodes as slots allow, settle outcomes as they come, until nothing is left."""
        ready, plan_nodes, slot_wait = self.ready, self.plan.nodes, self.slot_wait
        me = asyncio.current_task()
        while True:
            while self.completions:
                done = self.completions.popleft()
                if isinstance(done, int):
                    self.announce(done)
                else:
                    self.settle(done)
            while ready and not self.stopping:
                p = plan_nodes[ready.popleft()]
                if self.running == 0 and not ready and not slot_wait and not p.needs_policy:
                    if p.is_async:  # alone: await it here, no task needed
                        self.start(p)
                        self.take_slot()
                        self.settle(await self.call_async(p, self.inputs[p.index]))
                        continue
                    if self.inline_sync:  # alone: call it here, no thread hop (and no slot)
                        self.start(p)
                        self.settle(self.call_sync(p, self.inputs[p.index], 1))
                        if me is not None and me.cancelling():
                            raise asyncio.CancelledError
                        continue
                if p.is_async or p.needs_policy:
                    slot_wait.append(p)
                else:  # a worker marks it RUNNING when it starts it
                    self.running += 1
                    self.pool.submit(self.run_in_worker, p, self.inputs[p.index], False)
            while slot_wait and not self.stopping and self.take_slot():
                self.launch(slot_wait.popleft())
            if self.running == 0 and not self.completions:
                return
            await self.wait()

    async def wait(self) -> None:
        if self.completions:
            return
        self.waiter = self.loop.create_future()
        await self.waiter

    def wake(self) -> None:
        """Resolve the driver's waiter (loop thread only)."""
        self.wake_scheduled = False
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def report_from_thread(self, outcome: _Outcome) -> None:
        """Hand a sync node's outcome to the driver."""
        self.completions.append(outcome)
        self.wake_from_thread()

    def wake_from_thread(self) -> None:
        """Have the driver look at `completions`; one loop wake-up serves a whole batch."""
        if self.wake_scheduled or self.stopping:
            return
        self.wake_scheduled = True
        with contextlib.suppress(RuntimeError):  # RuntimeError: the loop is gone (abandoned)
            self.loop.call_soon_threadsafe(self.wake)

    # -- slots ---------------------------------------------------------------------------------

    def take_slot(self) -> bool:
        """Take a slot for a node the driver runs (async, or under a policy), if one is free."""
        with self.slot_lock:
            if self.busy >= self.limit:
                return False
            self.busy += 1
            return True

    def release_slot(self) -> None:
        """The driver's node ended: hand its slot to a parked sync call, else free it.

        A driver waiting for a slot is woken by the next completion, which always follows a
        slot's release."""
        with self.slot_lock:
            if not self.parked or self.stopping:
                self.busy -= 1
                return
            p, inputs = self.parked.popleft()
        self.pool.submit(self.run_in_worker, p, inputs, True)

    def run_in_worker(self, p: NodePlan, inputs: dict[str, Any], has_slot: bool) -> None:
        """Run a sync node in a worker once it has a slot, then the parked calls its slot frees."""
        lock = self.slot_lock
        with lock:
            if self.stopping:  # the run failed fast or was cancelled before the node started
                if has_slot:
                    self.busy -= 1
                return
            if not has_slot:
                if self.busy >= self.limit:
                    self.parked.append((p, inputs))  # the next slot released runs it
                    return
                self.busy += 1
            self.mark_started(p)
        while True:
            if self.listeners:
                self.wake_from_thread()  # to announce the start
            try:
                outcome = self.context.copy().run(self.call_sync, p, inputs, 1)
            except BaseException as exc:  # never let a worker thread die silently
                now = time.time()
                outcome = _Outcome(p.index, None, exc, now, now)
            with lock:
                parked = self.parked.popleft() if self.parked and not self.stopping else None
                if parked is None:
                    self.busy -= 1
                else:
                    self.mark_started(parked[0])
            self.report_from_thread(outcome)  # after the release: see release_slot
            if parked is None:
                return
            p, inputs = parked

    def mark_started(self, p: NodePlan) -> None:
        """A worker starts sync node `p` (slot lock held: a fail-fast either came first, and `p`
        never starts, or finds it RUNNING and cancels it)."""
        nr = self.node_runs[p.index]
        nr.status = _RUNNING
        nr.started = time.time()
        nr.attempts = 1
        if self.listeners:
            self.completions.append(p.index)

    def announce(self, i: int) -> None:
        """Emit NODE_STARTED for a sync node a worker started (it may be CANCELLED since)."""
        nr = self.node_runs[i]
        self.emit(EventKind.NODE_STARTED, nr.node_id, node_type=nr.node_type)

    # -- launching ----------------------------------------------------------------------------

    def start(self, p: NodePlan) -> None:
        nr = self.node_runs[p.index]
        nr.status = _RUNNING
        nr.started = time.time()
        nr.attempts = 1
        self.running += 1
        if self.listeners:
            self.emit(EventKind.NODE_STARTED, p.node_id, node_type=p.node_type)

    def launch(self, p: NodePlan) -> None:
        """Start `p`, an async node or one under a policy, holding a slot, on the loop."""
        self.start(p)
        inputs = self.inputs[p.index]
        if p.needs_policy:
            self.track(p, self.supervise(p, inputs))
        else:
            # Run the first step now, as Python 3.12's eager tasks do: a node that finishes
            # without suspending needs no task at all.
            coro = self.call_async(p, inputs)
            context = self.context.copy()
            try:
                pending = context.run(coro.send, None)
            except StopIteration as done:
                self.completions.append(done.value)
                return
            self.track(p, _finish(_Resume(coro, pending)), context)

    def track(
        self,
        p: NodePlan,
        coro: Coroutine[Any, Any, _Outcome],
        context: contextvars.Context | None = None,
    ) -> None:
        task = self.loop.create_task(coro, name=f"kaizen:{p.node_id}", context=context)
        self.tasks[p.index] = task
        task.add_done_callback(self.task_done)

    def task_done(self, task: asyncio.Task[_Outcome]) -> None:
        if task.cancelled():
            return  # abort() or fail-fast already recorded it
        self.completions.append(task.result())
        self.wake()

    # -- settling -----------------------------------------------------------------------------

    def settle(self, outcome: _Outcome) -> None:
        """Record how a node ended and pass its outputs (or its absence) downstream."""
        i = outcome.index
        nr = self.node_runs[i]
        if nr.status is not _RUNNING:
            return  # abandoned by fail-fast; its late outcome is discarded
        self.running -= 1
        self.tasks.pop(i, None)
        p = self.plan.nodes[i]
        if p.is_async or p.needs_policy:
            self.release_slot()
        nr.started, nr.finished, nr.attempts = outcome.started, outcome.finished, outcome.attempts
        error = outcome.error
        if error is None:
            nr.status = NodeStatus.COMPLETED
            assert outcome.outputs is not None
            self.results[p.node_id] = outcome.outputs
            if self.listeners:
                self.emit(EventKind.NODE_FINISHED, p.node_id, duration=nr.duration)
            self.deliver(p, outcome.outputs, None, False)
        elif isinstance(error, BudgetExceededError):
            self.budget_skipped = True
            self.mark_skipped(i, f"budget exceeded: {error}")
            self.deliver(p, None, f"{p.node_id!r} was skipped (budget exceeded)", False)
        else:
            self.fail(p, nr, error, outcome.attempts)
        while self.skips:
            j, reason = self.skips.popleft()
            self.mark_skipped(j, reason)
            self.deliver(
                self.plan.nodes[j], None, f"{self.plan.nodes[j].node_id!r} was skipped", False
            )

    def fail(self, p: NodePlan, nr: NodeRun, error: BaseException, attempts: int) -> None:
        message = f"{type(error).__name__}: {error}"
        nr.status = NodeStatus.FAILED
        nr.error = message
        node_error = NodeExecutionError(p.node_id, attempts, message)
        node_error.__cause__ = error
        self.errors[p.node_id] = node_error
        if self.listeners:
            self.emit(EventKind.NODE_FAILED, p.node_id, error=message, attempt=attempts)
        if self.fail_fast:
            if self.first_error is None:
                self.first_error = node_error
            self.stop(p.node_id)
        else:
            self.deliver(p, None, f"upstream {p.node_id!r} failed ({message})", True)

    def deliver(
        self, p: NodePlan, outputs: dict[str, Any] | None, why: str | None, fatal: bool
    ) -> None:
        """Feed `p`'s outputs to its dependants; a port not in `outputs` is lost, for `why`
        (None: `p` completed without producing it)."""
        inputs, lost = self.inputs, self.lost
        for t, source_port, target_port in p.edges_out:
            if outputs is not None and source_port in outputs:
                inputs[t][target_port] = outputs[source_port]
            else:
                if why is None:
                    why = _not_produced(p, outputs or {})
                entry = (target_port, why.replace("{port}", source_port), fatal)
                entries = lost[t]
                if entries is None:
                    lost[t] = [entry]
                else:
                    entries.append(entry)
        remaining = self.remaining
        for t in p.targets:
            remaining[t] -= 1
            if remaining[t] == 0:
                if lost[t] is None:
                    self.ready.append(t)
                else:
                    self.inputs_settled(t)

    def inputs_settled(self, t: int) -> None:
        """All of `t`'s sources settled and some input is missing: run it anyway, or skip it."""
        p, got, lost = self.plan.nodes[t], self.inputs[t], self.lost[t] or []
        if p.partial:
            if p.node.runs_without_inputs or any(port in got for port in p.wired):
                self.ready.append(t)
            else:
                self.skips.append((t, "no input arrived: " + "; ".join(w for _, w, _ in lost)))
            return
        for _port, why, fatal in lost:
            if fatal:
                self.skips.append((t, why))
                return
        for port, why, _ in lost:
            if port not in got and p.node.inputs[port].required:
                self.skips.append((t, f"input {port!r} is missing: {why}"))
                return
        self.ready.append(t)  # only optional inputs are missing: their defaults apply

    def mark_skipped(self, i: int, reason: str) -> None:
        nr = self.node_runs[i]
        nr.status = NodeStatus.SKIPPED
        nr.skip_reason = reason
        if self.listeners:
            self.emit(EventKind.NODE_SKIPPED, nr.node_id, reason=reason)

    # -- stopping -----------------------------------------------------------------------------

    def stop(self, culprit: str) -> None:
        """Fail fast: start nothing new; cancel async nodes and abandon sync ones still running."""
        self.ready.clear()
        self.slot_wait.clear()
        self.abort(
            NodeStatus.CANCELLED,
            f"cancelled: node {culprit!r} failed and failure_policy is 'fail_fast'",
        )

    def abort(self, status: NodeStatus, reason: str) -> None:
        with self.slot_lock:  # from here no worker starts a node (see run_in_worker)
            self.stopping = True
        now = time.time()
        for nr in self.node_runs:
            if nr.status is _RUNNING:
                nr.status = status
                nr.finished = now
                nr.error = reason
        for task in self.tasks.values():
            task.cancel()
        self.abandoned_tasks.extend(self.tasks.values())
        self.tasks.clear()
        self.running = 0

    def finish(self, status: RunStatus | None = None) -> None:
        record = self.record
        record.finished = time.time()
        if status is None:
            failed = self.errors or self.budget_skipped
            status = RunStatus.FAILED if failed else RunStatus.COMPLETED
        record.status = status
        if self.listeners:
            self.emit(EventKind.RUN_FINISHED, None, status=str(status), summary=self.summary())

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for nr in self.node_runs:
            name = "never ran" if nr.status is NodeStatus.PENDING else str(nr.status)
            counts[name] = counts.get(name, 0) + 1
        parts = ", ".join(f"{n} {name}" for name, n in counts.items())
        return f"run {self.run_id!r}: {parts} (runtime.get_record({self.run_id!r}) has details)"

    def emit(self, kind: EventKind, node_id: str | None, **data: Any) -> None:
        event = RunEvent(kind, self.run_id, time.time(), node_id, data)
        for callback in self.listeners:
            try:
                callback(event)
            except Exception:
                _log.exception("event subscriber %r failed on %s; the run goes on", callback, kind)

    # -- calling nodes ------------------------------------------------------------------------

    def node_context(self, p: NodePlan, attempt: int) -> NodeContext:
        return NodeContext(
            self.run_id,
            p.node_id,
            attempt,
            self.node_runs[p.index],
            self.record,
            self.budget,
            self.usage_lock,
        )

    def call_sync(self, p: NodePlan, inputs: dict[str, Any], attempt: int) -> _Outcome:
        token = _current.set(self.node_context(p, attempt))
        started = time.time()
        try:
            outputs = _checked(p, p.node.run(**inputs))
        except Exception as exc:
            return _Outcome(p.index, None, exc, started, time.time(), attempt)
        finally:
            _current.reset(token)
        return _Outcome(p.index, outputs, None, started, time.time(), attempt)

    async def call_async(self, p: NodePlan, inputs: dict[str, Any]) -> _Outcome:
        token = _current.set(self.node_context(p, 1))
        started = time.time()
        try:
            outputs = _checked(p, await p.node.arun(**inputs))
        except Exception as exc:
            return _Outcome(p.index, None, exc, started, time.time())
        finally:
            _current.reset(token)
        return _Outcome(p.index, outputs, None, started, time.time())

    async def supervise(self, p: NodePlan, inputs: dict[str, Any]) -> _Outcome:
        """Run `p` under its policy: a timeout per attempt, retries with backoff (tenacity)."""
        from tenacity import (
            AsyncRetrying,
            RetryCallState,
            retry_if_exception,
            stop_after_attempt,
            wait_exponential,
            wait_none,
        )

        policy = p.node.policy
        nr = self.node_runs[p.index]
        started = nr.started or time.time()

        def retryable(exc: BaseException) -> bool:
            return isinstance(exc, policy.retry_on) and not isinstance(exc, BudgetExceededError)

        def before_sleep(state: RetryCallState) -> None:
            if self.listeners:
                error = state.outcome.exception() if state.outcome else None
                wait = state.next_action.sleep if state.next_action else 0.0
                self.emit(
                    EventKind.NODE_RETRYING,
                    p.node_id,
                    attempt=state.attempt_number,
                    error=f"{type(error).__name__}: {error}",
                    wait=wait,
                )

        retrying = AsyncRetrying(
            stop=stop_after_attempt(policy.retries + 1),
            wait=wait_exponential(multiplier=policy.backoff) if policy.backoff else wait_none(),
            retry=retry_if_exception(retryable),
            before_sleep=before_sleep,
            reraise=True,
        )
        attempt = 0
        try:
            async for try_ in retrying:
                with try_:
                    attempt = try_.retry_state.attempt_number
                    nr.attempts = attempt
                    outputs = await self.attempt(p, inputs, attempt)
        except Exception as exc:
            return _Outcome(p.index, None, exc, started, time.time(), attempt)
        return _Outcome(p.index, outputs, None, started, time.time(), attempt)

    async def attempt(self, p: NodePlan, inputs: dict[str, Any], attempt: int) -> dict[str, Any]:
        """One attempt of a node with a policy; raises what the node raised, or TimeoutError."""
        timeout = p.node.policy.timeout
        if p.is_async:
            call: Awaitable[dict[str, Any]] = self.attempt_async(p, inputs, attempt)
        else:
            call = self.attempt_in_thread(p, inputs, attempt, own_thread=timeout is not None)
        if timeout is None:
            return await call
        try:
            return await asyncio.wait_for(call, timeout)
        except TimeoutError:
            raise TimeoutError(
                f"node {p.node_id!r} attempt {attempt} timed out after {timeout:g} s"
            ) from None

    async def attempt_async(
        self, p: NodePlan, inputs: dict[str, Any], attempt: int
    ) -> dict[str, Any]:
        token = _current.set(self.node_context(p, attempt))
        try:
            return _checked(p, await p.node.arun(**inputs))
        finally:
            _current.reset(token)

    def attempt_in_thread(
        self, p: NodePlan, inputs: dict[str, Any], attempt: int, *, own_thread: bool
    ) -> asyncio.Future[dict[str, Any]]:
        """Run one sync attempt in a worker, or in a thread of its own if it may be abandoned."""
        future: asyncio.Future[dict[str, Any]] = self.loop.create_future()
        loop, context = self.loop, self.context.copy()

        def resolve(outcome: _Outcome) -> None:
            if future.done():
                return  # timed out or cancelled: the result is discarded
            if outcome.error is not None:
                future.set_exception(outcome.error)
            else:
                assert outcome.outputs is not None
                future.set_result(outcome.outputs)

        def work() -> None:
            if self.stopping:
                return
            try:
                outcome = context.run(self.call_sync, p, inputs, attempt)
            except BaseException as exc:
                now = time.time()
                outcome = _Outcome(p.index, None, exc, now, now, attempt)
            with contextlib.suppress(RuntimeError):  # the loop is gone: attempt abandoned
                loop.call_soon_threadsafe(resolve, outcome)

        if own_thread:
            threading.Thread(target=work, name=f"kaizen:{p.node_id}", daemon=True).start()
        else:
            self.pool.submit(work)
        return future


class _Resume:
    """Awaitable that drives a coroutine whose first step already ran and yielded `pending`."""

    __slots__ = ("coro", "pending")

    def __init__(self, coro: Coroutine[Any, Any, _Outcome], pending: Any) -> None:
        self.coro = coro
        self.pending = pending

    def __await__(self) -> Generator[Any, Any, _Outcome]:
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


async def _finish(resume: _Resume) -> _Outcome:
    return await resume


def _not_produced(p: NodePlan, outputs: dict[str, Any]) -> str:
    """Why a completed node's missing ports are missing, with the node's own explanation
    (`Node.unproduced_reason`) when it gives one."""
    why = f"{p.node_id}.{{port}} was not produced"
    try:
        reason = p.node.unproduced_reason(outputs)
    except Exception:  # an explanation must never break the run
        _log.exception("%r.unproduced_reason() failed", p.node)
        reason = None
    return f"{why}: {reason}" if reason else why


def _checked(p: NodePlan, outputs: Any) -> dict[str, Any]:
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


# -- event loops for execute() ----------------------------------------------------------------

_local = threading.local()


def _thread_runner() -> asyncio.Runner:
    """This thread's reusable event loop runner (creating a loop per run costs ~0.2 ms)."""
    runner: asyncio.Runner | None = getattr(_local, "runner", None)
    if runner is None:
        runner = asyncio.Runner()
        _local.runner = runner
        # Close the loop when its thread ends (at exit for the main thread), cancelling what
        # libraries left running on it (litellm's logging worker, for one).
        thread = threading.current_thread()
        if thread is threading.main_thread():
            atexit.register(_close_runner, runner)
        else:
            weakref.finalize(thread, _close_runner, runner)
    return runner


def _close_runner(runner: asyncio.Runner) -> None:
    if asyncio._get_running_loop() is None:
        runner.close()
    else:  # finalised on a thread whose own loop runs: no cleanup run possible, just close it
        runner.get_loop().close()


def _run_on_thread_loop(
    coro: Coroutine[Any, Any, tuple[Results, RunRecord]],
) -> tuple[Results, RunRecord]:
    box: list[tuple[Results, RunRecord]] = []

    async def main() -> None:
        # The result goes through `box`, not the task: asyncio.Runner formats its main task
        # (result included) after every run, which would cost a repr of the whole record.
        box.append(await coro)

    # The caller's context variables must be visible inside nodes, as with asyncio.run().
    _thread_runner().run(main(), context=contextvars.copy_context())
    return box[0]


def _run_in_new_thread(
    coro: Coroutine[Any, Any, tuple[Results, RunRecord]],
) -> tuple[Results, RunRecord]:
    return _call_in_new_thread(lambda: asyncio.run(coro), "kaizen:nested-run")


def _call_in_new_thread(call: Callable[[], _T], thread_name: str) -> _T:
    """Run `call` in a fresh thread and wait: a blocking call made from inside an event loop.

    Whatever `call` raises is raised here.
    """
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
