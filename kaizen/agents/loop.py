"""The reason-act loop of an agent with tools, written once as a flow (`kaizen.flow`).

    render the prompt; offer the tools and `complete`, whose arguments are the agent's outputs
    repeat, at most `max_iterations` model turns:
        call the model (its text streams to the hooks when one listens)
        a valid `complete` call          -> done: "completed" ("completed_after_reminder" once
                                            a reminder was needed)
        an invalid `complete` call       -> what is wrong goes back as a tool error
        tool calls                       -> run concurrently (`kaizen.tools.runner`); results
                                            and tool errors go back
            the same call a third time in a row     -> stop: "loop_detected"
            a tool's or the run's retries used up   -> stop: "error"
        neither                          -> a reminder, up to `max_termination_attempts`; then
                                            one call forced to `complete` ("forced_completion");
                                            then the outputs are extracted from the trajectory
                                            ("extracted")
    out of turns                         -> stop: "max_iterations"
    the run's budget refuses a call      -> stop: "budget" (the `BudgetExceededError` goes on)

A stop before completion raises `AgentLimitError` carrying the trajectory and every tool call,
so nothing done is lost; `Agent.execute` turns it into a failed result (or raises it, with
``on_limit="raise"``). The reason is written to the node's record (`NodeRun.stop_reason`).

Tool calls travel one of two ways (`ModelSettings.tool_protocol`): `Native` uses the provider's
tool calling (``tools``, ``tool_choice``); `JsonProtocol`, for models without it (the embedded
model), asks for one JSON object ``{"tool": name, "arguments": {...}}`` constrained by a schema
that is the union of every tool's call and `complete`'s.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kaizen.agents import pause
from kaizen.agents.small import (
    SMALL_MODEL_USER_TEMPLATE,
    answer_that_reads_as_one,
    compact_note,
)
from kaizen.errors import AgentLimitError, BudgetExceededError, ModelError, OutputParseError
from kaizen.flow import Flow
from kaizen.interrupts import NodePaused
from kaizen.llm.call import ModelReply, ModelRequest, model_call, prepare
from kaizen.llm.embedded.schema import TOOL_CALL_FORMAT
from kaizen.llm.models import is_embedded_model, response_format_for
from kaizen.llm.transport import ToolCallRequest
from kaizen.runtime.context import current_node_context
from kaizen.runtime.record import ToolCallRecord
from kaizen.signatures import extract_object, parse_output, render_messages
from kaizen.store.memory import with_memory_block
from kaizen.tools.runner import ToolBudget, tool_calls
from kaizen.tools.schema import lift_defs
from kaizen.tools.toolset import COMPLETE

if TYPE_CHECKING:
    from kaizen.agents.config import ModelSettings
    from kaizen.runtime.context import NodeContext
    from kaizen.signatures import Signature
    from kaizen.tools.tool import Tool

__all__ = ["JsonProtocol", "Native", "act", "complete_spec"]

LOOP_REPEATS = 3  # the same call this many times in a row is a loop

# The user message of an agent with tools (a user's own `prompt_template` replaces it).
TOOLS_USER_TEMPLATE = """{{ instructions }}

Your input fields are:
{% for field in inputs %}
- `{{ field.name }}` ({{ field.type }}){{ ": " ~ field.description if field.description }}

{% endfor %}

Your output fields are:
{% for field in outputs %}
- `{{ field.name }}` ({{ field.type }}){{ ": " ~ field.description if field.description }}

{% endfor %}

Use the tools as you need them. When you have the answer, call the tool `complete` with the \
output fields as its arguments.
{% for field in inputs %}
{{ field.name }}:
{{ field.value }}
{% if not loop.last %}

{% endif %}
{% endfor %}"""


def complete_spec(output_schema: Mapping[str, Any]) -> dict[str, Any]:
    """The `complete` tool: its parameters are the agent's output fields."""
    return {
        "type": "function",
        "function": {
            "name": COMPLETE,
            "description": "Finish: give the final answer, the output fields, as the arguments.",
            "parameters": dict(output_schema),
        },
    }


