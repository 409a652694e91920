"""`WorkflowBuilder`: declaring, port matching, `${}` references, every validation rule, and the
immutability of the built `Workflow`."""

from __future__ import annotations

from typing import Any, TypedDict

import networkx as nx
import pytest

from kaizen.errors import ParameterError, WorkflowValidationError
from kaizen.nodes import FunctionNode, Node, Port, node
from kaizen.runtime import LocalRuntime
from kaizen.workflow import Connection, Workflow, WorkflowBuilder


@node
def tb_source() -> int:
    return 1


@node
def tb_double(x: int) -> int:
    return 2 * x


@node
def tb_add(a: int, b: int) -> int:
    return a + b


@node
def tb_format(result: int, prefix: str = "") -> str:
    return f"{prefix}{result}"


@node
def tb_shout(text: str) -> str:
    return text.upper()


class Pair(TypedDict):
    left: int
    right: int


@node
def tb_pair(x: int) -> Pair:
    return {"left": x, "right": -x}


def problems_of(builder: WorkflowBuilder, **kwargs: Any) -> list[str]:
    with pytest.raises(WorkflowValidationError) as info:
        builder.build(**kwargs)
    return info.value.problems


def edges(workflow: Workflow) -> set[str]:
    return {str(c) for c in workflow.connections}


# ---- declaring and building ----------------------------------------------------------------------


def test_add_node_accepts_names_classes_node_functions_and_callables() -> None:
    def plain(x: int) -> int:
        return x

    builder = WorkflowBuilder("kinds")
    assert builder.add_node("tb_source", "by_name") == "by_name"
    builder.add_node(tb_double, "by_function")
    builder.add_node(tb_double.node_class, "by_class")
    builder.add_node(plain, "by_callable", {"x": 4})
    builder.add_node("FunctionNode", "by_config", {"function": plain, "x": 1})
    instance = FunctionNode("by_instance", {"function": plain, "x": 2})
    assert builder.add_node_instance(instance) == "by_instance"
    builder.add_connection("by_name", "result", "by_function", "x")
    builder.add_connection("by_function", "result", "by_class", "x")
    workflow = builder.build()
    assert workflow.name == "kinds"
    assert set(workflow.nodes) == {
        "by_name",
        "by_function",
        "by_class",
        "by_callable",
        "by_config",
        "by_instance",
    }
    assert workflow.nodes["by_instance"] is instance
    assert workflow.nodes["by_callable"].run(x=3) == {"result": 3}
    assert workflow.bound_inputs["by_callable"] == {"x": 4}
    assert workflow.bound_inputs["by_instance"] == {"x": 2}
    assert workflow.open_inputs == ()


def test_calls_may_come_in_any_order() -> None:
    builder = WorkflowBuilder()
    builder.add_connection("a", "b")
    builder.add_connection("b", "result", "c", "result")
    builder.add_node(tb_format, "c")
    builder.add_node(tb_double, "b")
    builder.add_node(tb_source, "a")
    workflow = builder.build()
    assert edges(workflow) == {"a.result -> b.x", "b.result -> c.result"}
    assert workflow.order == ("a", "b", "c")


def test_timeout_and_retries_become_the_node_policy() -> None:
    builder = WorkflowBuilder()
    builder.add_node(tb_source, "a", timeout=2.5, retries=3)
    builder.add_node(tb_source, "b")
    workflow = builder.build()
    assert workflow.nodes["a"].policy.timeout == 2.5
    assert workflow.nodes["a"].policy.retries == 3
    assert workflow.nodes["b"].policy.timeout is None


def test_graph_has_nodes_edges_and_port_pairs() -> None:
    builder = WorkflowBuilder()
    builder.add_node(tb_pair, "p", {"x": 1})
    builder.add_node(tb_add, "sum")
    builder.add_connection("p", "left", "sum", "a")
    builder.add_connection("p", "right", "sum", "b")
    workflow = builder.build()
    graph = workflow.graph
    assert set(graph.nodes) == {"p", "sum"}
    assert graph.nodes["p"]["node"] is workflow.nodes["p"]
    assert set(graph.edges["p", "sum"]["ports"]) == {("left", "a"), ("right", "b")}


