"""OpenTelemetry tracing (extra ``otel``) and the correlation id on log lines, as hooks.

`TracingHook` turns the lifecycle moments into spans that follow the GenAI semantic
conventions:

    invoke_workflow {workflow}          one per run (none for `agent.execute`: the agent's
                                        own one-node run is its invoke_agent span alone)
      invoke_agent {agent}              an agent's node (other nodes: execute_node {node})
        chat {model}                    each model call, kind CLIENT (fallbacks: one per model)
        execute_tool {tool}             each tool call

``gen_ai.operation.name`` on each; ``gen_ai.workflow.name`` on the run; ``gen_ai.agent.name``
(the agent's name, not the node id), ``gen_ai.provider.name`` and ``gen_ai.request.model`` on an
agent's span; on chat spans the provider and models, ``gen_ai.request.temperature`` and
``gen_ai.request.max_tokens`` and ``server.address`` / ``server.port`` when the agent sets them,
``gen_ai.response.id``, ``gen_ai.usage.input_tokens``, ``gen_ai.usage.output_tokens`` and
``gen_ai.response.finish_reasons``. Providers are named as the conventions name them
(``gemini/...`` -> ``gcp.gemini``). Each call's tokens are added once to every span above it
(node, run, and the node and run a nested run was started from), so a parent's totals are the
sum of the calls beneath it, never counted twice. Message content (``gen_ai.input.messages``,
``gen_ai.output.messages`` in the conventions' ``{role, parts, finish_reason}`` shape, tool
calls included, see `kaizen.observe.genai_messages`; tool arguments and results) is recorded
only with ``capture_content=True``, and then with key-shaped tokens redacted.

`kaizen.enable_tracing(tracer_provider=None, capture_content=False)` registers one for every run
in the process (`add_process_hook`) and puts `CorrelationFilter` on the log handlers; it returns
a function that undoes both. `CorrelationFilter` gives every log record ``run_id``, ``node_id``,
``correlation_id`` (the run id, "-" outside a run) and, with a span open, ``trace_id``.

opentelemetry is imported when a `TracingHook` is made, never by `import kaizen`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kaizen.llm.retry import redact
from kaizen.logs import host_logging_kept
from kaizen.observe.genai_messages import input_messages, output_messages, response_id
from kaizen.runtime.context import current_node_context
from kaizen.runtime.hooks import (
    ModelCallFinishHook,
    ModelCallStartHook,
    NodeFinishHook,
    NodeStartHook,
    RunFinishHook,
    RunStartHook,
    ToolCallFinishHook,
    ToolCallStartHook,
    add_process_hook,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from kaizen.moments import (
        ModelCallFinished,
        ModelCallStarted,
        NodeFinished,
        NodeStarted,
        RunFinished,
        RunStarted,
        ToolCallFinished,
        ToolCallStarted,
    )
    from kaizen.workflow.workflow import Workflow

__all__ = ["CorrelationFilter", "TracingHook", "enable_tracing"]

AGENT_NODE_TYPE = "AgentNode"
_open_chat: ContextVar[_Open | None] = ContextVar("kaizen_open_chat_span", default=None)


@dataclass(eq=False)
class _Open:
    """A span still open, the spans above it, and the tokens of the calls beneath it."""

    span: Any
    parent: _Open | None
    input_tokens: int = 0
    output_tokens: int = 0
    calls: int = 0
    children: list[Any] = field(default_factory=list)
    # an agent's span whose provider and model its first model call tells (the hook was on the
    # agent, so it never saw the run's workflow)
    awaits_model: bool = False

    def add_tokens(self, input_tokens: int, output_tokens: int) -> None:
        """Count one call's tokens here and in every span above, once each."""
        here: _Open | None = self
        while here is not None:
            here.input_tokens += input_tokens
            here.output_tokens += output_tokens
            here.calls += 1
            here = here.parent


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


# litellm's provider prefixes whose name in the conventions differs
_PROVIDER_NAMES = {
    "gemini": "gcp.gemini",
    "vertex_ai": "gcp.vertex_ai",
    "vertex_ai_beta": "gcp.vertex_ai",
    "bedrock": "aws.bedrock",
    "azure": "azure.ai.openai",
    "azure_ai": "azure.ai.inference",
    "watsonx": "ibm.watsonx.ai",
    "xai": "x_ai",
    "mistral": "mistral_ai",
    "cohere_chat": "cohere",
}


