"""The nodes a compiled plan is made of: `StepNode` (one step: a tool call, with recovery and an
optional check of its result) and `SynthesisNode` (the step results -> the agent's typed
outputs). Both are flows (`kaizen.flow`), driven sync (`run`) or async (`arun`).

A `StepNode` has one input port per step it waits for (named by that step's id, receiving that
step's whole result) and one output port, ``result``: the tool's return value as the model
would read it, parsed back from JSON when it is JSON. When the tool fails and the plan belongs
to an agent (`PlanAgent`), the agent's model chooses a recovery, recorded in the node's
`NodeRun.notes`, at most `max_step_recoveries` times per step:

    retry           call the tool again with the same arguments
    retry_modified  call it with the new `arguments`
    alternative     call another `tool` (with `arguments`, else the same ones)
    skip            produce no result: the steps that need it are skipped, synthesis goes on
    fail            stop: `PlanStepError` (outcome "gave_up"), the agent's execution ends

Without an agent (a plan compiled by hand without one), a failing tool fails the step.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from kaizen.errors import PlanStepError
from kaizen.flow import Flow, run_async, run_sync
from kaizen.llm.answer import answer
from kaizen.llm.call import model_call, prepare
from kaizen.llm.transport import ToolCallRequest
from kaizen.missing import MISSING
from kaizen.nodes.base import Node, Port
from kaizen.plans.plan import PlanStep, resolve, step_dependencies
from kaizen.runtime.context import NodeContext, current_node_context
from kaizen.signatures import extract_object, render_messages
from kaizen.tools.runner import tool_calls

if TYPE_CHECKING:
    from kaizen.agents.config import ModelSettings
    from kaizen.signatures import Signature
    from kaizen.tools.tool import Tool

__all__ = ["PlanAgent", "RecoveryDecision", "StepNode", "SynthesisNode", "step_value"]

RecoveryAction = Literal["retry", "retry_modified", "alternative", "skip", "fail"]


@dataclass(frozen=True)
class PlanAgent:
    """What a plan's nodes need of the agent whose plan it is: its model settings (for recovery,
    checks and synthesis), its signature and the goal (its inputs)."""

    name: str
    signature: Signature
    settings: ModelSettings
    output_schema: Mapping[str, Any]
    inputs: Mapping[str, Any]

    @classmethod
    def of(cls, agent: Any, inputs: Mapping[str, Any]) -> PlanAgent:
        """From a `kaizen.Agent` and the inputs of its execution."""
        return cls(
            agent.name,
            agent.signature,
            agent.settings(),
            agent.output_schema,
            agent.signature.validate_inputs(inputs),
        )

    def goal(self) -> str:
        """The goal as text: the agent's instructions and inputs."""
        lines = [self.signature.instructions] if self.signature.instructions else []
        lines += [f"{key}: {_text(value)}" for key, value in self.inputs.items()]
        return "\n".join(lines)


class RecoveryDecision(BaseModel):
    """What to do about a failed step (the model's structured reply)."""

    model_config = ConfigDict(extra="ignore")

    action: RecoveryAction
    reason: str = ""
    arguments: dict[str, Any] | None = None
    tool: str | None = None


class _Verdict(BaseModel):
    matches: bool
    reason: str = ""


def step_value(output: str | None) -> Any:
    """A step's result from the text its tool call produced: JSON parsed, other text as is."""
    if output is None:
        return None
    try:
        return json.loads(output)
    except ValueError:
        return output


class _Driven(Node):
    """A node whose work is a flow: sync nodes drive it with `run_sync`, async ones with
    `run_async` (chosen when the plan is compiled)."""

    def __init__(self, node_id: str, *, sync: bool) -> None:
        self._sync = sync
        super().__init__(node_id)

    @property
    def is_async(self) -> bool:
        return not self._sync

    def flow(self, inputs: dict[str, Any]) -> Flow[dict[str, Any]]:
        raise NotImplementedError

    def run(self, **inputs: Any) -> dict[str, Any]:
        return run_sync(self.flow(inputs))

    async def arun(self, **inputs: Any) -> dict[str, Any]:
        return await run_async(self.flow(inputs))


