"""`Node` and its typed `Port`s: the unit a workflow graph is made of.

A node declares input and output ports and implements either `run(**inputs) -> dict` (sync; the
runtime runs it in a worker thread) or `async arun(**inputs) -> dict` (runs on the event loop). The
returned dict maps output port names to values; an output port left out of the dict was *not
produced*, and whatever depends on it is skipped (this is how `SwitchNode` routes).
"""

from __future__ import annotations

import copy as _copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

from kaizen.missing import MISSING


@dataclass(frozen=True, slots=True)
class Port:
    """A named, typed input or output of a node. Without a default, an input port is required."""

    name: str
    type: Any = Any
    default: Any = MISSING
    description: str = ""

    @property
    def required(self) -> bool:
        return self.default is MISSING


@dataclass(frozen=True, slots=True)
class ExecutionPolicy:
    """How the runtime runs one node: per-attempt timeout (seconds) and retries after a failure.

    `num_cpus` and `resources` are what the node asks of a Ray cluster (`kaizen.RayRuntime`;
    None: the runtime's default, fractional for model-bound nodes); `LocalRuntime` ignores them.
    """

    timeout: float | None = None
    retries: int = 0
    retry_on: tuple[type[BaseException], ...] = field(default=(Exception,))
    backoff: float = 0.0  # seconds before the first retry, doubled on each further one
    num_cpus: float | None = None
    resources: Mapping[str, float] | None = None  # custom Ray resources, e.g. {"GPU": 1}

    def __post_init__(self) -> None:
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError(f"timeout must be positive seconds, got {self.timeout!r}")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries!r}")
        if self.num_cpus is not None and self.num_cpus < 0:
            raise ValueError(f"num_cpus must be >= 0, got {self.num_cpus!r}")


class Node:
    """Base class of every node type.

    Subclasses either set the class attributes `input_ports` / `output_ports`, or override
    `make_ports()` when ports depend on config (as `FunctionNode` and `AgentNode` do).
    `accepts_partial_inputs = True` makes the runtime start the node once every source has settled,
    passing only the inputs that were produced (as `MergeNode` needs); if none was produced it is
    skipped, unless `runs_without_inputs = True`.
    `config_keys` names the settings a type reads from its config; when it is not `None`, the
    builder reports any other config key that is not an input port name (a likely typo).
    `hooks` are lifecycle hooks scoped to this node (see `kaizen.runtime.hooks`). `group` names
    the cluster the node is drawn in (patterns group rounds and steps; None: by its id).
    """

    type_name: ClassVar[str] = ""
    input_ports: ClassVar[tuple[Port, ...]] = ()
    output_ports: ClassVar[tuple[Port, ...]] = ()
    accepts_partial_inputs: ClassVar[bool] = False
    # With accepts_partial_inputs: run even when no input arrived at all (an aggregator that must
    # report "every member failed" rather than vanish); otherwise such a node is skipped.
    runs_without_inputs: ClassVar[bool] = False
    # The node spends its time waiting for a model, not computing: a Ray runtime gives it a
    # fraction of a CPU by default, so a few cores run many of them at once.
    model_bound: ClassVar[bool] = False
    config_keys: ClassVar[frozenset[str] | None] = None

    def __init__(
        self,
        node_id: str,
        config: Mapping[str, Any] | None = None,
        *,
        policy: ExecutionPolicy | None = None,
    ) -> None:
        if not isinstance(node_id, str) or not node_id:
            raise ValueError(f"a node id must be a non-empty string, got {node_id!r}")
        self.id = node_id
        self.group: str | None = None
        self.config: Mapping[str, Any] = MappingProxyType(dict(config or {}))
        self.policy = policy or ExecutionPolicy()
        ins, outs = self.make_ports()
        self.inputs: Mapping[str, Port] = MappingProxyType(_by_name(ins, node_id, "input"))
        self.outputs: Mapping[str, Port] = MappingProxyType(_by_name(outs, node_id, "output"))

    def copy(self, *, node_id: str | None = None, policy: ExecutionPolicy | None = None) -> Node:
        """A shallow copy under another id and/or execution policy (ports and config shared:
        both are read-only)."""
        clone = _copy.copy(self)
        if node_id is not None:
            if not isinstance(node_id, str) or not node_id:
                raise ValueError(f"a node id must be a non-empty string, got {node_id!r}")
            clone.id = node_id
        if policy is not None:
            clone.policy = policy
        return clone

    def make_ports(self) -> tuple[Iterable[Port], Iterable[Port]]:
        """Return `(input_ports, output_ports)`; called once by `__init__`."""
        return self.input_ports, self.output_ports

    @classmethod
    def node_type(cls) -> str:
        """The name this type is registered under (`type_name`, else the class name)."""
        return cls.type_name or cls.__name__

    @property
    def is_async(self) -> bool:
        return type(self).arun is not Node.arun

    @property
    def hooks(self) -> tuple[Any, ...]:
        """Lifecycle hooks (`kaizen.runtime.hooks`) observing this node's own moments in every
        run, besides the runtime's: an agent's node carries the agent's hooks."""
        return ()

    def run(self, **inputs: Any) -> dict[str, Any]:
        raise NotImplementedError(f"{type(self).__name__} implements neither run() nor arun()")

    async def arun(self, **inputs: Any) -> dict[str, Any]:
        return self.run(**inputs)

    def unproduced_reason(self, outputs: Mapping[str, Any]) -> str | None:
        """Why output ports missing from `outputs` were not produced (shown in skip reasons).

        Routing nodes override this ("branch 'low' not taken", "converged after round 2").
        """
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.id!r})"


__all__ = ["MISSING", "ExecutionPolicy", "Node", "Port"]


def _by_name(ports: Iterable[Port], node_id: str, kind: str) -> dict[str, Port]:
    result: dict[str, Port] = {}
    for port in ports:
        if port.name in result:
            raise ValueError(f"node {node_id!r} declares {kind} port {port.name!r} twice")
        result[port.name] = port
    return result
