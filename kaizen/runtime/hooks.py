"""Lifecycle hooks: the one mechanism for everything that observes or steers a run.

Each moment of a run is one typed event (`kaizen.moments`), and a hook hears a moment in the
method named after it, which takes the event. A hook object subclasses the classes of the
moments it wants (they only give the method's typed signature):

    RunStartHook         on_run_start(event: RunStarted)
    NodeStartHook        on_node_start(event: NodeStarted)
    NodeRetryHook        on_node_retry(event: NodeRetrying)
    NodeSkipHook         on_node_skip(event: NodeSkipped)
    NodeFinishHook       on_node_finish(event: NodeFinished)
    NodeWaitHook         on_node_wait(event: NodeWaiting)
    NodeResumeHook       on_node_resume(event: NodeResumed)
    RunFinishHook        on_run_finish(event: RunFinished)
    ModelCallStartHook   on_model_call_start(event: ModelCallStarted)
    ModelCallFinishHook  on_model_call_finish(event: ModelCallFinished)
    ToolCallStartHook    on_tool_call_start(event: ToolCallStarted)
    ToolCallFinishHook   on_tool_call_finish(event: ToolCallFinished)
    ChunkHook            on_chunk(event: ChunkReceived)
    BreakerHook          on_breaker_change(event: BreakerChanged)

The events and their fields are in `kaizen.moments` (every event has `run_id`, a node's moments
`node_id`). A hook that treats several moments alike (a relay, an event stream) subclasses
`MomentHook` instead: `hears(moment class)` and one `on_moment(event)`.
Hook classes written before events, whose methods take the fields as keyword arguments, keep
working for one release (`kaizen.runtime.legacy_hooks`; a `DeprecationWarning` once per class).

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
A moment no hook hears costs nothing: its event is built only when one does (`observes`).

Middleware (`Middleware`, below; how it is applied: `kaizen.runtime.middleware`) is the steering
form of a hook: registered the same ways (or with `add_middleware`), ordered by `priority`, it
wraps each node's execution and each model call and may change the request, answer instead
(short-circuit) or refuse (`VetoError`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kaizen import moments, process
from kaizen.errors import VetoError
from kaizen.moments import MOMENTS, Moment, NodeFinished, NodeStarted
from kaizen.runtime.legacy_hooks import KeywordCall, takes_keywords, warn_keyword_style
from kaizen.runtime.record import HookError

if TYPE_CHECKING:
    from kaizen.runtime.middleware import ModelCallRequest, NodeCall
    from kaizen.runtime.record import RunRecord

__all__ = [
    "BreakerHook",
    "ChunkHook",
    "HookSet",
    "Middleware",
    "ModelCallFinishHook",
    "ModelCallStartHook",
    "MomentHook",
    "NodeFinishHook",
    "NodeResumeHook",
    "NodeRetryHook",
    "NodeSkipHook",
    "NodeStartHook",
    "NodeWaitHook",
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
    def on_run_start(self, event: moments.RunStarted) -> None:
        raise NotImplementedError


class RunFinishHook:
    def on_run_finish(self, event: moments.RunFinished) -> None:
        raise NotImplementedError


class NodeStartHook:
    def on_node_start(self, event: NodeStarted) -> None:
        raise NotImplementedError


class NodeRetryHook:
    def on_node_retry(self, event: moments.NodeRetrying) -> None:
        raise NotImplementedError


class NodeSkipHook:
    def on_node_skip(self, event: moments.NodeSkipped) -> None:
        raise NotImplementedError


class NodeFinishHook:
    def on_node_finish(self, event: NodeFinished) -> None:
        raise NotImplementedError


class NodeWaitHook:
    def on_node_wait(self, event: moments.NodeWaiting) -> None:
        raise NotImplementedError


class NodeResumeHook:
    def on_node_resume(self, event: moments.NodeResumed) -> None:
        raise NotImplementedError


class ModelCallStartHook:
    def on_model_call_start(self, event: moments.ModelCallStarted) -> None:
        raise NotImplementedError


class ModelCallFinishHook:
    def on_model_call_finish(self, event: moments.ModelCallFinished) -> None:
        raise NotImplementedError


class ToolCallStartHook:
    def on_tool_call_start(self, event: moments.ToolCallStarted) -> None:
        raise NotImplementedError


class ToolCallFinishHook:
    def on_tool_call_finish(self, event: moments.ToolCallFinished) -> None:
        raise NotImplementedError


class ChunkHook:
    def on_chunk(self, event: moments.ChunkReceived) -> None:
        raise NotImplementedError


class BreakerHook:
    def on_breaker_change(self, event: moments.BreakerChanged) -> None:
        raise NotImplementedError


class MomentHook:
    """A hook that hears several kinds of moment through one method (relays, event streams).

    `hears(moment)` says which moment classes it wants (asked once per run), `on_moment(event)`
    gets each of them.
    """

    def hears(self, moment: type[Moment]) -> bool:
        raise NotImplementedError

    def on_moment(self, event: Moment) -> None:
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
    """The hooks as a tuple; `TypeError` for an object that hears no moment. A hook written
    in the keyword-argument form is adapted (a `DeprecationWarning`, once per class)."""
    checked = tuple(hooks)
    for hook in checked:
        if not isinstance(hook, Middleware | MomentHook) and not _methods_of(type(hook)):
            raise TypeError(
                f"{hook!r} is not a lifecycle hook: give it the methods of the moments it "
                "hears (subclass kaizen.NodeFinishHook, kaizen.ModelCallFinishHook, ...; see "
                "kaizen.runtime.hooks)"
            )
    return checked


class HookSet:
    """The hooks of one run (or of one node within it), sorted by moment, ready to call.

    `observes(NodeFinished)` says whether any hook hears a moment (build its event only then);
    `fire(event)` calls every hook of the event's moment in registration order. Failures are
    recorded in `record.hook_errors` (see the module docstring).
    """

    __slots__ = ("_by_moment", "hooks", "middleware", "node_finish", "node_start", "record")

    def __init__(self, hooks: Sequence[object], record: RunRecord | None = None) -> None:
        self.hooks = tuple(hooks)
        self.record = record
        by_moment: dict[type[Moment], tuple[Callable[[Any], None], ...]] = {}  # heard ones only
        for hook in self.hooks:
            for moment, call in _calls_of(hook):
                by_moment[moment] = (*by_moment.get(moment, ()), call)
        self._by_moment = by_moment
        ranked = [hook for hook in self.hooks if isinstance(hook, Middleware)]
        # sorted() is stable: equal priorities keep registration order
        self.middleware: tuple[Middleware, ...] = tuple(sorted(ranked, key=_priority))
        # the driver's hottest moments: it builds their events only when these are not empty
        self.node_start = by_moment.get(NodeStarted, ())
        self.node_finish = by_moment.get(NodeFinished, ())

    def including(self, more: Sequence[object]) -> HookSet:
        """These hooks followed by `more` (an agent's hooks, scoped to its node)."""
        return HookSet((*self.hooks, *more), self.record) if more else self

    def observes(self, moment: type[Moment]) -> bool:
        """Whether any hook here hears `moment` (a class of `kaizen.moments`)."""
        return moment in self._by_moment

    def fire(self, event: Moment) -> None:
        """Call every hook of the event's moment with it; a `VetoError` from a hook of a
        vetoable moment is raised, any other failure recorded."""
        for call in self._by_moment.get(type(event), ()):
            try:
                call(event)
            except VetoError:
                if event.vetoable:
                    raise
                self.failed(call, event)
            except Exception:
                self.failed(call, event)

    def failed(self, call: Callable[[Any], None], event: Moment) -> None:
        """Record and log that `call` (a hook's method) raised the exception being handled."""
        error = sys.exc_info()[1]
        hook = getattr(call, "__self__", call)
        name = hook_name(hook)
        node_id: str | None = getattr(event, "node_id", None)
        _log.warning(
            "hook %s failed on %s%s: %s: %s; the run goes on",
            name,
            event.moment,
            f" of node {node_id!r}" if node_id else "",
            type(error).__name__,
            error,
        )
        if self.record is not None:
            self.record.hook_errors.append(
                HookError(name, event.moment, f"{type(error).__name__}: {error}", node_id)
            )


def _priority(middleware: Middleware) -> int:
    return middleware.priority


def _calls_of(hook: object) -> Iterator[tuple[type[Moment], Callable[[Any], None]]]:
    """(moment, what to call with its event) for every moment `hook` hears."""
    if isinstance(hook, MomentHook):
        for moment in MOMENTS:
            if hook.hears(moment):
                yield moment, hook.on_moment
        return
    for moment, method, keyword_style in _methods_of(type(hook)):
        call = getattr(hook, method)
        yield moment, KeywordCall(call, moment) if keyword_style else call


_METHODS_OF: dict[type, tuple[tuple[type[Moment], str, bool], ...]] = {}


def _methods_of(cls: type) -> tuple[tuple[type[Moment], str, bool], ...]:
    """The moments a hook class hears, as (moment, method name, written in the deprecated
    keyword-argument form); worked out once per class."""
    methods = _METHODS_OF.get(cls)
    if methods is None:
        found = []
        for moment in MOMENTS:
            method = f"on_{moment.moment}"
            function = getattr(cls, method, None)
            if callable(function):
                found.append((moment, method, takes_keywords(function)))
        methods = _METHODS_OF[cls] = tuple(found)
        if any(keyword_style for _, _, keyword_style in methods):
            warn_keyword_style(cls)
    return methods


def _forget_process_hooks() -> None:
    global _process_hooks
    _process_hooks = ()


process.register("runtime.hooks", _forget_process_hooks)
