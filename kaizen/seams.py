"""Seams: what a lower layer calls and a higher layer provides.

Layers point down (docs/architecture.md, "Layers"): no module imports a higher layer, lazily
or by name. When a lower layer needs something only a higher one has, it calls a `Seam`
declared here, and the higher layer provides the implementation:

- `drawing`: `Workflow.to_mermaid` / `to_dot` / `render` and `RunRecord.render` draw with
  `kaizen.render`;
- `model_call_steps`: the store's step in front of each model call (cache, recordings, replay;
  `kaizen.store.calls.model_call_step`), for `kaizen.llm.call`;
- `durability`: what makes `LocalRuntime(checkpoint=..., record=..., cache=...)` durable, and
  its `resume` and `replay` (`kaizen.durable.Durability`);
- `node_types`: the node types defined above the node layer (`AgentNode`, `LLMAgentNode`),
  registered by `kaizen.nodes.registry` when a lookup misses;
- `execution_monitor`: `LocalRuntime.get_execution_monitor()`'s `ExecutionMonitor`;
- `memories`: agent memory (`kaizen.store.memory`), for the `MemoryRead` and `MemoryWrite` nodes;
- `patterns`: the pattern builders (`kaizen.patterns`), for the `Kaizen` facade's methods.

The package root (`kaizen/__init__.py`, the top layer) provides each seam's default, lazily:
nothing above is imported until the seam is first used, so `workflow.render(...)` works before
anyone imported `kaizen.render`. A test or an application may `provide` another implementation.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from kaizen.call_context import ModelCallStep
    from kaizen.durable import Durability
    from kaizen.observe.monitor import ExecutionMonitor
    from kaizen.runtime.record import RunRecord
    from kaizen.store.memory import Memory, MemoryItem
    from kaizen.workflow.builder import WorkflowBuilder
    from kaizen.workflow.workflow import Workflow

__all__ = [
    "Drawing",
    "Memories",
    "ModelCallSteps",
    "Patterns",
    "Seam",
    "drawing",
    "durability",
    "execution_monitor",
    "memories",
    "model_call_steps",
    "node_types",
    "patterns",
]

T = TypeVar("T")


class Seam(Generic[T]):
    """One implementation a lower layer calls and a higher layer provides (see the module
    docstring): `provide(value)`, or `provide_lazily(loader)` to make it on first `get()`."""

    __slots__ = ("_loader", "_lock", "_value", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._value: T | None = None
        self._loader: Callable[[], T] | None = None
        self._lock = threading.Lock()

    def provide(self, value: T) -> None:
        with self._lock:
            self._value = value

    def provide_lazily(self, loader: Callable[[], T]) -> None:
        with self._lock:
            self._value = None
            self._loader = loader

    def get(self) -> T:
        value = self._value
        if value is not None:
            return value
        with self._lock:
            if self._value is None:
                if self._loader is None:
                    raise LookupError(
                        f"nothing provides {self.name}: the package root (kaizen/__init__.py) "
                        "provides it when `kaizen` is imported; provide one with "
                        f"kaizen.seams.{self.name}.provide(...)"
                    )
                self._value = self._loader()
            return self._value


class Drawing(Protocol):
    """What `Workflow` and `RunRecord` draw with (`kaizen.render`)."""

    def workflow_to_mermaid(self, wf: Workflow) -> str: ...
    def workflow_to_dot(self, wf: Workflow) -> str: ...
    def render_workflow(self, wf: Workflow, path: str | Path) -> Path: ...
    def workflow_svg(self, wf: Workflow) -> str: ...
    def render_run(
        self, record: RunRecord, path: str | Path, workflow: Workflow | None = None
    ) -> Path: ...
    def timeline_svg(self, record: RunRecord) -> str: ...


class Memories(Protocol):
    """What the memory nodes use of agent memory (`kaizen.store.memory`)."""

    @property
    def Memory(self) -> type[Memory]: ...
    @property
    def memory_block(self) -> Callable[[Sequence[MemoryItem]], str | None]: ...


class Patterns(Protocol):
    """The pattern builders the `Kaizen` facade offers as methods (`kaizen.patterns`)."""

    @property
    def create_pipeline(self) -> Callable[..., WorkflowBuilder]: ...
    @property
    def create_debate_workflow(self) -> Callable[..., WorkflowBuilder]: ...
    @property
    def create_consensus_workflow(self) -> Callable[..., WorkflowBuilder]: ...
    @property
    def create_supervisor_agent(self) -> Callable[..., WorkflowBuilder]: ...


# (the request's litellm arguments, the agent's cache option, the node id) -> the step, or None
ModelCallSteps = Callable[[Mapping[str, Any], Any, "str | None"], "ModelCallStep | None"]

drawing: Seam[Drawing] = Seam("drawing")
model_call_steps: Seam[ModelCallSteps] = Seam("model_call_steps")
# kaizen.durable.Durability, made with (checkpoint=..., record=..., cache=..., allow_pickle=...)
durability: Seam[type[Durability]] = Seam("durability")
# imports the node types defined above the node layer (they register themselves)
node_types: Seam[Callable[[], None]] = Seam("node_types")
execution_monitor: Seam[Callable[[], ExecutionMonitor]] = Seam("execution_monitor")
memories: Seam[Memories] = Seam("memories")
patterns: Seam[Patterns] = Seam("patterns")
