"""`kaizen.replay(run_id, workflow)`: a recorded run again, offline (see `kaizen.store.calls`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kaizen.store.db import Store, StorePath

if TYPE_CHECKING:
    from kaizen.workflow.workflow import Workflow

__all__ = ["replay"]


def replay(
    run_id: str, workflow: Workflow, *, path: StorePath | Store | None = None
) -> tuple[dict[str, dict[str, Any]], str]:
    """Re-execute recorded run `run_id` of `workflow` (from the store at `path`, else the
    default store) with every model and tool call served from its recording: no model and no
    tool is reached, and the results are the recorded run's. Returns `(results, replay_run_id)`.

    Raises `RunNotFoundError` (no such recorded run), `WorkflowChangedError` (another workflow),
    `ReplayMismatchError` (a call the recording does not hold: the node and what differs)."""
    from kaizen.runtime.local import LocalRuntime

    with LocalRuntime(record=Store.open(path)) as runtime:
        return runtime.replay(run_id, workflow)
