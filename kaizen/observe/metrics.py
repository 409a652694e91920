"""Prometheus metrics (extra ``metrics``), as a hook: `MetricsHook`.

    kaizen_runs_total{status}                             runs by how they ended
    kaizen_node_duration_seconds{node_type, status}       node executions (histogram)
    kaizen_model_calls_total{model, outcome}              outcome: ok, error, cached
    kaizen_model_call_duration_seconds{model}             latency per call, retries included
    kaizen_model_errors_total{model, error}               error: the exception's class name
    kaizen_tokens_total{model, kind}                      kind: input, output
    kaizen_cost_usd_total{model}
    kaizen_tool_calls_total{tool, outcome}                outcome: ok, error
    kaizen_breaker_state{model}                           0 closed, 1 half-open, 2 open
    kaizen_breaker_transitions_total{model, state}

Labels are kept low-cardinality on purpose: model and tool names, node *types* (never node or
run ids), error class names. Breaker state is process-wide, so the hook watches every breaker
(`kaizen.watch_breakers`) from the moment it is made until `close()`.

Register it like any hook (`LocalRuntime(hooks=[MetricsHook()])`, `kaizen.add_process_hook`,
`agent.add_hook`); pass your own `registry` (a `prometheus_client.CollectorRegistry`) or use the
default one and expose it as usual (`prometheus_client.start_http_server`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kaizen.llm.resilience import breakers, watch_breakers
from kaizen.runtime.hooks import (
    ModelCallFinishHook,
    NodeFinishHook,
    NodeStartHook,
    RunFinishHook,
    ToolCallFinishHook,
)

if TYPE_CHECKING:
    from kaizen.moments import (
        ModelCallFinished,
        NodeFinished,
        NodeStarted,
        RunFinished,
        ToolCallFinished,
    )

__all__ = ["BREAKER_STATE_VALUES", "MetricsHook"]

BREAKER_STATE_VALUES = {"closed": 0, "half_open": 1, "open": 2}
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class MetricsHook(
    ModelCallFinishHook, NodeStartHook, NodeFinishHook, RunFinishHook, ToolCallFinishHook
):
    """Counters and histograms of runs, nodes, model and tool calls, and breaker gauges."""

    name = "prometheus"

    def __init__(self, registry: Any = None, *, namespace: str = "kaizen") -> None:
        try:
            import prometheus_client as prom
        except ImportError as exc:
            raise ImportError(
                "metrics need prometheus-client: pip install 'kaizen[metrics]'"
            ) from exc
        registry = prom.REGISTRY if registry is None else registry
        self.registry = registry
        common: dict[str, Any] = {"namespace": namespace, "registry": registry}
        self.runs = prom.Counter("runs", "Runs by final status", ["status"], **common)
        self.node_duration = prom.Histogram(
            "node_duration_seconds",
            "Node execution time",
            ["node_type", "status"],
            buckets=DURATION_BUCKETS,
            **common,
        )
        self.model_calls = prom.Counter(
            "model_calls", "Model calls by outcome", ["model", "outcome"], **common
        )
        self.model_duration = prom.Histogram(
            "model_call_duration_seconds",
            "Model call latency, retries and waits included",
            ["model"],
            buckets=DURATION_BUCKETS,
            **common,
        )
        self.model_errors = prom.Counter(
            "model_errors", "Model calls that failed, by error class", ["model", "error"], **common
        )
        self.tokens = prom.Counter("tokens", "Tokens used", ["model", "kind"], **common)
        self.cost = prom.Counter("cost_usd", "Cost of model calls in USD", ["model"], **common)
        self.tool_calls = prom.Counter(
            "tool_calls", "Tool calls by outcome", ["tool", "outcome"], **common
        )
        self.breaker_state = prom.Gauge(
            "breaker_state", "Circuit breaker: 0 closed, 1 half-open, 2 open", ["model"], **common
        )
        self.breaker_transitions = prom.Counter(
            "breaker_transitions", "Circuit breaker transitions", ["model", "state"], **common
        )
        self._node_types: dict[tuple[str, str], str] = {}  # open nodes: the label at finish
        self._lock = threading.Lock()
        for state in breakers():
            self.breaker_state.labels(state.model).set(BREAKER_STATE_VALUES[state.state])
        self._stop_watching: Callable[[], None] | None = watch_breakers(self._breaker_changed)

    def close(self) -> None:
        """Stop watching breakers (the metrics stay in the registry)."""
        if self._stop_watching is not None:
            self._stop_watching()
            self._stop_watching = None

    def _breaker_changed(self, state: Any, previous: str) -> None:
        self.breaker_state.labels(state.model).set(BREAKER_STATE_VALUES[state.state])
        self.breaker_transitions.labels(state.model, state.state).inc()

    def on_node_start(self, event: NodeStarted) -> None:
        with self._lock:
            self._node_types[(event.run_id, event.node_id)] = event.node_type

    def on_run_finish(self, event: RunFinished) -> None:
        self.runs.labels(str(event.status)).inc()

    def on_node_finish(self, event: NodeFinished) -> None:
        with self._lock:
            node_type = self._node_types.pop((event.run_id, event.node_id), "unknown")
        if event.duration is None:
            return
        self.node_duration.labels(node_type, str(event.status)).observe(max(0.0, event.duration))

    def on_model_call_finish(self, event: ModelCallFinished) -> None:
        model, usage, error = event.model, event.usage, event.error
        if error is not None:
            self.model_calls.labels(model, "error").inc()
            self.model_errors.labels(model, type(error).__name__).inc()
        else:
            self.model_calls.labels(model, "cached" if usage.cache_hits else "ok").inc()
        self.model_duration.labels(model).observe(event.latency)
        if usage.prompt_tokens:
            self.tokens.labels(model, "input").inc(usage.prompt_tokens)
        if usage.completion_tokens:
            self.tokens.labels(model, "output").inc(usage.completion_tokens)
        if usage.cost:
            self.cost.labels(model).inc(usage.cost)

    def on_tool_call_finish(self, event: ToolCallFinished) -> None:
        self.tool_calls.labels(event.tool, "ok" if event.error is None else "error").inc()
