"""`ExecutionOptimizer`: suggestions computed from an agent's recorded calls, each with its
evidence, and auto-optimization that applies only the safe one (caching).

What it looks for (a hook on the agent's model calls and node runs):

- repeated inputs (the same prompt sent 3 times or more) → cache model calls;
- frequent parse retries (over a fifth of executions needed a re-ask) → structured output or
  an easier signature;
- a slow model on short answers (median over 2 s for replies under 50 tokens) → a faster model;
- sequential independent work → concurrency: executions that never overlap (5 or more, one
  after another) → run them at once; tool calls made one per turn, never overlapping (3 or
  more in an execution) → let the model call them in one turn, or plan (`strategy="plan"`).

`enable_auto_optimization()` turns caching on for the agent once repeated inputs are seen, and
says so (`applied`, and the log ``kaizen.optimizer``). Targets order the suggestions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from kaizen.moments import ModelCallFinished, ModelCallStarted, NodeFinished, ToolCallFinished
from kaizen.observe.gathered import Gathered
from kaizen.runtime.hooks import (
    ModelCallFinishHook,
    ModelCallStartHook,
    NodeFinishHook,
    ToolCallFinishHook,
)

if TYPE_CHECKING:
    from kaizen.agents.agent import Agent

__all__ = ["ExecutionOptimizer", "Suggestion"]

_log = logging.getLogger("kaizen.optimizer")
TARGETS = ("latency", "accuracy", "cost")
REPEATS_FOR_CACHE = 3
SEQUENTIAL_EXECUTIONS = 5  # executions one after another before suggesting concurrency
SEQUENTIAL_TOOL_CALLS = 3  # tool calls one at a time in one execution, likewise


@dataclass(frozen=True, slots=True)
class Suggestion:
    kind: str  # "cache", "structured_output", "faster_model", "concurrency"
    message: str
    evidence: Mapping[str, Any]
    targets: tuple[str, ...]
    safe: bool = False  # auto-optimization may apply it
    applied: bool = False


@dataclass(slots=True)
class _History:
    prompts: Counter[str] = field(default_factory=Counter)
    calls_per_run: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    executions: int = 0
    reasked: int = 0
    latencies: dict[str, list[tuple[float, int]]] = field(default_factory=lambda: defaultdict(list))
    spans: list[tuple[float, float]] = field(default_factory=list)  # executions: start, end
    tool_spans: dict[str, list[tuple[float, float]]] = field(
        default_factory=lambda: defaultdict(list)
    )  # per run: each tool call's start and end
    serial_tool_runs: list[int] = field(default_factory=list)  # calls in runs with no overlap


class ExecutionOptimizer(
    Gathered, ModelCallStartHook, ModelCallFinishHook, NodeFinishHook, ToolCallFinishHook
):
    name = "kaizen.optimizer"

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.auto = False
        self.targets: tuple[str, ...] = TARGETS
        self.applied: list[str] = []
        self._history = _History()
        super().__init__()  # the lock (kaizen.observe.gathered)

    def enable_auto_optimization(self) -> None:
        """Apply safe suggestions (caching) as soon as their evidence is there."""
        self.auto = True
        self._maybe_apply()

    def set_optimization_targets(self, targets: Sequence[str]) -> None:
        unknown = [t for t in targets if t not in TARGETS]
        if unknown:
            raise ValueError(f"unknown optimization targets {unknown}; choose from {TARGETS}")
        self.targets = tuple(targets)

    def suggestions(self) -> list[Suggestion]:
        """What the recorded history suggests, most relevant to the targets first."""
        history = self._history
        found: list[Suggestion] = []
        with self._lock:
            repeated = {k: n for k, n in history.prompts.items() if n >= REPEATS_FOR_CACHE}
            executions, reasked = history.executions, history.reasked
            latencies = {m: list(v) for m, v in history.latencies.items()}
            spans = list(history.spans)
            serial_tools = list(history.serial_tool_runs)
        if repeated:
            cached = self.agent.config.cache not in (None, False)
            found.append(Suggestion(
                "cache", "the same prompts recur: cache model calls (config cache=True)",
                {"repeated_prompts": len(repeated), "most_repeats": max(repeated.values())},
                ("latency", "cost"), safe=True, applied=cached,
            ))  # fmt: skip
        if executions >= 5 and reasked / executions > 0.2:
            found.append(Suggestion(
                "structured_output", "replies often fail to parse: use a model with structured "
                "output (json_schema) or simplify the signature",
                {"executions": executions, "re_asked": reasked}, ("accuracy", "latency", "cost"),
            ))  # fmt: skip
        for model, samples in latencies.items():
            short = [latency for latency, tokens in samples if tokens < 50]
            if len(short) >= 3 and statistics.median(short) > 2.0:
                found.append(Suggestion(
                    "faster_model", f"{model} is slow on short answers: try a smaller model",
                    {"model": model, "short_replies": len(short),
                     "median_latency_s": statistics.median(short)}, ("latency", "cost"),
                ))  # fmt: skip
        if len(spans) >= SEQUENTIAL_EXECUTIONS and not _overlapping(spans):
            busy = sum(end - start for start, end in spans)
            found.append(Suggestion(
                "concurrency", "executions run one after another: run independent ones at once "
                "(asyncio.gather over execute_async, or agents side by side in a workflow)",
                {"executions": len(spans), "overlapping": 0, "busy_seconds": round(busy, 3),
                 "wall_seconds": round(spans[-1][1] - spans[0][0], 3)}, ("latency",),
            ))  # fmt: skip
        if serial_tools:
            found.append(Suggestion(
                "concurrency", "tool calls ran one per turn, never at once: let the model ask "
                "for independent calls in one turn, or plan them (config strategy='plan', whose "
                "independent steps run at once)",
                {"executions": len(serial_tools), "tool_calls": sum(serial_tools)},
                ("latency", "cost"),
            ))  # fmt: skip
        return sorted(found, key=lambda s: min(_rank(t, self.targets) for t in s.targets))

    # -- hooks ----------------------------------------------------------------------------------

    def on_model_call_start(self, event: ModelCallStarted) -> None:
        messages = json.dumps(list(event.messages), sort_keys=True, default=str)
        key = hashlib.sha256(messages.encode())
        with self._lock:
            self._history.prompts[key.hexdigest()] += 1
            self._history.calls_per_run[event.run_id] += 1

    def on_model_call_finish(self, event: ModelCallFinished) -> None:
        if event.reply is not None:
            call = (event.latency, event.usage.completion_tokens)
            with self._lock:
                self._history.latencies[event.model].append(call)

    def on_node_finish(self, event: NodeFinished) -> None:
        run_id, started, finished = event.run_id, event.started, event.finished
        with self._lock:
            calls = self._history.calls_per_run.pop(run_id, 0)
            self._history.executions += 1
            if started is not None:
                self._history.spans.append((started, finished))
            tools = self._history.tool_spans.pop(run_id, [])
            if len(tools) >= SEQUENTIAL_TOOL_CALLS and not _overlapping(tools):
                self._history.serial_tool_runs.append(len(tools))
            if calls > 1 and not self.agent.has_tools:
                self._history.reasked += 1
        if self.auto:
            self._maybe_apply()

    def on_tool_call_finish(self, event: ToolCallFinished) -> None:
        record = event.record
        with self._lock:
            self._history.tool_spans[event.run_id].append(
                (record.started, record.started + record.duration)
            )

    def _maybe_apply(self) -> None:
        for suggestion in self.suggestions():
            if suggestion.safe and not suggestion.applied and suggestion.kind == "cache":
                self.agent.configure(cache=True)
                note = f"caching enabled for agent {self.agent.name!r}: {dict(suggestion.evidence)}"
                self.applied.append(note)
                _log.info("auto-optimization: %s", note)


def _overlapping(spans: Sequence[tuple[float, float]]) -> bool:
    """Whether any two of the (start, end) spans overlap."""
    ordered = sorted(spans)
    return any(later[0] < earlier[1] for earlier, later in pairwise(ordered))


def _rank(target: str, targets: Iterable[str]) -> int:
    order = list(targets)
    return order.index(target) if target in order else len(order)
