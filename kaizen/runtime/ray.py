"""`RayRuntime`: runs a workflow's nodes as Ray tasks, with `LocalRuntime`'s semantics.

This module owns everything Ray-specific (`ray` is imported lazily, inside it): connecting to the
cluster, the Ray executor, the worker's side of a node, and the errors of values that cannot be
pickled. The rest is `LocalRuntime`'s: the same driver (`kaizen.runtime.driver`), dataflow
state, hooks, record, budgets and checkpoints. Only the executor differs:

    driver ── submit(job) ──> RayExecutor ── ray task (node, inputs, upstream ObjectRefs) ──> worker
       ^                          |                                                          |
       └── finished(outcome) ── settle <── the waiter: ray.wait on every outstanding ref <───┘

- A ready node becomes one Ray task per attempt (`_run_attempt`), asking the cluster for the
  node's `ExecutionPolicy.num_cpus` / `resources` (default: the runtime's `num_cpus`, or
  `model_num_cpus` for model-bound nodes such as agents). Its inputs that came from upstream
  nodes are passed as the upstream tasks' ObjectRefs, so Ray moves the values between workers
  and schedules by dependency; the driver never uploads them again.
- A model-bound node whose `arun` is async (an agent) runs instead as a call on one of a small
  pool of async Ray actors (`_ModelPool`, `model_actors` of them, each asking for
  `model_num_cpus`): an agent spends its time waiting on its model, so one process awaits many
  at once on its event loop, where a task would hold a whole worker for each. Upstream
  ObjectRefs, the report, retries, timeouts and dead workers are handled as for tasks; calls go
  to the least-loaded actor; the pool lives as long as the runtime (`close()` kills it).
- In the worker the node runs exactly as locally (`executors.call_sync` / `call_async`), with a
  `NodeContext` whose hooks are the worker's: a `Recorder` of a one-node record, the run's
  middleware, copies of the run's budgets, and a relay that keeps the model, tool and chunk
  moments. The task returns one pickled `_WorkerReport`: outputs (or the error), timings, those
  moments and the node's part of the record.
- One waiter thread per runtime calls `ray.wait` on all outstanding refs and hands the finished
  (and the timed-out) to their run's event loop, where `RayExecutor.settle` replays the moments
  to the run's hooks, merges the node's record, applies the retry policy and reports the
  `Outcome` to the driver.

Retries follow the node's `ExecutionPolicy` (`retries`, `retry_on`, `backoff`). A worker that
dies mid-task (killed, out of memory, its machine lost) is a failed attempt too, retried up to
`worker_retries` times on top of the policy's; either way the record shows every attempt and a
`node_retry` moment for each retry, as locally (Ray's own, silent `max_retries` is not used:
it would hide the retries from the record). An actor that dies takes its calls in flight with
it: each is a failed attempt whose worker died; Ray restarts the actor (`max_restarts=-1`) and
the retries go to the pool again. A timeout cancels the attempt's task (`ray.cancel(force=True)`:
a running Python call cannot be interrupted otherwise) or its actor call (`ray.cancel`, which
cancels the call's asyncio task: Ray refuses `force` for actor calls, and killing the actor
would end every other agent on it).

What differs from `LocalRuntime`, by necessity: the moments inside a node (model and tool calls,
streamed chunks) reach the hooks when the node's attempt ends, not as they happen; a budget is
checked in the worker against its usage when the attempt began plus the attempt's own calls;
nodes of one run do not share process state (a `ScriptedModel` list script is consumed per
copy: script agents with dicts or callables, or one reply list per agent).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from time import time as now
from typing import TYPE_CHECKING, Any, cast

from kaizen.errors import NotPicklableError, VetoError
from kaizen.moments import ChunkReceived, Moment
from kaizen.runtime.budget import Budget, BudgetGuard
from kaizen.runtime.executors import Job, OnTheLoop, Outcome, call_async, call_sync
from kaizen.runtime.hooks import HookSet, Middleware, MomentHook
from kaizen.runtime.local import FailurePolicy, LocalRuntime
from kaizen.runtime.record import HookError, NodeRun, RunRecord, Usage
from kaizen.runtime.recorder import Recorder
from kaizen.workflow.plan import NodePlan

if TYPE_CHECKING:
    import asyncio

    from kaizen.runtime.driver import Run
    from kaizen.store.db import Store, StorePath
    from kaizen.workflow.workflow import Workflow

__all__ = ["RayRuntime"]

_POLL = 0.01  # seconds: how soon the waiter notices refs submitted while it waits on others
_WORKER_LOST = (
    "WorkerCrashedError",
    "NodeDiedError",
    "LocalRayletDiedError",
    "OutOfMemoryError",
    "ObjectLostError",
    "OwnerDiedError",
)


class RayRuntime(LocalRuntime):
    """Runs workflows on a Ray cluster: every node attempt is a Ray task.

    Same API, results, statuses, skip reasons, hooks and `RunRecord` as `LocalRuntime`
    (`execute`, `execute_with_record`, `execute_async`, `stream`, `stream_sync`, `resume`);
    `NodeRun.worker` says where each node ran.

    `address`: None starts a local cluster in this process unless Ray is already initialised
    (then that cluster is used), `"auto"` joins the cluster running on this machine,
    `"ray://host:10001"` a remote one through Ray Client. `runtime_env` (Ray's: `pip`,
    `env_vars`, `working_dir`, ...) applies to every task. `init_options` go to `ray.init`.
    `max_concurrency` bounds the tasks of one run in flight at once. `num_cpus` is what a node
    asks for unless its `ExecutionPolicy` says otherwise; `model_num_cpus` what a model-bound
    node asks for. Model-bound nodes with an async `arun` (agents) run on `model_actors` async
    actors of `model_num_cpus` each, many calls at once per actor (None: one per CPU of the
    cluster, at most 8; 0: every node is a task); unless their policy asks for its own
    `num_cpus` or `resources`, which only a task gets. `worker_retries`: how many times an
    attempt whose worker (or actor) died is run again, on top of the node's own `retries`.
    """

    def __init__(
        self,
        address: str | None = None,
        max_concurrency: int = 64,
        failure_policy: FailurePolicy = "fail_fast",
        budget: Budget | None = None,
        *,
        runtime_env: Mapping[str, Any] | None = None,
        num_cpus: float = 1.0,
        model_num_cpus: float = 0.25,
        worker_retries: int = 3,
        model_actors: int | None = None,
        init_options: Mapping[str, Any] | None = None,
        hooks: Iterable[object] = (),
        keep_records: int = 100,
        checkpoint: bool | StorePath | Store = False,
        allow_pickle: bool = False,
    ) -> None:
        super().__init__(
            max_concurrency, failure_policy, budget, hooks=hooks, keep_records=keep_records,
            checkpoint=checkpoint, allow_pickle=allow_pickle,
        )  # fmt: skip
        if num_cpus < 0 or model_num_cpus < 0:
            raise ValueError("num_cpus and model_num_cpus must be >= 0")
        if worker_retries < 0:
            raise ValueError(f"worker_retries must be >= 0, got {worker_retries!r}")
        if model_actors is not None and model_actors < 0:
            raise ValueError(f"model_actors must be >= 0 or None, got {model_actors!r}")
        self.address = address
        self.runtime_env = dict(runtime_env) if runtime_env else None
        self.num_cpus = num_cpus
        self.model_num_cpus = model_num_cpus
        self.worker_retries = worker_retries
        self.model_actors = model_actors
        self.init_options = dict(init_options or {})
        self._connect_lock = threading.Lock()
        self._env_per_task = False  # Ray was started by someone else: runtime_env per task
        self._remotes: dict[tuple[Any, ...], Any] = {}
        self._waiter: _Waiter | None = None
        self._model_pool: _ModelPool | None = None

    def close(self) -> None:
        """Stop this runtime's waiter thread and kill its model actors (the cluster is left
        running: `ray.shutdown()`)."""
        super().close()
        if self._waiter is not None:
            self._waiter.close()
        if self._model_pool is not None:
            self._model_pool.close()

    def replay(self, run_id: str, workflow: Workflow, **options: Any) -> tuple[Any, str]:
        """Not on Ray: recorded calls are served in this process only. Replay with
        `LocalRuntime(record=True)`'s store and `LocalRuntime.replay`."""
        raise NotImplementedError(
            "RayRuntime cannot replay a recorded run (the recording is served in this process, "
            "the nodes run on workers); replay it with LocalRuntime().replay(run_id, workflow)"
        )

    # -- the seam: how runs make their executors --------------------------------------------------

    def _executors(self) -> Callable[[Run], RayExecutor]:
        self._connect()
        waiter = self._waiter
        assert waiter is not None
        return lambda run: RayExecutor(self, run, waiter)

    def _connect(self) -> None:
        """Join (or start) the cluster, once; start the waiter."""
        with self._connect_lock:
            if self._waiter is not None:
                return
            import ray

            if not ray.is_initialized():
                options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
                options.update(self.init_options)
                if self.runtime_env:
                    options["runtime_env"] = self.runtime_env
                ray.init(address=self.address, **options)
            else:
                self._env_per_task = bool(self.runtime_env)
            self._waiter = _Waiter()
            weakref.finalize(self, self._waiter.close)

    def on_actor(self, p: NodePlan) -> bool:
        """Whether node `p` runs as a call on the model actors rather than as a task."""
        policy = p.node.policy
        return (
            p.node.model_bound
            and p.is_async
            and self.model_actors != 0
            and policy.num_cpus is None
            and not policy.resources
        )

    def model_pool(self) -> _ModelPool:
        """The pool of model actors, made on first use (again if Ray was restarted)."""
        with self._connect_lock:
            pool = self._model_pool
            if pool is None or not pool.alive():
                pool = self._model_pool = _ModelPool(
                    self.model_actors,
                    self.model_num_cpus,
                    self.runtime_env if self._env_per_task else None,
                )
            return pool

    def remote_for(self, p: NodePlan) -> Any:
        """The Ray remote function with the options node `p` asks for (made once per kind)."""
        policy = p.node.policy
        cpus = policy.num_cpus
        if cpus is None:
            cpus = self.model_num_cpus if p.node.model_bound else self.num_cpus
        resources = tuple(sorted((policy.resources or {}).items()))
        key = (cpus, resources)
        remote = self._remotes.get(key)
        if remote is None:
            import ray

            options: dict[str, Any] = {"num_cpus": cpus, "max_retries": 0}
            if resources:
                options["resources"] = dict(resources)
            if self._env_per_task:
                options["runtime_env"] = self.runtime_env
            remote = self._remotes[key] = ray.remote(_run_attempt).options(**options)
        return remote


