"""What a model call needs from the node making it: the node context protocol, middleware's
view of the call (`ModelCallRequest`), and the store's step protocol.

A bottom-layer module, so that `kaizen.llm.call` reaches the run it is part of without importing
the runtime or the store. The runtime sets `node_context_var` while a node runs (in the worker
thread for sync nodes, in the task for async ones); `current_call_context()` is what a model
call sees of it: the run and node ids, the model-call moments of the lifecycle hooks, and the
node's middleware. `kaizen.runtime.context.NodeContext` is the runtime's implementation;
`kaizen.runtime.middleware` re-exports the middleware half; `kaizen.store.calls` provides the
steps (through `kaizen.seams.model_call_steps`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from kaizen.moments import Usage

__all__ = [
    "CallContext",
    "CallHooks",
    "HasCallContext",
    "ModelCallMiddleware",
    "ModelCallRequest",
    "ModelCallStep",
    "after_model_call",
    "before_model_call",
    "current_call_context",
    "model_call_request",
    "node_context_var",
    "updated_kwargs",
]

HIDDEN_OPTIONS = frozenset({"model", "messages", "api_key", "api_base"})


@dataclass(slots=True)
class ModelCallRequest:
    """One model call, as middleware sees it: change `messages` and `options` in place.
    `options` are the call's other arguments (temperature, max_tokens, response_format, ...)
    without the model, messages and credentials."""

    run_id: str
    node_id: str
    model: str
    messages: list[dict[str, Any]]
    options: dict[str, Any] = field(default_factory=dict)


class ModelCallMiddleware(Protocol):
    """The model-call half of a `kaizen.Middleware`."""

    def before_model_call(self, call: ModelCallRequest) -> Any: ...
    def after_model_call(self, call: ModelCallRequest, reply: Any) -> Any: ...


class CallHooks(Protocol):
    """What a model call uses of the node's hooks: its middleware."""

    @property
    def middleware(self) -> Sequence[ModelCallMiddleware]: ...


class CallContext(Protocol):
    """The node a model call is made in (`kaizen.runtime.context.NodeContext`)."""

    @property
    def run_id(self) -> str: ...
    @property
    def node_id(self) -> str: ...
    @property
    def hooks(self) -> CallHooks: ...

    def model_call_started(
        self, *, model: str = "", messages: Sequence[Mapping[str, Any]] = ()
    ) -> None: ...

    def model_call_finished(
        self,
        *,
        usage: Usage,
        model: str = "",
        latency: float = 0.0,
        reply: Any = None,
        error: BaseException | None = None,
    ) -> None: ...

    def fire(self, event: Any) -> None:
        """Tell the node's hooks of `event` (a `kaizen.moments` event)."""


class HasCallContext(Protocol):
    """What the runtime puts in `node_context_var`: something that makes the node's context
    when it is first asked for (most nodes never ask, and then nothing is made)."""

    @property
    def context(self) -> Any: ...


node_context_var: ContextVar[HasCallContext | None] = ContextVar(
    "kaizen_node_context", default=None
)


def current_call_context() -> CallContext | None:
    """The context of the node running in this thread or task, or None outside any node."""
    holder = node_context_var.get()
    if holder is None:
        return None
    context: CallContext = holder.context
    return context


class ModelCallStep(Protocol):
    """The store's step in front of one model call (`kaizen.store.calls.ModelCallStep`):
    `lookup()` a replayed or cached reply (the fields of a `RawReply`) or None, then `keep`
    the reply the model sent; `cache_hit` says whether the lookup came from the cache."""

    cache_hit: bool

    def lookup(self) -> dict[str, Any] | None: ...
    def keep(self, reply: Any) -> None: ...


def model_call_request(run_id: str, node_id: str, kwargs: Mapping[str, Any]) -> ModelCallRequest:
    """The middleware's view of a call's litellm arguments (a copy; credentials left out)."""
    options = {k: v for k, v in kwargs.items() if k not in HIDDEN_OPTIONS}
    messages = [dict(message) for message in kwargs["messages"]]
    return ModelCallRequest(run_id, node_id, str(kwargs["model"]), messages, options)


def updated_kwargs(kwargs: Mapping[str, Any], call: ModelCallRequest) -> dict[str, Any]:
    """The call's litellm arguments with the middleware's changes."""
    hidden = {k: v for k, v in kwargs.items() if k in HIDDEN_OPTIONS}
    return {**call.options, **hidden, "messages": call.messages}


def before_model_call(
    middleware: Sequence[ModelCallMiddleware], call: ModelCallRequest
) -> tuple[int, Any]:
    """Run the before methods; (how many ran, the answer of the one that answered or None)."""
    for index, one in enumerate(middleware):
        answer = one.before_model_call(call)
        if answer is not None:
            return index, answer
    return len(middleware), None


def after_model_call(
    middleware: Sequence[ModelCallMiddleware], ran: int, call: ModelCallRequest, reply: Any
) -> Any:
    """Run the after methods of the middlewares that ran, innermost first."""
    for one in reversed(middleware[:ran]):
        replaced = one.after_model_call(call, reply)
        if replaced is not None:
            reply = replaced
    return reply
