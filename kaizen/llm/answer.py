"""`answer`: one structured model call that fills a signature's outputs, re-asked while the
reply does not fit (at most `max_parse_attempts` calls). A flow (`kaizen.flow`).

The exchange of an agent without tools (`kaizen.agents.exchange`) is this call on the rendered
prompt; a plan's synthesis step (`kaizen.plans`) is this call on the step results. It lives in
the model layer, below both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from kaizen.errors import OutputParseError
from kaizen.flow import Flow
from kaizen.llm.call import model_call, prepare
from kaizen.signatures import parse_output

if TYPE_CHECKING:
    from kaizen.agents.config import ModelSettings
    from kaizen.signatures import Signature

__all__ = ["answer"]


def answer(
    name: str,
    signature: Signature,
    settings: ModelSettings,
    messages: list[dict[str, Any]],
    output_schema: Mapping[str, Any],
    on_text: Callable[[str], None] | None = None,
    parse: Callable[[Signature, str], dict[str, Any]] = parse_output,
) -> Flow[dict[str, Any]]:
    """The typed outputs of `signature` from the model's reply to `messages`, or
    `OutputParseError` (carrying the last raw reply) after `max_parse_attempts` replies that do
    not fit. `name` names the agent in the error. `parse` reads a reply (an agent without a
    signature reads every field given: `kaizen.agents.freeform.parse_open_output`)."""
    request = prepare(messages, response_schema=output_schema, **settings.call_options)
    attempts = settings.max_parse_attempts
    for attempt in range(1, attempts + 1):
        reply = yield from model_call(request, on_text)
        try:
            return parse(signature, reply.text)
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