# -- the driver's side -----------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Attempt:
    job: Job
    number: int  # 1, 2, ...: every attempt, whatever failed before
    lost_workers: int  # attempts so far whose worker died
    ref: Any = None  # the task's ObjectRef
    deadline: float | None = None
    actor: tuple[_ModelPool, int] | None = None  # the pool and actor a model call went to


class RayExecutor(OnTheLoop):
    """One run's executor on Ray: the driver hands it every ready node (`choose` is itself).

    Runs on the driver's event loop (thread) except `resume`, which may be called from any."""

    inline = None  # no node runs in the driver's thread

    def __init__(self, runtime: RayRuntime, run: Run, waiter: _Waiter) -> None:
        self.runtime = runtime
        self.run = run
        self.slots = run.slots
        self.inbox = run.inbox
        self.waiter = waiter
        self.produced: dict[int, Any] = {}  # node index -> the ObjectRef of its completed task
        self.attempts: dict[Any, _Attempt] = {}  # in flight, by ref
        self._replay: dict[int, tuple[HookSet, HookSet]] = {}

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
            if self.runtime.on_actor(p):
                pool = self.runtime.model_pool()
                ref, slot = pool.call(task, upstream)
                attempt.actor = (pool, slot)
            else:
                ref = self.runtime.remote_for(p).remote(task, *upstream)
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

    def _task(self, job: Job, number: int) -> tuple[_NodeTask, list[Any]]:
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
        task = _NodeTask(
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
            report: _WorkerReport | None = None
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
        report: _WorkerReport | None,
        error: BaseException | None,
        *,
        worker_lost: bool,
        final: bool = False,
    ) -> None:
        """An attempt ended: retry it if its policy says so, else report the node's outcome."""
        job, p = attempt.job, attempt.job.plan
        if error is not None and not final and not self.slots.closed:
            policy = p.node.policy
            wait = 0.0
            if worker_lost and attempt.lost_workers < self.runtime.worker_retries:
                again = _Attempt(job, attempt.number + 1, attempt.lost_workers + 1)
            elif (
                not worker_lost
                and attempt.number <= policy.retries
                and isinstance(error, policy.retry_on)
                and not isinstance(error, VetoError | NotPicklableError)
            ):
                again = _Attempt(job, attempt.number + 1, attempt.lost_workers)
                wait = policy.backoff * 2 ** (attempt.number - 1) if policy.backoff else 0.0
            else:
                again = None
            if again is not None:
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

    def _absorb(self, p: NodePlan, report: _WorkerReport) -> None:
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


