"""A plan as data: `Plan` and `PlanStep`, the JSON Schema a planner fills, reading a planner's
reply, checking a plan, and the `${step}` / `${step.field}` references between steps.

A plan is a list of steps; each names a tool and its arguments. An argument value (at any
depth) may be, or contain, a reference to an earlier step's result: ``"${s1}"`` is s1's whole
result, ``"${s1.city}"`` its field ``city``. A string that is exactly one reference becomes the
referenced value itself (a number stays a number); a reference inside longer text is replaced by
the value as text. `depends_on` orders steps without passing data.

`check_plan` collects every problem at once, each worded for the planner to fix: a bad or
repeated step id, an unknown tool, arguments that do not fit the tool's parameters (references
stand in as values of the parameter's type), references or `depends_on` naming no step, and
cycles.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kaizen.signatures import extract_object
from kaizen.tools.tool import Tool, ToolArgumentError

__all__ = [
    "REFERENCE",
    "SYNTHESIS",
    "Plan",
    "PlanStep",
    "check_plan",
    "plan_schema",
    "read_plan",
    "resolve",
    "step_dependencies",
]

#: "${step}" or "${step.field}"
REFERENCE = re.compile(r"\$\{(?P<step>[A-Za-z_][A-Za-z0-9_]*)(?:\.(?P<field>[^{}.]+))?\}")
_STEP_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
#: the id of the synthesis node a compiled plan ends with (no step may take it)
SYNTHESIS = "synthesize"

# a value of the parameter's JSON type that stands in for a reference when arguments are checked
_STAND_INS: dict[str, Any] = {
    "string": "x",
    "integer": 0,
    "number": 0.0,
    "boolean": False,
    "array": [],
    "object": {},
    "null": None,
}


class PlanStep(BaseModel):
    """One step: call `tool` with `arguments`, after the steps in `depends_on` (and after every
    step its arguments reference)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    depends_on: list[str] = Field(default_factory=list)
    expected_output: str | None = None