def provider_and_model(model: str) -> tuple[str, str]:
    """``"openai/gpt-4o-mini"`` -> ("openai", "gpt-4o-mini"), the provider named as the GenAI
    conventions name it (``gemini/...`` -> "gcp.gemini"); no prefix: ("unknown", model)."""
    provider, slash, name = model.partition("/")
    if not (slash and name):
        return "unknown", model
    return _PROVIDER_NAMES.get(provider, provider), name


@dataclass(frozen=True)
class _AgentFacts:
    """What the conventions ask of an agent's spans, read from its settings."""

    name: str
    provider: str
    model: str  # without the provider prefix
    chat: dict[str, Any]  # request attributes of its chat spans: temperature, server, ...

    @classmethod
    def of(cls, node: Any) -> _AgentFacts | None:
        agent = getattr(node, "agent", None)
        if agent is None:
            return None
        try:
            settings = agent.settings()
        except Exception:  # no model configured: the node fails and says so
            return None
        provider, model = provider_and_model(settings.model_name)
        options = settings.call_options
        chat = {
            "gen_ai.request.temperature": options.get("temperature"),
            "gen_ai.request.max_tokens": options.get("max_tokens"),
            **_server(options.get("api_base")),
        }
        return cls(agent.name, provider, model, chat)


def _server(url: Any) -> dict[str, Any]:
    """``server.address`` and ``server.port`` of a model server's URL ({} when unknown)."""
    if not isinstance(url, str) or not url:
        return {}
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if not parts.hostname:
        return {}
    port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    return {"server.address": parts.hostname, "server.port": port}


def _lone_agent(workflow: Workflow) -> bool:
    """True for an agent's own one-node workflow (what `agent.execute` runs): traced as the
    agent's invocation alone, with no workflow span around it."""
    if len(workflow.nodes) != 1:
        return False
    [(node_id, node)] = workflow.nodes.items()
    agent = getattr(node, "agent", None)
    return (
        node.node_type() == AGENT_NODE_TYPE
        and agent is not None
        and workflow.name == node_id == agent.name
    )