# -- the two protocols -------------------------------------------------------------------------


class Native:
    """Tool calls through the provider's own tool calling."""

    def __init__(self, tools: Sequence[Tool], output_schema: Mapping[str, Any]) -> None:
        self.specs = [t.spec() for t in tools] + [complete_spec(output_schema)]

    def system_note(self) -> str:
        return ""

    def request(
        self, base: ModelRequest, messages: list[dict[str, Any]], *, force: bool
    ) -> ModelRequest:
        kwargs = {key: value for key, value in base.kwargs.items() if key != "response_format"}
        kwargs["messages"] = messages
        kwargs["tools"] = self.specs
        kwargs["tool_choice"] = (
            {"type": "function", "function": {"name": COMPLETE}} if force else "auto"
        )
        return dataclasses.replace(base, kwargs=kwargs)

    def calls(self, reply: ModelReply) -> tuple[list[ToolCallRequest], str | None]:
        return list(reply.tool_calls), None

    def assistant(self, reply: ModelReply, calls: Sequence[ToolCallRequest]) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
        if calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in calls
            ]
        return message

    def results(self, records: Sequence[ToolCallRecord]) -> list[dict[str, Any]]:
        return [
            {
                "role": "tool",
                "tool_call_id": record.call_id,
                "name": record.name,
                "content": record.output if record.error is None else f"ERROR: {record.error}",
            }
            for record in records
        ]

    def reminder(self) -> str:
        return (
            "You answered without calling a tool. To finish, call the tool `complete` with the "
            "output fields as its arguments; or call another tool if you need it."
        )


class JsonProtocol:
    """Tool calls as one JSON object per turn, constrained by a schema (no native tools)."""

    def __init__(
        self, tools: Sequence[Tool], output_schema: Mapping[str, Any], *, compact: bool = False
    ) -> None:
        self.tools = list(tools)
        self.compact = compact  # the embedded model's short prompt (see `system_note`)
        self.answered = False  # a tool returned a result (compact: the next turn completes)
        self.output_schema = output_schema
        self.turn = 0  # numbers the calls: call_1, call_2, ...
        definitions: dict[str, Any] = {}
        choices = []
        for found in [*tools, None]:  # None: `complete`, last
            name, parameters = (
                (COMPLETE, output_schema) if found is None else (found.name, found.parameters)
            )
            arguments, defs = lift_defs(parameters, name)
            definitions.update(defs)  # at the root, where every `$ref` points
            choices.append(_call_schema(name, arguments))
        finish = choices[-1]
        if compact:  # the embedded model closes an empty string at once when it may
            finish = answer_that_reads_as_one(finish)
            choices[-1] = finish
        self.schema: dict[str, Any] = {"anyOf": choices} if len(choices) > 1 else dict(finish)
        self.finish_schema = dict(finish)
        if definitions:
            self.schema["$defs"] = definitions
            _, finish_defs = lift_defs(output_schema, COMPLETE)
            if finish_defs:
                self.finish_schema["$defs"] = finish_defs

    def system_note(self) -> str:
        if self.compact:
            return compact_note(self.tools, self.output_schema)
        lines = [
            "You act by replying with one JSON object and nothing else: "
            '{"tool": <tool name>, "arguments": {<the tool\'s arguments>}}.',
            "The tools:",
        ]
        for found in self.tools:
            about = f": {found.description}" if found.description else ""
            lines.append(
                f"- {found.name}{about} Arguments (JSON Schema): "
                f"{json.dumps(found.parameters, separators=(',', ':'))}"
            )
        lines.append(
            f'- {COMPLETE}: finish, with the output fields as the arguments: {{"tool": '
            f'"{COMPLETE}", "arguments": {{...}}}}.'
        )
        return "\n".join(lines)

    def request(
        self, base: ModelRequest, messages: list[dict[str, Any]], *, force: bool
    ) -> ModelRequest:
        schema = self.finish_schema if force or (self.compact and self.answered) else self.schema
        kwargs = {
            key: value for key, value in base.kwargs.items() if key not in ("tools", "tool_choice")
        }
        kwargs["messages"] = messages
        kwargs["response_format"] = response_format_for(schema, TOOL_CALL_FORMAT)
        return dataclasses.replace(base, kwargs=kwargs)

    def calls(self, reply: ModelReply) -> tuple[list[ToolCallRequest], str | None]:
        found = extract_object(reply.text, ("tool",))
        if found is None:
            return [], None  # no call in this turn
        name = found.get("tool")
        arguments = found.get("arguments", {})
        if not isinstance(name, str) or not name:
            return [], (
                'Your reply was not a valid tool call: it needs "tool" (a tool name) and '
                '"arguments" (an object). Reply with {"tool": ..., "arguments": {...}}.'
            )
        text = arguments if isinstance(arguments, str) else json.dumps(arguments)
        self.turn += 1
        return [ToolCallRequest(id=f"call_{self.turn}", name=name, arguments=text)], None

    def assistant(self, reply: ModelReply, calls: Sequence[ToolCallRequest]) -> dict[str, Any]:
        return {"role": "assistant", "content": reply.text}

    def results(self, records: Sequence[ToolCallRecord]) -> list[dict[str, Any]]:
        # The embedded model, once a tool answered, is asked to complete (and only that): it
        # otherwise calls the same tool again and again (measured: bench_local_tools.py).
        self.answered = self.answered or any(record.error is None for record in records)
        parts = [
            f"Result of {record.name}: {record.output}"
            if record.error is None
            else f"Error from {record.name}: {record.error}"
            for record in records
        ]
        return [{"role": "user", "content": "\n".join(parts)}]

    def reminder(self) -> str:
        return (
            'Reply with one JSON object {"tool": ..., "arguments": {...}}. To finish, use the '
            f'tool "{COMPLETE}" with the output fields as the arguments.'
        )