class StepNode(_Driven):
    """One plan step: calls its tool with its arguments, references filled in from its inputs."""

    type_name = "PlanStepNode"

    def __init__(
        self,
        step: PlanStep,
        tools: Mapping[str, Tool],
        agent: PlanAgent | None = None,
        *,
        check: bool = False,
        sync: bool = False,
    ) -> None:
        self.step = step
        self.tools = dict(tools)
        self.agent = agent
        self.check = check and agent is not None and step.expected_output is not None
        super().__init__(step.id, sync=sync)
        self.group = "steps"

    def make_ports(self) -> tuple[Iterable[Port], Iterable[Port]]:
        inputs = [Port(dep, Any, MISSING, f"the result of step {dep!r}") for dep in self.waits_for]
        return inputs, [Port("result", Any, MISSING, f"what {self.step.tool} returned")]

    @property
    def waits_for(self) -> list[str]:
        return step_dependencies(self.step)

    def flow(self, inputs: dict[str, Any]) -> Flow[dict[str, Any]]:
        step = self.step
        context = current_node_context()
        try:
            arguments = resolve(step.arguments, inputs)
        except KeyError as exc:
            raise PlanStepError(
                f"step {step.id!r}: {exc.args[0]}", step=step.id, outcome="failed"
            ) from None
        tool = step.tool
        recoveries = 0
        while True:
            call = ToolCallRequest(
                f"{step.id}-{recoveries + 1}", tool, json.dumps(arguments, default=str)
            )
            records = yield from tool_calls([call], self.tools, context=context, max_concurrency=1)
            record = records[0]
            if record.error is None:
                value = step_value(record.output)
                if self.check:
                    yield from self._check(value, context)
                return {"result": value}
            agent = self.agent
            limit = agent.settings.max_step_recoveries if agent is not None else 0
            if agent is None or recoveries >= limit:
                raise PlanStepError(
                    f"step {step.id!r} ({tool}) failed"
                    + (f" after {recoveries} recovery attempt(s)" if recoveries else "")
                    + f": {record.error}",
                    step=step.id,
                    outcome="failed",
                )
            recoveries += 1
            decision = yield from self._recovery(agent, tool, arguments, record.error)
            _note(context, {
                "kind": "recovery", "step": step.id, "attempt": recoveries, "tool": tool,
                "error": record.error, **decision.model_dump(exclude_none=True),
            })  # fmt: skip
            if decision.action == "skip":
                return {}  # nothing produced: what needs this step is skipped
            if decision.action == "fail":
                raise PlanStepError(
                    f"step {step.id!r} ({tool}) failed and the model gave up: "
                    f"{decision.reason or record.error}",
                    step=step.id,
                    outcome="gave_up",
                )
            if decision.arguments is not None:
                arguments = resolve(decision.arguments, inputs)
            if decision.action == "alternative" and decision.tool is not None:
                tool = decision.tool

    def _recovery(
        self, agent: PlanAgent, tool: str, arguments: Mapping[str, Any], error: str
    ) -> Flow[RecoveryDecision]:
        """Ask the agent's model what to do about the failed call (one structured call)."""
        catalog = "\n".join(_describe(t) for t in self.tools.values())
        messages = [
            {
                "role": "system",
                "content": "A step of a plan failed. Decide what to do, replying with one JSON "
                'object {"action": ..., "reason": ..., "arguments": {...}, "tool": ...}. '
                "Actions: retry (the same call again), retry_modified (new arguments), "
                "alternative (another tool, with its arguments), skip (go on without this "
                "step), fail (give up the task).",
            },
            {
                "role": "user",
                "content": f"Goal:\n{agent.goal()}\n\nTools:\n{catalog}\n\nStep {self.step.id!r} "
                f"called {tool} with {json.dumps(arguments, default=str)} and failed: {error}",
            },
        ]
        schema = {
            "type": "object",
            "properties": {
                "action": {"enum": ["retry", "retry_modified", "alternative", "skip", "fail"]},
                "reason": {"type": "string"},
                "arguments": {"type": "object"},
                "tool": {"type": "string", "enum": sorted(self.tools)},
            },
            "required": ["action", "reason"],
        }
        request = prepare(messages, response_schema=schema, schema_name="recovery",
                          **agent.settings.call_options)  # fmt: skip
        reply = yield from model_call(request)
        found = extract_object(reply.text, ("action",)) or {}
        try:
            decision = RecoveryDecision.model_validate(found)
        except ValidationError:
            return RecoveryDecision(action="fail", reason=f"no valid decision in {reply.text!r}")
        if decision.action == "retry_modified" and decision.arguments is None:
            return RecoveryDecision(action="fail", reason="retry_modified without arguments")
        if decision.action == "alternative" and decision.tool not in self.tools:
            return RecoveryDecision(
                action="fail", reason=f"alternative names no known tool ({decision.tool!r})"
            )
        return decision

    def _check(self, value: Any, context: NodeContext | None) -> Flow[None]:
        """Does the result match the step's expected_output? (one structured call)"""
        agent = self.agent
        assert agent is not None
        messages = [
            {
                "role": "system",
                "content": "Check whether a step's result matches what was expected. Reply "
                'with one JSON object {"matches": true|false, "reason": "..."}.',
            },
            {
                "role": "user",
                "content": f"Expected: {self.step.expected_output}\n\nResult of step "
                f"{self.step.id!r} ({self.step.tool}): {_text(value)}",
            },
        ]
        found = yield from yes_or_no(agent, messages, "matches", "step_check")
        matches, reason = (False, found) if isinstance(found, str) else found
        verdict = _Verdict(matches=matches, reason=reason)
        _note(context, {"kind": "step_check", "step": self.step.id, **verdict.model_dump()})
        if not verdict.matches:
            raise PlanStepError(
                f"step {self.step.id!r}: its result does not match the expected output "
                f"({self.step.expected_output!r}): {verdict.reason}",
                step=self.step.id,
                outcome="check",
            )


