"""Lifecycle hooks: the one mechanism for everything that observes or steers a run.

One class per moment, one method each, keyword-only arguments (the shape of Hamilton's
`lifecycle/api.py`). A hook object subclasses the classes of the moments it wants:

    RunStartHook         on_run_start(*, run_id, workflow, record)
    NodeStartHook        on_node_start(*, run_id, node_id, node_type, attempt, time)
    NodeRetryHook        on_node_retry(*, run_id, node_id, attempt, error, wait)
    NodeSkipHook         on_node_skip(*, run_id, node_id, reason, time)
    NodeFinishHook       on_node_finish(*, run_id, node_id, status, outputs, error,
                                        started, finished, attempts)
    RunFinishHook        on_run_finish(*, run_id, status, record, error)
    ModelCallStartHook   on_model_call_start(*, run_id, node_id, model, messages)
    ModelCallFinishHook  on_model_call_finish(*, run_id, node_id, model, usage, latency,
                                              reply, error)
    ToolCallStartHook    on_tool_call_start(*, run_id, node_id, tool, arguments, call_id)
    ToolCallFinishHook   on_tool_call_finish(*, run_id, node_id, tool, call_id, record)
    ChunkHook            on_chunk(*, run_id, node_id, chunk)
    BreakerHook          on_breaker_change(*, run_id, node_id, model, state, previous)

A run begins (`on_run_start`, before any node), its nodes start, retry, finish (completed,
failed or cancelled) or are skipped (routing, a failed upstream, the budget), and it ends
(`on_run_finish`, last). Inside a node, each model call is announced before it is made and
reported after it with its usage and cost (`reply` is the `ModelReply`, None on failure); tool
calls likewise (`record` is the `ToolCallRecord`: arguments, output or error, start, duration),
and each piece of streamed reply text is a chunk (a str). A model's circuit breaker changing
state (`state` is a `kaizen.llm.resilience.BreakerState`, `previous` the old state's name) is
reported to the hooks of the node whose call moved it (`kaizen.watch_breakers` sees them all).

Run and node moments arrive on the runtime's driver thread, one at a time and in order. Model,
tool and chunk moments arrive in the thread that runs the node, possibly from several nodes at
once: hooks for those must be thread-safe.

Observing: a hook that raises is recorded in the run's `RunRecord.hook_errors` under the hook's
name (its `name` attribute, else its class name) and logged (logger `kaizen.hooks`); the run goes
on, and the runtime's own state and record were updated before any user hook ran.

Steering: raising a `VetoError` (such as `BudgetExceededError`) from `on_model_call_start` or
`on_tool_call_start` refuses that call: the node sees the error (a budget refusal marks the node
SKIPPED). Node and run moments report what happened and cannot be vetoed.

Hooks are registered for every run in the process (`add_process_hook(h)`, which
`kaizen.enable_tracing` uses), on a runtime (`LocalRuntime(hooks=[...])`, `runtime.add_hook(h)`),
for one run (`runtime.execute(..., hooks=[...])`), or on an agent
(`create_agent(..., hooks=[...])`): an agent's hooks see the moments of that agent's own node.
With no hook registered beyond the runtime's own record keeping, a moment costs one call.

Middleware (`Middleware`, below; how it is applied: `kaizen.runtime.middleware`) is the steering
form of a hook: registered the same ways (or with `add_middleware`), ordered by `priority`, it
wraps each node's execution and each model call and may change the request, answer instead
(short-circuit) or refuse (`VetoError`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kaizen import process
from kaizen.errors import VetoError
from kaizen.runtime.record import HookError

if TYPE_CHECKING:
    from kaizen.runtime.middleware import ModelCallRequest, NodeCall
    from kaizen.runtime.record import NodeStatus, RunRecord, RunStatus, ToolCallRecord, Usage
    from kaizen.workflow.workflow import Workflow

__all__ = [
    "BreakerHook",
    "ChunkHook",
    "HookSet",
    "Middleware",
    "ModelCallFinishHook",
    "ModelCallStartHook",
    "NodeFinishHook",
    "NodeRetryHook",
    "NodeSkipHook",
    "NodeStartHook",
    "RunFinishHook",
    "RunStartHook",
    "ToolCallFinishHook",
    "ToolCallStartHook",
    "add_process_hook",
    "hook_name",
    "process_hooks",
]

_log = logging.getLogger("kaizen.hooks")


class RunStartHook:
    def on_run_start(self, *, run_id: str, workflow: Workflow, record: RunRecord) -> None:
        raise NotImplementedError


class RunFinishHook:
    def on_run_finish(
        self,
        *,
        run_id: str,
        status: RunStatus,
        record: RunRecord,
        error: BaseException | None,
    ) -> None:
        raise NotImplementedError


class NodeStartHook:
    def on_node_start(
        self, *, run_id: str, node_id: str, node_type: str, attempt: int, time: float
    ) -> None:
        raise NotImplementedError


class NodeRetryHook:
    def on_node_retry(
        self, *, run_id: str, node_id: str, attempt: int, error: BaseException, wait: float
    ) -> None:
        raise NotImplementedError


class NodeSkipHook:
    def on_node_skip(self, *, run_id: str, node_id: str, reason: str, time: float) -> None:
        raise NotImplementedError


class NodeFinishHook:
    def on_node_finish(
        self,
        *,
        run_id: str,
        node_id: str,
        status: NodeStatus,
        outputs: Mapping[str, Any] | None,
        error: BaseException | None,
        started: float | None,
        finished: float,
        attempts: int,
    ) -> None:
        raise NotImplementedError


class ModelCallStartHook:
    def on_model_call_start(
        self, *, run_id: str, node_id: str, model: str, messages: Sequence[Mapping[str, Any]]
    ) -> None:
        raise NotImplementedError


class ModelCallFinishHook:
    def on_model_call_finish(
        self,
        *,
        run_id: str,
        node_id: str,
        model: str,
        usage: Usage,
        latency: float,
        reply: Any,
        error: BaseException | None,
    ) -> None:
        raise NotImplementedError


class ToolCallStartHook:
    def on_tool_call_start(
        self, *, run_id: str, node_id: str, tool: str, arguments: Any, call_id: str
    ) -> None:
        raise NotImplementedError


class ToolCallFinishHook:
    def on_tool_call_finish(
        self, *, run_id: str, node_id: str, tool: str, call_id: str, record: ToolCallRecord
    ) -> None:
        raise NotImplementedError


class ChunkHook:
    def on_chunk(self, *, run_id: str, node_id: str, chunk: Any) -> None:
        raise NotImplementedError


class BreakerHook:
    def on_breaker_change(
        self, *, run_id: str, node_id: str, model: str, state: Any, previous: str
    ) -> None:
        raise NotImplementedError


class Middleware:
    """Steers node executions and model calls; subclass it and override what you need.

    Lower `priority` runs first (outermost); equal priorities keep registration order. Before
    methods run in that order, after methods in reverse. Each may raise `VetoError(reason)` to
    refuse (the node fails with it). See `kaizen.runtime.middleware` for the request objects.
    """

    priority: int = 100

    def before_node(self, call: NodeCall) -> Mapping[str, Any] | None:
        """Change `call.inputs` in place; return outputs to answer without running the node."""
        return None

    def after_node(self, call: NodeCall, outputs: dict[str, Any]) -> Mapping[str, Any] | None:
        """Return other outputs to replace the node's, or None to keep them."""
        return None

    def before_model_call(self, call: ModelCallRequest) -> Any:
        """Change `call.messages` / `call.options` in place; return a `ModelReply` or a str to
        answer without calling the model, or None to go on."""
        return None

    def after_model_call(self, call: ModelCallRequest, reply: Any) -> Any:
        """Return another `ModelReply` to replace the model's, or None to keep it."""
        return None


