"""Property tests of the scheduler on random DAGs: exactly-once, dependency order, sequential
equivalence, and eager starts (no node waits for anything but its own inputs)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaizen.nodes import Node, Port
from kaizen.runtime import LocalRuntime, NodeStatus, RunRecord
from kaizen.workflow import Workflow, WorkflowBuilder

Dag = tuple[int, list[list[int]], list[bool], list[float]]


@st.composite
def dags(draw: st.DrawFn, max_nodes: int = 12, max_sleep: float = 0.0) -> Dag:
    """n nodes; node i's predecessors are a subset of 0..i-1; each node sync or async."""
    n = draw(st.integers(1, max_nodes))
    preds = [
        sorted(draw(st.sets(st.integers(0, i - 1), max_size=3))) if i else [] for i in range(n)
    ]
    is_async = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    sleeps = draw(
        st.lists(st.sampled_from([0.0, max_sleep / 2, max_sleep]), min_size=n, max_size=n)
    )
    return n, preds, is_async, sleeps


def combine(index: int, inputs: dict[str, int]) -> int:
    return (index * 31 + sum(v * (k + 2) for k, v in enumerate(sorted(inputs.values())))) % 100_003


class Probe(Node):
    """Combines its inputs; logs each call so the test can count executions."""

    def __init__(self, index: int, preds: list[int], sleep: float, log: Counter[str]) -> None:
        self.index, self.preds, self.sleep, self.log = index, preds, sleep, log
        self.lock = threading.Lock()
        super().__init__(f"n{index}")

    def make_ports(self) -> tuple[list[Port], list[Port]]:
        return [Port(f"in{p}", int) for p in self.preds], [Port("out", int)]

    def run(self, **inputs: Any) -> dict[str, Any]:
        with self.lock:
            self.log[self.id] += 1
        if self.sleep:
            time.sleep(self.sleep)
        return {"out": combine(self.index, inputs)}


class AsyncProbe(Probe):
    async def arun(self, **inputs: Any) -> dict[str, Any]:
        self.log[self.id] += 1
        await asyncio.sleep(self.sleep)
        return {"out": combine(self.index, inputs)}


def build(dag: Dag, log: Counter[str]) -> Workflow:
    n, preds, is_async, sleeps = dag
    wb = WorkflowBuilder("random")
    for i in range(n):
        cls = AsyncProbe if is_async[i] else Probe
        wb.add_node_instance(cls(i, preds[i], sleeps[i], log))
    for i in range(n):
        for p in preds[i]:
            wb.add_connection(f"n{p}", "out", f"n{i}", f"in{p}")
    return wb.build()


def reference(dag: Dag) -> dict[str, dict[str, int]]:
    n, preds, _, _ = dag
    values: list[int] = []
    for i in range(n):
        values.append(combine(i, {f"in{p}": values[p] for p in preds[i]}))
    return {f"n{i}": {"out": values[i]} for i in range(n)}


def check_order(dag: Dag, record: RunRecord) -> None:
    _, preds, _, _ = dag
    for i, ps in enumerate(preds):
        node = record.nodes[f"n{i}"]
        assert node.status is NodeStatus.COMPLETED and node.started is not None
        for p in ps:
            finished = record.nodes[f"n{p}"].finished
            assert finished is not None and finished <= node.started, (i, p)


RUNTIME = LocalRuntime(max_concurrency=64)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags())
def test_random_dag_runs_each_node_once_in_order_like_sequential_python(dag: Dag) -> None:
    log: Counter[str] = Counter()
    results, record = RUNTIME.execute_with_record(build(dag, log))
    assert results == reference(dag)
    assert log == Counter({f"n{i}": 1 for i in range(dag[0])})
    check_order(dag, record)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags())
def test_random_dag_under_execute_async_with_low_concurrency(dag: Dag) -> None:
    log: Counter[str] = Counter()
    wf = build(dag, log)
    results, record = asyncio.run(LocalRuntime(max_concurrency=2).execute_async_with_record(wf))
    assert results == reference(dag)
    assert sum(log.values()) == dag[0]
    check_order(dag, record)


# Generous, so that a loaded machine does not fail it: a node must start within SLACK of its
# last input existing. Sleepers take 0.15 or 0.3 s, so a node that waited for an unrelated
# sleeper (a superstep barrier, a busy thread) would be late by at least 0.15 s.
SLACK = 0.12


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags(max_nodes=8, max_sleep=0.3))
def test_random_dag_with_sleeps_starts_every_node_eagerly(dag: Dag) -> None:
    log: Counter[str] = Counter()
    results, record = RUNTIME.execute_with_record(build(dag, log))
    assert results == reference(dag)
    check_order(dag, record)
    _, preds, _, _ = dag
    late = []
    for i, ps in enumerate(preds):
        ready_at = max((record.nodes[f"n{p}"].finished or 0.0 for p in ps), default=record.started)
        started = record.nodes[f"n{i}"].started or 0.0
        if started - ready_at > SLACK:
            late.append((f"n{i}", round(started - ready_at, 3)))
    assert not late, f"nodes started late (waited on something besides their inputs): {late}"