def test_open_inputs_are_recorded_and_build_without_parameters() -> None:
    builder = WorkflowBuilder()
    builder.add_node(tb_add, "sum", {"b": 1})
    builder.add_node(tb_format, "fmt")
    builder.add_connection("sum", "fmt")
    workflow = builder.build()
    assert workflow.open_inputs == (("sum", "a"),)
    results, _ = LocalRuntime().execute(workflow, parameters={"a": 5})
    assert results["sum"] == {"result": 6}
    with pytest.raises(ParameterError, match=r"sum\.a"):
        LocalRuntime().execute(workflow, parameters={})


def test_building_twice_gives_independent_workflows_and_builder_stays_usable() -> None:
    builder = WorkflowBuilder()
    builder.add_node(tb_source, "a")
    first = builder.build()
    builder.add_node(tb_double, "b")
    builder.add_connection("a", "b")
    second = builder.build()
    assert set(first.nodes) == {"a"}
    assert set(second.nodes) == {"a", "b"}
    assert first.nodes["a"] is not second.nodes["a"]
    assert first.graph is not second.graph


def test_copy_is_independent() -> None:
    builder = WorkflowBuilder("orig")
    builder.add_node(tb_source, "a")
    clone = builder.copy()
    clone.add_node(tb_double, "b")
    clone.add_connection("a", "b")
    assert set(builder.nodes) == {"a"}
    assert set(clone.nodes) == {"a", "b"}
    assert clone.name == "orig"
    assert len(builder.connections) == 0
    assert set(clone.build().nodes) == {"a", "b"}


def test_nodes_view_is_read_only() -> None:
    builder = WorkflowBuilder()
    builder.add_node("tb_double", "b", {"x": 1})
    spec = builder.nodes["b"]
    assert (spec.node_id, spec.type_name, dict(spec.config)) == ("b", "tb_double", {"x": 1})
    with pytest.raises(TypeError):
        builder.nodes["c"] = spec  # type: ignore[index]


# ---- immutability --------------------------------------------------------------------------------


def test_workflow_is_immutable() -> None:
    builder = WorkflowBuilder()
    builder.add_node(tb_source, "a")
    builder.add_node(tb_double, "b")
    builder.add_connection("a", "b")
    workflow = builder.build()
    assert nx.is_frozen(workflow.graph)
    with pytest.raises(nx.NetworkXError):
        workflow.graph.add_edge("b", "a")
    with pytest.raises(nx.NetworkXError):
        workflow.graph.remove_node("a")
    with pytest.raises(TypeError):
        workflow.nodes["c"] = workflow.nodes["a"]  # type: ignore[index]
    with pytest.raises(TypeError):
        workflow.bound_inputs["a"] = {}  # type: ignore[index]
    with pytest.raises(AttributeError):
        workflow.graph = nx.DiGraph()  # type: ignore[misc]
    assert isinstance(workflow.connections, tuple)
    assert isinstance(workflow.graph.edges["a", "b"]["ports"], tuple)


# ---- connection matching -------------------------------------------------------------------------


def test_two_argument_connection_matches_every_same_named_port() -> None:
    @node(name="tb_two_out", outputs={"a": int, "b": int})
    def two_out() -> dict[str, int]:
        return {"a": 1, "b": 2}

    builder = WorkflowBuilder()
    builder.add_node(two_out, "src")
    builder.add_node(tb_add, "dst")
    builder.add_connection("src", "dst")
    assert edges(builder.build()) == {"src.a -> dst.a", "src.b -> dst.b"}


def test_two_argument_connection_falls_back_to_single_output_and_single_free_input() -> None:
    builder = WorkflowBuilder()
    builder.add_node(tb_source, "src")
    builder.add_node(tb_double, "dst")  # input x, source output result: no name match
    builder.add_connection("src", "dst")
    assert edges(builder.build()) == {"src.result -> dst.x"}


