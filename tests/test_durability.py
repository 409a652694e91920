"""`LocalRuntime(checkpoint=..., durability=...)`: what each mode promises, in-process.

`"sync"` (the default): a node's outputs are in the store before any hook, stream or dependant
hears of it. `"async"`: they are committed a little later, by the store's writer thread, and
are all there when the run ends. The SIGKILL half of the promise is tests/test_durability_crash.py.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from kaizen import LocalRuntime, WorkflowBuilder
from kaizen.runtime.hooks import NodeFinishHook, NodeStartHook
from kaizen.store import Store


def _committed(reader: Store) -> set[str]:
    """The nodes whose checkpoints another connection (another process) can read now."""
    return {row[0] for row in reader.read("SELECT node_id FROM checkpoints")}


def _diamond() -> Any:
    def top(x: int) -> int:
        return x + 1

    def left(value: int) -> int:
        return value * 2

    async def right(value: int) -> int:
        return value * 3

    def join(a: int, b: int) -> int:
        return a + b

    wf = WorkflowBuilder("diamond")
    wf.add_node("FunctionNode", "top", {"function": top})
    wf.add_node("FunctionNode", "left", {"function": left})
    wf.add_node("FunctionNode", "right", {"function": right})
    wf.add_node("FunctionNode", "join", {"function": join})
    wf.add_connection("top", "result", "left", "value")
    wf.add_connection("top", "result", "right", "value")
    wf.add_connection("left", "result", "join", "a")
    wf.add_connection("right", "result", "join", "b")
    return wf.build()


class _SeesTheStore(NodeStartHook, NodeFinishHook):
    """Reads the store, as another process would, whenever a node starts or finishes."""

    def __init__(self, path: str) -> None:
        self.reader = Store(path)  # connections of its own, apart from the runtime's
        self.at_finish: dict[str, set[str]] = {}
        self.at_start: dict[str, set[str]] = {}
        self.lock = threading.Lock()

    def on_node_start(self, event: Any) -> None:
        with self.lock:
            self.at_start[event.node_id] = _committed(self.reader)

    def on_node_finish(self, event: Any) -> None:
        with self.lock:
            self.at_finish[event.node_id] = _committed(self.reader)


def test_sync_is_the_default_and_a_finished_node_is_stored_before_anyone_hears_of_it(
    store_location: str,
    tmp_path: Path,
) -> None:
    path = store_location
    seen = _SeesTheStore(path)
    runtime = LocalRuntime(checkpoint=path, hooks=[seen])
    assert runtime.durability == "sync"
    results, _ = runtime.execute(_diamond(), {"top": {"x": 1}})
    assert results["join"] == {"result": 10}
    for node, committed in seen.at_finish.items():
        assert node in committed, f"{node} finished before its checkpoint was committed"
    sources = {"left": {"top"}, "right": {"top"}, "join": {"left", "right"}}
    for node, needed in sources.items():
        assert needed <= seen.at_start[node], f"{node} started before {needed} were stored"


def test_async_durability_stores_every_node_by_the_end_of_the_run(
    store_location: str, tmp_path: Path
) -> None:
    path = store_location
    runtime = LocalRuntime(checkpoint=path, durability="async")
    results, run_id = runtime.execute(_diamond(), {"top": {"x": 1}})
    assert results["join"] == {"result": 10}
    assert _committed(Store(path)) == {"top", "left", "right", "join"}
    again, _ = LocalRuntime(checkpoint=path, durability="async").resume(run_id, _diamond())
    assert again == results


def test_sync_durability_resume_returns_every_result_and_reruns_nothing(
    store_location: str, tmp_path: Path
) -> None:
    path = store_location
    results, run_id = LocalRuntime(checkpoint=path).execute(_diamond(), {"top": {"x": 1}})
    ran: list[str] = []

    class Count(NodeStartHook):
        def on_node_start(self, event: Any) -> None:
            ran.append(event.node_id)

    again, _ = LocalRuntime(checkpoint=path, hooks=[Count()]).resume(run_id, _diamond())
    assert again == results
    assert ran == []


def test_an_unknown_durability_mode_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="'sync' or 'async'"):
        LocalRuntime(checkpoint=True, durability="eventually")  # type: ignore[arg-type]
