"""Run parameters: routing `parameters` to the workflow's unconnected inputs, and checking them.

`bind_parameters(plan, parameters)` gives every node its starting inputs (values bound at build
time, then parameters) or raises one `ParameterError` listing every problem. `build(parameters=)`
runs the same check, so a workflow can be validated together with the values it will get.
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Mapping
from typing import Any

from kaizen.errors import ParameterError
from kaizen.text import type_name
from kaizen.workflow.plan import ExecutionPlan

__all__ = ["bind_parameters", "check_parameters", "value_fits"]


def bind_parameters(
    plan: ExecutionPlan, parameters: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """Per node, the inputs that come from build-time bindings and run parameters.

    `{node_id: {port: value}}` sets that node's port; `{port: value}` sets every unconnected input
    port of that name. Raises one `ParameterError` listing every problem: unknown ports, unused
    parameters, values of the wrong type, required inputs left without a value.
    """
    inputs, problems = check_parameters(plan, parameters)
    if problems:
        raise ParameterError("; ".join(problems) if len(problems) == 1 else _lines(problems))
    return inputs


def check_parameters(
    plan: ExecutionPlan, parameters: Mapping[str, Any] | None
) -> tuple[list[dict[str, Any]], list[str]]:
    """`bind_parameters` without raising: `(inputs per node, every problem found)`."""
    inputs = [dict(p.bound) if p.bound else {} for p in plan.nodes]
    problems: list[str] = []
    node_scoped: list[tuple[int, str, Any]] = []
    for key, value in (parameters or {}).items():
        i = plan.index.get(key)
        if i is not None and isinstance(value, Mapping):
            for port, port_value in value.items():
                node_scoped.append((i, port, port_value))
            continue
        users = [p.index for p in plan.nodes if key in p.open_ports]
        if not users:
            problems.append(_unused(plan, key))
        for i in users:
            _set(plan, inputs, i, key, value, problems)
    for i, port, value in node_scoped:  # node-scoped values win over top-level ones
        p = plan.nodes[i]
        if port in p.open_ports:
            _set(plan, inputs, i, port, value, problems)
        elif port in p.wired:
            problems.append(
                f"parameter {p.node_id}.{port} sets an input that a connection already feeds; "
                "parameters only fill unconnected inputs"
            )
        else:
            known = ", ".join(sorted(p.open_ports)) or "none"
            problems.append(
                f"parameter {p.node_id}.{port}: node {p.node_id!r} ({p.node_type}) has no input "
                f"port {port!r} (unconnected inputs: {known})"
            )
    missing = [
        f"{p.node_id}.{name}"
        for p in plan.nodes
        for name, port in p.open_ports.items()
        if port.required and name not in inputs[p.index]
    ]
    if missing:
        problems.append(
            "missing required input(s) with no connection and no value: "
            + ", ".join(missing)
            + ' (pass parameters={"node": {"port": value}} or {"port": value})'
        )
    return inputs, problems


def _set(
    plan: ExecutionPlan,
    inputs: list[dict[str, Any]],
    i: int,
    port: str,
    value: Any,
    problems: list[str],
) -> None:
    p = plan.nodes[i]
    expected = p.open_ports[port].type
    if not value_fits(value, expected):
        problems.append(
            f"parameter {p.node_id}.{port} expects {type_name(expected)}, "
            f"got {type(value).__name__} {value!r:.60}"
        )
    inputs[i][port] = value


def _unused(plan: ExecutionPlan, key: str) -> str:
    open_names = sorted({n for p in plan.nodes for n in p.open_ports})
    hint = f"unconnected inputs: {', '.join(open_names)}" if open_names else "no unconnected inputs"
    if key in plan.index:
        return (
            f"parameter {key!r} names node {key!r} but is not a dict of its ports; "
            f'pass {{"{key}": {{"port": value}}}}'
        )
    return (
        f"parameter {key!r} is used by no node: no node id or unconnected input port "
        f"{key!r} ({hint})"
    )


def _lines(problems: list[str]) -> str:
    return f"{len(problems)} parameter problems:\n" + "\n".join(f"  - {p}" for p in problems)


def value_fits(value: Any, annotation: Any) -> bool:
    """A cheap, conservative type check: False only when `value` plainly is not `annotation`.

    Values that validation would coerce are let through: dicts for pydantic models, member
    values for enums, ints for floats, tuples for lists.
    """
    if annotation is Any or annotation is None or isinstance(annotation, str | typing.TypeVar):
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return any(value_fits(value, arg) for arg in typing.get_args(annotation))
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if origin is not None:
        annotation = origin
    if not isinstance(annotation, type) or hasattr(annotation, "model_validate"):
        return True
    if annotation in (list, tuple):
        return isinstance(value, list | tuple)
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return True
    if issubclass(annotation, enum.Enum) and not isinstance(value, annotation):
        return any(value == member.value for member in annotation)
    try:
        return isinstance(value, annotation)
    except TypeError:  # TypedDicts, non-runtime protocols: cannot be checked cheaply
        return True