def test_fallback_ignores_inputs_already_connected_or_set() -> None:
    builder = WorkflowBuilder()
    builder.add_node(tb_source, "one")
    builder.add_node(tb_source, "two")
    builder.add_node(tb_add, "sum")
    builder.add_connection("one", "result", "sum", "a")
    builder.add_connection("two", "sum")  # only b is left
    assert edges(builder.build()) == {"one.result -> sum.a", "two.result -> sum.b"}

    configured = WorkflowBuilder()
    configured.add_node(tb_source, "two")
    configured.add_node(tb_add, "sum", {"a": 10})
    configured.add_connection("two", "sum")
    assert edges(configured.build()) == {"two.result -> sum.b"}


def test_ambiguous_two_argument_connection_lists_candidates() -> None:
    builder = WorkflowBuilder()
    builder.add_node(tb_source, "src")
    builder.add_node(tb_add, "sum")
    builder.add_connection("src", "sum")
    (problem,) = problems_of(builder)
    assert "ambiguous" in problem
    assert "src.result -> sum.a" in problem
    assert "src.result -> sum.b" in problem


def test_two_argument_connection_with_nothing_left_to_connect() -> None:
    builder = WorkflowBuilder()
    builder.add_node(tb_source, "src")
    builder.add_node(tb_source, "other")
    builder.add_connection("src", "other")
    (problem,) = problems_of(builder)
    assert "no unconnected input" in problem
    assert "'other'" in problem


def test_connections_in_bulk_as_tuples_and_dicts() -> None:
    builder = WorkflowBuilder()
    builder.add_node(tb_source, "a")
    builder.add_node(tb_source, "b")
    builder.add_node(tb_add, "sum")
    builder.add_node(tb_format, "fmt")
    builder.add_node(tb_double, "dbl")
    builder.add_connections(
        [
            ("a", "result", "sum", "a"),
            {"source": "b", "source_port": "result", "target": "sum", "target_port": "b"},
            {"from_node": "sum", "from_output": "result", "to_node": "dbl", "to_input": "x"},
            ("dbl", "fmt"),
        ]
    )
    assert edges(builder.build()) == {
        "a.result -> sum.a",
        "b.result -> sum.b",
        "sum.result -> dbl.x",
        "dbl.result -> fmt.result",
    }


def test_bad_connection_call_shapes_fail_at_once() -> None:
    builder = WorkflowBuilder()
    with pytest.raises(TypeError, match="takes"):
        builder.add_connection("a", "b", "c")
    with pytest.raises(TypeError, match="both ports or neither"):
        builder.add_connections([{"source": "a", "target": "b", "source_port": "x"}])
    with pytest.raises(TypeError, match="string"):
        builder.add_connections(["a->b"])  # type: ignore[list-item]


def test_same_connection_twice_is_harmless() -> None:
    builder = WorkflowBuilder()
    builder.add_node(tb_source, "a")
    builder.add_node(tb_double, "b")
    builder.add_connection("a", "result", "b", "x")
    builder.add_connection("a", "result", "b", "x")
    assert edges(builder.build()) == {"a.result -> b.x"}


# ---- ${} references ------------------------------------------------------------------------------


def test_references_in_config_become_connections() -> None:
    builder = WorkflowBuilder()
    builder.add_node(tb_add, "sum", {"a": "${one.result}", "b": "${two.result}"})
    builder.add_node(tb_source, "one")
    builder.add_node(tb_source, "two")
    workflow = builder.build()
    assert edges(workflow) == {"one.result -> sum.a", "two.result -> sum.b"}
    assert "sum" not in workflow.bound_inputs


def test_reference_node_ids_may_contain_dots() -> None:
    builder = WorkflowBuilder()
    builder.add_node(tb_source, "stage.1")
    builder.add_node(tb_double, "next", {"x": "${stage.1.result}"})
    assert edges(builder.build()) == {"stage.1.result -> next.x"}


def test_reference_into_a_key_that_is_not_an_input() -> None:
    builder = WorkflowBuilder()
    builder.add_node(tb_source, "a")
    builder.add_node(tb_double, "d", {"y": "${a.result}"})
    (problem,) = problems_of(builder)
    assert "'d'" in problem and "'y'" in problem and "${a.result}" in problem
    assert "its inputs: x" in problem