class Plan(BaseModel):
    """The steps, in the planner's order (the workflow runs them as their dependencies allow)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: list[PlanStep]

    @classmethod
    def coerce(cls, plan: Plan | Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> Plan:
        """A `Plan` from a `Plan`, a dict ``{"steps": [...]}`` or a list of step dicts."""
        if isinstance(plan, Plan):
            return plan
        if isinstance(plan, Mapping):
            return cls.model_validate(dict(plan))
        return cls.model_validate({"steps": list(plan)})

    def step(self, step_id: str) -> PlanStep:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(f"the plan has no step {step_id!r}")


def plan_schema(tools: Sequence[Tool]) -> dict[str, Any]:
    """The JSON Schema of a plan whose steps use `tools` (the planner's response format)."""
    step = {
        "type": "object",
        "properties": {
            "id": {"type": "string", "pattern": _STEP_ID.pattern},
            "tool": {"type": "string", "enum": [t.name for t in tools]},
            "arguments": {"type": "object"},
            "depends_on": {"type": "array", "items": {"type": "string"}},
            "expected_output": {"type": "string"},
        },
        "required": ["id", "tool", "arguments"],
    }
    return {
        "type": "object",
        "properties": {"steps": {"type": "array", "items": step, "minItems": 1}},
        "required": ["steps"],
    }


def read_plan(text: str, tools: Sequence[Tool]) -> tuple[Plan | None, list[str]]:
    """The plan in a planner's reply and its problems (none: the plan can run)."""
    found = extract_object(text, ("steps",))
    if found is None:
        return None, ['the reply is not a JSON object {"steps": [...]}']
    try:
        plan = Plan.model_validate(found)
    except ValidationError as exc:
        return None, [_field_problem(error) for error in exc.errors()]
    return plan, check_plan(plan, tools)


def _field_problem(error: Any) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "(plan)"
    if error["type"] == "extra_forbidden":
        return (
            f"{where}: not a field of a plan step (a step has id, tool, arguments, depends_on, "
            "expected_output)"
        )
    if error["type"] == "missing":
        return f"{where}: missing (required)"
    return f"{where}: {error['msg']}"


def check_plan(plan: Plan, tools: Sequence[Tool] | Mapping[str, Tool]) -> list[str]:
    """Every problem of `plan` with `tools` (an empty list: it can run)."""
    by_name = dict(tools) if isinstance(tools, Mapping) else {t.name: t for t in tools}
    problems: list[str] = []
    if not plan.steps:
        problems.append("the plan has no steps")
    ids = [step.id for step in plan.steps]
    known = set(ids)
    for step_id in sorted({i for i in ids if ids.count(i) > 1}):
        problems.append(
            f"step id {step_id!r} is used by {ids.count(step_id)} steps; ids must differ"
        )
    for step in plan.steps:
        where = f"step {step.id!r}"
        if not _STEP_ID.fullmatch(step.id):
            problems.append(f"{where}: an id is letters, digits and '_', not starting with a digit")
        elif step.id == SYNTHESIS:
            problems.append(f"{where}: the id {SYNTHESIS!r} is reserved; choose another")
        tool = by_name.get(step.tool)
        if tool is None:
            names = ", ".join(sorted(by_name)) or "(none)"
            problems.append(f"{where}: there is no tool {step.tool!r}; the tools are: {names}")
        for missing in sorted({ref for ref, _ in _references(step.arguments)} - known):
            problems.append(
                f"{where}: its arguments reference ${{{missing}}}, but no step has that id"
            )
        for missing in sorted(set(step.depends_on) - known):
            problems.append(f"{where}: depends_on names {missing!r}, but no step has that id")
        if step.id in step_dependencies(step):
            problems.append(f"{where}: it depends on itself")
        if tool is not None:
            problems.extend(f"{where}: {p}" for p in _argument_problems(step, tool))
    cycle = _find_cycle(plan, known)
    if cycle:
        problems.append(
            "the steps depend on each other in a cycle: "
            + " -> ".join(cycle)
            + "; a step can only use the results of steps that do not need it"
        )
    return problems


def step_dependencies(step: PlanStep) -> list[str]:
    """The steps `step` waits for: those its arguments reference, then its `depends_on`, once
    each, in first-mention order."""
    found = [ref for ref, _ in _references(step.arguments)] + list(step.depends_on)
    return list(dict.fromkeys(found))


def resolve(value: Any, results: Mapping[str, Any]) -> Any:
    """`value` with every reference replaced by the referenced result (`results` by step id);
    `KeyError` naming the reference when a step or a field is not there."""
    if isinstance(value, str):
        whole = REFERENCE.fullmatch(value)
        if whole:
            return _lookup(whole["step"], whole["field"], results)
        return REFERENCE.sub(lambda m: _text(_lookup(m["step"], m["field"], results)), value)
    if isinstance(value, Mapping):
        return {key: resolve(item, results) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve(item, results) for item in value]
    return value


def _lookup(step: str, field: str | None, results: Mapping[str, Any]) -> Any:
    if step not in results:
        raise KeyError(f"${{{step}}}: step {step!r} produced no result")
    value = results[step]
    if field is None:
        return value
    if isinstance(value, Mapping) and field in value:
        return value[field]
    if isinstance(value, list) and field.isdigit() and int(field) < len(value):
        return value[int(field)]
    raise KeyError(f"${{{step}.{field}}}: the result of step {step!r} has no field {field!r}")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _references(value: Any) -> Iterator[tuple[str, str | None]]:
    if isinstance(value, str):
        for match in REFERENCE.finditer(value):
            yield match["step"], match["field"]
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)


def _argument_problems(step: PlanStep, tool: Tool) -> list[str]:
    """The tool's complaints about the step's arguments, each reference standing in as a value
    of the parameter's type (what it will hold is only known when the step runs)."""
    properties = tool.parameters.get("properties", {})
    unknown_types: set[str] = set()
    arguments: dict[str, Any] = {}
    for name, value in step.arguments.items():
        if isinstance(value, str) and REFERENCE.fullmatch(value):
            kind = properties.get(name, {}).get("type") if isinstance(properties, Mapping) else None
            if isinstance(kind, str) and kind in _STAND_INS:
                arguments[name] = _STAND_INS[kind]
            else:
                arguments[name] = "x"
                unknown_types.add(name)
        else:
            arguments[name] = _stand_in_text(value)
    try:
        tool.validate(arguments)
    except ToolArgumentError as exc:
        return [p for p in exc.problems if p.split(":", 1)[0].split(".")[0] not in unknown_types]
    return []


def _stand_in_text(value: Any) -> Any:
    """References inside text or nested values stand in as "x" (text) for the check."""
    if isinstance(value, str):
        return REFERENCE.sub("x", value)
    if isinstance(value, Mapping):
        return {key: _stand_in_text(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_stand_in_text(item) for item in value]
    return value


def _find_cycle(plan: Plan, known: set[str]) -> list[str]:
    """One cycle among the steps (ids, the first repeated at the end), or []."""
    graph = {
        s.id: [d for d in step_dependencies(s) if d in known and d != s.id] for s in plan.steps
    }
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for target in graph.get(node, ()):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return []

    for node in graph:
        if node not in state:
            found = visit(node)
            if found:
                return list(reversed(found))
    return []