def _call_schema(name: str, parameters: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"tool": {"const": name}, "arguments": dict(parameters)},
        "required": ["tool", "arguments"],
        "additionalProperties": False,
    }


Protocol = Native | JsonProtocol


# -- the loop ----------------------------------------------------------------------------------


class _Trajectory:
    """What the loop has done so far: the conversation and the tool calls."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.messages = messages
        self.records: list[ToolCallRecord] = []
        self.turns = 0
        self.reminders = 0
        self.last_call: tuple[str, str] | None = None
        self.repeats = 0

    def restore(self, saved: pause.LoopState) -> None:
        """Continue from what a paused loop saved."""
        self.messages[:] = saved.messages
        self.records = list(saved.records)
        self.turns, self.reminders = saved.turns, saved.reminders
        self.last_call, self.repeats = saved.last_call, saved.repeats

    def saved(
        self,
        budget: ToolBudget,
        calls: Sequence[ToolCallRequest],
        complete_errors: Sequence[ToolCallRecord],
    ) -> pause.LoopState:
        """What a pause in this turn (with these calls) saves."""
        return pause.LoopState(
            list(self.messages), list(self.records), self.turns, self.reminders,
            self.last_call, self.repeats, dict(budget.failures), budget.total, list(calls),
            list(complete_errors),
        )  # fmt: skip

    def repeated(self, call: ToolCallRequest) -> bool:
        """Count `call` against the calls before it; True when it makes a loop."""
        key = (call.name, _canonical(call.arguments))
        if key == self.last_call:
            self.repeats += 1
        else:
            self.last_call, self.repeats = key, 1
        return self.repeats >= LOOP_REPEATS


def act(
    name: str,
    signature: Signature,
    settings: ModelSettings,
    inputs: Mapping[str, Any],
    output_schema: Mapping[str, Any],
    tools: Sequence[Tool],
    on_text: Callable[[str], None] | None = None,
    memory_block: str | None = None,
) -> Flow[dict[str, Any]]:
    """The flow of one execution of agent `name` with `tools` (see the module docstring);
    `memory_block` is remembered context for the prompt (`kaizen.store.memory`)."""
    context = current_node_context()
    small = settings.tool_protocol == "json" and is_embedded_model(settings.model)
    protocol: Protocol = (
        JsonProtocol(tools, output_schema, compact=small)
        if settings.tool_protocol == "json"
        else Native(tools, output_schema)
    )
    messages = render_messages(
        signature,
        inputs,
        template=settings.system_template,
        user_template=settings.prompt_template
        or (SMALL_MODEL_USER_TEMPLATE if small else TOOLS_USER_TEMPLATE),
        schema_in_prompt=False,
    )
    note = protocol.system_note()
    if small and not settings.system_template:
        # the embedded model gets the protocol alone, with the agent's own instructions
        own = signature.instructions
        messages[0] = {**messages[0], "content": "\n\n".join(filter(None, (own, note)))}
    elif note:
        messages[0] = {**messages[0], "content": f"{messages[0]['content']}\n\n{note}"}
    messages = with_memory_block(messages, memory_block)
    trajectory = _Trajectory(list(messages))
    by_name = {t.name: t for t in tools}
    budget = ToolBudget(settings.max_tool_retries)
    # a pause for a person (kaizen.agents.pause): resumed, the paused turn continues
    resumed = pause.restored()
    pending: list[ToolCallRequest] | None = None
    complete_errors: list[ToolCallRecord] = []
    if resumed is not None:
        trajectory.restore(resumed)
        budget.failures, budget.total = dict(resumed.failures), resumed.failed_total
        pending, complete_errors = resumed.pending, resumed.complete_errors
    base = prepare(trajectory.messages, **settings.call_options)
    concurrency = context.max_concurrency if context is not None else 32

    def stop(reason: str, message: str) -> AgentLimitError:
        _note_stop(context, reason)
        return AgentLimitError(
            f"agent {name!r} stopped ({reason}): {message}",
            agent=name,
            stop_reason=reason,
            trajectory=trajectory.messages,
            tool_calls=trajectory.records,
        )

    try:
        while pending is not None or trajectory.turns < settings.max_iterations:
            if pending is not None:  # the turn a person paused: its calls, the model not asked
                others, pending = pending, None
            else:
                trajectory.turns += 1
                request = protocol.request(base, list(trajectory.messages), force=False)
                reply = yield from model_call(request, on_text)
                calls, problem = protocol.calls(reply)
                trajectory.messages.append(protocol.assistant(reply, calls))
                if problem is not None:
                    trajectory.messages.append({"role": "user", "content": problem})
                    continue
                if not calls:
                    if trajectory.reminders < settings.max_termination_attempts:
                        trajectory.reminders += 1
                        trajectory.messages.append({"role": "user", "content": protocol.reminder()})
                        continue
                    break  # enforced termination below
                finishing = [c for c in calls if c.name == COMPLETE]
                outputs, complete_errors = _try_complete(signature, finishing)
                if outputs is not None:
                    reason = "completed_after_reminder" if trajectory.reminders else "completed"
                    _note_stop(context, reason)
                    return outputs
                others = [c for c in calls if c.name != COMPLETE]
                for call in others:
                    if trajectory.repeated(call):
                        raise stop(
                            "loop_detected",
                            f"it called {call.name!r} with the same arguments {LOOP_REPEATS} "
                            "times in a row",
                        )
            records: list[ToolCallRecord] = []
            if others:
                saved = trajectory.saved(budget, others, complete_errors)
                runnable, rejected = pause.approvals(others, by_name, saved)
                try:
                    ran = yield from tool_calls(
                        runnable, by_name, context=context, max_concurrency=concurrency
                    )
                except NodePaused as paused:  # a tool asked a person: this turn runs again
                    raise pause.paused(paused, saved) from None
                order = {c.id: i for i, c in enumerate(others)}
                records = sorted([*ran, *rejected], key=lambda r: order.get(r.call_id, 0))
                trajectory.records.extend(records)
            trajectory.messages.extend(protocol.results([*records, *complete_errors]))
            complete_errors = []
            exhausted = budget.charge(records, by_name)
            if exhausted is not None:
                raise stop("error", exhausted)
        else:
            raise stop(
                "max_iterations",
                f"it took {settings.max_iterations} turns without completing (raise config "
                "'max_iterations'); the work done is in the error's trajectory and tool_calls",
            )
        return (
            yield from _enforce(
                signature, protocol, base, trajectory, output_schema, context, stop, on_text
            )
        )
    except BudgetExceededError:
        _note_stop(context, "budget")
        raise


def _enforce(
    signature: Signature,
    protocol: Protocol,
    base: ModelRequest,
    trajectory: _Trajectory,
    output_schema: Mapping[str, Any],
    context: NodeContext | None,
    stop: Callable[[str, str], AgentLimitError],
    on_text: Callable[[str], None] | None,
) -> Flow[dict[str, Any]]:
    """After the reminders: one call forced to `complete`, then extraction (seed 003)."""
    forced = protocol.request(base, list(trajectory.messages), force=True)
    try:
        reply = yield from model_call(forced, on_text)
    except ModelError:  # a provider that cannot force a tool: extraction still can
        reply = None
    if reply is not None:
        calls, _ = protocol.calls(reply)
        outputs, _ = _try_complete(signature, [c for c in calls if c.name == COMPLETE])
        if outputs is not None:
            _note_stop(context, "forced_completion")
            return outputs
    transcript = _transcript(trajectory.messages)
    ask = [
        trajectory.messages[0],
        {
            "role": "user",
            "content": f"{transcript}\n\nFrom the work above, give the final answer now: reply "
            f"with only a JSON object with the keys {', '.join(signature.output_names)}.",
        },
    ]
    request = prepare(ask, response_schema=output_schema, **_plain_options(base))
    reply = yield from model_call(request, on_text)
    try:
        outputs = parse_output(signature, reply.text)
    except OutputParseError as exc:
        raise stop(
            "error", f"it never called 'complete', and no answer could be extracted: {exc}"
        ) from exc
    _note_stop(context, "extracted")
    return outputs


def _try_complete(
    signature: Signature, calls: Sequence[ToolCallRequest]
) -> tuple[dict[str, Any] | None, list[ToolCallRecord]]:
    """The outputs of the first valid `complete` call, or the errors of the invalid ones (as
    tool results, so the model sees them)."""
    errors: list[ToolCallRecord] = []
    for call in calls:
        try:
            return parse_output(signature, call.arguments or "{}"), []
        except OutputParseError as exc:
            errors.append(
                ToolCallRecord(call.id, COMPLETE, call.arguments, error=f"complete: {exc}")
            )
    return None, errors


def _note_stop(context: NodeContext | None, reason: str) -> None:
    if context is not None:
        context.note_stop_reason(reason)


def _canonical(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments), sort_keys=True, separators=(",", ":"))
    except ValueError:
        return arguments.strip()


def _transcript(messages: Sequence[Mapping[str, Any]]) -> str:
    """The conversation after the system message, as plain text (any provider reads it)."""
    lines = []
    for message in messages[1:]:
        role = message.get("role")
        content = message.get("content") or ""
        if role == "tool":
            lines.append(f"[tool {message.get('name')} result] {content}")
        elif message.get("tool_calls"):
            calls = "; ".join(
                f"{c['function']['name']}({c['function']['arguments']})"
                for c in message["tool_calls"]
            )
            lines.append(f"[assistant called] {calls}" + (f" {content}" if content else ""))
        else:
            lines.append(f"[{role}] {content}")
    return "\n".join(lines)


def _plain_options(base: ModelRequest) -> dict[str, Any]:
    """The call options of `base` that `prepare` takes again (not the messages or tools)."""
    skip = {
        "model",
        "messages",
        "tools",
        "tool_choice",
        "response_format",
        "num_retries",
        "max_retries",
    }
    options = {key: value for key, value in base.kwargs.items() if key not in skip}
    return {
        "model": base.model,
        "retries": base.retries,
        "backoff": base.backoff,
        "max_wait": base.max_wait,
        "transport": base.transport,
        **options,
    }