_BOOL = TypeAdapter(bool)


def yes_or_no(
    agent: PlanAgent, messages: list[dict[str, str]], flag: str, name: str
) -> Flow[tuple[bool, str] | str]:
    """Ask the planning agent's model a yes/no question about a plan (one structured call):
    a JSON object ``{flag: bool, "reason": str}``. Returns (the answer, the reason), or why
    the reply held no valid answer."""
    schema = {
        "type": "object",
        "properties": {flag: {"type": "boolean"}, "reason": {"type": "string"}},
        "required": [flag, "reason"],
        "additionalProperties": False,
    }
    request = prepare(messages, response_schema=schema, schema_name=name,
                      **agent.settings.call_options)  # fmt: skip
    reply = yield from model_call(request)
    found = extract_object(reply.text, (flag,)) or {}
    try:  # as lenient as a pydantic bool field: "true" and 1 count
        said = _BOOL.validate_python(found.get(flag))
    except ValidationError:
        return f"no valid verdict in {reply.text!r}"
    return said, str(found.get("reason", ""))


class SynthesisNode(_Driven):
    """The plan's last node: the step results (whatever was produced) -> the agent's typed
    outputs, with one structured model call (re-asked while the reply does not fit)."""

    type_name = "PlanSynthesisNode"
    accepts_partial_inputs = True
    runs_without_inputs = True

    def __init__(
        self, node_id: str, steps: Iterable[PlanStep], agent: PlanAgent, *, sync: bool = False
    ) -> None:
        self.steps = list(steps)
        self.agent = agent
        super().__init__(node_id, sync=sync)

    def make_ports(self) -> tuple[Iterable[Port], Iterable[Port]]:
        inputs = [Port(s.id, Any, None, f"the result of step {s.id!r}") for s in self.steps]
        fields = self.agent.signature.output_fields
        outputs = [Port(f.name, f.type, MISSING, f.description) for f in fields]
        return inputs, outputs

    def flow(self, inputs: dict[str, Any]) -> Flow[dict[str, Any]]:
        agent = self.agent
        settings = agent.settings
        messages = render_messages(
            agent.signature,
            agent.inputs,
            template=settings.system_template,
            user_template=settings.prompt_template,
            schema_in_prompt=settings.schema_in_prompt,
        )
        lines = ["", "", "Results of the steps taken to answer this:"]
        for step in self.steps:
            produced = step.id in inputs and inputs[step.id] is not None
            shown = _text(inputs[step.id]) if produced else "(no result: skipped)"
            lines.append(f"- {step.id} ({step.tool}): {shown}")
        last = messages[-1]
        messages[-1] = {**last, "content": f"{last['content']}" + "\n".join(lines)}
        return (
            yield from answer(agent.name, agent.signature, settings, messages, agent.output_schema)
        )


def _note(context: NodeContext | None, entry: Mapping[str, Any]) -> None:
    if context is not None:
        context.note(entry)


def _describe(tool: Tool) -> str:
    about = f": {tool.description}" if tool.description else ""
    return f"- {tool.name}{about} Arguments (JSON Schema): {json.dumps(tool.parameters)}"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)
