"""`RayExecutor`: one run's executor on Ray. The driver hands it every ready node; it sends each
attempt to the cluster (where: `Placement`), hears back from the `Waiter`, replays the node's
moments to the run's hooks, merges the node's part of the record, retries and reports the
`Outcome`.

Retries are decided by `kaizen.retrying.next_attempt`: under the node's policy
(`kaizen.runtime.attempt.node_retry_policy`) for a failure of the node, under the runtime's
`worker_retries` for an attempt whose worker died (killed, out of memory, its machine lost, its
actor gone). A timeout cancels the attempt's task or actor call. `ray` is imported lazily.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from time import time as now
from typing import TYPE_CHECKING, Any

from kaizen.errors import NotPicklableError, VetoError
from kaizen.moments import ChunkReceived
from kaizen.retrying import RetryPolicy, next_attempt
from kaizen.runtime.attempt import Job, Outcome, node_retry_policy
from kaizen.runtime.budget import BudgetGuard
from kaizen.runtime.executors import OnTheLoop
from kaizen.runtime.hooks import HookSet, Middleware
from kaizen.runtime.ray.placement import ActorCall, Placement
from kaizen.runtime.ray.worker import (
    BudgetCopy,
    NodeTask,
    WorkerReport,
    pickling_error,
    unpicklable_port,
)
from kaizen.workflow.plan import NodePlan

if TYPE_CHECKING:
    import asyncio

    from kaizen.runtime.driver import Run
    from kaizen.runtime.ray.waiter import Waiter

__all__ = ["RayExecutor"]

_WORKER_LOST = (
    "WorkerCrashedError",
    "NodeDiedError",
    "LocalRayletDiedError",
    "OutOfMemoryError",
    "ObjectLostError",
    "OwnerDiedError",
)


@dataclass(slots=True, eq=False)
class _Attempt:
    job: Job
    number: int  # 1, 2, ...: every attempt, whatever failed before
    lost_workers: int  # attempts so far whose worker died
    ref: Any = None  # the task's ObjectRef
    deadline: float | None = None
    actor: ActorCall | None = None  # the model actor a call went to (None: a task)


class RayExecutor(OnTheLoop):
    """One run's executor on Ray: the driver hands it every ready node (`choose` is itself).

    Runs on the driver's event loop (thread) except `resume`, which may be called from any."""

    inline = None  # no node runs in the driver's thread

    def __init__(
        self, run: Run, placement: Placement, waiter: Waiter, worker_retries: RetryPolicy
    ) -> None:
        self.run = run
        self.placement = placement
        self.worker_retries = worker_retries
        self.slots = run.slots
        self.inbox = run.inbox
        self.waiter = waiter
        self.produced: dict[int, Any] = {}  # node index -> the ObjectRef of its completed task
        self.attempts: dict[Any, _Attempt] = {}  # in flight, by ref
        self._replay: dict[int, tuple[HookSet, HookSet]] = {}
        self._policies: dict[int, RetryPolicy] = {}

    # -- ExecutorSet --------------------------------------------------------------------------

    def choose(self, p: NodePlan, alone: bool) -> RayExecutor:
        return self

    def cancel_all(self) -> list[asyncio.Task[Any]]:
        """The run stopped: cancel every task in flight (their late results are dropped)."""
        import ray

        refs = list(self.attempts)
        for attempt in self.attempts.values():
            _release(attempt)
        self.attempts.clear()
        self.waiter.forget(refs)
        for ref in refs:
            with contextlib.suppress(Exception):
                ray.cancel(ref)
        return []

    # -- submitting ---------------------------------------------------------------------------

    # `submit` and `resume` (a slot, or parked until one is handed over) are `OnTheLoop`'s.

    def _start(self, job: Job) -> None:
        self.run.started(job.plan.index, job.started)  # type: ignore[arg-type]
        self._send(_Attempt(job, 1, 0))

    def _send(self, attempt: _Attempt) -> None:
        """Submit one attempt as a Ray task, its upstream inputs as ObjectRefs."""
        if self.slots.closed:
            return  # the run stopped while this attempt waited for its backoff
        job = attempt.job
        p = job.plan
        task, upstream = self._task(job, attempt.number)
        try:
            ref, attempt.actor = self.placement.send(p, task, upstream)
        except Exception as exc:
            _release(attempt)
            error = _unpicklable(p, task, exc)
            self._ended(attempt, None, error, worker_lost=False, final=True)
            self.inbox.wake()
            return
        attempt.ref = ref
        timeout = p.node.policy.timeout
        attempt.deadline = None if timeout is None else now() + timeout
        self.attempts[ref] = attempt
        self.waiter.watch(ref, self, attempt.deadline)

    def _task(self, job: Job, number: int) -> tuple[NodeTask, list[Any]]:
        p, run = job.plan, self.run
        values = dict(job.inputs)
        wiring: list[tuple[int, str, str]] = []
        upstream: list[Any] = []
        position: dict[int, int] = {}
        feeds: dict[str, int] = {}
        for _, _, port in p.edges_in:
            feeds[port] = feeds.get(port, 0) + 1
        for source, source_port, port in p.edges_in:
            ref = self.produced.get(source)
            # a port fed by one edge only: the value is surely that source's (else send it)
            if ref is None or port not in values or feeds[port] != 1:
                continue
            if source not in position:
                position[source] = len(upstream)
                upstream.append(ref)
            wiring.append((position[source], source_port, port))
            del values[port]
        hooks = run.hooks_for(p.index)
        budgets = _budget_copies(hooks, p.node_id)
        task = NodeTask(
            plan=p,
            run_id=run.run_id,
            workflow_name=run.record.workflow_name,
            attempt=number,
            max_concurrency=run.max_concurrency,
            inputs=values,
            wiring=tuple(wiring),
            middleware=hooks.middleware,
            budgets=budgets,
            wants_chunks=hooks.observes(ChunkReceived),
            resume=job.resume,
        )
        return task, upstream

    # -- what the waiter hands back (on the loop) --------------------------------------------------

    def settle(self, refs: Sequence[Any]) -> None:
        """Tasks finished: their outcomes, or another attempt."""
        import ray
        from ray import cloudpickle

        for ref in refs:
            attempt = self.attempts.pop(ref, None)
            if attempt is None:
                continue  # cancelled or timed out meanwhile
            _release(attempt)
            report: WorkerReport | None = None
            error: BaseException | None = None
            worker_lost = False
            try:
                report = cloudpickle.loads(ray.get(ref))
            except ray.exceptions.RayTaskError as exc:  # the task itself broke (not the node)
                cause = exc.cause
                error = cause if isinstance(cause, BaseException) else exc
            except ray.exceptions.RayError as exc:
                error = exc
                worker_lost = type(exc).__name__ in _WORKER_LOST or isinstance(
                    exc, ray.exceptions.RayActorError
                )
            except Exception as exc:  # a report this process cannot unpickle
                error = exc
            if report is not None:
                self._absorb(attempt.job.plan, report)
                error = report.error
            self._ended(attempt, report, error, worker_lost=worker_lost)
        self.inbox.wake()

    def expire(self, ref: Any) -> None:
        """An attempt ran past its timeout: cancel its task, and fail (or retry) the attempt."""
        import ray

        attempt = self.attempts.pop(ref, None)
        if attempt is None:
            return
        on_actor = attempt.actor is not None
        _release(attempt)
        with contextlib.suppress(Exception):
            # a task's running Python call cannot be interrupted otherwise; an actor call is
            # an asyncio task, cancelled without force (which Ray refuses for actor calls)
            ray.cancel(ref, force=not on_actor)
        p = attempt.job.plan
        timeout = p.node.policy.timeout
        error = TimeoutError(
            f"node {p.node_id!r} attempt {attempt.number} timed out after {timeout:g} s"
        )
        self._ended(attempt, None, error, worker_lost=False)
        self.inbox.wake()

    def _ended(
        self,
        attempt: _Attempt,
        report: WorkerReport | None,
        error: BaseException | None,
        *,
        worker_lost: bool,
        final: bool = False,
    ) -> None:
        """An attempt ended: retry it if its policy says so, else report the node's outcome."""
        job, p = attempt.job, attempt.job.plan
        if error is not None and not final and not self.slots.closed:
            if worker_lost:  # retried under `worker_retries`, on top of the node's own
                lost = attempt.lost_workers + 1
                wait = next_attempt(self.worker_retries, lost, error)
            else:
                lost = attempt.lost_workers
                wait = next_attempt(self._retry_policy(p), attempt.number, error)
            if wait is not None:
                again = _Attempt(job, attempt.number + 1, lost)
                self.run.retrying(p.index, attempt.number, error, wait)
                if wait:
                    self.loop.call_later(wait, self._send, again)
                else:
                    self._send(again)
                return
        self.slots.release()
        started = job.started if job.started is not None else now()
        finished = report.finished if report is not None else now()
        outputs = report.outputs if report is not None and error is None else None
        explanation = report.explanation if report is not None else None
        if error is None and attempt.ref is not None:
            self.produced[p.index] = attempt.ref
        outcome = Outcome(p.index, outputs, error, started, finished, attempt.number, explanation)
        self.run.finished(outcome)

    def _retry_policy(self, p: NodePlan) -> RetryPolicy:
        policy = self._policies.get(p.index)
        if policy is None:
            policy = self._policies[p.index] = node_retry_policy(p.node.policy)
        return policy

    def _absorb(self, p: NodePlan, report: WorkerReport) -> None:
        """The node's moments, replayed to the run's hooks, and its part of the record."""
        record = self.run.record
        node_run = record.nodes[p.node_id]
        worked = report.node_run
        node_run.usage.add(worked.usage)
        node_run.model_calls.extend(worked.model_calls)
        node_run.tool_calls.extend(worked.tool_calls)
        node_run.notes.extend(worked.notes)
        if worked.stop_reason is not None:
            node_run.stop_reason = worked.stop_reason
        node_run.worker = report.worker
        record.usage.add(worked.usage)
        record.hook_errors.extend(report.hook_errors)
        if not report.moments:
            return
        observers, starters = self._replaying(p.index)
        for event in report.moments:
            hooks = starters if event.vetoable else observers
            with contextlib.suppress(VetoError):  # the call happened: nothing to refuse now
                hooks.fire(event)

    def _replaying(self, index: int) -> tuple[HookSet, HookSet]:
        """The hooks a node's moments are replayed to: the run's and the node's own, except
        the run's recorder (the record is merged instead, with the worker's times); and for
        call-start moments also except the budget guard (the worker's copies checked)."""
        sets = self._replay.get(index)
        if sets is None:
            hooks = self.run.hooks_for(index)
            own = self.run.hooks.hooks[0]  # the run's Recorder, registered first
            observers = [h for h in hooks.hooks if h is not own and not isinstance(h, Middleware)]
            starters = [h for h in observers if not isinstance(h, BudgetGuard)]
            sets = self._replay[index] = (
                HookSet(observers, hooks.record),
                HookSet(starters, hooks.record),
            )
        return sets