_ACTOR_CALLS = 1000  # calls one model actor runs at once (they are asyncio tasks, mostly waiting)
_MAX_DEFAULT_ACTORS = 8


class _ModelPool:
    """A runtime's async Ray actors for model-bound nodes, made on first use: each call goes to
    the actor with the fewest calls in flight. Ray restarts an actor that dies; `close` (or the
    last reference to the pool going away) ends them."""

    def __init__(self, size: int | None, num_cpus: float, runtime_env: Any) -> None:
        import ray

        if size is None:
            cpus = ray.cluster_resources().get("CPU", 1.0)
            size = max(1, min(_MAX_DEFAULT_ACTORS, int(cpus)))
        options: dict[str, Any] = {
            "num_cpus": num_cpus,
            "max_concurrency": _ACTOR_CALLS,
            "max_restarts": -1,
            "max_task_retries": 0,  # a call lost with its actor is retried by the executor
        }
        if runtime_env:
            options["runtime_env"] = runtime_env
        actor_class = ray.remote(_ModelActor).options(**options)
        self.session = ray.get_runtime_context().get_session_name()
        self.actors: list[Any] = [actor_class.remote() for _ in range(size)]
        self.load = [0] * size
        self._lock = threading.Lock()

    def alive(self) -> bool:
        """Whether the pool belongs to the Ray session running now."""
        import ray

        return ray.is_initialized() and ray.get_runtime_context().get_session_name() == self.session

    def call(self, task: _NodeTask, upstream: Sequence[Any]) -> tuple[Any, int]:
        """Send one attempt to the least-loaded actor: its ObjectRef and which actor it went to."""
        with self._lock:
            slot = min(range(len(self.load)), key=self.load.__getitem__)
            self.load[slot] += 1
        try:
            return self.actors[slot].run.remote(task, *upstream), slot
        except BaseException:
            self.done(slot)
            raise

    def done(self, slot: int) -> None:
        with self._lock:
            self.load[slot] -= 1

    def close(self) -> None:
        import ray

        actors, self.actors = self.actors, []
        if not ray.is_initialized():
            return
        for actor in actors:
            with contextlib.suppress(Exception):
                ray.kill(actor)


