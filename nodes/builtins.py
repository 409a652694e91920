"""Built-in routing and value nodes: `ConstantNode`, `SwitchNode`, `MergeNode`.

(`FunctionNode` lives in `kaizen.nodes.function`, `AgentNode` with the agents.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Final

from kaizen.nodes.base import Node, Port
from kaizen.nodes.registry import register_node_type

__all__ = ["ConstantNode", "MergeNode", "SwitchNode"]


@register_node_type
class ConstantNode(Node):
    """Produces one fixed value. Config: `{"value": v}` -> output `value` (typed `type(v)`)."""

    config_keys: ClassVar[frozenset[str] | None] = frozenset({"value"})

    def make_ports(self) -> tuple[Iterable[Port], Iterable[Port]]:
        if "value" not in self.config:
            raise ValueError(f"ConstantNode {self.id!r} needs config {{'value': <value>}}")
        return (), (Port("value", type(self.config["value"])),)

    def run(self, **inputs: Any) -> dict[str, Any]:
        return {"value": self.config["value"]}


@register_node_type
class SwitchNode(Node):
    """Routes its input `value` to exactly one output port; the other outputs are not produced,
    so everything downstream of an untaken branch is skipped.

    Choose the branch in one of three ways (config):

    - `{"cases": {"high": lambda v: v > 10, "zero": 0}, "default": "other"}`: the first case
      whose predicate returns true (a non-callable case matches by equality) names the output;
    - `{"condition": callable, "branches": ["a", "b"]}`: the callable maps the value to a branch
      name (a `bool` result means `"true"` / `"false"`, the default branches);
    - `{"branches": ["a", "b"]}` alone: the branch name arrives on the required input `branch`
      (from an upstream classifier, say).

    `default` names the output taken when nothing matches; without one, no match is an error.
    """

    config_keys: ClassVar[frozenset[str] | None] = frozenset(
        {"cases", "condition", "branches", "default"}
    )

    def make_ports(self) -> tuple[Iterable[Port], Iterable[Port]]:
        cases = self.config.get("cases")
        condition = self.config.get("condition")
        branches = self.config.get("branches")
        default = self.config.get("default")
        if cases is not None and condition is not None:
            raise ValueError(f"SwitchNode {self.id!r}: give 'cases' or 'condition', not both")
        if cases is not None and not isinstance(cases, Mapping):
            raise TypeError(f"SwitchNode {self.id!r}: 'cases' must map branch names to cases")
        if condition is not None and not callable(condition):
            raise TypeError(
                f"SwitchNode {self.id!r}: 'condition' must be a callable, got {condition!r}"
            )
        if isinstance(branches, str):
            raise TypeError(f"SwitchNode {self.id!r}: 'branches' must be a list of names")
        if cases is not None:
            names = list(cases)
        elif branches is not None:
            names = list(branches)
        elif condition is not None:
            names = ["true", "false"]
        else:
            raise ValueError(
                f"SwitchNode {self.id!r} needs 'cases', 'condition' or 'branches' in its config"
            )
        if default is not None and default not in names:
            names.append(default)
        if not names:
            raise ValueError(f"SwitchNode {self.id!r} has no branches")
        self._by_input = cases is None and condition is None
        inputs = [Port("value", description="the value routed to the chosen branch")]
        if self._by_input:
            inputs.append(Port("branch", str, description="the name of the branch to take"))
        return inputs, (Port(name) for name in names)

    def choose(self, value: Any, branch: str | None = None) -> str:
        """The name of the output `value` goes to."""
        default = self.config.get("default")
        if self._by_input:
            chosen: Any = branch
        elif "cases" in self.config and self.config["cases"] is not None:
            chosen = next(
                (name for name, case in self.config["cases"].items() if _matches(case, value)),
                None,
            )
        else:
            chosen = self.config["condition"](value)
            if isinstance(chosen, bool):
                chosen = "true" if chosen else "false"
        if chosen is None or (chosen not in self.outputs and chosen != default):
            if default is None:
                raise ValueError(
                    f"SwitchNode {self.id!r}: no branch for value {value!r}"
                    + (f" (chosen {chosen!r})" if chosen is not None else "")
                    + f"; its branches are {list(self.outputs)}. Add a 'default' branch"
                )
            return str(default)
        return str(chosen)

    def run(self, **inputs: Any) -> dict[str, Any]:
        value = inputs["value"]
        return {self.choose(value, inputs.get("branch")): value}

    def unproduced_reason(self, outputs: Mapping[str, Any]) -> str | None:
        taken = ", ".join(repr(name) for name in outputs) or "none"
        return f"branch not taken (switch {self.id!r} took {taken})"


def _matches(case: Any, value: Any) -> bool:
    if callable(case):
        return bool(case(value))
    return bool(case == value)


class _Absent:
    def __repr__(self) -> str:
        return "<not produced>"


# The default of MergeNode's inputs: lets it tell "this branch produced None" from "it did not run".
ABSENT: Final = _Absent()


@register_node_type
class MergeNode(Node):
    """Joins branches (after a `SwitchNode`, or alternatives). It runs once every source has
    settled, with whatever was produced.

    Config: `{"inputs": ["a", "b"], "mode": "first" | "all", "type": T}` (mode defaults to
    "first"; `type`, the type of each input, to `Any`). Every named input is an optional port.
    `"first"` outputs `value`: the first produced input in declared order. `"all"` outputs
    `values`: a dict of every produced input, in declared order. When nothing was produced,
    nothing is output (so dependants are skipped too).
    """

    accepts_partial_inputs: ClassVar[bool] = True
    config_keys: ClassVar[frozenset[str] | None] = frozenset({"inputs", "mode", "type"})
    modes: ClassVar[tuple[str, ...]] = ("first", "all")

    def make_ports(self) -> tuple[Iterable[Port], Iterable[Port]]:
        names = self.config.get("inputs")
        mode = self.config.get("mode", "first")
        port_type = self.config.get("type", Any)
        if mode not in self.modes:
            raise ValueError(
                f"MergeNode {self.id!r}: mode must be one of {list(self.modes)}, got {mode!r}"
            )
        if isinstance(names, str) or not isinstance(names, Iterable):
            raise ValueError(
                f"MergeNode {self.id!r} needs config {{'inputs': [<input names>]}}, got {names!r}"
            )
        names = list(names)
        if not names:
            raise ValueError(f"MergeNode {self.id!r}: 'inputs' is empty")
        self._names = tuple(names)
        self._mode: str = mode
        ins = [Port(name, port_type, ABSENT) for name in names]
        all_type = dict.__class_getitem__((str, port_type))
        out = Port("value", port_type) if mode == "first" else Port("values", all_type)
        return ins, (out,)

    def run(self, **inputs: Any) -> dict[str, Any]:
        produced = {
            name: inputs[name]
            for name in self._names
            if name in inputs and inputs[name] is not ABSENT
        }
        if not produced:
            return {}
        if self._mode == "first":
            return {"value": next(iter(produced.values()))}
        return {"values": produced}