class TracingHook(
    RunStartHook,
    RunFinishHook,
    NodeStartHook,
    NodeFinishHook,
    ModelCallStartHook,
    ModelCallFinishHook,
    ToolCallStartHook,
    ToolCallFinishHook,
):
    """Spans for runs, nodes, model calls and tool calls (see the module docstring).

    `tracer_provider` defaults to OpenTelemetry's global one; `capture_content` records
    messages and tool arguments/results (off by default: they may hold personal data).
    """

    name = "opentelemetry"

    def __init__(self, tracer_provider: Any = None, *, capture_content: bool = False) -> None:
        try:
            with host_logging_kept():
                from opentelemetry import trace
                from opentelemetry.trace import status
        except ImportError as exc:
            raise ImportError("tracing needs OpenTelemetry: pip install 'kaizen[otel]'") from exc
        self._trace = trace
        self._status = status
        self.tracer = trace.get_tracer("kaizen", tracer_provider=tracer_provider)
        self.capture_content = capture_content
        self._runs: dict[str, _Open | None] = {}  # a lone agent's run: its parent, or None
        self._workflows: dict[str, Workflow] = {}
        self._lone: set[str] = set()
        self._nodes: dict[tuple[str, str], _Open] = {}
        self._agents: dict[tuple[str, str], _AgentFacts] = {}
        self._tools: dict[tuple[str, str], _Open] = {}
        self._lock = threading.Lock()

    # -- spans ----------------------------------------------------------------------------------

    def _start(
        self,
        name: str,
        parent: _Open | None,
        start: float,
        attributes: Mapping[str, Any],
        *,
        client: bool = False,
    ) -> _Open:
        context = self._trace.set_span_in_context(parent.span) if parent is not None else None
        kinds = self._trace.SpanKind
        span = self.tracer.start_span(
            name,
            context=context,
            kind=kinds.CLIENT if client else kinds.INTERNAL,
            attributes={k: v for k, v in attributes.items() if v is not None},
            start_time=_ns(start),
        )
        return _Open(span, parent)

    def _end(self, opened: _Open, end: float, error: BaseException | None = None) -> None:
        span = opened.span
        if opened.calls:
            span.set_attribute("gen_ai.usage.input_tokens", opened.input_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", opened.output_tokens)
        if error is not None:
            span.set_attribute("error.type", type(error).__name__)
            span.set_status(self._status.Status(self._status.StatusCode.ERROR, _short(error)))
        span.end(end_time=_ns(end))

    # -- runs and nodes (driver thread) ---------------------------------------------------------

    def on_run_start(self, event: RunStarted) -> None:
        run_id, workflow = event.run_id, event.workflow
        outer = current_node_context()  # a run started inside another run's node nests there
        lone = _lone_agent(workflow)
        with self._lock:
            parent = self._nodes.get((outer.run_id, outer.node_id)) if outer else None
            self._workflows[run_id] = workflow
            if lone:  # the agent's span is the run's
                self._lone.add(run_id)
                self._runs[run_id] = parent
                return
            self._runs[run_id] = self._start(
                f"invoke_workflow {workflow.name}",
                parent,
                time.time(),
                {
                    "gen_ai.operation.name": "invoke_workflow",
                    "gen_ai.workflow.name": workflow.name,
                    "kaizen.run_id": run_id,
                },
            )

    def on_run_finish(self, event: RunFinished) -> None:
        with self._lock:
            opened = self._runs.pop(event.run_id, None)
            self._workflows.pop(event.run_id, None)
            if event.run_id in self._lone:
                self._lone.discard(event.run_id)
                return
        if opened is not None:
            opened.span.set_attribute("kaizen.run.status", str(event.status))
            self._end(opened, time.time(), event.error)

    def on_node_start(self, event: NodeStarted) -> None:
        run_id, node_id, node_type = event.run_id, event.node_id, event.node_type
        with self._lock:
            parent = self._runs.get(run_id)
            workflow = self._workflows.get(run_id)
        facts = None
        if node_type == AGENT_NODE_TYPE and workflow is not None:
            facts = _AgentFacts.of(workflow.nodes.get(node_id))
        if facts is not None:
            name, operation = f"invoke_agent {facts.name}", "invoke_agent"
            extra = {
                "gen_ai.agent.name": facts.name,
                "gen_ai.provider.name": facts.provider,
                "gen_ai.request.model": facts.model,
            }
        elif node_type == AGENT_NODE_TYPE:  # (an agent's node ids are its name when it runs alone)
            name, operation = f"invoke_agent {node_id}", "invoke_agent"
            extra = {"gen_ai.agent.name": node_id}
        else:
            name, operation, extra = f"execute_node {node_id}", None, {}
        with self._lock:
            if facts is not None:
                self._agents[(run_id, node_id)] = facts
            opened = self._nodes[(run_id, node_id)] = self._start(
                name,
                parent,
                event.time,
                {
                    "gen_ai.operation.name": operation,
                    "kaizen.node.id": event.node_id,
                    "kaizen.run_id": event.run_id,
                    "kaizen.node.type": node_type,
                    **extra,
                },
            )
            opened.awaits_model = operation == "invoke_agent" and facts is None

    def on_node_finish(self, event: NodeFinished) -> None:
        with self._lock:
            opened = self._nodes.pop((event.run_id, event.node_id), None)
            self._agents.pop((event.run_id, event.node_id), None)
        if opened is not None:
            opened.span.set_attribute("kaizen.node.status", str(event.status))
            opened.span.set_attribute("kaizen.node.attempts", event.attempts)
            self._end(opened, event.finished, event.error)

    # -- model and tool calls (the node's thread) -----------------------------------------------

    def on_model_call_start(self, event: ModelCallStarted) -> None:
        provider, name = provider_and_model(event.model)
        with self._lock:
            parent = self._nodes.get((event.run_id, event.node_id))
            facts = self._agents.get((event.run_id, event.node_id))
            if parent is not None and parent.awaits_model:
                parent.awaits_model = False
                parent.span.set_attribute("gen_ai.provider.name", provider)
                parent.span.set_attribute("gen_ai.request.model", name)
        opened = self._start(
            f"chat {name}",
            parent,
            time.time(),
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": provider,
                "gen_ai.request.model": name,
                **(facts.chat if facts is not None else {}),
            },
            client=True,
        )
        if self.capture_content:
            opened.span.set_attribute(
                "gen_ai.input.messages", _content(input_messages(event.messages))
            )
        _open_chat.set(opened)

    def on_model_call_finish(self, event: ModelCallFinished) -> None:
        reply, usage = event.reply, event.usage
        opened = _open_chat.get()
        if opened is None:  # a call whose start this hook did not see (a served reply)
            return
        _open_chat.set(None)
        span = opened.span
        span.set_attribute("gen_ai.response.model", provider_and_model(event.model)[1])
        provider_id = response_id(reply)
        if provider_id is not None:
            span.set_attribute("gen_ai.response.id", provider_id)
        if reply is not None and reply.finish_reason:
            span.set_attribute("gen_ai.response.finish_reasons", [str(reply.finish_reason)])
        if usage.cache_hits:
            span.set_attribute("kaizen.cache_hit", True)
        if usage.cost:
            span.set_attribute("kaizen.usage.cost", float(usage.cost))
        if self.capture_content and reply is not None:
            span.set_attribute("gen_ai.output.messages", _content(output_messages(reply)))
        with self._lock:
            opened.add_tokens(usage.prompt_tokens, usage.completion_tokens)
        self._end(opened, time.time(), event.error)

    def on_tool_call_start(self, event: ToolCallStarted) -> None:
        tool, call_id = event.tool, event.call_id
        with self._lock:
            parent = self._nodes.get((event.run_id, event.node_id))
            opened = self._tools[(event.run_id, call_id)] = self._start(
                f"execute_tool {tool}",
                parent,
                time.time(),
                {
                    "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.name": tool,
                    "gen_ai.tool.call.id": call_id,
                },
            )
        if self.capture_content:
            opened.span.set_attribute("gen_ai.tool.call.arguments", _content(event.arguments))

    def on_tool_call_finish(self, event: ToolCallFinished) -> None:
        record = event.record
        with self._lock:
            opened = self._tools.pop((event.run_id, event.call_id), None)
        if opened is None:
            return
        if self.capture_content and record.error is None:
            opened.span.set_attribute("gen_ai.tool.call.result", _content(record.output))
        failure = RuntimeError(record.error) if record.error is not None else None
        self._end(opened, time.time(), failure)


