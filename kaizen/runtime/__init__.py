"""Running workflows: `LocalRuntime`, the run record, events, hooks, budgets and node context.

Modules: `local` (the runtime's public face), `driver` (one run's loop), `state` (the dataflow
state, pure), `executors` (how a node runs), `pool` (threads and the concurrency bound), `hooks`
(lifecycle moments), `recorder` and `events` (the record and the event stream, as hooks),
`budget` (ceilings, as a hook), `context` (what a running node can see), `record` (the data).
"""

from kaizen.runtime.budget import Budget
from kaizen.runtime.context import NodeContext, current_node_context
from kaizen.runtime.events import EventKind, RunEvent
from kaizen.runtime.local import FailurePolicy, LocalRuntime
from kaizen.runtime.record import HookError, NodeRun, NodeStatus, RunRecord, RunStatus, Usage

__all__ = [
    "Budget",
    "EventKind",
    "FailurePolicy",
    "HookError",
    "LocalRuntime",
    "NodeContext",
    "NodeRun",
    "NodeStatus",
    "RunEvent",
    "RunRecord",
    "RunStatus",
    "Usage",
    "current_node_context",
]
