"""`RemoteAgent`: an A2A agent (any A2A 1.0 server: Kaizen's own, or another team's) as a tool.

    translator = RemoteAgent("https://agents.example.com/translator")
    agent = kaizen.create_agent("writer", "brief -> article", tools=[translator])
    builder.add_node(translator.ask, "translate")     # or a node of a workflow: message -> result

The agent card (``/.well-known/agent-card.json``) is fetched once, on first use, and gives the
tool its name (the card's, made safe, unless `name` is given) and its description (the card's
and its skills'). A call sends one message with ``a2a-sdk``'s own client (JSON-RPC): the text the
model wrote, and, when it passed ``inputs``, those as a data part. The reply is the task's
artifacts (a data part as JSON text, else the text) or the agent's message. A task that failed,
was rejected or cancelled, or asks for input the tool cannot give, raises `RemoteAgentError`
with the remote agent's own words: the model reads it as the tool's error.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from kaizen.errors import KaizenError
from kaizen.tools.tool import Tool
from kaizen.tools.toolset import Toolset

__all__ = ["RemoteAgent", "RemoteAgentError"]

CARD_PATH = "/.well-known/agent-card.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


class RemoteAgentError(KaizenError):
    """The remote agent did not answer: its task failed, was rejected or cancelled, or waits
    for input; or it could not be reached. The message says which, in the agent's words."""


class RemoteAgent(Toolset):
    """An A2A agent at `url` as a toolset of one tool (see the module docstring). `headers`
    go with every request (an ``Authorization`` for the remote server); `timeout` bounds a
    call, in seconds."""

    def __init__(
        self,
        url: str,
        *,
        name: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 300.0,
    ) -> None:
        self.url = url.rstrip("/")
        self._name = name
        self.headers = dict(headers or {})
        self.timeout = timeout
        self._card: dict[str, Any] | None = None

    def __repr__(self) -> str:  # (headers are secrets: their names only)
        return f"RemoteAgent({self.url!r}, headers={sorted(self.headers)})"

    @property
    def name(self) -> str:  # type: ignore[override]
        return self._name or _UNSAFE.sub("_", str(self.card().get("name") or "remote_agent"))

    def card(self) -> dict[str, Any]:
        """The agent card, as JSON (fetched once)."""
        if self._card is None:
            import httpx

            try:
                response = httpx.get(self.url + CARD_PATH, headers=self.headers, timeout=30)
                response.raise_for_status()
                self._card = dict(response.json())
            except (httpx.HTTPError, ValueError) as exc:
                raise RemoteAgentError(
                    f"no A2A agent card at {self.url}{CARD_PATH}: {exc}"
                ) from None
        return self._card

    def refresh(self) -> None:
        self._card = None

    def list_tools(self) -> Sequence[Tool]:
        card = self.card()
        description = str(card.get("description") or "")
        for skill in card.get("skills") or ():
            said = str(skill.get("description") or "")
            if said and description and description in said:
                description = said  # (a skill that restates the card and says more)
            elif said and said not in description:
                description = f"{description} {skill.get('name')}: {said}".strip()
        description = description or f"the A2A agent at {self.url}"
        parameters = {
            "type": "object",
            "properties": {
                "message": {"type": "string", "description": "what to ask the agent"},
                "inputs": {
                    "type": "object",
                    "description": "structured inputs, when the agent takes named ones",
                },
            },
            "required": ["message"],
        }

        async def call(message: str, inputs: dict[str, Any] | None = None) -> str:
            return await self._send(message, inputs)

        return [Tool(call, name=self.name, description=description, parameters=parameters)]

    async def ask(self, message: str) -> str:
        """Ask the agent `message`; its answer (a workflow node: ``message -> result``)."""
        return await self._send(message, None)

    async def _send(self, message: str, inputs: Mapping[str, Any] | None) -> str:
        import httpx
        from a2a.client import ClientConfig, create_client
        from a2a.types.a2a_pb2 import Message, Part, Role, SendMessageRequest

        from kaizen.a2a.parts import data_part

        parts = [Part(text=message)] if message else []
        if inputs:
            parts.append(data_part(dict(inputs)))
        request = SendMessageRequest(
            message=Message(message_id=uuid.uuid4().hex, role=Role.ROLE_USER, parts=parts)
        )
        async with httpx.AsyncClient(headers=self.headers, timeout=self.timeout) as http:
            config = ClientConfig(streaming=False, httpx_client=http)
            try:
                client = await create_client(self.url, client_config=config)
                replies = [reply async for reply in client.send_message(request)]
            except Exception as exc:  # the SDK's errors, the transport's
                raise RemoteAgentError(f"the A2A agent at {self.url} failed: {exc}") from None
        if not replies:
            raise RemoteAgentError(f"the A2A agent at {self.url} sent no answer")
        return _answer(self.url, replies[-1])


def _answer(url: str, reply: Any) -> str:
    """The text a tool returns for the last response of a call."""
    from a2a.types.a2a_pb2 import TaskState

    from kaizen.a2a.parts import part_value

    if reply.HasField("message"):
        return _text(reply.message.parts)
    task = reply.task
    state = task.status.state
    said = _text(task.status.message.parts) if task.status.HasField("message") else ""
    if state == TaskState.TASK_STATE_COMPLETED:
        parts = [p for artifact in task.artifacts for p in artifact.parts]
        values = [part_value(p) for p in parts]
        data = [v for v in values if not isinstance(v, str) and v is not None]
        if data:
            return json.dumps(data[0] if len(data) == 1 else data, sort_keys=True)
        return _text(parts) or said
    name = TaskState.Name(state).removeprefix("TASK_STATE_").lower().replace("_", "-")
    raise RemoteAgentError(f"the A2A agent at {url} ended its task {name}: {said or 'no reason'}")


def _text(parts: Any) -> str:
    from kaizen.a2a.parts import part_value

    values = [part_value(p) for p in parts]
    texts = (v if isinstance(v, str) else json.dumps(v, sort_keys=True) for v in values)
    return "\n".join(text for text, v in zip(texts, values, strict=True) if v is not None)
