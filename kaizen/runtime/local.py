"""`LocalRuntime`: runs a `Workflow` on one machine as eager dataflow.

A node starts the moment its own inputs are ready, never waiting for an unrelated sibling (no
supersteps). Async nodes run on an event loop, sync nodes in worker threads, at most
`max_concurrency` at once. How one run proceeds is `kaizen.runtime.driver`; this module is the
public face: entry points, hooks and subscribers, and the records of recent runs.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any, Literal

from kaizen import seams
from kaizen.aio import run_blocking
from kaizen.errors import NodeExecutionError, ReplayMismatchError
from kaizen.runtime.budget import Budget, BudgetGuard
from kaizen.runtime.driver import Results, Run
from kaizen.runtime.events import EventCallback, RunEvent
from kaizen.runtime.executors import ExecutorSet
from kaizen.runtime.hooks import Middleware, check_hooks, process_hooks
from kaizen.runtime.pool import WorkerPool
from kaizen.runtime.record import RunRecord
from kaizen.runtime.stream import Done, StreamEvent, StreamHook, stream_async, stream_sync
from kaizen.workflow.parameters import bind_parameters
from kaizen.workflow.workflow import Workflow

if TYPE_CHECKING:
    from kaizen.durable import Durability
    from kaizen.interrupts import Interrupt
    from kaizen.observe.monitor import ExecutionMonitor
    from kaizen.store.calls import CachePolicy
    from kaizen.store.db import Store, StorePath

__all__ = ["EventCallbackFn", "FailurePolicy", "LocalRuntime"]

FailurePolicy = Literal["fail_fast", "continue"]
EventCallbackFn = Callable[[RunEvent], None]


class LocalRuntime:
    """Runs workflows in this process: async nodes on an event loop, sync nodes in threads.

    One runtime can run many workflows, several at once from different threads. It keeps the
    records of its last `keep_records` runs (`get_record(run_id)`, `last_record`). `hooks` are
    lifecycle hooks (`kaizen.runtime.hooks`) that observe every run; `budget` caps the model
    usage of every run (over a budget the workflow carries).
    """

    def __init__(
        self,
        max_concurrency: int = 32,
        failure_policy: FailurePolicy = "fail_fast",
        budget: Budget | None = None,
        *,
        hooks: Iterable[object] = (),
        keep_records: int = 100,
        checkpoint: bool | StorePath | Store = False,
        record: bool | StorePath | Store = False,
        cache: bool | Mapping[str, Any] = False,
        allow_pickle: bool = False,
        durability: Literal["sync", "async"] = "sync",
    ) -> None:
        """`checkpoint`: persist each completed node's outputs (True: the default store,
        `$KAIZEN_HOME` or `.kaizen/kaizen.db`; or a store path), so `resume(run_id, workflow)`
        re-runs only what did not finish. `durability`: `"sync"` commits a node's outputs
        before any node that depends on them starts and before any hook or stream hears it
        finished (a node whose completion anyone saw never runs again); `"async"` commits them a
        few milliseconds later on a writer thread (at-least-once: a crash may re-run them).
        `record`: store every model and tool call of each run, for `kaizen.replay`. `cache`:
        cache model calls (True or `{"ttl": s, "sampled": bool, "path": p}`). `allow_pickle`:
        checkpoint values JSON cannot hold by pickling them. See docs/state.md."""
        if not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ValueError(f"max_concurrency must be a positive int, got {max_concurrency!r}")
        if failure_policy not in ("fail_fast", "continue"):
            raise ValueError(
                f"failure_policy must be 'fail_fast' or 'continue', got {failure_policy!r}"
            )
        if budget is not None and not isinstance(budget, Budget):
            raise TypeError(f"budget must be a kaizen.Budget, got {type(budget).__name__}")
        self.max_concurrency = max_concurrency
        self.failure_policy: FailurePolicy = failure_policy
        self.budget = budget
        self.keep_records = keep_records
        self._hooks: tuple[object, ...] = check_hooks(hooks)
        self._monitor: ExecutionMonitor | None = None
        self._pool = WorkerPool(max_concurrency)
        weakref.finalize(self, self._pool.shutdown)
        self._records: OrderedDict[str, tuple[RunRecord, dict[str, NodeExecutionError]]] = (
            OrderedDict()
        )
        self._lock = threading.Lock()
        self.checkpointing = checkpoint is not False
        self.recording = record is not False
        if durability not in ("sync", "async"):
            raise ValueError(f"durability must be 'sync' or 'async', got {durability!r}")
        self.allow_pickle = allow_pickle
        self.durability: Literal["sync", "async"] = durability
        # the store is a layer below the runtime's callers and above the runtime: what makes
        # runs durable is made above (kaizen.durable, through kaizen.seams.durability)
        self._durability: Durability | None = None
        if self.checkpointing or self.recording or (cache is not False and cache is not None):
            self._durability = seams.durability.get()(
                checkpoint=checkpoint, record=record, cache=cache, allow_pickle=allow_pickle,
                durability=durability,
            )  # fmt: skip

    @property
    def cache(self) -> CachePolicy | None:
        """How this runtime's runs cache model calls (None: they do not)."""
        return self._durability.cache if self._durability is not None else None

    @property
    def store(self) -> Store:
        """The store this runtime checkpoints and records into (opened on first use)."""
        return self._durable().store

    def _durable(self) -> Durability:
        """This runtime's durability, made on first use (by `resume` or `replay` of a runtime
        given no checkpoint, record or cache option: the default store)."""
        with self._lock:
            if self._durability is None:
                self._durability = seams.durability.get()(
                    allow_pickle=self.allow_pickle, durability=self.durability
                )
            return self._durability

    def close(self) -> None:
        """Let the worker threads exit (they also do when the runtime is garbage-collected)."""
        self._pool.shutdown()

    def __enter__(self) -> LocalRuntime:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- hooks, events and records ----------------------------------------------------------------

    def add_hook(self, hook: object) -> Callable[[], None]:
        """Observe every later run with `hook`; returns a function that removes it."""
        (checked,) = check_hooks([hook])
        with self._lock:
            self._hooks = (*self._hooks, checked)

        def remove() -> None:
            with self._lock:
                self._hooks = tuple(h for h in self._hooks if h is not checked)

        return remove

    def get_execution_monitor(self) -> ExecutionMonitor:
        """The monitor of every run of this runtime, all nodes together (made and registered
        on first call): summary, alerts (docs/production.md)."""
        if self._monitor is None:
            # kaizen.observe is a layer above: its monitor comes through kaizen.seams
            self._monitor = seams.execution_monitor.get()()
            self.add_hook(self._monitor)
        return self._monitor

    def add_middleware(self, middleware: Middleware) -> Callable[[], None]:
        """Steer every later run's nodes and model calls with `middleware` (ordered by its
        `priority`; see kaizen.runtime.middleware); returns a function that removes it."""
        if not isinstance(middleware, Middleware):
            raise TypeError(f"{middleware!r} is not a middleware: subclass kaizen.Middleware")
        return self.add_hook(middleware)

    def subscribe(self, callback: EventCallbackFn) -> Callable[[], None]:
        """Call `callback(event)` for every `RunEvent` of every later run; returns an
        unsubscribe. Callbacks run on the driver thread, in order; one that raises is recorded
        in the run's `hook_errors` (and logged), and the run goes on. Keep them quick."""
        return self.add_hook(EventCallback(callback))

    @property
    def hooks(self) -> tuple[object, ...]:
        """The hooks observing every run of this runtime (subscribers included)."""
        return self._hooks

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

    # -- running: one `run`, and the entry points over it ----------------------------------------

    async def run(
        self,
        workflow: Workflow,
        parameters: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        on_event: EventCallbackFn | None = None,
        hooks: Iterable[object] = (),
        resume: bool = False,
        replay: bool = False,
        inline_allowed: bool = False,
        answers: Mapping[str, Any] | None = None,
        by: str | None = None,
        continuing: Mapping[str, tuple[Mapping[int, Any], Any]] | None = None,
    ) -> tuple[Results, RunRecord]:
        """Run `workflow` to the end: `(results, record)`. Every entry point (`execute`,
        `execute_async`, `resume`, `replay`, `stream`, ... and their `_with_record` forms) is
        this, driven from sync code (`kaizen.aio.run_blocking`) or awaited.

        `resume=True`: finish checkpointed run `run_id` with its own parameters (see `resume`),
        with `answers` for its interrupts, given `by` someone.
        `replay=True`: run again with recorded run `run_id`'s parameters, every model and tool
        call served from its recording (see `replay`); the record has the replay's own id.
        `inline_allowed`: a sync node alone may run in the calling thread (the caller drives
        the run with `run_blocking`, so the loop is the run's own). `continuing`: nodes that
        paused in an earlier run that was not stored (`agent.resume`), by node id: the answers
        by interrupt index and the state each saved; they run with those."""
        if resume or replay:
            if run_id is None or parameters is not None:
                raise TypeError(
                    "run(resume=True) and run(replay=True) take the run_id of the earlier run, "
                    "and no parameters (that run's own are used)"
                )
            if replay:
                return await self._replay(run_id, workflow, on_event, hooks, inline_allowed)
            resumed = self._durable().resumed(run_id, workflow, answers, by)
            parameters, finished = resumed.parameters, resumed.finished
            resumes: Mapping[int, tuple[Mapping[int, Any], Any]] | None = resumed.resumes
            asked, answered = resumed.asked, resumed.answered
        else:
            if answers is not None:
                raise TypeError("answers are given to a resumed run: run(resume=True, ...)")
            finished, asked, resumes, answered = None, [], None, []
            if continuing:
                index = workflow.plan.index
                resumes = {index[node]: pause for node, pause in continuing.items()}
        run, durable = self._new_run(
            workflow, parameters, run_id, on_event, hooks, inline_allowed=inline_allowed,
            finished=finished, resumes=resumes, asked=asked, answered=answered,
        )  # fmt: skip
        with durable:
            results = await run.drive()
        return results, run.record

    def execute(
        self,
        workflow: Workflow,
        parameters: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        on_event: EventCallbackFn | None = None,
        hooks: Iterable[object] = (),
    ) -> tuple[Results, str]:
        """Run `workflow` to the end; return `({node_id: {port: value}}, run_id)`.

        Results hold the nodes that completed. Raises `ParameterError` before anything runs if
        the parameters do not fit. Under `fail_fast`, raises the `NodeExecutionError` of the
        first failed node, or the `BudgetExceededError` of the first node the budget refused;
        either carries `run_id` and the `results` so far. Works inside a running event loop too
        (a notebook cell): the run then happens on a loop in another thread.
        """
        results, record = self.execute_with_record(
            workflow, parameters, run_id=run_id, on_event=on_event, hooks=hooks
        )
        return results, record.run_id

    def execute_with_record(
        self,
        workflow: Workflow,
        parameters: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        on_event: EventCallbackFn | None = None,
        hooks: Iterable[object] = (),
    ) -> tuple[Results, RunRecord]:
        """Like `execute`, returning the `RunRecord` itself instead of the run id."""
        return run_blocking(
            self.run(
                workflow, parameters, run_id=run_id, on_event=on_event, hooks=hooks,
                inline_allowed=True,
            )
        )  # fmt: skip

    async def execute_async(
        self,
        workflow: Workflow,
        parameters: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        on_event: EventCallbackFn | None = None,
        hooks: Iterable[object] = (),
    ) -> tuple[Results, str]:
        """`execute` for callers already in an event loop; sync nodes always run in threads."""
        results, record = await self.run(
            workflow, parameters, run_id=run_id, on_event=on_event, hooks=hooks
        )
        return results, record.run_id

    async def execute_async_with_record(
        self,
        workflow: Workflow,
        parameters: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        on_event: EventCallbackFn | None = None,
        hooks: Iterable[object] = (),
    ) -> tuple[Results, RunRecord]:
        """Like `execute_async`, returning the `RunRecord` itself instead of the run id."""
        return await self.run(workflow, parameters, run_id=run_id, on_event=on_event, hooks=hooks)

    # -- durable runs ------------------------------------------------------------------------------

    def resume(
        self,
        run_id: str,
        workflow: Workflow,
        *,
        answers: Mapping[str, Any] | None = None,
        by: str | None = None,
        on_event: EventCallbackFn | None = None,
        hooks: Iterable[object] = (),
    ) -> tuple[Results, str]:
        """Finish run `run_id` (checkpointed in this runtime's store): the nodes that completed
        are not run again, their stored outputs flow downstream; the rest runs, checkpointed.
        Returns `(results, run_id)` with every node's results, as an uninterrupted run would.

        A run that waits for a person (`record.status == "waiting"`) takes `answers`:
        `{interrupt_id: answer}` (ids as in `record.interrupts`, ``"<node_id>/<index>"``),
        stored with who gave them (`by`); each waiting node runs again from its start and its
        `kaizen.interrupt(...)` calls return their answers. A node still missing an answer
        pauses again, and the run ends `waiting` again.

        Raises, running nothing and changing nothing stored: `RunNotFoundError` (a run the
        store does not hold), `WorkflowChangedError` (another workflow),
        `UnknownInterruptError` (an id the run never asked, or answered already),
        `InterruptAnswerError` (an answer that does not match its schema),
        `RunNotWaitingError` (answers for a run that finished, was cancelled, or was resumed
        already)."""
        results, record = self.resume_with_record(
            run_id, workflow, answers=answers, by=by, on_event=on_event, hooks=hooks
        )
        return results, record.run_id

    def resume_with_record(
        self,
        run_id: str,
        workflow: Workflow,
        *,
        answers: Mapping[str, Any] | None = None,
        by: str | None = None,
        on_event: EventCallbackFn | None = None,
        hooks: Iterable[object] = (),
    ) -> tuple[Results, RunRecord]:
        """Like `resume`, returning the `RunRecord` itself instead of the run id."""
        return run_blocking(
            self.run(
                workflow, run_id=run_id, on_event=on_event, hooks=hooks, resume=True,
                inline_allowed=True, answers=answers, by=by,
            )
        )  # fmt: skip

    def cancel_waiting(self, run_id: str) -> None:
        """Cancel run `run_id`, which waits for a person (in this runtime's store): it ends
        `cancelled`, its open interrupts unanswered. `RunNotWaitingError` when it does not
        wait (it finished, or a resume took it first: of a resume and a cancel racing for one
        waiting run, exactly one wins)."""
        from kaizen.store.interrupts import cancel_waiting  # (the store is a layer below)

        cancel_waiting(self.store, run_id)

    def replay(
        self,
        run_id: str,
        workflow: Workflow,
        *,
        on_event: EventCallbackFn | None = None,
        hooks: Iterable[object] = (),
    ) -> tuple[Results, str]:
        """Run `workflow` again with the parameters of recorded run `run_id`, every model and
        tool call served from its recording: nothing reaches a model or a tool. Returns
        `(results, replay_run_id)`. A call the recording does not hold raises
        `ReplayMismatchError` (the node, and how the request differs)."""
        results, record = run_blocking(
            self.run(
                workflow, run_id=run_id, on_event=on_event, hooks=hooks, replay=True,
                inline_allowed=True,
            )
        )  # fmt: skip
        return results, record.run_id

    def stream(
        self,
        workflow: Workflow,
        parameters: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        hooks: Iterable[object] = (),
    ) -> AsyncIterator[StreamEvent]:
        """`async for event in runtime.stream(workflow, parameters)`: every node's events as
        they happen (`ContentDelta`, `ToolStart`, `ToolComplete`, each with its `node_id`), then
        `Done(results, run_id=...)`, or `Failed(error)` when the run fails as `execute_async` would
        raise. `ParameterError` is raised here, before the run starts."""
        _check_parameters(workflow, parameters)

        async def start(hook: StreamHook) -> StreamEvent:
            results, record = await self.run(
                workflow, parameters, run_id=run_id, hooks=[*hooks, hook]
            )
            return Done(results, None, record.run_id)

        return stream_async(start)

    def stream_sync(
        self,
        workflow: Workflow,
        parameters: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        hooks: Iterable[object] = (),
    ) -> Iterator[StreamEvent]:
        """`stream` for sync code (the run happens in a thread)."""
        _check_parameters(workflow, parameters)

        def start(hook: StreamHook) -> StreamEvent:
            results, record = run_blocking(
                self.run(
                    workflow, parameters, run_id=run_id, hooks=[*hooks, hook],
                    inline_allowed=True,
                )
            )  # fmt: skip
            return Done(results, None, record.run_id)

        return stream_sync(start)

    async def _replay(
        self,
        run_id: str,
        workflow: Workflow,
        on_event: EventCallbackFn | None,
        hooks: Iterable[object],
        inline_allowed: bool,
    ) -> tuple[Results, RunRecord]:
        """`run(replay=True)`: a run of its own, its model and tool calls served from the
        recording of `run_id` (neither checkpointed nor recorded again)."""
        replay_id, parameters, replaying = self._durable().replaying(run_id, workflow)
        try:
            with replaying:
                run = self._make_run(
                    workflow, parameters, replay_id, on_event, hooks, inline_allowed
                )
                results = await run.drive()
        except NodeExecutionError as exc:
            if isinstance(exc.__cause__, ReplayMismatchError):
                raise exc.__cause__ from exc
            raise
        return results, run.record

    def _new_run(
        self,
        workflow: Workflow,
        parameters: Mapping[str, Any] | None,
        run_id: str | None,
        on_event: EventCallbackFn | None,
        hooks: Iterable[object],
        *,
        inline_allowed: bool,
        finished: Mapping[int, Mapping[str, Any]] | None = None,
        resumes: Mapping[int, tuple[Mapping[int, Any], Any]] | None = None,
        asked: Sequence[Interrupt] = (),
        answered: Sequence[Interrupt] = (),
    ) -> tuple[Run, AbstractContextManager[None]]:
        """The run, and what makes it durable (checkpoints, recordings, cache) around it."""
        run_id = run_id or os.urandom(16).hex()  # as random as uuid4().hex, and cheaper

        def make_run(extra: list[object]) -> Run:
            return self._make_run(
                workflow, parameters, run_id, on_event, [*extra, *hooks], inline_allowed,
                finished, resumes, answered,
            )  # fmt: skip

        durability = self._durability if finished is None else self._durable()
        if durability is None:
            return make_run([]), nullcontext()
        return durability.begin(workflow, parameters, run_id, finished, make_run, asked)

    def _make_run(
        self,
        workflow: Workflow,
        parameters: Mapping[str, Any] | None,
        run_id: str,
        on_event: EventCallbackFn | None,
        hooks: Iterable[object],
        inline_allowed: bool,
        finished: Mapping[int, Mapping[str, Any]] | None = None,
        resumes: Mapping[int, tuple[Mapping[int, Any], Any]] | None = None,
        answered: Sequence[Interrupt] = (),
    ) -> Run:
        inputs = _check_parameters(workflow, parameters)  # raises before any node runs
        run_hooks = [*self._guards(workflow), *process_hooks(), *self._hooks, *check_hooks(hooks)]
        if on_event is not None:
            run_hooks.append(EventCallback(on_event))
        run = Run(
            workflow,
            inputs,
            run_id=run_id,
            hooks=run_hooks,
            pool=self._pool,
            max_concurrency=self.max_concurrency,
            fail_fast=self.failure_policy == "fail_fast",
            inline_allowed=inline_allowed,
            finished=finished,
            executors=self._executors(),
            resumes=resumes,
            answered=_by_node(answered),
        )
        with self._lock:
            self._records[run.run_id] = (run.record, run.errors)
            while len(self._records) > self.keep_records:
                self._records.popitem(last=False)
        return run

    def _executors(self) -> Callable[[Run], ExecutorSet] | None:
        """How runs make their executors: None for this machine's (`RayRuntime` overrides it)."""
        return None

    def _guards(self, workflow: Workflow) -> list[object]:
        """The budget hook, when any budget applies: this runtime's (else the workflow's) for
        every node, plus the scoped budgets of merged sub-workflows for theirs."""
        overall = self.budget if self.budget is not None else workflow.budget
        scoped = workflow.scoped_budgets
        if overall is None and not scoped:
            return []
        everywhere = () if overall is None else (overall,)

        def budgets_for(node_id: str) -> tuple[Budget, ...]:
            return everywhere + scoped.get(node_id, ())

        return [BudgetGuard(budgets_for)]


def _by_node(interrupts: Sequence[Interrupt]) -> dict[str, list[Interrupt]]:
    grouped: dict[str, list[Interrupt]] = {}
    for interrupt in interrupts:
        grouped.setdefault(interrupt.node_id, []).append(interrupt)
    return grouped


def _check_parameters(workflow: Workflow, parameters: Mapping[str, Any] | None) -> list[Any]:
    """The workflow's inputs bound from `parameters`; `TypeError` for an unbuilt workflow,
    `ParameterError` for parameters that do not fit."""
    if not isinstance(workflow, Workflow):
        raise TypeError(
            f"execute() needs a built Workflow, got {type(workflow).__name__}"
            + (" (call .build() on the builder first)" if hasattr(workflow, "build") else "")
        )
    return bind_parameters(workflow.plan, parameters)
