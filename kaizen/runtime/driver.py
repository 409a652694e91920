"""The driver: one loop that runs a workflow's nodes through executors, in dataflow order.

    while the run is not over:
        settle what worker threads reported   (started / finished, in order)
        hand every READY node to an executor  (executors.choose: inline, threads, tasks, ...)
        wait for the next report

A run lives in three places: the dataflow state (`kaizen.runtime.state`: pure transitions), the
executors (`kaizen.runtime.executors`: how nodes run; those on the driver's thread report here
directly, worker threads through the `Inbox`), and the hooks (`kaizen.runtime.hooks`: the record,
events, budgets and user hooks hear every moment from here, on this thread, in order). The driver
moves reports from the second into the first and announces what changed to the third.

Failure policy. `fail_fast`: the first failure (or a node refused by the budget) stops the run:
nothing new starts, running async nodes are cancelled and running sync nodes abandoned (both
CANCELLED), and the error is raised with the run id and the results so far. `continue`: a failed
node's dependants are SKIPPED, independent branches run on, and the run ends FAILED.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from time import time as now
from typing import TYPE_CHECKING, Any

from kaizen import moments
from kaizen.aio import NEED_LOOP, running_loop
from kaizen.errors import BudgetExceededError, NodeCancelledError, NodeExecutionError
from kaizen.interrupts import Interrupt, NodePaused
from kaizen.runtime import state as dataflow
from kaizen.runtime.executors import Executors, ExecutorSet, Inbox, Job, Outcome, Submitter
from kaizen.runtime.hooks import HookSet
from kaizen.runtime.pool import Slots, WorkerPool
from kaizen.runtime.record import NodeRun, NodeStatus, RunRecord, RunStatus
from kaizen.runtime.recorder import Recorder
from kaizen.workflow.plan import NodePlan

if TYPE_CHECKING:
    from kaizen.workflow.workflow import Workflow

_CANCEL_GRACE = 1.0  # seconds cancelled async nodes get to finish their cleanup
Results = dict[str, dict[str, Any]]
# (run id, [(node id, outputs, finished, attempts)]): store them before anything depends on them
Commit = Callable[[str, list[tuple[str, Any, float, int]]], None]


class Run:
    """One execution of a workflow: its state, its record, and the loop that drives it."""

    def __init__(
        self,
        workflow: Workflow,
        inputs: list[dict[str, Any]],
        *,
        run_id: str,
        hooks: list[object],
        pool: WorkerPool,
        max_concurrency: int,
        fail_fast: bool,
        inline_allowed: bool,
        finished: Mapping[int, Mapping[str, Any]] | None = None,
        executors: Callable[[Run], ExecutorSet] | None = None,
        resumes: Mapping[int, tuple[Mapping[int, Any], Any]] | None = None,
        answered: Mapping[str, Sequence[Interrupt]] | None = None,
    ) -> None:
        """`finished`: nodes an earlier attempt at this run completed (index -> outputs), for
        a resumed run; they are done already and their outputs delivered. `executors` makes
        the run's executors (default: this machine's, `Executors`; `kaizen.runtime.ray` gives
        its own). `resumes`: nodes that paused in an earlier attempt (index -> their answers
        by interrupt index, and the state they saved), run again with those; `answered`, the
        interrupts answered for them since they paused (the hooks hear them as each starts)."""
        plan = workflow.plan
        self.workflow = workflow
        self.nodes = plan.nodes
        self.run_id = run_id
        nodes = {p.node_id: NodeRun(p.node_id, p.node_type) for p in plan.nodes}
        self.record = RunRecord(run_id, workflow.name, started=now(), nodes=nodes)
        self.recorder = Recorder(self.record)  # told first, directly (no event is built for it)
        self.hooks = HookSet([self.recorder, *hooks], self.record)
        # node-scoped hook sets: the run's, plus a node's own (an agent's), made on first use
        self._node_hooks: dict[int, HookSet] = {}
        self.state = dataflow.new_state(plan, inputs, finished)
        self.slots = Slots(max_concurrency)
        self.max_concurrency = max_concurrency
        self.fail_fast = fail_fast
        self.results: Results = {}
        for i, outputs in (finished or {}).items():
            node_id = plan.nodes[i].node_id
            self.results[node_id] = dict(outputs)
            nodes[node_id].status = NodeStatus.COMPLETED
            nodes[node_id].restored = True
        self.errors: dict[str, NodeExecutionError] = {}
        self.resumes = resumes or {}
        self.answered = answered or {}
        self.waiting: dict[str, NodePaused] = {}  # nodes paused for a person, by id
        self.stop_error: NodeExecutionError | BudgetExceededError | None = None
        self.refused = False  # a node was refused by the budget: the run is FAILED
        # per node: its job while it is handed to an executor and not settled yet, else None
        self.jobs: list[Job | None] = [None] * len(plan.nodes)
        self.abandoned: list[asyncio.Task[Any]] = []
        self.loop: asyncio.AbstractEventLoop | None = None  # set by enter_loop
        self.task: asyncio.Task[Any] | None = None
        self.inbox = Inbox()
        self.commit: Commit | None = None  # set by kaizen.durable for a `sync` checkpointed run
        context = contextvars.copy_context()
        self.executors: ExecutorSet = (
            Executors(pool, self.slots, self, self.inbox, context, inline_allowed)
            if executors is None
            else executors(self)
        )

    # -- the loop --------------------------------------------------------------------------------

    async def drive(self) -> Results:
        """Run to the end; return the results, or raise the error that stopped the run.

        A run whose nodes all run inline never needs an event loop: driven by `run_blocking`,
        it finishes without one. The loop is entered (`enter_loop`) the first time a node must
        run elsewhere, or the driver must wait.
        """
        if self.hooks.observes(moments.RunStarted):
            self.hooks.fire(moments.RunStarted(self.run_id, self.workflow, self.record))
        state, items, executors = self.state, self.inbox.items, self.executors
        try:
            while True:
                if self.commit is not None and len(items) > 1:
                    self.commit_completed(items)  # group commit: all that finished together
                while items:
                    report = items.popleft()
                    if isinstance(report, Outcome):
                        self.finished(report)
                    else:
                        self.started(report.index, report.time)
                while state.ready and not self.slots.closed:
                    p = self.nodes[state.ready.popleft()]
                    executor = executors.choose(p, state.running == 0 and not state.ready)
                    if executor is not executors.inline and self.loop is None:
                        await self.enter_loop()
                    waiting = self.launch(p, executor)
                    if waiting is not None:  # an async node alone, run in this very task
                        await waiting
                if dataflow.is_finished(state) and not items:
                    if self.task is not None and self.task.cancelling():
                        raise asyncio.CancelledError  # Ctrl-C during the last node, run inline
                    break
                if self.loop is None:
                    await self.enter_loop()
                elif self.task is not None and self.task.cancelling():
                    raise asyncio.CancelledError  # Ctrl-C while a node ran inline
                await self.inbox.wait()
        except BaseException as exc:  # cancelled, Ctrl-C, or KeyboardInterrupt from an inline node
            self.stop(NodeStatus.CANCELLED, "the run was interrupted")
            self.finish(RunStatus.CANCELLED, exc)
            raise
        if self.abandoned:
            await asyncio.wait(self.abandoned, timeout=_CANCEL_GRACE)
        if self.errors or self.refused:
            status = RunStatus.FAILED
        else:
            status = RunStatus.WAITING if self.waiting else RunStatus.COMPLETED
        self.finish(status, self.stop_error)
        if self.stop_error is not None:
            error = self.stop_error
            error.run_id, error.results = self.run_id, self.results
            error.add_note(f"{self.record.summary()} (runtime.get_record({self.run_id!r}))")
            raise error
        return self.results

    async def enter_loop(self) -> None:
        """Make sure the run continues on an event loop (see `kaizen.aio.run_blocking`)."""
        loop = running_loop()
        if loop is None:
            await NEED_LOOP  # whoever steps this coroutine without a loop continues it in one
            loop = asyncio.get_running_loop()
        self.loop = self.inbox.loop = loop
        self.task = asyncio.current_task()

    def launch(self, p: NodePlan, executor: Submitter) -> Coroutine[Any, Any, None] | None:
        """Hand READY node `p` to `executor`; what it returns, the driver awaits."""
        i = p.index
        dataflow.start(self.state, i)
        job = self.jobs[i] = Job(p, self.state.inputs[i], self)
        if self.resumes:
            job.resume = self.resumes.get(i)
            answered = self.answered.get(p.node_id)
            hooks = self.hooks_for(i)
            if answered and hooks.observes(moments.NodeResumed):
                hooks.fire(moments.NodeResumed(self.run_id, p.node_id, tuple(answered), now()))
        return executor.submit(job)

    def hooks_for(self, index: int) -> HookSet:
        """The hooks of node `index`: the run's, plus the node's own (an agent's)."""
        p = self.nodes[index]
        if not p.scoped_hooks:
            return self.hooks
        hooks = self._node_hooks.get(index)
        if hooks is None:
            hooks = self._node_hooks[index] = self.hooks.including(p.node.hooks)
        return hooks

    # -- what executors report (Reporter) -------------------------------------------------------

    def started(self, index: int, time: float) -> None:
        """Node `index` began at `time`: tell the hooks, once (unless the run stopped since)."""
        job = self.jobs[index]
        if job is None or job.announced:  # settled (or the run stopped), or heard already
            return
        job.announced = True
        p = job.plan
        self.recorder.node_started(p.node_id, time)
        hooks = self.hooks_for(index) if p.scoped_hooks else self.hooks
        if hooks.node_start:
            hooks.fire(moments.NodeStarted(self.run_id, p.node_id, p.node_type, 1, time))

    def retrying(self, index: int, attempt: int, error: BaseException, wait: float) -> None:
        if self.state.status[index] is dataflow.RUNNING:
            hooks = self.hooks_for(index)
            if hooks.observes(moments.NodeRetrying):
                node_id = self.nodes[index].node_id
                hooks.fire(moments.NodeRetrying(self.run_id, node_id, attempt, error, wait))

    def finished(self, outcome: Outcome) -> None:
        """A node ended: record it, and let its outputs (or their absence) flow downstream."""
        i = outcome.index
        job = self.jobs[i]
        if job is None:
            return  # abandoned when the run stopped; its late outcome is discarded
        if not job.announced:
            self.started(i, outcome.started)
        if self.commit is not None and outcome.error is None and not outcome.durable:
            self.commit_completed((outcome,))
        self.jobs[i] = None
        state = self.state
        p = job.plan
        error = outcome.error
        if error is None:
            outputs = outcome.outputs
            assert outputs is not None
            skips = dataflow.complete(state, i, outputs, outcome.explanation)
            self.results[p.node_id] = outputs
            self.ended(p, NodeStatus.COMPLETED, outcome, None)
        elif isinstance(error, NodePaused):
            dataflow.pause(state, i)
            skips = []
            self.paused(p, outcome, error)
        elif isinstance(error, BudgetExceededError):
            self.refused = True
            skips = dataflow.refuse(state, i, "budget exceeded", str(error))
            if self.fail_fast and self.stop_error is None:
                error.node_id = p.node_id
                self.stop_error = error
        else:
            message = f"{type(error).__name__}: {error}"
            node_error = NodeExecutionError(p.node_id, outcome.attempts, message)
            node_error.__cause__ = error
            self.errors[p.node_id] = node_error
            skips = dataflow.fail(state, i, message, propagate=not self.fail_fast)
            self.ended(p, NodeStatus.FAILED, outcome, error)
            if self.fail_fast and self.stop_error is None:
                self.stop_error = node_error
        for j, reason in skips:
            self.skipped(j, reason)
        if self.stop_error is not None and not self.slots.closed:
            self.stop(NodeStatus.CANCELLED, f"node {p.node_id!r} stopped the run (fail_fast)")

    def commit_completed(self, reports: Iterable[object]) -> None:
        """Commit the outputs of the completed nodes among `reports` in one transaction, and
        mark their outcomes durable (see "Durability" in the module docstring)."""
        batch = []
        for report in reports:
            if isinstance(report, Outcome) and report.error is None and not report.durable:
                job = self.jobs[report.index]
                if job is None:
                    continue  # abandoned when the run stopped: its outputs are not used
                node_id = job.plan.node_id
                batch.append((node_id, report.outputs, report.finished, report.attempts))
                report.durable = True
        if batch:
            assert self.commit is not None
            self.commit(self.run_id, batch)

    def ended(
        self, p: NodePlan, status: NodeStatus, outcome: Outcome, error: BaseException | None
    ) -> None:
        started, finished, attempts = outcome.started, outcome.finished, outcome.attempts
        self.recorder.node_finished(p.node_id, status, error, started, finished, attempts)
        hooks = self.hooks_for(p.index) if p.scoped_hooks else self.hooks
        if hooks.node_finish:
            outputs = outcome.outputs
            hooks.fire(moments.NodeFinished(self.run_id, p.node_id, status, outputs, error,
                                            started, finished, attempts))  # fmt: skip

    def paused(self, p: NodePlan, outcome: Outcome, pause: NodePaused) -> None:
        """Node `p` waits for a person: its interrupts go to the record and the hooks."""
        self.waiting[p.node_id] = pause
        asked = tuple(Interrupt.of(p.node_id, r, outcome.finished) for r in pause.requests)
        self.record.interrupts.extend(asked)
        self.recorder.node_finished(
            p.node_id, NodeStatus.WAITING, None, outcome.started, outcome.finished,
            outcome.attempts,
        )  # fmt: skip
        hooks = self.hooks_for(p.index)
        if hooks.observes(moments.NodeWaiting):
            time = outcome.finished
            hooks.fire(moments.NodeWaiting(self.run_id, p.node_id, asked, pause.state, time))

    def skipped(self, j: int, reason: str) -> None:
        node_id, time = self.nodes[j].node_id, now()
        self.recorder.node_skipped(node_id, reason, time)
        hooks = self.hooks_for(j)
        if hooks.observes(moments.NodeSkipped):
            hooks.fire(moments.NodeSkipped(self.run_id, node_id, reason, time))

    # -- stopping --------------------------------------------------------------------------------

    def stop(self, status: NodeStatus, why: str) -> None:
        """Start nothing more; cancel async nodes and abandon sync ones still running."""
        self.slots.close()  # from here no node begins (see Slots.acquire)
        stopped_at = now()
        began = {
            i: job for i, job in enumerate(self.jobs) if job is not None and job.started is not None
        }
        for i, job in began.items():
            self.started(i, job.started)  # type: ignore[arg-type] # the hooks hear it began
        error = NodeCancelledError(why)
        for i in dataflow.cancel(self.state, began):
            job = began[i]
            outcome = Outcome(i, None, error, job.started, stopped_at)  # type: ignore[arg-type]
            self.ended(job.plan, status, outcome, error)
        self.jobs = [None] * len(self.jobs)
        self.abandoned.extend(self.executors.cancel_all())

    def finish(self, status: RunStatus, error: BaseException | None) -> None:
        self.recorder.run_finished(status)
        if self.hooks.observes(moments.RunFinished):
            self.hooks.fire(moments.RunFinished(self.run_id, status, self.record, error))
