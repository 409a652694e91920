"""Middleware: ordered, prioritised steering around node executions and model calls.

A middleware is a `kaizen.Middleware` (defined with the other hook classes in
`kaizen.runtime.hooks`) and is registered like any hook: on a runtime
(`runtime.add_middleware(m)`, `LocalRuntime(hooks=[m])`), on an agent (`agent.add_middleware(m)`:
it sees that agent's node and its model calls only) or for one run (`execute(..., hooks=[m])`).
The run's `HookSet` keeps them sorted by `priority` (lower first).

Around a node (`kaizen.runtime.attempt`, the one place a node is called, asks them when the
node's hooks hold any):
`before_node(call)` in priority order may change `call.inputs` or return outputs (the node is
not run, and the middlewares after it are not asked); then the node runs; then `after_node` in
reverse order, each may replace the outputs. Around a model call (`kaizen.llm.call.model_call`
calls `before_model_call` / `after_model_call`, defined with `ModelCallRequest` at the bottom
layer in `kaizen.call_context` and re-exported here): `before_model_call(call)` may change
`call.messages` and `call.options` (temperature, max_tokens, ...; never the credentials, which a
middleware does not see) or answer with a `ModelReply` or a str; `after_model_call` may replace
the reply. Only the middlewares whose before method ran see the after method. Any of them may
raise `VetoError(reason)`: the node fails with it, naming the node.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kaizen.call_context import (
    ModelCallRequest,
    after_model_call,
    before_model_call,
    model_call_request,
    updated_kwargs,
)
from kaizen.runtime.hooks import Middleware

__all__ = [
    "Middleware",
    "ModelCallRequest",
    "NodeCall",
    "after_model_call",
    "after_node",
    "before_model_call",
    "before_node",
    "model_call_request",
    "updated_kwargs",
]


@dataclass(slots=True)
class NodeCall:
    """One execution of a node, as middleware sees it: change `inputs` in place."""

    run_id: str
    node_id: str
    node_type: str
    attempt: int
    inputs: dict[str, Any]


def before_node(
    middleware: tuple[Middleware, ...], call: NodeCall
) -> tuple[int, Mapping[str, Any] | None]:
    """Run the before methods in priority order; (how many ran, the outputs of the one that
    answered instead of the node, or None)."""
    for index, one in enumerate(middleware):
        answer = one.before_node(call)
        if answer is not None:
            return index, answer
    return len(middleware), None


def after_node(
    middleware: tuple[Middleware, ...], ran: int, call: NodeCall, outputs: Mapping[str, Any]
) -> Mapping[str, Any]:
    """Run the after methods of the middlewares that ran, innermost first; the outputs."""
    result = dict(outputs)
    for one in reversed(middleware[:ran]):
        replaced = one.after_node(call, result)
        if replaced is not None:
            result = dict(replaced)
    return result
