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
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import Any, Literal

from kaizen.aio import run_blocking
from kaizen.errors import NodeExecutionError
from kaizen.runtime.budget import Budget, BudgetGuard
from kaizen.runtime.driver import Results, Run
from kaizen.runtime.events import EventCallback, RunEvent
from kaizen.runtime.hooks import check_hooks
from kaizen.runtime.pool import WorkerPool
from kaizen.runtime.record import RunRecord
from kaizen.runtime.stream import Done, StreamEvent, StreamHook, stream_async, stream_sync
from kaizen.workflow.parameters import bind_parameters
from kaizen.workflow.workflow import Workflow

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
    ) -> None:
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
        self._pool = WorkerPool(max_concurrency)
        weakref.finalize(self, self._pool.shutdown)
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

    # -- running ----------------------------------------------------------------------------------

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
        run = self._new_run(workflow, parameters, run_id, on_event, hooks, inline_allowed=True)
        return run_blocking(run.drive()), run.record

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
        results, record = await self.execute_async_with_record(
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
        run = self._new_run(workflow, parameters, run_id, on_event, hooks, inline_allowed=False)
        return await run.drive(), run.record

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
        `Done(results, run_id=...)`, or `Error(error)` when the run fails as `execute_async` would
        raise. `ParameterError` is raised here, before the run starts."""
        _check_parameters(workflow, parameters)

        async def start(hook: StreamHook) -> StreamEvent:
            results, record = await self.execute_async_with_record(
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
            results, record = self.execute_with_record(
                workflow, parameters, run_id=run_id, hooks=[*hooks, hook]
            )
            return Done(results, None, record.run_id)

        return stream_sync(start)

    def _new_run(
        self,
        workflow: Workflow,
        parameters: Mapping[str, Any] | None,
        run_id: str | None,
        on_event: EventCallbackFn | None,
        hooks: Iterable[object],
        *,
        inline_allowed: bool,
    ) -> Run:
        inputs = _check_parameters(workflow, parameters)  # raises before any node runs
        run_hooks = [*self._guards(workflow), *self._hooks, *check_hooks(hooks)]
        if on_event is not None:
            run_hooks.append(EventCallback(on_event))
        run = Run(
            workflow,
            inputs,
            run_id=run_id or os.urandom(16).hex(),  # as random as uuid4().hex, and cheaper
            hooks=run_hooks,
            pool=self._pool,
            max_concurrency=self.max_concurrency,
            fail_fast=self.failure_policy == "fail_fast",
            inline_allowed=inline_allowed,
        )
        with self._lock:
            self._records[run.run_id] = (run.record, run.errors)
            while len(self._records) > self.keep_records:
                self._records.popitem(last=False)
        return run

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


def _check_parameters(workflow: Workflow, parameters: Mapping[str, Any] | None) -> list[Any]:
    """The workflow's inputs bound from `parameters`; `TypeError` for an unbuilt workflow,
    `ParameterError` for parameters that do not fit."""
    if not isinstance(workflow, Workflow):
        raise TypeError(
            f"execute() needs a built Workflow, got {type(workflow).__name__}"
            + (" (call .build() on the builder first)" if hasattr(workflow, "build") else "")
        )
    return bind_parameters(workflow.plan, parameters)
