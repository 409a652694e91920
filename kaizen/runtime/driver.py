"""The driver: one loop that runs a workflow's nodes through executors, in dataflow order.

    while the run is not over:
        settle what the executors reported   (Started / Retrying / Outcome, in order)
        hand every READY node to an executor  (executors.choose: inline, threads, tasks, supervised)
        wait for the next report

Everything a run knows lives in three places: the dataflow state (`kaizen.runtime.state`: pure
transitions, no I/O), the executors (`kaizen.runtime.executors`: how nodes run), and the hooks
(`kaizen.runtime.hooks`: the record, events, budgets and user hooks observe every moment from
here, on this thread, in order). The driver only moves reports from the second to the first and
announces what changed to the third.

Failure policy. `fail_fast`: the first failure (or a node refused by the budget) stops the run:
nothing new starts, running async nodes are cancelled and running sync nodes abandoned (both
CANCELLED), and the error is raised with the run id and the results so far. `continue`: a failed
node's dependants are SKIPPED, independent branches run on, and the run ends FAILED.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Mapping
from time import time as now
from typing import TYPE_CHECKING, Any

from kaizen.errors import BudgetExceededError, NodeCancelledError, NodeExecutionError
from kaizen.runtime import state as dataflow
from kaizen.runtime.context import NodeContext
from kaizen.runtime.executors import Executors, Inbox, Job, Outcome, Retrying, Started
from kaizen.runtime.hooks import HookSet
from kaizen.runtime.pool import Slots, WorkerPool
from kaizen.runtime.record import NodeRun, NodeStatus, RunRecord, RunStatus
from kaizen.runtime.recorder import Recorder
from kaizen.workflow.plan import NodePlan

if TYPE_CHECKING:
    from kaizen.workflow.workflow import Workflow

__all__ = ["Run"]

_log = logging.getLogger("kaizen.runtime")
_CANCEL_GRACE = 1.0  # seconds cancelled async nodes get to finish their cleanup
Results = dict[str, dict[str, Any]]


class Run:
    """One execution of a workflow: its state, its record, and the loop that drives it."""

    executors: Executors  # made by drive(), on the loop it runs on

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
    ) -> None:
        plan = workflow.plan
        self.workflow = workflow
        self.run_id = run_id
        self.record = RunRecord(
            run_id,
            workflow.name,
            started=now(),
            nodes={p.node_id: NodeRun(p.node_id, p.node_type) for p in plan.nodes},
        )
        self.hooks = HookSet([Recorder(self.record), *hooks], self.record)
        # node-scoped hooks: the run's, plus a node's own (an agent's)
        self.node_hooks = [self.hooks.including(p.node.hooks) for p in plan.nodes]
        self.state = dataflow.new_state(plan, inputs)
        self.pool = pool
        self.slots = Slots(max_concurrency)
        self.fail_fast = fail_fast
        self.inline_allowed = inline_allowed
        self.results: Results = {}
        self.errors: dict[str, NodeExecutionError] = {}
        self.stop_error: NodeExecutionError | BudgetExceededError | None = None
        self.refused = False  # a node was refused by the budget: the run is FAILED
        self.jobs: dict[int, Job] = {}  # handed to an executor, not settled yet
        self.announced: set[int] = set()  # nodes whose start the hooks have heard
        self.abandoned: list[asyncio.Task[Any]] = []

    # -- the loop --------------------------------------------------------------------------------

    async def drive(self) -> Results:
        """Run to the end; return the results, or raise the error that stopped the run."""
        loop = asyncio.get_running_loop()
        inbox = Inbox(loop)
        context = contextvars.copy_context()
        self.executors = Executors(
            self.pool, self.slots, inbox, context, inline_allowed=self.inline_allowed
        )
        self.hooks.fire("run_start", run_id=self.run_id, workflow=self.workflow, record=self.record)
        me = asyncio.current_task()
        state, items = self.state, inbox.items
        try:
            while True:
                while items:
                    self.settle(items.popleft())
                while state.ready and not self.slots.closed:
                    self.launch(state.ready.popleft())
                if dataflow.is_finished(state) and not items:
                    break
                if me is not None and me.cancelling():  # Ctrl-C during a node run inline
                    raise asyncio.CancelledError
                await inbox.wait()
        except BaseException as exc:  # cancelled, Ctrl-C, or KeyboardInterrupt from an inline node
            self.stop(NodeStatus.CANCELLED, "the run was interrupted")
            self.finish(RunStatus.CANCELLED, exc)
            raise
        if self.abandoned:
            await asyncio.wait(self.abandoned, timeout=_CANCEL_GRACE)
        failed = self.errors or self.refused
        self.finish(RunStatus.FAILED if failed else RunStatus.COMPLETED, self.stop_error)
        if self.stop_error is not None:
            error = self.stop_error
            error.run_id, error.results = self.run_id, self.results
            error.add_note(f"{self.record.summary()} (runtime.get_record({self.run_id!r}))")
            raise error
        return self.results

    def launch(self, i: int) -> None:
        """Hand READY node `i` to the executor its kind (and the moment) calls for."""
        state = self.state
        p = self.workflow.plan.nodes[i]
        dataflow.start(state, i)
        context = NodeContext(self.run_id, p.node_id, 1, self.record, self.node_hooks[i])
        job = Job(p, state.inputs[i], context)
        self.jobs[i] = job
        alone = state.running == 1 and not state.ready
        self.executors.choose(p, alone=alone).submit(job)

    # -- settling reports ------------------------------------------------------------------------

    def settle(self, report: Started | Retrying | Outcome) -> None:
        if type(report) is Outcome:
            self.settle_outcome(report)
        elif type(report) is Started:
            if self.state.status[report.index] is dataflow.RUNNING:
                self.announce(report.index, report.time)
        elif self.state.status[report.index] is dataflow.RUNNING:
            assert isinstance(report, Retrying)
            p = self.workflow.plan.nodes[report.index]
            self.node_hooks[report.index].fire(
                "node_retry",
                run_id=self.run_id,
                node_id=p.node_id,
                attempt=report.attempt,
                error=report.error,
                wait=report.wait,
            )

    def announce(self, i: int, time: float) -> None:
        """Tell the hooks node `i` began (once)."""
        if i in self.announced:
            return
        self.announced.add(i)
        p = self.workflow.plan.nodes[i]
        self.node_hooks[i].fire(
            "node_start",
            run_id=self.run_id,
            node_id=p.node_id,
            node_type=p.node_type,
            attempt=1,
            time=time,
        )

    def settle_outcome(self, outcome: Outcome) -> None:
        i = outcome.index
        if self.state.status[i] is not dataflow.RUNNING:
            return  # abandoned when the run stopped; its late outcome is discarded
        del self.jobs[i]
        self.announce(i, outcome.started)
        p = self.workflow.plan.nodes[i]
        error = outcome.error
        if error is None:
            outputs = outcome.outputs
            assert outputs is not None
            skips = dataflow.complete(self.state, i, outputs, _explanation(p, outputs))
            self.results[p.node_id] = outputs
            self.finished(p, NodeStatus.COMPLETED, outcome, None)
        elif isinstance(error, BudgetExceededError):
            self.refused = True
            skips = dataflow.refuse(self.state, i, "budget exceeded", str(error))
            if self.fail_fast and self.stop_error is None:
                error.node_id = p.node_id
                self.stop_error = error
        else:
            message = f"{type(error).__name__}: {error}"
            node_error = NodeExecutionError(p.node_id, outcome.attempts, message)
            node_error.__cause__ = error
            self.errors[p.node_id] = node_error
            skips = dataflow.fail(self.state, i, message, propagate=not self.fail_fast)
            self.finished(p, NodeStatus.FAILED, outcome, error)
            if self.fail_fast and self.stop_error is None:
                self.stop_error = node_error
        for j, reason in skips:
            self.skipped(j, reason)
        if self.stop_error is not None and not self.slots.closed:
            culprit = p.node_id
            self.stop(NodeStatus.CANCELLED, f"node {culprit!r} stopped the run (fail_fast)")

    def finished(
        self, p: NodePlan, status: NodeStatus, outcome: Outcome, error: BaseException | None
    ) -> None:
        self.node_hooks[p.index].fire(
            "node_finish",
            run_id=self.run_id,
            node_id=p.node_id,
            status=status,
            outputs=outcome.outputs,
            error=error,
            started=outcome.started,
            finished=outcome.finished,
            attempts=outcome.attempts,
        )

    def skipped(self, j: int, reason: str) -> None:
        self.node_hooks[j].fire(
            "node_skip",
            run_id=self.run_id,
            node_id=self.workflow.plan.nodes[j].node_id,
            reason=reason,
            time=now(),
        )

    # -- stopping --------------------------------------------------------------------------------

    def stop(self, status: NodeStatus, why: str) -> None:
        """Start nothing more; cancel async nodes and abandon sync ones still running."""
        self.slots.close()  # from here no node begins (see Slots.acquire)
        began = [i for i, job in self.jobs.items() if job.started is not None]
        cancelled = dataflow.cancel(self.state, began)
        stopped_at = now()
        error = NodeCancelledError(why)
        for i in cancelled:
            job = self.jobs[i]
            began_at = job.started if job.started is not None else stopped_at
            self.announce(i, began_at)
            self.finished(job.plan, status, Outcome(i, None, error, began_at, stopped_at), error)
        self.jobs.clear()
        self.abandoned.extend(self.executors.tasks.cancel_all())

    def finish(self, status: RunStatus, error: BaseException | None) -> None:
        self.hooks.fire(
            "run_finish", run_id=self.run_id, status=status, record=self.record, error=error
        )


def _explanation(p: NodePlan, outputs: Mapping[str, Any]) -> str | None:
    """The node's own word on why output ports feeding others were not produced, if any were."""
    if all(port in outputs for _, port, _ in p.edges_out):
        return None
    try:
        return p.node.unproduced_reason(outputs)
    except Exception:  # an explanation must never break the run
        _log.exception("%r.unproduced_reason() failed", p.node)
        return None
