"""An agent's exchange with its model, written once as a flow (`kaizen.flow`).

    render the prompt from the signature and the inputs
    repeat, at most `max_parse_attempts` times:
        call the model (the `kaizen.llm.call.model_call` flow: retries, hooks, usage)
        parse the reply into the signature's typed outputs -> done
        or show the model its reply and what was wrong with it, and ask again

An agent with tools runs the reason-act loop instead (`kaizen.agents.loop.act`), a flow too.
When a hook listens to streamed text (`ChunkHook`, as `agent.stream` does), the model calls
stream and each piece of text reaches the hooks as it arrives.

`AgentNode.run` drives it with `run_sync`, `AgentNode.arun` with `run_async`; nothing else talks
to the model for an agent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kaizen.agents.loop import act
from kaizen.errors import OutputParseError
from kaizen.flow import Flow
from kaizen.llm.call import model_call, prepare
from kaizen.runtime.context import current_node_context
from kaizen.signatures import parse_output, render_messages
from kaizen.store.memory import with_memory_block

if TYPE_CHECKING:
    from kaizen.agents.config import ModelSettings
    from kaizen.signatures import Signature
    from kaizen.tools.tool import Tool

__all__ = ["exchange"]


def exchange(
    name: str,
    signature: Signature,
    settings: ModelSettings,
    inputs: Mapping[str, Any],
    output_schema: Mapping[str, Any],
    tools: Sequence[Tool] = (),
    memory_block: str | None = None,
) -> Flow[dict[str, Any]]:
    """The flow of one execution of agent `name`: its typed outputs, or `OutputParseError`
    (carrying the last raw reply) after `max_parse_attempts` replies that do not fit."""
    context = current_node_context()
    on_text = context.chunk if context is not None and context.wants_chunks else None
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
    request = prepare(messages, response_schema=output_schema, **settings.call_options)
    attempts = settings.max_parse_attempts
    for attempt in range(1, attempts + 1):
        reply = yield from model_call(request, on_text)
        try:
            return parse_output(signature, reply.text)
        except OutputParseError as exc:
            if attempt == attempts:
                raise OutputParseError(
                    f"agent {name!r}: the model's reply did not fit the signature after "
                    f"{attempt} attempt(s) (raise 'max_parse_attempts' or make the signature "
                    f"easier to satisfy). Last problems: {exc}",
                    raw=exc.raw,
                    errors=exc.errors,
                ) from exc
            messages = [
                *messages,
                {"role": "assistant", "content": reply.text},
                {"role": "user", "content": str(exc)},
            ]
            request = dataclasses.replace(request, kwargs={**request.kwargs, "messages": messages})
    raise AssertionError("unreachable: max_parse_attempts is at least 1")