def test_reference_inside_a_larger_value_is_reported() -> None:
    builder = WorkflowBuilder()
    builder.add_node(tb_source, "a")
    builder.add_node(tb_shout, "s", {"text": "value: ${a.result}"})
    (problem,) = problems_of(builder)
    assert "'text'" in problem and "${a.result}" in problem and "whole value" in problem


def test_reference_to_unknown_port_names_the_ports() -> None:
    builder = WorkflowBuilder()
    builder.add_node(tb_pair, "p", {"x": 1})
    builder.add_node(tb_double, "d", {"x": "${p.middle}"})
    (problem,) = problems_of(builder)
    assert "'middle'" in problem and "left, right" in problem


# ---- validation: each rule -----------------------------------------------------------------------


def test_unknown_node_type_suggests_close_names() -> None:
    builder = WorkflowBuilder()
    builder.add_node("tb_dubble", "d")
    builder.add_node("SwichNode", "s")
    problems = problems_of(builder)
    assert len(problems) == 2
    assert "'d'" in problems[0] and "'tb_dubble'" in problems[0] and "'tb_double'" in problems[0]
    assert "'SwitchNode'" in problems[1]


def test_not_a_node_type() -> None:
    builder = WorkflowBuilder()
    builder.add_node(42, "n")  # type: ignore[arg-type]
    (problem,) = problems_of(builder)
    assert "'n'" in problem and "not a node type" in problem


def test_duplicate_node_id() -> None:
    builder = WorkflowBuilder()
    builder.add_node(tb_source, "a")
    builder.add_node(tb_double, "a", {"x": 1})
    (problem,) = problems_of(builder)
    assert "duplicate node id 'a'" in problem
    assert "tb_source" in problem and "tb_double" in problem


def test_bad_node_ids() -> None:
    builder = WorkflowBuilder()
    builder.add_node(tb_source, "")
    (problem,) = problems_of(builder)
    assert "non-empty string" in problem


def test_node_config_errors_name_the_node() -> None:
    builder = WorkflowBuilder()
    builder.add_node("FunctionNode", "code", {"function": "lambda x: x"})
    builder.add_node("MergeNode", "merge", {"mode": "first"})
    builder.add_node(tb_source, "slow", timeout=-1)
    problems = problems_of(builder)
    assert len(problems) == 3
    assert "'code'" in problems[0] and "code strings" in problems[0]
    assert "'merge'" in problems[1] and "inputs" in problems[1]
    assert "'slow'" in problems[2] and "timeout" in problems[2]


def test_unknown_config_key_is_reported_with_settings_and_inputs() -> None:
    builder = WorkflowBuilder()
    builder.add_node(tb_add, "sum", {"a": 1, "b": 2, "c": 3})
    builder.add_node("ConstantNode", "k", {"value": 1, "vlaue": 2})
    problems = problems_of(builder)
    assert len(problems) == 2
    assert "'sum'" in problems[0] and "'c'" in problems[0] and "a, b" in problems[0]
    assert "'k'" in problems[1] and "'vlaue'" in problems[1] and "value" in problems[1]


def test_connection_to_unknown_node() -> None:
    builder = WorkflowBuilder()
    builder.add_node(tb_source, "source")
    builder.add_node(tb_double, "double")
    builder.add_connection("source", "result", "doubel", "x")
    builder.add_connection("nowhere", "double")
    problems = problems_of(builder, parameters={})
    assert any("unknown target node 'doubel'" in p and "'double'" in p for p in problems)
    assert any("unknown source node 'nowhere'" in p for p in problems)


def test_connection_to_unknown_port_lists_the_nodes_ports() -> None:
    builder = WorkflowBuilder()
    builder.add_node(tb_source, "source")
    builder.add_node(tb_add, "sum", {"b": 1})
    builder.add_connection("source", "value", "sum", "a")
    builder.add_connection("source", "result", "sum", "c")
    problems = problems_of(builder)
    assert len(problems) == 2
    assert "'source' has no output port 'value'" in problems[0]
    assert "its outputs: result" in problems[0]
    assert "TypedDict" in problems[0]  # the hint for functions with a single result
    assert "'sum' has no input port 'c'" in problems[1] and "its inputs: a, b" in problems[1]


