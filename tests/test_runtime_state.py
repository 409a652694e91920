"""The dataflow state (`kaizen.runtime.state`), driven directly: random DAGs, random completion
orders, random failures, refusals and unproduced outputs give the statuses and delivered values
of a sequential reference; a run resumed from finished nodes ends the same and never restarts
them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kaizen.nodes import MISSING, Node, Port
from kaizen.runtime import state as dataflow
from kaizen.runtime.state import NodeState
from kaizen.workflow import WorkflowBuilder
from kaizen.workflow.plan import ExecutionPlan
from kaizen.workflow.workflow import Workflow

OUTPUTS = ("a", "b")


@dataclass(frozen=True)
class Spec:
    """One random node: which inputs are optional, whether it accepts partial inputs, and how
    it ends when it runs ("ok" with the outputs it produces, "fail" or "refuse")."""

    optional: tuple[bool, ...]
    partial: bool
    without_inputs: bool
    fate: str
    produces: tuple[str, ...]


def make_node_class(spec: Spec, n_inputs: int) -> type[Node]:
    class Random(Node):
        accepts_partial_inputs: ClassVar[bool] = spec.partial
        runs_without_inputs: ClassVar[bool] = spec.without_inputs
        input_ports = tuple(
            Port(f"in{k}", Any, None if spec.optional[k] else MISSING) for k in range(n_inputs)
        )
        output_ports = tuple(Port(name) for name in OUTPUTS)

        def run(self, **inputs: Any) -> dict[str, Any]:  # pragma: no cover - never called
            raise AssertionError

    return Random


@st.composite
def graphs(draw: st.DrawFn) -> tuple[Workflow, list[Spec]]:
    n = draw(st.integers(1, 9))
    edges: list[tuple[int, str, int]] = []  # (source, output, target)
    for target in range(1, n):
        for source in draw(st.sets(st.integers(0, target - 1), max_size=3)):
            edges.append((source, draw(st.sampled_from(OUTPUTS)), target))
    builder = WorkflowBuilder("random")
    specs = []
    for i in range(n):
        incoming = [e for e in edges if e[2] == i]
        spec = Spec(
            optional=tuple(draw(st.booleans()) for _ in incoming),
            partial=draw(st.booleans()),
            without_inputs=draw(st.booleans()),
            fate=draw(st.sampled_from(["ok", "ok", "ok", "fail", "refuse"])),
            produces=tuple(o for o in OUTPUTS if draw(st.booleans()) or o == "a"),
        )
        specs.append(spec)
        builder.add_node_instance(make_node_class(spec, len(incoming))(f"n{i}"))
    for i in range(n):
        incoming = [e for e in edges if e[2] == i]
        for k, (source, output, _) in enumerate(incoming):
            builder.add_connection(f"n{source}", output, f"n{i}", f"in{k}")
    return builder.build(), specs


def outputs_of(plan: ExecutionPlan, i: int, spec: Spec) -> dict[str, Any]:
    return {port: f"{plan.nodes[i].node_id}.{port}" for port in spec.produces}


def settle(state: dataflow.RunState, i: int, spec: Spec, propagate: bool) -> None:
    if spec.fate == "ok":
        dataflow.complete(state, i, outputs_of(state.plan, i, spec), "as specified")
    elif spec.fate == "fail":
        dataflow.fail(state, i, "Boom: as specified", propagate=propagate)
    else:
        dataflow.refuse(state, i, "budget exceeded", "as specified")


def simulate(
    plan: ExecutionPlan,
    specs: list[Spec],
    order: st.DataObject,
    finished: dict[int, dict[str, Any]] | None = None,
) -> tuple[list[NodeState], list[dict[str, Any]], list[int]]:
    """Run the state with a random interleaving of starts and completions (continue policy)."""
    state = dataflow.new_state(plan, [{} for _ in plan.nodes], finished)
    running: list[int] = []
    started: list[int] = []
    while state.ready or running:
        if state.ready and (not running or order.draw(st.booleans())):
            i = state.ready.popleft()
            dataflow.start(state, i)
            running.append(i)
            started.append(i)
        else:
            i = running.pop(order.draw(st.integers(0, len(running) - 1)))
            settle(state, i, specs[i], propagate=True)
    assert dataflow.is_finished(state)
    return state.status, state.inputs, started


def reference(
    plan: ExecutionPlan, specs: list[Spec]
) -> tuple[list[NodeState], list[dict[str, Any]]]:
    """The same rules, written plainly: nodes in topological order, one at a time."""
    status = [NodeState.WAITING] * len(plan.nodes)
    produced: dict[int, dict[str, Any]] = {}
    inputs: list[dict[str, Any]] = [{} for _ in plan.nodes]
    for p in plan.nodes:
        lost: list[tuple[str, bool]] = []  # (port, fatal)
        for source, output, port in p.edges_in:
            if status[source] is NodeState.DONE and output in produced[source]:
                inputs[p.index][port] = produced[source][output]
            else:
                lost.append((port, status[source] is NodeState.FAILED))
        if not lost:
            runs = True
        elif p.partial:
            runs = p.runs_without_inputs or any(port in inputs[p.index] for port in p.wired)
        else:
            runs = not any(fatal for _, fatal in lost) and not any(
                port in p.required and port not in inputs[p.index] for port, _ in lost
            )
        if not runs:
            status[p.index] = NodeState.SKIPPED
            continue
        spec = specs[p.index]
        if spec.fate == "ok":
            status[p.index] = NodeState.DONE
            produced[p.index] = outputs_of(plan, p.index, spec)
        elif spec.fate == "fail":
            status[p.index] = NodeState.FAILED
        else:
            status[p.index] = NodeState.SKIPPED
    return status, inputs


@settings(max_examples=300, deadline=None)
@given(graphs(), st.data())
def test_any_completion_order_ends_like_the_sequential_reference(
    graph: tuple[Workflow, list[Spec]], order: st.DataObject
) -> None:
    workflow, specs = graph
    status, inputs, _ = simulate(workflow.plan, specs, order)
    assert (status, inputs) == reference(workflow.plan, specs)


@settings(max_examples=200, deadline=None)
@given(graphs(), st.data())
def test_resuming_from_finished_nodes_ends_the_same_and_never_restarts_them(
    graph: tuple[Workflow, list[Spec]], order: st.DataObject
) -> None:
    workflow, specs = graph
    plan = workflow.plan
    full_status, full_inputs = reference(plan, specs)
    # A checkpoint: some completed nodes, every one of whose sources completed too.
    done = [p.index for p in plan.nodes if full_status[p.index] is NodeState.DONE]
    chosen = set(order.draw(st.lists(st.sampled_from(done), unique=True)) if done else [])
    finished = {
        i: outputs_of(plan, i, specs[i])
        for i in sorted(chosen)
        if all(s in chosen for s, _, _ in plan.nodes[i].edges_in)
    }
    status, inputs, started = simulate(plan, specs, order, finished)
    assert not set(started) & set(finished)  # finished nodes are not run again
    assert status == full_status
    for p in plan.nodes:  # what runs after the resume gets the same inputs as in one go
        if p.index not in finished:
            assert inputs[p.index] == full_inputs[p.index]


def test_fail_fast_cancel_separates_begun_nodes_from_queued_ones() -> None:
    builder = WorkflowBuilder()
    for name in ("a", "b", "c"):
        builder.add_node_instance(make_node_class(Spec((), False, False, "ok", OUTPUTS), 0)(name))
    plan = builder.build().plan
    state = dataflow.new_state(plan, [{}, {}, {}])
    for _ in range(3):
        dataflow.start(state, state.ready.popleft())
    cancelled = dataflow.cancel(state, [0, 2])  # b was handed over but never began
    assert cancelled == [0, 2]
    assert state.status == [NodeState.CANCELLED, NodeState.WAITING, NodeState.CANCELLED]
    assert dataflow.is_finished(state)


def test_a_transition_from_the_wrong_status_is_refused() -> None:
    builder = WorkflowBuilder()
    builder.add_node_instance(make_node_class(Spec((), False, False, "ok", OUTPUTS), 0)("a"))
    state = dataflow.new_state(builder.build().plan, [{}])
    with pytest.raises(RuntimeError, match="not RUNNING"):
        dataflow.complete(state, 0, {})  # READY, never started


def test_the_workflow_plans_old_name_is_the_execution_plan() -> None:
    """`kaizen.workflow.plan.Plan` was renamed `ExecutionPlan` (`kaizen.Plan` is an agent's plan
    of steps); the old name stays for one release."""
    from kaizen.workflow import plan

    assert plan.Plan is plan.ExecutionPlan
