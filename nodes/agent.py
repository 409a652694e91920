"""`AgentNode`: an agent as a workflow node, and the model exchange every agent execution runs.

The node's ports are its signature's fields (an input with a default is an optional port; output
port types are the field types, so `build()` type-checks agent-to-agent connections). Running the
node renders the prompt, calls the model (`kaizen.llm`), parses the reply into typed outputs and,
when the reply does not fit the signature, shows the model its errors and asks again, a bounded
number of times. `Agent.execute()` runs exactly this node in a one-node workflow.

`LLMAgentNode` is the same node built by type name from a config dict:
`builder.add_node("LLMAgentNode", "qa", {"signature": "question -> answer", "model": ...})`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from kaizen.nodes.base import MISSING, ExecutionPolicy, Node, Port
from kaizen.nodes.registry import register_node_type
from kaizen.record import Usage

if TYPE_CHECKING:
    from kaizen.agent import Agent
    from kaizen.config import ModelSettings
    from kaizen.llm import ModelReply


@dataclass(slots=True)
class AgentCallReport:
    """What one agent execution did: the final raw reply, the model calls and their usage."""

    raw: str = ""
    model: str = ""
    latency: float = 0.0  # seconds spent in model calls, re-asks included
    usage: Usage = field(default_factory=Usage)
    attempts: int = 0  # model calls made to get a reply that fits the signature
    provider_attempts: int = 0  # HTTP-level attempts, provider retries included
    finish_reason: str | None = None


@dataclass(slots=True)
class _ExecuteScope:
    """Registered by `Agent.execute` for its run id: inputs are validated, report goes here."""

    report: AgentCallReport | None = None


class _Exchange:
    """One execution's conversation with the model: first prompt, replies, re-asks."""

    __slots__ = ("agent", "context", "messages", "report", "settings")

    def __init__(self, agent: Agent, settings: ModelSettings, inputs: Mapping[str, Any]) -> None:
        from kaizen.context import current_node_context
        from kaizen.signatures import render_messages

        self.agent = agent
        self.context = current_node_context()  # None when the node is called directly
        self.settings = settings
        self.messages: list[dict[str, Any]] = render_messages(
            agent.signature,
            inputs,
            template=settings.system_template,
            user_template=settings.prompt_template,
            schema_in_prompt=settings.schema_in_prompt,
        )
        self.report = AgentCallReport(model=settings.model_name)

    def before_call(self) -> None:
        if self.context is not None:
            self.context.check_budget()

    def accept(self, reply: ModelReply) -> dict[str, Any] | None:
        """The parsed outputs, or None after queuing a re-ask; raises when out of attempts."""
        from kaizen.errors import OutputParseError
        from kaizen.signatures import parse_output

        report = self.report
        report.attempts += 1
        report.provider_attempts += reply.attempts
        report.raw = reply.text
        report.model = reply.model or report.model
        report.finish_reason = reply.finish_reason
        report.usage.add(reply.usage)
        report.latency += reply.latency
        if self.context is not None:
            self.context.add_usage(reply.usage)
        try:
            return parse_output(self.agent.signature, reply.text)
        except OutputParseError as exc:
            if report.attempts >= self.settings.max_parse_attempts:
                raise OutputParseError(
                    f"agent {self.agent.name!r}: the model's reply did not fit the signature "
                    f"after {report.attempts} attempt(s) (raise 'max_parse_attempts' or make "
                    f"the signature easier to satisfy). Last problems: {exc}",
                    raw=exc.raw,
                    errors=exc.errors,
                ) from exc
            self.messages = [
                *self.messages,
                {"role": "assistant", "content": reply.text},
                {"role": "user", "content": str(exc)},
            ]
            return None


# kaizen.config.AgentConfig's fields (kept here so importing kaizen.nodes stays free of pydantic;
# a test checks the two agree)
AGENT_CONFIG_KEYS = frozenset(
    {
        "model",
        "temperature",
        "max_tokens",
        "timeout",
        "retries",
        "max_parse_attempts",
        "instructions",
        "system_prompt",
        "structured_output",
        "api_base",
        "api_key",
        "prompt_template",
        "system_template",
    }
)