_BudgetCopy = tuple[int | None, float | None, Usage]  # max_tokens, max_cost, used so far


def _budget_copies(hooks: HookSet, node_id: str) -> tuple[_BudgetCopy, ...]:
    """The budgets that apply to `node_id`, as they stand now, for the worker to check."""
    return tuple(
        (budget.max_tokens, budget.max_cost, budget.used)
        for hook in hooks.hooks
        if isinstance(hook, BudgetGuard)
        for budget in hook.budgets_for(node_id)
    )


def _unpicklable(p: NodePlan, task: _NodeTask, error: BaseException) -> BaseException:
    """Why a task could not be submitted: the node or the input that cannot be pickled."""
    from ray import cloudpickle

    def fails(value: Any) -> BaseException | None:
        try:
            cloudpickle.dumps(value)
        except Exception as exc:
            return exc
        return None

    culprit = fails(p.node)
    if culprit is not None:
        return NotPicklableError(
            f"node {p.node_id!r} ({p.node_type}) cannot be sent to a Ray worker: the node "
            f"itself cannot be pickled ({type(culprit).__name__}: {culprit}); its function, "
            "agent, model or tools must be picklable (define them at module level)",
            node_id=p.node_id, port=None, direction="node", type_name=type(p.node).__name__,
        )  # fmt: skip
    for port, value in task.inputs.items():
        culprit = fails(value)
        if culprit is not None:
            return NotPicklableError(
                f"input port {port!r} of node {p.node_id!r} cannot be sent to a Ray worker: "
                f"its {type(value).__name__} value cannot be pickled "
                f"({type(culprit).__name__}: {culprit}); pass a picklable value",
                node_id=p.node_id, port=port, direction="input",
                type_name=type(value).__name__,
            )  # fmt: skip
    return error


