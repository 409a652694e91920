"""The node-type registry, the `@node` decorator and the built-in nodes, run directly."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, ClassVar, TypedDict

import pytest

from kaizen.errors import UnknownNodeTypeError
from kaizen.nodes import (
    MISSING,
    ConstantNode,
    FunctionNode,
    MergeNode,
    Node,
    NodeFunction,
    Port,
    SwitchNode,
    get_node_type,
    node,
    node_types,
    ports_from_callable,
    register_node_type,
    unregister_node_type,
)
from kaizen.nodes.builtins import ABSENT

# ---- registry ------------------------------------------------------------------------------------


def test_builtins_are_registered_at_import() -> None:
    registered = node_types()
    for name in ("ConstantNode", "FunctionNode", "SwitchNode", "MergeNode"):
        assert name in registered
    assert get_node_type("SwitchNode") is SwitchNode


def test_register_node_type_as_call_and_decorator() -> None:
    class Echo(Node):
        input_ports = (Port("text", str),)
        output_ports = (Port("text", str),)

        def run(self, **inputs: Any) -> dict[str, Any]:
            return {"text": inputs["text"]}

    try:
        assert register_node_type(Echo) is Echo
        assert get_node_type("Echo") is Echo

        @register_node_type(name="ReverseEcho")
        class Reverse(Echo):
            def run(self, **inputs: Any) -> dict[str, Any]:
                return {"text": inputs["text"][::-1]}

        assert get_node_type("ReverseEcho") is Reverse
        assert Reverse.node_type() == "ReverseEcho"
        assert Reverse("r").run(text="abc") == {"text": "cba"}
    finally:
        unregister_node_type("Echo")
        unregister_node_type("ReverseEcho")
    assert "Echo" not in node_types()


def test_registering_another_class_under_a_taken_name_is_refused() -> None:
    class ConstantNode(Node):  # same name as the built-in, different module
        pass

    with pytest.raises(ValueError, match="already registered"):
        register_node_type(ConstantNode)
    assert get_node_type("ConstantNode") is not ConstantNode


def test_register_rejects_non_nodes() -> None:
    with pytest.raises(TypeError, match="Node subclass"):
        register_node_type(dict)  # type: ignore[type-var]


def test_unknown_type_lists_close_names() -> None:
    with pytest.raises(UnknownNodeTypeError) as info:
        get_node_type("SwichNode")
    assert "SwitchNode" in info.value.suggestions
    assert "SwitchNode" in str(info.value)
    assert info.value.name == "SwichNode"
    with pytest.raises(UnknownNodeTypeError) as info:
        get_node_type("constantnode")
    assert info.value.suggestions[0] == "ConstantNode"


# ---- @node ---------------------------------------------------------------------------------------


@node
def tn_scale(value: float, factor: Annotated[float, "multiplier"] = 2.0) -> float:
    """Multiply a value."""
    return value * factor


class Parts(TypedDict):
    head: str
    tail: str


@node
def tn_split(text: str, at: int = 1) -> Parts:
    return {"head": text[:at], "tail": text[at:]}


@node(name="tn_async_upper")
async def upper(text: str) -> str:
    await asyncio.sleep(0)
    return text.upper()


@node(outputs={"low": int, "high": int})
def tn_bounds(values: list[int]) -> dict[str, int]:
    return {"low": min(values), "high": max(values)}


@node
def tn_as_dict(text: str) -> dict[str, str]:
    return {"text": text}


def test_node_function_stays_callable() -> None:
    assert tn_scale(3.0) == 6.0
    assert tn_scale(3.0, factor=3.0) == 9.0
    assert isinstance(tn_scale, NodeFunction)
    assert tn_scale.__name__ == "tn_scale"
    assert tn_scale.__doc__ == "Multiply a value."
    assert asyncio.run(upper("a")) == "A"


def test_node_ports_come_from_annotations() -> None:
    value, factor = tn_scale.input_ports
    assert (value.name, value.type, value.required) == ("value", float, True)
    assert (factor.name, factor.type, factor.default, factor.required) == (
        "factor",
        float,
        2.0,
        False,
    )
    assert factor.description == "multiplier"
    assert [(p.name, p.type) for p in tn_scale.output_ports] == [("result", float)]


def test_node_registers_under_function_name_or_given_name() -> None:
    assert get_node_type("tn_scale") is tn_scale.node_class
    assert get_node_type("tn_async_upper") is upper.node_class
    assert upper.type_name == "tn_async_upper"
    assert issubclass(tn_scale.node_class, FunctionNode)


def test_node_instance_runs_and_wraps_result() -> None:
    instance = tn_scale.node_class("s")
    assert instance.run(value=1.5) == {"result": 3.0}
    assert not instance.is_async


def test_async_node_runs_on_arun() -> None:
    instance = upper.node_class("u")
    assert instance.is_async
    assert asyncio.run(instance.arun(text="hi")) == {"result": "HI"}
    assert instance.run(text="direct") == {"result": "DIRECT"}


def test_typeddict_return_gives_named_outputs() -> None:
    instance = tn_split.node_class("split")
    assert list(instance.outputs) == ["head", "tail"]
    assert instance.outputs["head"].type is str
    assert instance.run(text="abc") == {"head": "a", "tail": "bc"}


def test_declared_outputs_give_named_outputs_and_check_the_return() -> None:
    instance = tn_bounds.node_class("b")
    assert {name: port.type for name, port in instance.outputs.items()} == {
        "low": int,
        "high": int,
    }
    assert instance.run(values=[3, 1, 2]) == {"low": 1, "high": 3}


def test_plain_dict_return_is_the_single_result_output() -> None:
    instance = tn_as_dict.node_class("d")
    assert list(instance.outputs) == ["result"]
    assert instance.run(text="x") == {"result": {"text": "x"}}


def test_named_outputs_must_be_a_dict_of_declared_keys() -> None:
    @node(name="tn_bad_outputs", outputs=("a",))
    def bad(kind: str) -> Any:
        return {"b": 1} if kind == "unknown" else 5

    instance = bad.node_class("bad")
    with pytest.raises(ValueError, match="unknown output"):
        instance.run(kind="unknown")
    with pytest.raises(TypeError, match="must return a dict"):
        instance.run(kind="scalar")


def test_missing_named_output_is_simply_not_produced() -> None:
    @node(name="tn_partial_outputs", outputs=("a", "b"))
    def partial() -> dict[str, int]:
        return {"a": 1}

    assert partial.node_class("p").run() == {"a": 1}


def test_positional_only_parameters_are_refused() -> None:
    def positional(x: int, /) -> int:
        return x

    with pytest.raises(TypeError, match="positional-only"):
        node(name="tn_positional")(positional)


def test_var_args_are_not_ports_and_unannotated_is_any() -> None:
    def loose(a, *rest, b=1, **extra):  # type: ignore[no-untyped-def]
        return a

    ins, outs = ports_from_callable(loose)
    assert [(p.name, p.type, p.default) for p in ins] == [("a", Any, MISSING), ("b", Any, 1)]
    assert [(p.name, p.type) for p in outs] == [("result", Any)]


def test_redecorating_the_same_function_replaces_its_registration() -> None:
    def tn_redefined(x: int) -> int:
        return x

    first = node(tn_redefined)
    second = node(tn_redefined)
    assert get_node_type("tn_redefined") is second.node_class
    assert first.node_class is not second.node_class


# ---- FunctionNode --------------------------------------------------------------------------------


def test_function_node_takes_ports_from_the_callable() -> None:
    def greet(name: str, punctuation: str = "!") -> str:
        return f"hello {name}{punctuation}"

    instance = FunctionNode("g", {"function": greet})
    assert list(instance.inputs) == ["name", "punctuation"]
    assert instance.inputs["name"].required
    assert not instance.inputs["punctuation"].required
    assert instance.run(name="ada") == {"result": "hello ada!"}


def test_function_node_runs_async_callables() -> None:
    async def fetch(key: str) -> int:
        await asyncio.sleep(0)
        return len(key)

    instance = FunctionNode("f", {"function": fetch})
    assert instance.is_async
    assert asyncio.run(instance.arun(key="abcd")) == {"result": 4}


def test_function_node_accepts_callable_objects() -> None:
    class Adder:
        def __call__(self, a: int, b: int) -> int:
            return a + b

    instance = FunctionNode("add", {"function": Adder()})
    assert list(instance.inputs) == ["a", "b"]
    assert instance.run(a=1, b=2) == {"result": 3}


def test_function_node_refuses_code_strings_and_non_callables() -> None:
    with pytest.raises(TypeError, match="code strings are not run"):
        FunctionNode("f", {"function": "lambda x: x"})
    with pytest.raises(TypeError, match="must be callable"):
        FunctionNode("f", {"function": 42})
    with pytest.raises(ValueError, match="needs config"):
        FunctionNode("f")


# ---- ConstantNode --------------------------------------------------------------------------------


def test_constant_node_outputs_its_value_typed() -> None:
    constant = ConstantNode("c", {"value": [1, 2]})
    assert constant.run() == {"value": [1, 2]}
    assert constant.outputs["value"].type is list
    assert not constant.inputs
    with pytest.raises(ValueError, match="needs config"):
        ConstantNode("c")


# ---- SwitchNode ----------------------------------------------------------------------------------


def test_switch_with_cases_routes_to_first_match() -> None:
    switch = SwitchNode(
        "s", {"cases": {"high": lambda v: v > 10, "zero": 0, "low": lambda v: v < 10}}
    )
    assert list(switch.outputs) == ["high", "zero", "low"]
    assert switch.run(value=50) == {"high": 50}
    assert switch.run(value=0) == {"zero": 0}
    assert switch.run(value=3) == {"low": 3}


def test_switch_default_branch_and_no_match_error() -> None:
    with_default = SwitchNode("s", {"cases": {"big": lambda v: v > 10}, "default": "other"})
    assert list(with_default.outputs) == ["big", "other"]
    assert with_default.run(value=1) == {"other": 1}
    without = SwitchNode("s", {"cases": {"big": lambda v: v > 10}})
    with pytest.raises(ValueError, match="no branch for value 1"):
        without.run(value=1)


def test_switch_condition_returning_name_or_bool() -> None:
    by_name = SwitchNode(
        "s", {"condition": lambda v: "even" if v % 2 == 0 else "odd", "branches": ["even", "odd"]}
    )
    assert by_name.run(value=4) == {"even": 4}
    assert by_name.run(value=5) == {"odd": 5}
    by_bool = SwitchNode("s", {"condition": lambda v: v > 0})
    assert list(by_bool.outputs) == ["true", "false"]
    assert by_bool.run(value=2) == {"true": 2}
    assert by_bool.run(value=-2) == {"false": -2}


def test_switch_condition_naming_an_unknown_branch_is_an_error() -> None:
    switch = SwitchNode("s", {"condition": lambda v: "nope", "branches": ["a", "b"]})
    with pytest.raises(ValueError, match="'nope'"):
        switch.run(value=1)


def test_switch_by_branch_input() -> None:
    switch = SwitchNode("s", {"branches": ["refund", "question"], "default": "other"})
    assert list(switch.inputs) == ["value", "branch"]
    assert switch.inputs["branch"].required
    assert switch.run(value="text", branch="refund") == {"refund": "text"}
    assert switch.run(value="text", branch="spam") == {"other": "text"}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "needs 'cases', 'condition' or 'branches'"),
        ({"cases": {"a": 1}, "condition": bool}, "not both"),
        ({"condition": "x > 1"}, "must be a callable"),
        ({"branches": "ab"}, "list of names"),
        ({"cases": [("a", 1)]}, "must map branch names"),
    ],
)
def test_switch_config_errors(config: dict[str, Any], message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        SwitchNode("s", config)


# ---- MergeNode -----------------------------------------------------------------------------------


def test_merge_first_takes_first_produced_in_declared_order() -> None:
    merge = MergeNode("m", {"inputs": ["a", "b", "c"]})
    assert MergeNode.accepts_partial_inputs
    assert all(not port.required for port in merge.inputs.values())
    assert list(merge.outputs) == ["value"]
    assert merge.run(b=2, c=3) == {"value": 2}
    assert merge.run(c=None) == {"value": None}
    assert merge.run(a=ABSENT, c=3) == {"value": 3}
    assert merge.run() == {}


def test_merge_all_collects_every_produced_input() -> None:
    merge = MergeNode("m", {"inputs": ["a", "b", "c"], "mode": "all", "type": int})
    assert list(merge.outputs) == ["values"]
    assert merge.outputs["values"].type == dict[str, int]
    assert merge.inputs["a"].type is int
    assert merge.run(c=3, a=1) == {"values": {"a": 1, "c": 3}}
    assert list(merge.run(c=3, a=1)["values"]) == ["a", "c"]
    assert merge.run() == {}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "needs config"),
        ({"inputs": "ab"}, "needs config"),
        ({"inputs": []}, "empty"),
        ({"inputs": ["a"], "mode": "any"}, "mode must be one of"),
    ],
)
def test_merge_config_errors(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MergeNode("m", config)


class _Typed(Node):
    config_keys: ClassVar[frozenset[str] | None] = frozenset()


def test_node_base_keeps_config_read_only() -> None:
    instance = _Typed("t", {"a": 1})
    with pytest.raises(TypeError):
        instance.config["a"] = 2  # type: ignore[index]
