"""An agent's exchange with its model, written once as a flow (`kaizen.flow`).

    render the prompt from the signature and the inputs
    repeat, at most `max_parse_attempts` times:
        call the model (the `kaizen.llm.call.model_call` flow: retries, hooks, usage)
        parse the reply into the signature's typed outputs -> done
        or show the model its reply and what was wrong with it, and ask again
    with `resample_degenerate`: a prose output that is degenerate (`kaizen.text.degenerate`) is
        asked for once more with a fixed seed; both are noted in the run record

An agent with tools runs the reason-act loop instead (`kaizen.agents.loop.act`), a flow too;
an agent with the config `strategy="plan"` makes a plan and runs it as a workflow
(`kaizen.plans.strategy.planned`, on `runtime`), a flow as well.
When a hook listens to streamed text (`ChunkHook`, as `agent.stream` does), the model calls
stream and each piece of text reaches the hooks as it arrives.

`AgentNode.run` drives it with `run_sync`, `AgentNode.arun` with `run_async`; nothing else talks
to the model for an agent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kaizen.agents.freeform import is_open, parse_open_output
from kaizen.agents.loop import act
from kaizen.flow import Flow
from kaizen.llm.answer import answer
from kaizen.llm.embedded.schema import PROSE_MIN_LENGTH
from kaizen.runtime.context import current_node_context
from kaizen.signatures import parse_output, render_messages
from kaizen.store.memory import with_memory_block
from kaizen.text import degenerate

if TYPE_CHECKING:
    from kaizen.agents.config import ModelSettings
    from kaizen.runtime.local import LocalRuntime
    from kaizen.signatures import Signature
    from kaizen.tools.tool import Tool

__all__ = ["RESAMPLE_SEED", "degenerate_prose", "exchange"]


def exchange(
    name: str,
    signature: Signature,
    settings: ModelSettings,
    inputs: Mapping[str, Any],
    output_schema: Mapping[str, Any],
    tools: Sequence[Tool] = (),
    memory_block: str | None = None,
    runtime: LocalRuntime | None = None,
) -> Flow[dict[str, Any]]:
    """The flow of one execution of agent `name`: its typed outputs, or `OutputParseError`
    (carrying the last raw reply) after `max_parse_attempts` replies that do not fit."""
    context = current_node_context()
    on_text = context.chunk if context is not None and context.wants_chunks else None
    if settings.strategy == "plan":
        from kaizen.plans.strategy import planned  # the planning machinery loads on first use

        return (
            yield from planned(
                name, signature, settings, inputs, output_schema, tools, runtime, memory_block
            )
        )
    if tools:
        return (
            yield from act(
                name, signature, settings, inputs, output_schema, tools, on_text, memory_block
            )
        )
    messages: list[dict[str, Any]] = render_messages(
        signature,
        inputs,
        template=settings.system_template,
        user_template=settings.prompt_template,
        schema_in_prompt=settings.schema_in_prompt,
    )
    messages = with_memory_block(messages, memory_block)  # remembered context (docs/state.md)
    # a schema open to more fields (an agent without a signature) keeps every field given
    parse = parse_open_output if is_open(output_schema) else parse_output
    outputs = yield from answer(name, signature, settings, messages, output_schema, on_text, parse)
    weak = degenerate_prose(signature, outputs)
    if not weak or not settings.resample_degenerate:
        return outputs
    # Honest when weak: one more try, seeded (the same answer on a re-run), both noted.
    note = context.note if context is not None else (lambda entry: None)
    note({"kind": "resample", "why": weak, "seed": RESAMPLE_SEED})
    seeded = dataclasses.replace(
        settings, call_options={**settings.call_options, "seed": RESAMPLE_SEED}
    )
    again = yield from answer(name, signature, seeded, messages, output_schema, on_text, parse)
    still = degenerate_prose(signature, again)
    if still:
        note({"kind": "degenerate", "why": still})
    return again


#: The seed of the one re-sample of a degenerate answer (`resample_degenerate`).
RESAMPLE_SEED = 7


def degenerate_prose(signature: Signature, outputs: Mapping[str, Any]) -> dict[str, str]:
    """{field: why} for the prose outputs of `signature` (str outputs asking for at least
    `PROSE_MIN_LENGTH` characters) whose value `kaizen.text.degenerate` rejects."""
    found: dict[str, str] = {}
    for field in signature.output_fields:
        if field.type is not str or int(field.constraints.get("min_length", 0)) < PROSE_MIN_LENGTH:
            continue
        why = degenerate(str(outputs.get(field.name, "")))
        if why:
            found[field.name] = why
    return found