def _content(value: Any) -> str:
    """Content for a span attribute: JSON, key-shaped tokens redacted."""
    try:
        text = json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        text = str(value)
    return redact(text)


def _short(error: BaseException) -> str:
    return redact(f"{type(error).__name__}: {error}")[:500]


# -- the correlation id on log lines -------------------------------------------------------------


class CorrelationFilter(logging.Filter):
    """Adds ``run_id``, ``node_id``, ``correlation_id`` (the run id) and ``trace_id`` to every
    record that passes a handler it is on: use ``%(correlation_id)s`` in a format string."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = current_node_context()
        run_id = context.run_id if context is not None else "-"
        record.run_id = run_id
        record.node_id = context.node_id if context is not None else "-"
        record.correlation_id = run_id
        record.trace_id = _current_trace_id()
        return True


def _current_trace_id() -> str:
    opened = _open_chat.get()
    if opened is None:
        return "-"
    return format(opened.span.get_span_context().trace_id, "032x")


def enable_tracing(
    tracer_provider: Any = None,
    *,
    capture_content: bool = False,
    correlate_logs: bool = True,
) -> Callable[[], None]:
    """Trace every later run in this process (a `TracingHook` for all runtimes and agents) and,
    with `correlate_logs`, put a `CorrelationFilter` on the root logger's handlers and the
    ``kaizen`` logger's. Returns a function that undoes both."""
    hook = TracingHook(tracer_provider, capture_content=capture_content)
    remove_hook = add_process_hook(hook)
    correlation = CorrelationFilter()
    handlers: list[logging.Handler] = []
    if correlate_logs:
        handlers = [*logging.getLogger().handlers, *logging.getLogger("kaizen").handlers]
        for handler in handlers:
            handler.addFilter(correlation)

    def disable() -> None:
        remove_hook()
        for handler in handlers:
            handler.removeFilter(correlation)

    return disable