# moment -> (hook class, method name); the order of HookSet's slots
_MOMENTS: dict[str, tuple[type, str]] = {
    "run_start": (RunStartHook, "on_run_start"),
    "run_finish": (RunFinishHook, "on_run_finish"),
    "node_start": (NodeStartHook, "on_node_start"),
    "node_retry": (NodeRetryHook, "on_node_retry"),
    "node_skip": (NodeSkipHook, "on_node_skip"),
    "node_finish": (NodeFinishHook, "on_node_finish"),
    "model_call_start": (ModelCallStartHook, "on_model_call_start"),
    "model_call_finish": (ModelCallFinishHook, "on_model_call_finish"),
    "tool_call_start": (ToolCallStartHook, "on_tool_call_start"),
    "tool_call_finish": (ToolCallFinishHook, "on_tool_call_finish"),
    "chunk": (ChunkHook, "on_chunk"),
    "breaker_change": (BreakerHook, "on_breaker_change"),
}
_VETOABLE = frozenset({"model_call_start", "tool_call_start"})
_HOOK_CLASSES = (*(cls for cls, _ in _MOMENTS.values()), Middleware)


_process_hooks: tuple[object, ...] = ()


def add_process_hook(hook: object) -> Callable[[], None]:
    """Observe every later run of every runtime in this process with `hook`; returns a function
    that removes it."""
    global _process_hooks
    (checked,) = check_hooks([hook])
    _process_hooks = (*_process_hooks, checked)

    def remove() -> None:
        global _process_hooks
        _process_hooks = tuple(h for h in _process_hooks if h is not checked)

    return remove


def process_hooks() -> tuple[object, ...]:
    """The hooks registered for every run in the process."""
    return _process_hooks


def hook_name(hook: object) -> str:
    """How a hook is named in records and logs: its `name` attribute, else its class name."""
    name = getattr(hook, "name", None)
    return name if isinstance(name, str) and name else type(hook).__name__


