"""OpenTelemetry tracing (extra ``otel``) and the correlation id on log lines, as hooks.

`TracingHook` turns the lifecycle moments into spans that follow the GenAI semantic
conventions:

    invoke_workflow {workflow}          one per run
      invoke_agent {node}               an agent's node (other nodes: execute_node {node})
        chat {model}                    each model call (fallbacks: one span per model tried)
        execute_tool {tool}             each tool call

with ``gen_ai.operation.name``, ``gen_ai.provider.name``, ``gen_ai.request.model``,
``gen_ai.response.model``, ``gen_ai.usage.input_tokens``, ``gen_ai.usage.output_tokens`` and
``gen_ai.response.finish_reasons`` on chat spans. Each call's tokens are added once to every
span above it (node, run, and the node and run a nested run was started from), so a parent's
totals are the sum of the calls beneath it, never counted twice. Message content
(``gen_ai.input.messages``, ``gen_ai.output.messages``, tool arguments and results) is recorded
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


def provider_and_model(model: str) -> tuple[str, str]:
    """``"openai/gpt-4o-mini"`` -> ("openai", "gpt-4o-mini"); no prefix: ("unknown", model)."""
    provider, slash, name = model.partition("/")
    return (provider, name) if slash and name else ("unknown", model)


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
            from opentelemetry import trace
            from opentelemetry.trace import status
        except ImportError as exc:
            raise ImportError("tracing needs OpenTelemetry: pip install 'kaizen[otel]'") from exc
        self._trace = trace
        self._status = status
        self.tracer = trace.get_tracer("kaizen", tracer_provider=tracer_provider)
        self.capture_content = capture_content
        self._runs: dict[str, _Open] = {}
        self._nodes: dict[tuple[str, str], _Open] = {}
        self._tools: dict[tuple[str, str], _Open] = {}
        self._lock = threading.Lock()

    # -- spans ----------------------------------------------------------------------------------

    def _start(self, name: str, parent: _Open | None, start: float, **attributes: Any) -> _Open:
        context = self._trace.set_span_in_context(parent.span) if parent is not None else None
        span = self.tracer.start_span(
            name,
            context=context,
            kind=self._trace.SpanKind.INTERNAL,
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
        with self._lock:
            parent = self._nodes.get((outer.run_id, outer.node_id)) if outer else None
            self._runs[run_id] = self._start(
                f"invoke_workflow {workflow.name}",
                parent,
                time.time(),
                **{"gen_ai.operation.name": "invoke_workflow", "kaizen.run_id": run_id},
            )

    def on_run_finish(self, event: RunFinished) -> None:
        with self._lock:
            opened = self._runs.pop(event.run_id, None)
        if opened is not None:
            opened.span.set_attribute("kaizen.run.status", str(event.status))
            self._end(opened, time.time(), event.error)

    def on_node_start(self, event: NodeStarted) -> None:
        run_id, node_id, node_type = event.run_id, event.node_id, event.node_type
        with self._lock:
            parent = self._runs.get(run_id)
            if node_type == AGENT_NODE_TYPE:
                name, operation = f"invoke_agent {node_id}", "invoke_agent"
                extra = {"gen_ai.agent.name": node_id}
            else:
                name, operation, extra = f"execute_node {node_id}", None, {}
            self._nodes[(run_id, node_id)] = self._start(
                name,
                parent,
                event.time,
                **{"gen_ai.operation.name": operation, "kaizen.node.id": node_id},
                **{"kaizen.node.type": node_type, **extra},
            )

    def on_node_finish(self, event: NodeFinished) -> None:
        with self._lock:
            opened = self._nodes.pop((event.run_id, event.node_id), None)
        if opened is not None:
            opened.span.set_attribute("kaizen.node.status", str(event.status))
            opened.span.set_attribute("kaizen.node.attempts", event.attempts)
            self._end(opened, event.finished, event.error)

    # -- model and tool calls (the node's thread) -----------------------------------------------

    def on_model_call_start(self, event: ModelCallStarted) -> None:
        provider, name = provider_and_model(event.model)
        with self._lock:
            parent = self._nodes.get((event.run_id, event.node_id))
        opened = self._start(
            f"chat {name}",
            parent,
            time.time(),
            **{
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": provider,
                "gen_ai.request.model": name,
            },
        )
        if self.capture_content:
            opened.span.set_attribute("gen_ai.input.messages", _content(event.messages))
        _open_chat.set(opened)

    def on_model_call_finish(self, event: ModelCallFinished) -> None:
        reply, usage = event.reply, event.usage
        opened = _open_chat.get()
        if opened is None:  # a call whose start this hook did not see (a served reply)
            return
        _open_chat.set(None)
        span = opened.span
        span.set_attribute("gen_ai.response.model", provider_and_model(event.model)[1])
        if reply is not None and reply.finish_reason:
            span.set_attribute("gen_ai.response.finish_reasons", [str(reply.finish_reason)])
        if usage.cache_hits:
            span.set_attribute("kaizen.cache_hit", True)
        if usage.cost:
            span.set_attribute("kaizen.usage.cost", float(usage.cost))
        if self.capture_content and reply is not None:
            answer = [{"role": "assistant", "content": reply.text}]
            span.set_attribute("gen_ai.output.messages", _content(answer))
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
                **{
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
