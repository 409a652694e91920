"""`ExecutionMonitor`: counts, error rate, latency percentiles, tokens and cost per model, and
performance alerts, gathered by hooks from an agent's (or a runtime's) model calls and runs.

`agent.get_execution_monitor()` / `runtime.get_execution_monitor()` make one and register it.
Alerts (`set_performance_alerts`: latency in ms per call, error rate over the calls so far,
cost per run) go to the callbacks given to `on_alert` and to the log (logger
``kaizen.monitor``). With `enable_real_time_tracking()` each call is checked and logged as it
finishes; otherwise the checks run when each execution finishes.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kaizen.moments import ModelCallFinished, NodeFinished, RunFinished
from kaizen.observe.gathered import Gathered
from kaizen.runtime.hooks import ModelCallFinishHook, NodeFinishHook, RunFinishHook

__all__ = ["Alert", "ExecutionMonitor", "percentile"]

_log = logging.getLogger("kaizen.monitor")
MIN_CALLS_FOR_ERROR_RATE = 5  # an error rate over fewer calls says little


@dataclass(frozen=True, slots=True)
class Alert:
    """One threshold crossed: `kind` is "latency", "error_rate" or "cost_per_run"."""

    kind: str
    value: float
    threshold: float
    model: str
    run_id: str
    message: str


@dataclass(slots=True)
class _Call:
    latency: float
    prompt_tokens: int
    completion_tokens: int
    cost: float
    failed: bool


def percentile(values: list[float], share: float) -> float:
    """The `share` (0..1) percentile of `values` by nearest rank; 0.0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1))
    return ordered[rank]


class ExecutionMonitor(Gathered, ModelCallFinishHook, NodeFinishHook, RunFinishHook):
    """What the model calls of one agent (`node_id` given) or of every run of a runtime did."""

    name = "kaizen.monitor"

    def __init__(self, node_id: str | None = None) -> None:
        self.node_id = node_id
        self.real_time = False
        self.latency_threshold: float | None = None  # ms
        self.error_rate: float | None = None
        self.cost_per_run: float | None = None
        self.alerts: list[Alert] = []
        self._callbacks: list[Callable[[Alert], None]] = []
        self._calls: dict[str, list[_Call]] = defaultdict(list)
        self._run_cost: dict[str, float] = defaultdict(float)
        self._runs = 0
        super().__init__()  # the lock (kaizen.observe.gathered)

    # -- the ADR's interface --------------------------------------------------------------------

    def enable_real_time_tracking(self) -> None:
        """Check alert thresholds and log each model call as it finishes."""
        self.real_time = True

    def set_performance_alerts(
        self,
        latency_threshold: float | None = None,
        error_rate: float | None = None,
        cost_per_run: float | None = None,
        *,
        callback: Callable[[Alert], None] | None = None,
    ) -> None:
        """Alert when a call takes longer than `latency_threshold` ms, when the share of failed
        calls exceeds `error_rate` (0..1, once 5 calls were made), or a run costs more than
        `cost_per_run` (USD). `callback` (also `on_alert`) receives each `Alert`."""
        if error_rate is not None and not 0 <= error_rate <= 1:
            raise ValueError(f"error_rate is a share between 0 and 1, got {error_rate}")
        self.latency_threshold = latency_threshold
        self.error_rate = error_rate
        self.cost_per_run = cost_per_run
        if callback is not None:
            self.on_alert(callback)

    def on_alert(self, callback: Callable[[Alert], None]) -> None:
        self._callbacks.append(callback)

    def summary(self) -> dict[str, Any]:
        """Counts, errors, error rate, latency p50/p95/p99 (ms), tokens and cost: overall and
        under ``"models"`` per model."""
        with self._lock:
            per_model = {model: _summarise(calls) for model, calls in self._calls.items()}
            every = [call for calls in self._calls.values() for call in calls]
            overall = _summarise(every)
            overall["runs"] = self._runs
        overall["models"] = per_model
        return overall

    # -- hooks ----------------------------------------------------------------------------------

    def on_model_call_finish(self, event: ModelCallFinished) -> None:
        if self.node_id is not None and event.node_id != self.node_id:
            return
        run_id, model, usage, latency = event.run_id, event.model, event.usage, event.latency
        call = _Call(latency, usage.prompt_tokens, usage.completion_tokens, usage.cost,
                     event.error is not None)  # fmt: skip
        with self._lock:
            self._calls[model].append(call)
            self._run_cost[run_id] += usage.cost
        if self.real_time:
            _log.info("model %s: %.0f ms, %d tokens, %s", model, latency * 1000,
                      call.prompt_tokens + call.completion_tokens,
                      "failed" if call.failed else "ok")  # fmt: skip
            self._check_call(call, model, run_id)

    def on_node_finish(self, event: NodeFinished) -> None:
        if self.node_id is None or event.node_id != self.node_id:
            return  # a runtime's monitor counts runs at run finish
        self._finish_run(event.run_id)

    def on_run_finish(self, event: RunFinished) -> None:
        if self.node_id is None:
            self._finish_run(event.run_id)

    def _finish_run(self, run_id: str) -> None:
        with self._lock:
            self._runs += 1
            cost = self._run_cost.pop(run_id, 0.0)
            calls = list(self._calls.items())
        if not self.real_time:
            for model, model_calls in calls:
                if model_calls:
                    self._check_call(model_calls[-1], model, run_id)
        if self.cost_per_run is not None and cost > self.cost_per_run:
            message = f"run {run_id} cost ${cost:.4f}, over ${self.cost_per_run:.4f}"
            self._alert("cost_per_run", cost, self.cost_per_run, "", run_id, message)

    def _check_call(self, call: _Call, model: str, run_id: str) -> None:
        milliseconds = call.latency * 1000
        if self.latency_threshold is not None and milliseconds > self.latency_threshold:
            self._alert("latency", milliseconds, self.latency_threshold, model, run_id,
                        f"model {model} took {milliseconds:.0f} ms, over "
                        f"{self.latency_threshold:.0f} ms")  # fmt: skip
        if self.error_rate is not None:
            with self._lock:
                calls = list(self._calls[model])
            if len(calls) >= MIN_CALLS_FOR_ERROR_RATE:
                rate = sum(c.failed for c in calls) / len(calls)
                if rate > self.error_rate:
                    self._alert("error_rate", rate, self.error_rate, model, run_id,
                                f"model {model} failed {rate:.0%} of {len(calls)} calls, over "
                                f"{self.error_rate:.0%}")  # fmt: skip

    def _alert(
        self, kind: str, value: float, threshold: float, model: str, run_id: str, message: str
    ) -> None:
        alert = Alert(kind, value, threshold, model, run_id, message)
        with self._lock:
            self.alerts.append(alert)
        _log.warning("performance alert: %s", message)
        for callback in list(self._callbacks):
            try:
                callback(alert)
            except Exception:
                _log.exception("alert callback %r failed", callback)


def _summarise(calls: list[_Call]) -> dict[str, Any]:
    latencies = [call.latency * 1000 for call in calls]
    errors = sum(call.failed for call in calls)
    prompt = sum(call.prompt_tokens for call in calls)
    completion = sum(call.completion_tokens for call in calls)
    return {
        "calls": len(calls),
        "errors": errors,
        "error_rate": errors / len(calls) if calls else 0.0,
        "latency_ms": {
            "p50": percentile(latencies, 0.50),
            "p95": percentile(latencies, 0.95),
            "p99": percentile(latencies, 0.99),
        },
        "tokens": {"prompt": prompt, "completion": completion, "total": prompt + completion},
        "cost": sum(call.cost for call in calls),
    }