def test_input_fed_twice() -> None:
    builder = WorkflowBuilder()
    builder.add_node(tb_source, "one")
    builder.add_node(tb_source, "two")
    builder.add_node(tb_double, "d")
    builder.add_connection("one", "result", "d", "x")
    builder.add_connection("two", "result", "d", "x")
    (problem,) = problems_of(builder)
    assert "d.x is fed twice" in problem
    assert "one.result" in problem and "two.result" in problem


def test_input_set_in_config_and_connected() -> None:
    builder = WorkflowBuilder()
    builder.add_node(tb_source, "one")
    builder.add_node(tb_double, "d", {"x": 3})
    builder.add_connection("one", "result", "d", "x")
    (problem,) = problems_of(builder)
    assert "d.x" in problem and "config" in problem and "one.result" in problem


def test_type_incompatible_ports() -> None:
    builder = WorkflowBuilder()
    builder.add_node(tb_shout, "text", {"text": "a"})
    builder.add_node(tb_double, "number")
    builder.add_connection("text", "result", "number", "x")
    (problem,) = problems_of(builder)
    assert "text.result produces str" in problem
    assert "number.x expects int" in problem


def test_compatible_types_connect() -> None:
    @node
    def tb_half(value: float) -> float:
        return value / 2

    builder = WorkflowBuilder()
    builder.add_node(tb_source, "int_source")
    builder.add_node(tb_half, "half")
    builder.add_connection("int_source", "result", "half", "value")
    assert edges(builder.build()) == {"int_source.result -> half.value"}


def test_cycle_shows_the_path() -> None:
    builder = WorkflowBuilder()
    builder.add_node(tb_double, "a")
    builder.add_node(tb_double, "b")
    builder.add_node(tb_double, "c")
    builder.add_connection("a", "b")
    builder.add_connection("b", "c")
    builder.add_connection("c", "a")
    (problem,) = problems_of(builder)
    assert problem.startswith("cycle: ")
    path = problem.split(" (")[0].removeprefix("cycle: ").split(" -> ")
    assert path[0] == path[-1] and sorted(path[:-1]) == ["a", "b", "c"]


def test_self_loop_is_a_cycle() -> None:
    builder = WorkflowBuilder()
    builder.add_node(tb_add, "acc", {"b": 1})
    builder.add_connection("acc", "result", "acc", "a")
    (problem,) = problems_of(builder)
    assert "cycle: acc -> acc" in problem


def test_required_input_without_source_or_parameter() -> None:
    builder = WorkflowBuilder()
    builder.add_node(tb_add, "sum", {"b": 1})
    builder.add_node(tb_format, "fmt")
    builder.add_connection("sum", "fmt")
    (problem,) = problems_of(builder, parameters={})
    assert "missing required input" in problem and "sum.a" in problem
    assert builder.build(parameters={"a": 1}).open_inputs == (("sum", "a"),)
    assert builder.build(parameters={"sum": {"a": 1}}).open_inputs == (("sum", "a"),)


def test_parameters_that_fit_nothing_are_reported_by_build() -> None:
    builder = WorkflowBuilder()
    builder.add_node(tb_double, "d")
    problems = problems_of(builder, parameters={"x": 1, "y": 2, "d": {"z": 3}})
    assert len(problems) == 2
    assert "parameter 'y' is used by no node" in problems[0]
    assert "d.z" in problems[1] and "unconnected inputs: x" in problems[1]