# -- the waiter ------------------------------------------------------------------------------------


class _Waiter:
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


# -- the worker's side -----------------------------------------------------------------------------


@dataclass(slots=True)
class _NodeTask:
    """What a worker needs to run one attempt of one node (its upstream values travel apart,
    as ObjectRefs: `wiring` says which upstream argument's which port feeds which input)."""

    plan: NodePlan
    run_id: str
    workflow_name: str
    attempt: int
    max_concurrency: int
    inputs: dict[str, Any]
    wiring: tuple[tuple[int, str, str], ...]  # (upstream argument, its output port, input port)
    middleware: tuple[Middleware, ...]
    budgets: tuple[_BudgetCopy, ...]
    wants_chunks: bool


@dataclass(slots=True)
class _WorkerReport:
    """What one attempt did, sent back pickled (so a value that cannot be pickled is named)."""

    outputs: dict[str, Any] | None
    error: BaseException | None
    explanation: str | None
    started: float
    finished: float
    node_run: NodeRun
    moments: list[Moment] = field(default_factory=list)
    hook_errors: list[HookError] = field(default_factory=list)
    worker: str = ""


class _Relay(MomentHook):
    """Keeps the moments a node fires in the worker, for the driver to replay: every moment
    inside a node; chunks only when the driver's hooks listen to them (otherwise model calls
    need not stream)."""

    name = "kaizen.ray-relay"

    def __init__(self, chunks: bool) -> None:
        self.chunks = chunks
        self.moments: list[Moment] = []

    def hears(self, moment: type[Moment]) -> bool:
        return not moment.on_driver and (self.chunks or moment is not ChunkReceived)

    def on_moment(self, event: Moment) -> None:
        self.moments.append(event)


class _WorkerRun:
    """What a job needs of its run, in the worker (`executors.RunView`)."""

    def __init__(self, run_id: str, record: RunRecord, hooks: HookSet, max_concurrency: int):
        self.run_id = run_id
        self.record = record
        self.max_concurrency = max_concurrency
        self._hooks = hooks

    def hooks_for(self, index: int) -> HookSet:
        return self._hooks


def _run_attempt(task: _NodeTask, *upstream: bytes) -> bytes:
    """One attempt of one node, in a Ray worker: the pickled `_WorkerReport`."""
    attempt = _WorkerAttempt(task, upstream)
    job = attempt.job
    if task.plan.is_async:
        return attempt.report(_worker_loop().run_until_complete(call_async(job)))
    return attempt.report(call_sync(job))


class _ModelActor:
    """An async Ray actor (`_ModelPool`): runs attempts of model-bound async nodes, many at
    once, as asyncio tasks on the actor's event loop."""

    async def run(self, task: _NodeTask, *upstream: bytes) -> bytes:
        attempt = _WorkerAttempt(task, upstream)
        return attempt.report(await call_async(attempt.job))


