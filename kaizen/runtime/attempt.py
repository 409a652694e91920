"""One attempt of one node: the only place a node is called.

Every executor (inline, threads, tasks, supervised, the Ray task and the Ray actor) runs a node
through `run_attempt(job)` (a sync node, in the calling thread) or `await arun_attempt(job)` (an
async node). Both do the same, and differ only in calling `run()` or awaiting `arun()`:

1. set the node's context (`kaizen.runtime.context`: `current_node_context()` finds the job);
2. ask the node's middleware first (`kaizen.runtime.middleware`: `before_node` may change the
   inputs or answer instead of the node);
3. call the node;
4. let the middleware see the outputs (`after_node`), check them against the declared ports;
5. classify how it ended, as an `Outcome`: outputs (with the node's word on ports it left out),
   or the error. A node's failure never escapes an attempt: `failed` is where an error becomes
   an outcome, whichever executor ran the node. A pause for a person (`kaizen.interrupt`: the
   node raised `NodePaused`) is an outcome too, neither a failure nor retried: the node's
   `interrupt(...)` calls number from 0 in every attempt and find the answers the run resumed
   them with (`Job.resume`).

Retries and timeouts are not here: they wrap attempts (`kaizen.runtime.executors.Supervised`,
the Ray executor), deciding with `kaizen.retrying.next_attempt` under `node_retry_policy`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from time import time as now
from typing import TYPE_CHECKING, Any, Protocol

from kaizen.errors import NotPicklableError, VetoError
from kaizen.interrupts import NodePaused, enter_attempt, leave_attempt
from kaizen.retrying import RetryPolicy
from kaizen.runtime.context import NodeContext, node_context_var
from kaizen.runtime.hooks import HookSet
from kaizen.runtime.middleware import Middleware, NodeCall, after_node, before_node
from kaizen.runtime.record import RunRecord
from kaizen.workflow.plan import NodePlan

if TYPE_CHECKING:
    from kaizen.nodes.base import ExecutionPolicy

_log = logging.getLogger("kaizen.runtime")

__all__ = [
    "Job",
    "Outcome",
    "RunView",
    "arun_attempt",
    "checked",
    "failed",
    "node_retry_policy",
    "run_attempt",
    "succeeded",
]


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

    __slots__ = (
        "_context", "announced", "attempt", "inputs", "plan", "resume", "run", "started"
    )  # fmt: skip

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
        # a paused node resumed: its answers by interrupt index, and the state it saved
        self.resume: tuple[Mapping[int, Any], Any] | None = None
        self._context: NodeContext | None = None

    def begin(self) -> None:
        self.started = now()

    def again(self, attempt: int) -> Job:
        """The same node's attempt number `attempt` (same inputs, run and start time)."""
        job = Job(self.plan, self.inputs, self.run, attempt, self.started)
        job.resume = self.resume
        return job

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
class Outcome:
    """How a node (or one attempt of it) ended: its outputs, or the error of its last attempt;
    and, when it left out output ports others read, its own word on why
    (`Node.unproduced_reason`)."""

    index: int
    outputs: dict[str, Any] | None
    error: BaseException | None
    started: float
    finished: float
    attempts: int = 1
    explanation: str | None = None
    durable: bool = False  # its outputs are committed to the run's store (sync checkpoints)


# -- the attempt, in its two drivers ---------------------------------------------------------------


def run_attempt(job: Job) -> Outcome:
    """One attempt of a sync node, in this thread."""
    token = node_context_var.set(job)
    asked = enter_attempt(job.resume)
    try:
        p = job.plan
        middleware = job.run.hooks_for(p.index).middleware
        if not middleware:  # the common case, kept to one call
            return succeeded(job, p.node.run(**job.inputs))
        around = _Around(job, middleware)
        outputs = around.answer
        if outputs is None:
            outputs = p.node.run(**around.call.inputs)
        return succeeded(job, around.after(outputs))
    except (Exception, NodePaused) as exc:  # (a pause is a BaseException: see `failed`)
        return failed(job, exc)
    finally:
        leave_attempt(asked)
        node_context_var.reset(token)


async def arun_attempt(job: Job) -> Outcome:
    """One attempt of an async node, in this task (`run_attempt`, awaiting `arun()`)."""
    token = node_context_var.set(job)
    asked = enter_attempt(job.resume)
    try:
        p = job.plan
        middleware = job.run.hooks_for(p.index).middleware
        if not middleware:
            return succeeded(job, await p.node.arun(**job.inputs))
        around = _Around(job, middleware)
        outputs = around.answer
        if outputs is None:
            outputs = await p.node.arun(**around.call.inputs)
        return succeeded(job, around.after(outputs))
    except (Exception, NodePaused) as exc:  # (a pause is a BaseException: see `failed`)
        return failed(job, exc)
    finally:
        leave_attempt(asked)
        node_context_var.reset(token)


# -- the steps both drivers share ------------------------------------------------------------------


class _Around:
    """The node's middleware at work: asked before the node (`answer`: the outputs one of them
    gave instead of the node, or None), and after it (`after`)."""

    __slots__ = ("answer", "call", "middleware", "ran")

    def __init__(self, job: Job, middleware: tuple[Middleware, ...]) -> None:
        p = job.plan
        self.middleware = middleware
        self.call = NodeCall(job.run.run_id, p.node_id, p.node_type, job.attempt, dict(job.inputs))
        self.ran, self.answer = before_node(middleware, self.call)

    def after(self, outputs: Any) -> Mapping[str, Any]:
        return after_node(self.middleware, self.ran, self.call, outputs)


def succeeded(job: Job, outputs: Any) -> Outcome:
    """The node returned `outputs`: checked against its ports, with its word on ports it left
    out that others read."""
    p = job.plan
    outputs = checked(p, outputs)
    explanation = None if p.fed_ports.issubset(outputs) else explain(p, outputs)
    started = job.started if job.started is not None else now()
    return Outcome(p.index, outputs, None, started, now(), job.attempt, explanation)


def failed(job: Job, error: BaseException) -> Outcome:
    """The attempt ended with `error` (the node's, its middleware's, the check of its outputs;
    or, from a worker thread, whatever escaped it; or `NodePaused`, a pause for a person): the
    one place a failure becomes an outcome."""
    started = job.started if job.started is not None else now()
    return Outcome(job.plan.index, None, error, started, now(), job.attempt)


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


# -- the policy around attempts --------------------------------------------------------------------


def node_retry_policy(policy: ExecutionPolicy) -> RetryPolicy:
    """A node's `ExecutionPolicy` as a `RetryPolicy`: `retries` more attempts on the errors of
    `retry_on`, `backoff` seconds before the first retry, doubled each time, no cap. A veto
    (a budget's, a middleware's) and a value that cannot be pickled are never retried: the next
    attempt would meet them again."""
    retry_on = policy.retry_on

    def retryable(error: BaseException) -> bool:
        return isinstance(error, retry_on) and not isinstance(
            error, VetoError | NotPicklableError | NodePaused
        )

    return RetryPolicy(retries=policy.retries, backoff=policy.backoff, retryable=retryable)
