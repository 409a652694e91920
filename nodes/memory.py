"""`MemoryRead` and `MemoryWrite`: an agent's memory as nodes, so remembered context is visible
in the drawing of a graph (see docs/state.md).

Config of both: `{"memory": <Memory or Agent with memory enabled>}`, or the `Memory` settings
(`namespace`, `provider`, `path`, `session`). `MemoryRead` takes `query` (and optional `k`) and
produces `memories` (the texts, best first) and `context` (the prompt block, "" when nothing is
remembered). `MemoryWrite` takes `text` and produces `id`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from kaizen import seams
from kaizen.nodes.base import Node, Port
from kaizen.nodes.registry import register_node_type

if TYPE_CHECKING:
    from kaizen.store.memory import Memory

__all__ = ["MemoryRead", "MemoryWrite"]

_KEYS = frozenset({"memory", "namespace", "provider", "path", "session"})


def _memory_of(node_id: str, config: Mapping[str, Any]) -> Memory:
    Memory = seams.memories.get().Memory  # the store is a layer above: through kaizen.seams
    given = config.get("memory")
    if given is not None:
        memory = getattr(given, "memory", given)  # an Agent carries its Memory
        if not isinstance(memory, Memory):
            raise ValueError(
                f"node {node_id!r}: config 'memory' must be a Memory or an agent with memory "
                "enabled (agent.enable_memory(...))"
            )
        return memory
    if "namespace" not in config:
        raise ValueError(f"node {node_id!r}: give config 'memory' (a Memory) or 'namespace'")
    options = {k: config[k] for k in ("provider", "path", "session") if k in config}
    return Memory(config["namespace"], **options)


@register_node_type
class MemoryRead(Node):
    """Searches a memory: `query` (and `k`) -> `memories` (texts, best first), `context`."""

    config_keys: ClassVar[frozenset[str] | None] = _KEYS
    input_ports = (Port("query", str), Port("k", int, 5))
    output_ports = (Port("memories", list[str]), Port("context", str))

    def run(self, **inputs: Any) -> dict[str, Any]:
        items = _memory_of(self.id, self.config).search(inputs["query"], inputs.get("k", 5))
        block = seams.memories.get().memory_block(items)
        return {"memories": [i.text for i in items], "context": block or ""}


@register_node_type
class MemoryWrite(Node):
    """Keeps `text` in a memory -> `id`."""

    config_keys: ClassVar[frozenset[str] | None] = _KEYS
    input_ports = (Port("text", str),)
    output_ports = (Port("id", int),)

    def run(self, **inputs: Any) -> dict[str, Any]:
        return {"id": _memory_of(self.id, self.config).add(inputs["text"])}
