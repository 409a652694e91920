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

Hooks on one registry share its collectors: a second `MetricsHook` (a re-run notebook cell, one
hook per runtime) counts into those the first registered, and one watcher per registry counts
each breaker transition once.

Register it like any hook (`LocalRuntime(hooks=[MetricsHook()])`, `kaizen.add_process_hook`,
`agent.add_hook`); pass your own `registry` (a `prometheus_client.CollectorRegistry`) or use the
default one and expose it as usual (`prometheus_client.start_http_server`).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kaizen.errors import ConfigError
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

        def made(kind: Any, name: str, *args: Any, **kwargs: Any) -> Any:
            return _collector(registry, namespace, kind, name, *args, **kwargs)

        self.runs = made(prom.Counter, "runs", "Runs by final status", ["status"])
        self.node_duration = made(
            prom.Histogram,
            "node_duration_seconds",
            "Node execution time",
            ["node_type", "status"],
            buckets=DURATION_BUCKETS,
        )
        self.model_calls = made(
            prom.Counter, "model_calls", "Model calls by outcome", ["model", "outcome"]
        )
        self.model_duration = made(
            prom.Histogram,
            "model_call_duration_seconds",
            "Model call latency, retries and waits included",
            ["model"],
            buckets=DURATION_BUCKETS,
        )
        self.model_errors = made(
            prom.Counter,
            "model_errors",
            "Model calls that failed, by error class",
            ["model", "error"],
        )
        self.tokens = made(prom.Counter, "tokens", "Tokens used", ["model", "kind"])
        self.cost = made(prom.Counter, "cost_usd", "Cost of model calls in USD", ["model"])
        self.tool_calls = made(
            prom.Counter, "tool_calls", "Tool calls by outcome", ["tool", "outcome"]
        )
        self.breaker_state = made(
            prom.Gauge, "breaker_state", "Circuit breaker: 0 closed, 1 half-open, 2 open", ["model"]
        )
        self.breaker_transitions = made(
            prom.Counter, "breaker_transitions", "Circuit breaker transitions", ["model", "state"]
        )
        self._node_types: dict[tuple[str, str], str] = {}  # open nodes: the label at finish
        self._lock = threading.Lock()
        watch = _shared(
            registry,
            f"{namespace} breaker watch",
            lambda: _BreakerWatch(self.breaker_state, self.breaker_transitions),
        )
        self._stop_watching: Callable[[], None] | None = watch.start()

    def close(self) -> None:
        """Stop watching breakers (the metrics stay in the registry)."""
        if self._stop_watching is not None:
            self._stop_watching()
            self._stop_watching = None

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


class _BreakerWatch:
    """Keeps the breaker gauges of one registry current: one watcher, however many hooks share
    the gauges (each transition is counted once), from the first hook's start to the last
    one's stop."""

    def __init__(self, state: Any, transitions: Any) -> None:
        self.state = state
        self.transitions = transitions
        self.users = 0
        self._stop: Callable[[], None] | None = None

    def start(self) -> Callable[[], None]:
        with _made_lock:
            self.users += 1
            if self.users == 1:
                for breaker in breakers():
                    self.state.labels(breaker.model).set(BREAKER_STATE_VALUES[breaker.state])
                self._stop = watch_breakers(self._changed)
        return self._release

    def _release(self) -> None:
        with _made_lock:
            self.users -= 1
            if self.users == 0 and self._stop is not None:
                self._stop()
                self._stop = None

    def _changed(self, state: Any, previous: str) -> None:
        self.state.labels(state.model).set(BREAKER_STATE_VALUES[state.state])
        self.transitions.labels(state.model, state.state).inc()


# the collectors made per registry, by full name: a second hook on a registry (a re-run notebook
# cell, one hook per runtime) counts into the same ones instead of registering them again
_made: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()
_made_lock = threading.RLock()


def _shared(registry: Any, key: str, make: Callable[[], Any]) -> Any:
    """What `make()` made for `registry` under `key` before, else what it makes now."""
    with _made_lock:
        known = _made.setdefault(registry, {})
        if key not in known:
            known[key] = make()
        return known[key]


def _collector(registry: Any, namespace: str, kind: Any, name: str, *args: Any, **kw: Any) -> Any:
    """The collector `namespace`_`name` of `registry`: the one made before, else a new one."""
    full = f"{namespace}_{name}" if namespace else name

    def make() -> Any:
        try:
            return kind(name, *args, namespace=namespace, registry=registry, **kw)
        except ValueError as exc:  # a name some other code registered
            raise ConfigError(
                f"MetricsHook: the Prometheus registry already has a metric {full!r} that "
                f"Kaizen did not make ({exc}); pass MetricsHook(namespace=...) to use other "
                "names, or another registry"
            ) from None

    return _shared(registry, full, make)
