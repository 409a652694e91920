"""The execution monitor and optimizer (kaizen.observe), on ScriptedModel."""

from __future__ import annotations

from typing import Any

import pytest

import kaizen
from kaizen.errors import ModelError
from kaizen.observe.monitor import Alert, percentile
from kaizen.testing import ScriptedModel


def test_the_summary_counts_calls_errors_latency_and_tokens_per_model() -> None:
    model = ScriptedModel(lambda messages: {"answer": "a"})
    agent = kaizen.create_agent("qa", "question -> answer", {"model": model})
    monitor = agent.get_execution_monitor()
    monitor.enable_real_time_tracking()
    alerts: list[Alert] = []
    monitor.set_performance_alerts(latency_threshold=0.0, callback=alerts.append)
    for n in range(4):
        agent.execute(question=f"q{n}")
    summary = monitor.summary()
    assert summary["calls"] == 4 and summary["errors"] == 0 and summary["runs"] == 4
    assert summary["models"][model.model_name]["calls"] == 4
    assert summary["tokens"]["total"] > 0
    assert summary["latency_ms"]["p50"] <= summary["latency_ms"]["p99"]
    assert [a.kind for a in alerts] == ["latency"] * 4


def test_an_error_rate_alert_fires_once_enough_calls_failed() -> None:
    def flaky(messages: Any) -> Any:
        raise ConnectionError("down")

    agent = kaizen.create_agent("down", "question -> answer",
                                {"model": ScriptedModel(flaky), "retries": 0})  # fmt: skip
    monitor = agent.get_execution_monitor()
    monitor.set_performance_alerts(error_rate=0.5)
    for _ in range(5):
        with pytest.raises(ModelError):
            agent.execute(question="q")
    assert monitor.summary()["error_rate"] == 1.0
    assert any(alert.kind == "error_rate" for alert in monitor.alerts)


def test_percentiles_by_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.95), percentile(values, 0.99)) == (
        50.0, 95.0, 99.0,
    )  # fmt: skip
    assert percentile([], 0.5) == 0.0


def test_repeated_inputs_suggest_caching_and_auto_optimization_applies_it() -> None:
    model = ScriptedModel(lambda messages: {"answer": "a"})
    agent = kaizen.create_agent("rep", "question -> answer", {"model": model})
    optimizer = agent.get_execution_optimizer()
    optimizer.set_optimization_targets(["latency", "accuracy", "cost"])
    for _ in range(3):
        agent.execute(question="same")
    (suggestion,) = optimizer.suggestions()
    assert suggestion.kind == "cache" and suggestion.evidence["most_repeats"] == 3
    optimizer.enable_auto_optimization()
    assert agent.config.cache is True and optimizer.applied
    with pytest.raises(ValueError, match="unknown optimization targets"):
        optimizer.set_optimization_targets(["speed"])


def test_frequent_re_asks_suggest_structured_output() -> None:
    replies = iter([{"confidence": "high"}, {"confidence": 0.5}] * 5)
    model = ScriptedModel(lambda messages: next(replies))
    agent = kaizen.create_agent("parse", "question -> confidence: float", {"model": model})
    optimizer = agent.get_execution_optimizer()
    for n in range(5):
        agent.execute(question=f"q{n}")
    kinds = [s.kind for s in optimizer.suggestions()]
    assert "structured_output" in kinds


def test_executions_one_after_another_suggest_concurrency_and_overlapping_ones_do_not() -> None:
    import asyncio

    model = ScriptedModel(lambda messages: {"answer": "a"}, latency=0.02)
    agent = kaizen.create_agent("serial", "question -> answer", {"model": model})
    optimizer = agent.get_execution_optimizer()
    for n in range(5):
        agent.execute(question=f"q{n}")
    [suggestion] = [s for s in optimizer.suggestions() if s.kind == "concurrency"]
    assert suggestion.evidence["executions"] == 5 and suggestion.evidence["overlapping"] == 0
    assert "latency" in suggestion.targets and not suggestion.safe

    together = kaizen.create_agent("together", "question -> answer", {"model": model})
    watcher = together.get_execution_optimizer()

    async def at_once() -> None:
        await asyncio.gather(*(together.execute_async(question=f"q{n}") for n in range(5)))

    asyncio.run(at_once())
    assert not [s for s in watcher.suggestions() if s.kind == "concurrency"]


def test_tool_calls_one_per_turn_suggest_calling_them_together() -> None:
    @kaizen.tool
    def lookup(n: int) -> int:
        """Look n up."""
        return n

    def one_per_turn(messages: list[dict[str, object]]) -> object:
        done = sum(1 for m in messages if m.get("role") == "tool")
        return ScriptedModel.tool_call("lookup", {"n": done}) if done < 3 else {"answer": "x"}

    agent = kaizen.create_agent(
        "stepwise", "question -> answer", {"model": ScriptedModel(one_per_turn)}, tools=[lookup]
    )
    optimizer = agent.get_execution_optimizer()
    agent.execute(question="?")
    [suggestion] = [s for s in optimizer.suggestions() if s.kind == "concurrency"]
    assert suggestion.evidence == {"executions": 1, "tool_calls": 3}
    assert "strategy='plan'" in suggestion.message

    def all_at_once(messages: list[dict[str, object]]) -> object:
        if any(m.get("role") == "tool" for m in messages):
            return {"answer": "x"}
        return ScriptedModel.tool_calls([("lookup", {"n": n}) for n in range(3)])

    together = kaizen.create_agent(
        "parallel", "question -> answer", {"model": ScriptedModel(all_at_once)}, tools=[lookup]
    )
    watcher = together.get_execution_optimizer()
    together.execute(question="?")
    assert not [s for s in watcher.suggestions() if s.kind == "concurrency"]


def test_a_runtime_has_a_monitor_of_all_its_runs() -> None:
    model = ScriptedModel(lambda messages: {"answer": "a"})
    builder = kaizen.WorkflowBuilder("two")
    builder.add_agent(kaizen.create_agent("one", "question -> answer", {"model": model}), "one")
    builder.add_agent(kaizen.create_agent("two", "question -> answer", {"model": model}), "two")
    runtime = kaizen.LocalRuntime()
    monitor = runtime.get_execution_monitor()
    assert runtime.get_execution_monitor() is monitor
    for _ in range(3):
        runtime.execute(builder.build(), {"question": "?"})
    summary = monitor.summary()
    assert summary["calls"] == 6 and summary["errors"] == 0
    assert summary["runs"] == 3