def check_hooks(hooks: Iterable[object]) -> tuple[object, ...]:
    """The hooks as a tuple; `TypeError` for an object that implements no moment."""
    checked = tuple(hooks)
    for hook in checked:
        if not isinstance(hook, _HOOK_CLASSES):
            raise TypeError(
                f"{hook!r} is not a lifecycle hook: subclass the classes of the moments it "
                "observes (kaizen.NodeFinishHook, kaizen.ModelCallFinishHook, ...; see "
                "kaizen.runtime.hooks)"
            )
    return checked


class HookSet:
    """The hooks of one run (or of one node within it), sorted by moment, ready to call.

    `fire(moment, **arguments)` calls every hook of that moment in registration order;
    `node_started`, `node_finished`, ... are the runtime's moments with their arguments typed.
    Failures are recorded in `record.hook_errors` (see the module docstring).
    """

    __slots__ = ("_by_moment", "hooks", "middleware", "node_finish", "node_start", "record")

    def __init__(self, hooks: Sequence[object], record: RunRecord | None = None) -> None:
        self.hooks = tuple(hooks)
        self.record = record
        by_moment: dict[str, tuple[Callable[..., None], ...]] = {}  # only moments with hooks
        for hook in self.hooks:
            for moment, method in _moments_of(type(hook)):
                by_moment[moment] = (*by_moment.get(moment, ()), getattr(hook, method))
        self._by_moment = by_moment
        ranked = [hook for hook in self.hooks if isinstance(hook, Middleware)]
        # sorted() is stable: equal priorities keep registration order
        self.middleware: tuple[Middleware, ...] = tuple(sorted(ranked, key=_priority))
        self.node_start = by_moment.get("node_start", ())
        self.node_finish = by_moment.get("node_finish", ())

    def including(self, more: Sequence[object]) -> HookSet:
        """These hooks followed by `more` (an agent's hooks, scoped to its node)."""
        return HookSet((*self.hooks, *more), self.record) if more else self

    def observes(self, moment: str) -> bool:
        """Whether any hook here observes `moment`."""
        return moment in self._by_moment

    def fire(self, moment: str, **arguments: Any) -> None:
        """Call every hook of `moment` with `arguments` (keyword-only, as documented)."""
        for call in self._by_moment.get(moment, ()):
            try:
                call(**arguments)
            except VetoError:
                if moment in _VETOABLE:
                    raise
                self.failed(call, moment, arguments.get("node_id"))
            except Exception:
                self.failed(call, moment, arguments.get("node_id"))

    # The runtime's moments, typed. Node start and finish are its hottest: they loop here
    # rather than through `fire`.

    def node_started(self, run_id: str, node_id: str, node_type: str, time: float) -> None:
        for call in self.node_start:
            try:
                call(run_id=run_id, node_id=node_id, node_type=node_type, attempt=1, time=time)
            except Exception:
                self.failed(call, "node_start", node_id)

    def node_finished(
        self,
        run_id: str,
        node_id: str,
        status: NodeStatus,
        outputs: Mapping[str, Any] | None,
        error: BaseException | None,
        started: float,
        finished: float,
        attempts: int,
    ) -> None:
        for call in self.node_finish:
            try:
                call(
                    run_id=run_id,
                    node_id=node_id,
                    status=status,
                    outputs=outputs,
                    error=error,
                    started=started,
                    finished=finished,
                    attempts=attempts,
                )
            except Exception:
                self.failed(call, "node_finish", node_id)

    def node_skipped(self, run_id: str, node_id: str, reason: str, time: float) -> None:
        self.fire("node_skip", run_id=run_id, node_id=node_id, reason=reason, time=time)

    def node_retrying(
        self, run_id: str, node_id: str, attempt: int, error: BaseException, wait: float
    ) -> None:
        moment = {"attempt": attempt, "error": error, "wait": wait}
        self.fire("node_retry", run_id=run_id, node_id=node_id, **moment)

    def failed(self, call: Callable[..., None], moment: str, node_id: str | None) -> None:
        """Record and log that `call` (a hook's method) raised the exception being handled."""
        error = sys.exc_info()[1]
        hook = getattr(call, "__self__", call)
        name = hook_name(hook)
        _log.warning(
            "hook %s failed on %s%s: %s: %s; the run goes on",
            name,
            moment,
            f" of node {node_id!r}" if node_id else "",
            type(error).__name__,
            error,
        )
        if self.record is not None:
            self.record.hook_errors.append(
                HookError(name, moment, f"{type(error).__name__}: {error}", node_id)
            )


def _priority(middleware: Middleware) -> int:
    return middleware.priority


_MOMENTS_OF: dict[type, tuple[tuple[str, str], ...]] = {}


def _moments_of(cls: type) -> tuple[tuple[str, str], ...]:
    """The moments a hook class observes, as (moment, method name); worked out once per class."""
    moments = _MOMENTS_OF.get(cls)
    if moments is None:
        moments = _MOMENTS_OF[cls] = tuple(
            (moment, method) for moment, (base, method) in _MOMENTS.items() if issubclass(cls, base)
        )
    return moments


def _forget_process_hooks() -> None:
    global _process_hooks
    _process_hooks = ()


process.register("runtime.hooks", _forget_process_hooks)