class _WorkerAttempt:
    """One attempt in a worker: its job (inputs, a one-node record, the relay, the budget
    copies and the run's middleware as hooks), then its pickled report."""

    def __init__(self, task: _NodeTask, upstream: Sequence[bytes]) -> None:
        from ray import cloudpickle

        p = self.plan = task.plan
        inputs = dict(task.inputs)
        if upstream:
            produced = [cloudpickle.loads(blob).outputs for blob in upstream]
            for position, source_port, port in task.wiring:
                inputs[port] = produced[position][source_port]
        record = self.record = RunRecord(task.run_id, task.workflow_name, started=now())
        self.node_run = record.nodes[p.node_id] = NodeRun(p.node_id, p.node_type)
        relay = self.relay = _Relay(task.wants_chunks)
        hooks: list[object] = [Recorder(record), relay, *task.middleware]
        if task.budgets:
            copies = tuple(Budget(max_tokens, max_cost) for max_tokens, max_cost, _ in task.budgets)
            for budget, (_, _, used) in zip(copies, task.budgets, strict=True):
                budget.charge(used)
            hooks.insert(1, BudgetGuard(lambda _node_id: copies))
        run = _WorkerRun(task.run_id, record, HookSet(hooks, record), task.max_concurrency)
        self.job = Job(p, inputs, run, task.attempt, started=now())

    def report(self, outcome: Outcome) -> bytes:
        from ray import cloudpickle

        report = _WorkerReport(
            outcome.outputs, outcome.error, outcome.explanation, outcome.started,
            outcome.finished, self.node_run, self.relay.moments, self.record.hook_errors,
            f"{socket.gethostname()}:{os.getpid()}",
        )  # fmt: skip
        if report.error is not None and not _travels(report.error):
            error = report.error
            report.error = RuntimeError(f"{type(error).__name__}: {error}")
        try:
            return bytes(cloudpickle.dumps(report))
        except Exception:
            return bytes(cloudpickle.dumps(_picklable(report, self.plan)))


def _travels(error: BaseException) -> bool:
    """Whether `error` survives pickling both ways (an exception whose __init__ takes other
    arguments than its args does not unpickle)."""
    from ray import cloudpickle

    try:
        cloudpickle.loads(cloudpickle.dumps(error))
    except Exception:
        return False
    return True


def _worker_loop() -> asyncio.AbstractEventLoop:
    """The event loop async nodes run on in this worker: one, kept (clients bound to a loop,
    such as litellm's, stay usable from one task to the next)."""
    import asyncio

    loop = getattr(_worker, "loop", None)
    if loop is None or loop.is_closed():
        loop = _worker.loop = asyncio.new_event_loop()
    return loop


_worker = threading.local()


def _picklable(report: _WorkerReport, p: NodePlan) -> _WorkerReport:
    """`report` with what cannot be pickled replaced: an output is an error naming its port;
    an error becomes a RuntimeError with its text; moments lose their replies and messages."""
    from ray import cloudpickle

    def fails(value: Any) -> BaseException | None:
        try:
            cloudpickle.dumps(value)
        except Exception as exc:
            return exc
        return None

    for port, value in (report.outputs or {}).items():
        culprit = fails(value)
        if culprit is not None:
            report.outputs = None
            report.error = NotPicklableError(
                f"output port {port!r} of node {p.node_id!r} cannot be sent back from its Ray "
                f"worker: its {type(value).__name__} value cannot be pickled "
                f"({type(culprit).__name__}: {culprit}); return a picklable value",
                node_id=p.node_id, port=port, direction="output",
                type_name=type(value).__name__,
            )  # fmt: skip
            break
    if fails(report.moments) is not None:
        report.moments = [_without_unpicklable(event, fails) for event in report.moments]
    return report


def _without_unpicklable(event: Moment, fails: Callable[[Any], BaseException | None]) -> Moment:
    """`event` with the fields that cannot be pickled (a reply, messages) set to None."""
    lost = {
        f.name: None
        for f in dataclasses.fields(event)
        if f.name not in ("run_id", "node_id") and fails(getattr(event, f.name)) is not None
    }
    return dataclasses.replace(cast(Any, event), **lost) if lost else event
