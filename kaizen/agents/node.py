"""`AgentNode`: an `Agent` as a node of a workflow graph (ports = its signature's fields), and
`LLMAgentNode`, the same by type name from a config. The node drives the agent's exchange
flow (`kaizen.agents.exchange`) sync (`run`) or async (`arun`), after the agent's guards and
access policy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from kaizen.agents.agent import AGENT_CONFIG_KEYS, Agent, coerce_signature
from kaizen.agents.exchange import exchange
from kaizen.flow import Flow, run_async, run_sync
from kaizen.missing import MISSING
from kaizen.nodes.base import ExecutionPolicy, Node, Port
from kaizen.nodes.registry import register_node_type
from kaizen.store.memory import remembering

if TYPE_CHECKING:
    from kaizen.signatures import Signature

__all__ = ["AgentNode", "LLMAgentNode"]


class AgentNode(Node):
    """A node that runs an `Agent`: ports = signature fields, async on the runtime's event loop
    (or, built with `sync=True`, sync in the runtime's threads or inline).

    By type name from a config: `{"agent": agent}` uses that agent; `{"signature": ...,
    "name": ..., <agent config keys>}` makes one. Other keys named like an input set that input.
    """

    type_name = "AgentNode"
    model_bound = True
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
        inputs_validated: bool = False,
        signature: Signature | None = None,
    ) -> None:
        config = dict(config or {})
        if agent is None:
            agent = _agent_from_config(node_id, config)
        elif config:
            raise ValueError(
                f"node {node_id!r}: pass either an agent or a config, not both "
                "(configure the agent instead)"
            )
        self.agent = agent
        # the fields of this node's ports and of its exchange (Agent.call_signature)
        self.signature = signature if signature is not None else agent.call_signature()
        # sync=True: the runtime calls run() (litellm's sync API) instead of arun() on its loop
        self._sync = sync
        # Agent.execute validated the inputs already; in a graph they are validated here
        self._inputs_validated = inputs_validated
        # The node's config keeps only input values (bound by the builder): what configures the
        # agent stays with the agent, and its API key never sits in a node's config.
        inputs = set(self.signature.input_names)
        super().__init__(node_id, {k: v for k, v in config.items() if k in inputs}, policy=policy)

    @property
    def hooks(self) -> tuple[Any, ...]:
        return self.agent.hooks

    @property
    def is_async(self) -> bool:
        return not self._sync

    def make_ports(self) -> tuple[Iterable[Port], Iterable[Port]]:
        signature = self.signature
        inputs = [Port(f.name, f.type, f.default, f.description) for f in signature.input_fields]
        outputs = [Port(f.name, f.type, MISSING, f.description) for f in signature.output_fields]
        return inputs, outputs

    def _flow(self, inputs: dict[str, Any]) -> Flow[dict[str, Any]]:
        agent, signature = self.agent, self.signature
        if not self._inputs_validated:  # (execute() validated and guarded them already)
            inputs = signature.validate_inputs(inputs)
            agent.guard_inputs(inputs)
        # in a workflow a missing approval pauses the node; a direct execute() (which
        # validated the inputs itself) raises ApprovalRequired, as the ADR documents
        budget = agent.admit(inputs, pause=not self._inputs_validated)
        settings = agent.settings()
        tools = agent.tools_for_run() if agent.has_tools else ()
        memory = agent.memory
        # a plan runs as a workflow of its own, on the agent's runtime
        runtime = agent.runtime if settings.strategy == "plan" else None

        def execution(block: str | None) -> Flow[dict[str, Any]]:
            schema = self._output_schema(settings.strategy == "plan" or bool(tools))
            if memory is not None:  # what the agent remembered, for the run's record
                _note_memory("memory_read", memory, block=block)
            return exchange(agent.name, signature, settings, inputs, schema, tools, block, runtime)

        if memory is None:
            flow = execution(None)
        else:
            flow = _noting_written(remembering(memory, inputs, execution), memory)
        if agent.free_form:  # any fields may come back: the ports get theirs, the record the rest
            from kaizen.agents.freeform import ports_only

            flow = ports_only(flow, signature.output_names)
        if budget is None:
            return flow
        from kaizen.observe.policy import charging

        return charging(flow, budget)

    def _output_schema(self, acts: bool) -> dict[str, Any]:
        """The JSON Schema the model's reply must fit: open to any fields for an agent without
        a signature answering in one call (not when it acts with tools or plans)."""
        if self.signature is self.agent.signature:
            return self.agent.output_schema
        if self.agent.free_form and not acts:
            from kaizen.agents.freeform import open_schema

            return open_schema(self.signature)
        return self.signature.output_schema

    def run(self, **inputs: Any) -> dict[str, Any]:
        return run_sync(self._flow(inputs))

    async def arun(self, **inputs: Any) -> dict[str, Any]:
        return await run_async(self._flow(inputs))


class LLMAgentNode(AgentNode):
    """`AgentNode` by type name; config: `signature`, optional `name`, and any agent config key."""

    type_name = "LLMAgentNode"


def _agent_from_config(node_id: str, config: Mapping[str, Any]) -> Agent:
    given = config.get("agent")
    if given is not None:
        if not isinstance(given, Agent):
            raise TypeError(
                f"config 'agent' must be an Agent (kaizen.create_agent), got {type(given).__name__}"
            )
        extra = sorted(set(config) & (AGENT_CONFIG_KEYS | {"signature", "name"}))
        if extra:
            raise ValueError(
                f"config {extra} cannot change the agent given as 'agent'; configure the agent "
                "itself, or give 'signature' and agent config keys instead of 'agent'"
            )
        return given
    settings = dict(config)
    signature = coerce_signature(settings.pop("signature", None))
    name = settings.pop("name", node_id)
    for key in signature.input_names:  # input values, bound by the builder
        if key not in AGENT_CONFIG_KEYS:
            settings.pop(key, None)
    return Agent(name, signature, settings)


register_node_type(AgentNode)
register_node_type(LLMAgentNode)


def _note_memory(kind: str, memory: Any, **details: Any) -> None:
    """A note on the running node (the run browser shows memory read and written)."""
    from kaizen.runtime.context import current_node_context

    context = current_node_context()
    if context is not None:
        context.note({"kind": kind, "namespace": memory.namespace,
                      "session": memory.session, **details})  # fmt: skip


def _noting_written(flow: Flow[dict[str, Any]], memory: Any) -> Flow[dict[str, Any]]:
    outputs = yield from flow
    _note_memory("memory_written", memory, fields=sorted(outputs))
    return outputs