class AgentNode(Node):
    """A node that runs an `Agent`: ports = signature fields, async on the runtime's event loop
    (or, built with `sync=True`, sync through the runtime's threads or inline).

    Built from an agent (`agent.to_workflow_node(id)`) or by type name from a config holding
    `signature`, an optional agent `name`, and agent config keys; other config keys named like
    an input port set that input (the builder binds them).
    """

    type_name = "AgentNode"
    config_keys: ClassVar[frozenset[str] | None] = AGENT_CONFIG_KEYS | {
        "agent",
        "signature",
        "name",
    }

    def __init__(
        self,
        node_id: str,
        config: Mapping[str, Any] | None = None,
        *,
        policy: ExecutionPolicy | None = None,
        agent: Agent | None = None,
        sync: bool = False,
    ) -> None:
        if agent is None:
            agent = _agent_from_config(node_id, config or {})
            description = dict(config or {})
            description.pop("api_key", None)
        else:
            if config:
                raise ValueError(
                    f"node {node_id!r}: pass either an agent or a config, not both "
                    "(configure the agent instead)"
                )
            description = {"agent": agent.name}
            if agent.config.model is not None:
                description["model"] = agent.config.model
        self.agent = agent
        # sync=True: the runtime calls run() (litellm's sync API) instead of arun() on its loop;
        # `Agent.execute` uses it so a sync caller's call stays sync end to end
        self._sync = sync
        # run id -> scope of an `Agent.execute` call running this node (registered, then removed,
        # by that call; the run id, unlike a context variable, reaches every runtime thread)
        self._scopes: dict[str, _ExecuteScope] = {}
        super().__init__(node_id, description, policy=policy)

    @property
    def is_async(self) -> bool:
        return not self._sync

    def make_ports(self) -> tuple[Iterable[Port], Iterable[Port]]:
        signature = self.agent.signature
        inputs = [Port(f.name, f.type, f.default, f.description) for f in signature.inputs]
        outputs = [Port(f.name, f.type, MISSING, f.description) for f in signature.outputs]
        return inputs, outputs

    def _start(self, inputs: dict[str, Any]) -> tuple[_Exchange, _ExecuteScope | None]:
        from kaizen.context import current_node_context

        ctx = current_node_context()
        scope = self._scopes.get(ctx.run_id) if ctx is not None and self._scopes else None
        if scope is None:
            inputs = self.agent.signature.validate_inputs(inputs)
        return _Exchange(self.agent, self.agent.settings(), inputs), scope

    def run(self, **inputs: Any) -> dict[str, Any]:
        from kaizen.llm import complete

        exchange, scope = self._start(inputs)
        schema = self.agent.output_schema
        while True:
            exchange.before_call()
            reply = complete(
                exchange.messages, response_schema=schema, **exchange.settings.call_options
            )
            outputs = exchange.accept(reply)
            if outputs is not None:
                break
        if scope is not None:
            scope.report = exchange.report
        return outputs

    async def arun(self, **inputs: Any) -> dict[str, Any]:
        from kaizen.llm import acomplete

        exchange, scope = self._start(inputs)
        schema = self.agent.output_schema
        while True:
            exchange.before_call()
            reply = await acomplete(
                exchange.messages, response_schema=schema, **exchange.settings.call_options
            )
            outputs = exchange.accept(reply)
            if outputs is not None:
                break
        if scope is not None:
            scope.report = exchange.report
        return outputs


class LLMAgentNode(AgentNode):
    """`AgentNode` by type name; config: `signature`, optional `name`, and any agent config key."""

    type_name = "LLMAgentNode"


def _agent_from_config(node_id: str, config: Mapping[str, Any]) -> Agent:
    from kaizen.agent import Agent, coerce_signature
    from kaizen.framework import default_kaizen

    settings = dict(config)
    signature = coerce_signature(settings.pop("signature", None))
    name = settings.pop("name", node_id)
    settings.pop("agent", None)
    for key in signature.input_names:  # input values, bound by the builder
        if key not in AGENT_CONFIG_KEYS:
            settings.pop(key, None)
    # the default Kaizen instance's config applies, as for kaizen.create_agent
    return Agent(name, signature, settings, defaults=default_kaizen().config)


register_node_type(AgentNode)
register_node_type(LLMAgentNode)

__all__ = ["AgentCallReport", "AgentNode", "LLMAgentNode"]