def test_every_problem_is_reported_at_once() -> None:
    builder = WorkflowBuilder()
    builder.add_node("NoSuchType", "ghost")
    builder.add_node(tb_source, "a")
    builder.add_node(tb_source, "a")
    builder.add_node(tb_shout, "s", {"text": "hi"})
    builder.add_node(tb_double, "d")
    builder.add_node(tb_double, "loop1")
    builder.add_node(tb_double, "loop2")
    builder.add_connection("s", "result", "d", "x")  # str into int
    builder.add_connection("a", "result", "missing", "x")
    builder.add_connection("loop1", "loop2")
    builder.add_connection("loop2", "loop1")
    with pytest.raises(WorkflowValidationError) as info:
        builder.build()
    text = str(info.value)
    assert "5 problem(s)" in text
    for fragment in ("'NoSuchType'", "duplicate node id 'a'", "expects int", "'missing'", "cycle"):
        assert fragment in text


def test_problems_about_a_broken_node_are_not_repeated() -> None:
    builder = WorkflowBuilder()
    builder.add_node("NoSuchType", "ghost")
    builder.add_node(tb_double, "d")
    builder.add_connection("ghost", "result", "d", "x")
    builder.add_connection("d", "ghost")
    problems = problems_of(builder, parameters={})
    assert len(problems) == 1
    assert "'NoSuchType'" in problems[0]


# ---- custom node classes -------------------------------------------------------------------------


class Concat(Node):
    type_name = "tb_Concat"
    input_ports = (Port("left", str), Port("right", str, default=""))
    output_ports = (Port("text", str),)

    def run(self, **inputs: Any) -> dict[str, Any]:
        return {"text": inputs["left"] + inputs.get("right", "")}


def test_custom_node_classes_build_and_connect() -> None:
    builder = WorkflowBuilder()
    builder.add_node(tb_shout, "shout", {"text": "a"})
    builder.add_node(Concat, "cat", {"right": "!"})
    builder.add_node(tb_shout, "again")
    builder.add_connection("shout", "cat")
    builder.add_connection("cat", "again")
    workflow = builder.build()
    assert edges(workflow) == {"shout.result -> cat.left", "cat.text -> again.text"}
    assert workflow.bound_inputs["cat"] == {"right": "!"}
    assert workflow.nodes["cat"].node_type() == "tb_Concat"
    assert Connection("cat", "text", "again", "text") in workflow.connections


# ---- composing builders --------------------------------------------------------------------------


def test_add_workflow_copies_nodes_under_a_prefix() -> None:
    inner = WorkflowBuilder("inner")
    inner.add_node(tb_double, "d")
    inner.add_node(tb_format, "f", {"result": "${d.result}", "prefix": "="})
    inner.add_node_instance(FunctionNode("i", {"function": tb_shout, "text": "x"}))
    outer = WorkflowBuilder("outer")
    outer.add_node(tb_source, "src")
    mapping = outer.add_workflow(inner, "left")
    outer.add_workflow(inner, "right")
    assert mapping == {"d": "left/d", "f": "left/f", "i": "left/i"}
    outer.add_connection("src", "left/d")
    outer.add_connection("src", "right/d")
    workflow = outer.build()
    assert edges(workflow) == {
        "src.result -> left/d.x",
        "src.result -> right/d.x",
        "left/d.result -> left/f.result",
        "right/d.result -> right/f.result",
    }
    assert workflow.nodes["right/i"].id == "right/i"
    assert workflow.bound_inputs["left/f"] == {"prefix": "="}
    assert set(inner.build().nodes) == {"d", "f", "i"}  # the source builder is unchanged


def test_agents_are_added_by_their_workflow_node() -> None:
    from kaizen.agents import Agent

    agent = Agent("tb_qa", signature="question: str -> answer: str", config={"model": "test/x"})
    builder = WorkflowBuilder()
    builder.add_node(agent, "qa", {"question": "${ask.result}"}, retries=2)
    builder.add_agent(agent, "qa2")
    builder.add_node(tb_shout, "ask", {"text": "why?"})
    builder.add_connection("qa", "answer", "qa2", "question")
    workflow = builder.build()
    assert edges(workflow) == {"ask.result -> qa.question", "qa.answer -> qa2.question"}
    assert workflow.nodes["qa"].policy.retries == 2
    assert builder.nodes["qa"].type_name == "Agent"
