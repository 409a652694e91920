"""Property tests for `WorkflowBuilder.build()`: random valid DAGs build with exactly their edges
and a valid topological order; a random DAG with one injected fault fails with a
`WorkflowValidationError` that names that fault (and nothing else)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from hypothesis import given, settings
from hypothesis import strategies as st

from kaizen.errors import WorkflowValidationError
from kaizen.nodes import Node, Port, register_node_type
from kaizen.workflow import WorkflowBuilder


@register_node_type(name="tbp_Box")
class Box(Node):
    """A node whose ports come from config: `ins` / `outs` map port names to types; every node
    also has an optional int input `extra`, the target of injected faults."""

    config_keys: ClassVar[frozenset[str] | None] = frozenset({"ins", "outs"})

    def make_ports(self) -> tuple[Iterable[Port], Iterable[Port]]:
        ins = [Port(name, tp) for name, tp in self.config.get("ins", {}).items()]
        ins.append(Port("extra", int, default=0))
        outs = [Port(name, tp) for name, tp in self.config.get("outs", {"out": int}).items()]
        return ins, outs

    def run(self, **inputs: Any) -> dict[str, Any]:
        return {name: sum(v for v in inputs.values()) for name in self.outputs}


@dataclass
class Dag:
    size: int
    edges: list[tuple[int, int]]  # (source, target), source < target

    def builder(self) -> WorkflowBuilder:
        builder = WorkflowBuilder("random")
        for i in range(self.size):
            preds = [s for s, t in self.edges if t == i]
            builder.add_node("tbp_Box", f"n{i}", {"ins": {f"in_{s}": int for s in preds}})
        for s, t in self.edges:
            builder.add_connection(f"n{s}", "out", f"n{t}", f"in_{s}")
        return builder


@st.composite
def dags(draw: st.DrawFn, min_size: int = 3) -> Dag:
    size = draw(st.integers(min_size, 10))
    edges = [(0, 1)]  # at least one edge, for the faults that need one
    for target in range(2, size):
        for source in range(target):
            if draw(st.booleans()):
                edges.append((source, target))
    return Dag(size, edges)


@settings(max_examples=60, deadline=None)
@given(dags(min_size=2))
def test_random_valid_dags_build_with_their_edges_in_topological_order(dag: Dag) -> None:
    workflow = dag.builder().build(parameters={})
    assert set(workflow.nodes) == {f"n{i}" for i in range(dag.size)}
    assert {(c.source, c.source_port, c.target, c.target_port) for c in workflow.connections} == {
        (f"n{s}", "out", f"n{t}", f"in_{s}") for s, t in dag.edges
    }
    assert set(workflow.graph.edges) == {(f"n{s}", f"n{t}") for s, t in dag.edges}
    position = {node_id: index for index, node_id in enumerate(workflow.order)}
    assert sorted(position) == sorted(workflow.nodes)
    for s, t in dag.edges:
        assert position[f"n{s}"] < position[f"n{t}"]
    assert workflow.open_inputs == ()


FAULTS = [
    "unknown_type",
    "duplicate_id",
    "unknown_node",
    "unknown_port",
    "fed_twice",
    "type_mismatch",
    "cycle",
    "open_input",
    "ambiguous",
]


@settings(max_examples=150, deadline=None)
@given(dag=dags(), fault=st.sampled_from(FAULTS), data=st.data())
def test_one_injected_fault_is_reported_by_name(dag: Dag, fault: str, data: st.DataObject) -> None:
    builder = dag.builder()
    pick = data.draw(st.integers(0, dag.size - 1), label="node")
    victim = f"n{pick}"
    parameters: dict[str, Any] | None = None

    if fault == "unknown_type":
        builder = WorkflowBuilder("random")
        for i in range(dag.size):
            preds = [s for s, t in dag.edges if t == i]
            kind = "tbp_Bx" if i == pick else "tbp_Box"
            builder.add_node(kind, f"n{i}", {"ins": {f"in_{s}": int for s in preds}})
        for s, t in dag.edges:
            builder.add_connection(f"n{s}", "out", f"n{t}", f"in_{s}")
        expected = [victim, "unknown node type 'tbp_Bx'", "'tbp_Box'"]
    elif fault == "duplicate_id":
        builder.add_node("tbp_Box", victim)
        expected = [f"duplicate node id {victim!r}"]
    elif fault == "unknown_node":
        builder.add_connection("ghost", "out", victim, "extra")
        expected = ["unknown source node 'ghost'"]
    elif fault == "unknown_port":
        builder.add_connection(victim, "out", "n0", "missing_port")
        expected = ["'n0' has no input port 'missing_port'", "extra"]
    elif fault == "fed_twice":
        target = data.draw(st.integers(2, dag.size - 1), label="target")
        builder.add_connection("n0", "out", f"n{target}", "extra")
        builder.add_connection("n1", "out", f"n{target}", "extra")
        expected = [f"n{target}.extra is fed twice", "n0.out", "n1.out"]
    elif fault == "type_mismatch":
        builder.add_node("tbp_Box", "text", {"outs": {"out": str}})
        builder.add_connection("text", "out", victim, "extra")
        expected = ["text.out produces str", f"{victim}.extra expects int"]
    elif fault == "cycle":
        source, target = data.draw(st.sampled_from(dag.edges), label="edge")
        builder.add_connection(f"n{target}", "out", f"n{source}", "extra")
        expected = ["cycle: ", f"n{source}", f"n{target}"]
    elif fault == "open_input":
        builder.add_node("tbp_Box", "needy", {"ins": {"need": int}})
        parameters = {}
        expected = ["missing required input", "needy.need"]
    else:  # ambiguous
        builder.add_node("tbp_Box", "pair", {"ins": {"p": int, "q": int}})
        builder.add_connection(victim, "pair")
        parameters = {"pair": {"p": 1, "q": 2}}
        expected = ["ambiguous", f"{victim}.out -> pair.p", f"{victim}.out -> pair.q"]

    try:
        builder.build(parameters=parameters)
    except WorkflowValidationError as error:
        problems = error.problems
    else:
        raise AssertionError(f"fault {fault!r} was not reported")
    assert len(problems) == 1, problems
    for fragment in expected:
        assert fragment in problems[0], (fragment, problems[0])


@settings(max_examples=30, deadline=None)
@given(dag=dags(), data=st.data())
def test_declaration_order_does_not_change_the_workflow(dag: Dag, data: st.DataObject) -> None:
    reference = dag.builder().build()
    calls: list[tuple[str, tuple[Any, ...]]] = []
    for i in range(dag.size):
        preds = [s for s, t in dag.edges if t == i]
        calls.append(("node", ("tbp_Box", f"n{i}", {"ins": {f"in_{s}": int for s in preds}})))
    for s, t in dag.edges:
        calls.append(("connection", (f"n{s}", "out", f"n{t}", f"in_{s}")))
    shuffled = data.draw(st.permutations(calls))
    builder = WorkflowBuilder("random")
    for kind, args in shuffled:
        if kind == "node":
            builder.add_node(*args)
        else:
            builder.add_connection(*args)
    workflow = builder.build()
    assert set(workflow.connections) == set(reference.connections)
    assert set(workflow.nodes) == set(reference.nodes)
