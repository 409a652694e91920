"""The worker's side of `RayRuntime`: one attempt of one node, in a Ray task or on a model actor.

`run_task` (the Ray task) and `ModelActor.run` (a call on an async actor) both receive a
`NodeTask` (the node, its inputs, the upstream ObjectRefs' wiring, the run's middleware and
budget copies), run the node exactly as locally (`kaizen.runtime.attempt`: `run_attempt` /
`arun_attempt`) with hooks of the worker's own (a `Recorder` of a one-node record, the budget
copies, the middleware, and a relay that keeps the model, tool and chunk moments), and return one
pickled `WorkerReport` for the driver (`kaizen.runtime.ray.executor`) to replay. Whatever cannot
be pickled back is named (`NotPicklableError`) rather than lost. `ray` is imported lazily.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from time import time as now
from typing import TYPE_CHECKING, Any, Literal, cast

from kaizen.errors import NotPicklableError
from kaizen.moments import ChunkReceived, Moment
from kaizen.runtime.attempt import Job, Outcome, arun_attempt, run_attempt
from kaizen.runtime.budget import Budget, BudgetGuard
from kaizen.runtime.hooks import HookSet, Middleware, MomentHook
from kaizen.runtime.record import HookError, NodeRun, RunRecord, Usage
from kaizen.runtime.recorder import Recorder
from kaizen.workflow.plan import NodePlan

if TYPE_CHECKING:
    import asyncio

__all__ = [
    "BudgetCopy",
    "ModelActor",
    "NodeTask",
    "WorkerReport",
    "pickling_error",
    "run_task",
    "unpicklable_port",
]

BudgetCopy = tuple[int | None, float | None, Usage]  # max_tokens, max_cost, used so far


def pickling_error(value: Any) -> BaseException | None:
    """Why `value` cannot be pickled (to travel between the driver and a worker), or None."""
    from ray import cloudpickle

    try:
        cloudpickle.dumps(value)
    except Exception as exc:
        return exc
    return None


def unpicklable_port(
    p: NodePlan, port: str, value: Any, direction: Literal["input", "output"]
) -> NotPicklableError | None:
    """The error naming input or output `port` of `p` when its `value` cannot travel, or None."""
    culprit = pickling_error(value)
    if culprit is None:
        return None
    where = "sent to a Ray worker" if direction == "input" else "sent back from its Ray worker"
    fix = "pass" if direction == "input" else "return"
    return NotPicklableError(
        f"{direction} port {port!r} of node {p.node_id!r} cannot be {where}: its "
        f"{type(value).__name__} value cannot be pickled ({type(culprit).__name__}: {culprit}); "
        f"{fix} a picklable value",
        node_id=p.node_id, port=port, direction=direction, type_name=type(value).__name__,
    )  # fmt: skip


@dataclass(slots=True)
class NodeTask:
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
    budgets: tuple[BudgetCopy, ...]
    wants_chunks: bool
    # a paused node resumed: its answers by interrupt index and its saved state (Job.resume)
    resume: tuple[Mapping[int, Any], Any] | None = None


@dataclass(slots=True)
class WorkerReport:
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
    """What a job needs of its run, in the worker (`kaizen.runtime.attempt.RunView`)."""

    def __init__(self, run_id: str, record: RunRecord, hooks: HookSet, max_concurrency: int):
        self.run_id = run_id
        self.record = record
        self.max_concurrency = max_concurrency
        self._hooks = hooks

    def hooks_for(self, index: int) -> HookSet:
        return self._hooks


def run_task(task: NodeTask, *upstream: bytes) -> bytes:
    """One attempt of one node, in a Ray worker: the pickled `WorkerReport`."""
    attempt = _WorkerAttempt(task, upstream)
    job = attempt.job
    if task.plan.is_async:
        return attempt.report(_worker_loop().run_until_complete(arun_attempt(job)))
    return attempt.report(run_attempt(job))


class ModelActor:
    """An async Ray actor (`ModelPool`): runs attempts of model-bound async nodes, many at
    once, as asyncio tasks on the actor's event loop."""

    async def run(self, task: NodeTask, *upstream: bytes) -> bytes:
        attempt = _WorkerAttempt(task, upstream)
        return attempt.report(await arun_attempt(attempt.job))


class _WorkerAttempt:
    """One attempt in a worker: its job (inputs, a one-node record, the relay, the budget
    copies and the run's middleware as hooks), then its pickled report."""

    def __init__(self, task: NodeTask, upstream: Sequence[bytes]) -> None:
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
        self.job.resume = task.resume

    def report(self, outcome: Outcome) -> bytes:
        from ray import cloudpickle

        report = WorkerReport(
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


def _picklable(report: WorkerReport, p: NodePlan) -> WorkerReport:
    """`report` with what cannot be pickled replaced: an output is an error naming its port;
    an error becomes a RuntimeError with its text; moments lose their replies and messages."""
    for port, value in (report.outputs or {}).items():
        error = unpicklable_port(p, port, value, "output")
        if error is not None:
            report.outputs, report.error = None, error
            break
    if pickling_error(report.moments) is not None:
        report.moments = [_without_unpicklable(event) for event in report.moments]
    return report


def _without_unpicklable(event: Moment) -> Moment:
    """`event` with the fields that cannot be pickled (a reply, messages) set to None."""
    lost = {
        f.name: None
        for f in dataclasses.fields(event)
        if f.name not in ("run_id", "node_id")
        and pickling_error(getattr(event, f.name)) is not None
    }
    return dataclasses.replace(cast(Any, event), **lost) if lost else event
