"""`ServedTarget`: what `kaizen serve` runs, its request and response schemas, and the check of
a posted body against them.

An `Agent` is served as its one-node workflow (`agent.to_workflow()`): the request is its
signature's inputs, the results its output fields. A `Workflow` is served as it is: the request
holds its open inputs, each named by its port, or ``node.port`` when several nodes leave a port
of that name open (the naming of `kaizen mcp serve`, `kaizen.mcp.serve.workflow_inputs`); the
results are ``{node_id: {port: value}}``.

`check(body)` returns the run parameters or raises `RequestProblems`, a list of
``(field, message)`` the server turns into a 422 that names every field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kaizen.agents.agent import Agent
    from kaizen.workflow.workflow import Workflow

__all__ = ["RequestProblems", "ServedTarget", "served_target"]


class RequestProblems(ValueError):
    """A posted body does not fit the target: `problems` lists `(field, message)`."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{field}: {message}" for field, message in problems))


@dataclass(frozen=True)
class _Input:
    node_id: str
    port: str
    type: Any
    schema: dict[str, Any]
    required: bool


@dataclass(frozen=True)
class ServedTarget:
    """A served agent or workflow (see the module docstring)."""

    name: str
    kind: str  # "agent" or "workflow"
    workflow: Workflow
    agent: Agent | None
    inputs: Mapping[str, _Input]
    request_schema: dict[str, Any]
    results_schema: dict[str, Any]

    def check(self, body: Any) -> dict[str, Any]:
        """The run parameters for a posted JSON `body`; `RequestProblems` naming each field
        that is unknown, missing or of the wrong type."""
        if not isinstance(body, dict):
            kind = type(body).__name__ if body is not None else "null"
            raise RequestProblems([("body", f"must be a JSON object of inputs, got {kind}")])
        if self.agent is not None:
            return {self.agent.name: self._agent_inputs(body)}
        from kaizen.text import type_name
        from kaizen.workflow.parameters import value_fits

        problems: list[tuple[str, str]] = []
        parameters: dict[str, dict[str, Any]] = {}
        for prop, value in body.items():
            entry = self.inputs.get(prop)
            if entry is None:
                known = ", ".join(self.inputs) or "none"
                problems.append((prop, f"is not an input of {self.name!r} (inputs: {known})"))
                continue
            if not value_fits(value, entry.type):
                problems.append((prop, f"expects {type_name(entry.type)}, got {_json_kind(value)}"))
                continue
            parameters.setdefault(entry.node_id, {})[entry.port] = value
        for prop, entry in self.inputs.items():
            if entry.required and prop not in body:
                problems.append((prop, "is required"))
        if problems:
            raise RequestProblems(problems)
        return parameters

    def _agent_inputs(self, body: dict[str, Any]) -> dict[str, Any]:
        from kaizen.errors import InputValidationError

        assert self.agent is not None
        try:
            return self.agent.signature.validate_inputs(body)
        except InputValidationError as exc:
            raise RequestProblems(list(exc.errors) or [("body", str(exc))]) from None

    def results(self, results: Mapping[str, Mapping[str, Any]]) -> Any:
        """What a client reads: an agent's outputs, or a workflow's results by node."""
        if self.agent is not None:
            return dict(results.get(self.agent.name, {}))
        return {node: dict(outputs) for node, outputs in results.items()}


def served_target(target: Agent | Workflow) -> ServedTarget:
    """The `ServedTarget` of an agent or a built workflow."""
    from kaizen.agents.agent import Agent
    from kaizen.mcp.serve import outputs_schema, results_schema, workflow_inputs

    agent = target if isinstance(target, Agent) else None
    workflow = target.to_workflow().build() if isinstance(target, Agent) else target
    plan = workflow.plan
    inputs = {
        prop: _Input(
            node_id, port, plan.nodes[plan.index[node_id]].open_ports[port].type, schema, required
        )
        for prop, (node_id, port, schema, required) in workflow_inputs(workflow).items()
    }
    request_schema: dict[str, Any] = {
        "type": "object",
        "properties": {prop: entry.schema for prop, entry in inputs.items()},
        "required": [prop for prop, entry in inputs.items() if entry.required],
        "additionalProperties": False,
    }
    if agent is not None:
        results = outputs_schema(workflow, agent.name)
        name = agent.name
    else:
        results = results_schema(workflow)
        name = workflow.name
    return ServedTarget(
        name=name,
        kind="agent" if agent is not None else "workflow",
        workflow=workflow,
        agent=agent,
        inputs=inputs,
        request_schema=request_schema,
        results_schema=results,
    )


def _json_kind(value: Any) -> str:
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array"}
    names[dict] = "object"
    return "null" if value is None else names.get(type(value), type(value).__name__)