def _release(attempt: _Attempt) -> None:
    """The attempt's actor call (if any) is over, for the pool's count of calls in flight."""
    if attempt.actor is not None:
        pool, slot = attempt.actor
        attempt.actor = None
        pool.done(slot)


def _budget_copies(hooks: HookSet, node_id: str) -> tuple[BudgetCopy, ...]:
    """The budgets that apply to `node_id`, as they stand now, for the worker to check."""
    return tuple(
        (budget.max_tokens, budget.max_cost, budget.used)
        for hook in hooks.hooks
        if isinstance(hook, BudgetGuard)
        for budget in hook.budgets_for(node_id)
    )


def _unpicklable(p: NodePlan, task: NodeTask, error: BaseException) -> BaseException:
    """Why a task could not be submitted: the node or the input that cannot be pickled."""
    culprit = pickling_error(p.node)
    if culprit is not None:
        return NotPicklableError(
            f"node {p.node_id!r} ({p.node_type}) cannot be sent to a Ray worker: the node "
            f"itself cannot be pickled ({type(culprit).__name__}: {culprit}); its function, "
            "agent, model or tools must be picklable (define them at module level)",
            node_id=p.node_id, port=None, direction="node", type_name=type(p.node).__name__,
        )  # fmt: skip
    for port, value in task.inputs.items():
        unpicklable = unpicklable_port(p, port, value, "input")
        if unpicklable is not None:
            return unpicklable
    return error
