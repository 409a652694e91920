"""The peers' tool cases, translated to Kaizen (issue 21 item 5). Each test names the peer test it
comes from; a case where Kaizen deliberately differs asserts Kaizen's behaviour and says so
(the differences are listed in docs/tools.md, "Compared with the peers").

Sources: openai-agents-python ``tests/test_function_schema.py`` (OA-schema) and
``tests/test_function_tool.py`` (OA-tool); pydantic-ai ``tests/test_tools.py`` (PA-tools)."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Mapping
from enum import Enum
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

import kaizen
from kaizen.errors import ConfigError
from kaizen.testing import ScriptedModel
from kaizen.tools import Tool, ToolArgumentError
from kaizen.tools.runner import parse_arguments


def call(tool: Tool, arguments: dict[str, Any]) -> Any:
    """Validate and call, as the runner does."""
    return tool.invoke(tool.validate(arguments))


def props(tool: Tool) -> dict[str, Any]:
    return tool.parameters["properties"]  # type: ignore[no-any-return]


# -- OA-schema ---------------------------------------------------------------------------------


def no_args_function() -> str:
    """This function has no args."""
    return "ok"


def test_no_args_function() -> None:  # OA-schema test_no_args_function
    made = Tool(no_args_function)
    assert made.description == "This function has no args."
    assert made.parameters == {"type": "object", "properties": {}, "additionalProperties": False}
    assert call(made, {}) == "ok"


def simple_function(a: int, b: int = 5) -> int:
    """
    Args:
        a: The first argument
        b: The second argument

    Returns:
        The sum of a and b
    """
    return a + b


def test_simple_function() -> None:  # OA-schema test_simple_function
    made = Tool(simple_function)
    assert props(made)["a"]["description"] == "The first argument"
    assert props(made)["b"]["description"] == "The second argument"
    assert made.description == ""  # only sections: no description text
    assert call(made, {"a": 3}) == 8
    assert call(made, {"a": 3, "b": 10}) == 13
    with pytest.raises(ToolArgumentError, match="a: Input should be a valid integer"):
        made.validate({"a": "not an integer"})


def test_varargs_function_is_refused() -> None:  # OA-schema test_varargs_function: DIFFERENCE
    def varargs_function(x: int, *numbers: float, flag: bool = False, **kwargs: Any) -> Any:
        return x, numbers, flag, kwargs

    with pytest.raises(ConfigError, match=r"\*numbers cannot be passed"):
        Tool(varargs_function)


class Foo(TypedDict):
    a: int
    b: str


class InnerModel(BaseModel):
    a: int
    b: str


class OuterModel(BaseModel):
    inner: InnerModel
    foo: Foo


def complex_args_and_docs_function(model: OuterModel, some_flag: int = 0) -> str:
    """
    This function takes a model and a flag, and returns a string.

    Args:
        model: A model with an inner and foo field
        some_flag: An optional flag with a default of 0

    Returns:
        A string with the values of the model and flag
    """
    return f"{model.inner.a}, {model.inner.b}, {model.foo['a']}, {model.foo['b']}, {some_flag}"


MODEL = {"inner": {"a": 1, "b": "hello"}, "foo": {"a": 2, "b": "world"}}


def test_nested_data_and_docs_function() -> None:
    # OA-schema test_nested_data_function and test_complex_args_and_docs_function
    made = Tool(complex_args_and_docs_function)
    assert made.description == "This function takes a model and a flag, and returns a string."
    assert props(made)["model"]["description"] == "A model with an inner and foo field"
    assert props(made)["some_flag"]["description"] == "An optional flag with a default of 0"
    assert call(made, {"model": MODEL}) == "1, hello, 2, world, 0"
    with pytest.raises(ToolArgumentError, match="some_flag"):
        made.validate({"model": MODEL, "some_flag": "not an int"})


class MyClass:
    def foo(self, a: int, b: int = 5) -> int:
        return a + b

    @classmethod
    def bar(cls, a: int, b: int = 5) -> int:
        return a + b

    @staticmethod
    def baz(a: int, b: int = 5) -> int:
        return a + b


@pytest.mark.parametrize("method", [MyClass().foo, MyClass.bar, MyClass.baz])
def test_class_based_functions(method: Any) -> None:  # OA-schema test_class_based_functions
    made = Tool(method)
    assert made.name == method.__name__
    assert set(props(made)) == {"a", "b"}
    assert call(made, {"a": 1, "b": 2}) == 3


class MyEnum(str, Enum):  # noqa: UP042 - the peer's own enum
    FOO = "foo"
    BAR = "bar"
    BAZ = "baz"


def enum_and_literal_function(a: MyEnum, b: Literal["a", "b", "c"]) -> str:
    return f"{a.value} {b}"


def test_enum_and_literal_function() -> None:  # OA-schema test_enum_and_literal_function
    made = Tool(enum_and_literal_function)
    assert made.parameters["$defs"]["MyEnum"]["enum"] == ["foo", "bar", "baz"]
    assert props(made)["a"]["$ref"] == "#/$defs/MyEnum"
    assert props(made)["b"]["enum"] == ["a", "b", "c"]
    assert call(made, {"a": "foo", "b": "a"}) == "foo a"
    with pytest.raises(ToolArgumentError, match="a: Input should be 'foo', 'bar' or 'baz'"):
        made.validate({"a": "not an enum value", "b": "a"})
    with pytest.raises(ToolArgumentError, match="b: Input should be 'a', 'b' or 'c'"):
        made.validate({"a": "foo", "b": "not a literal value"})


def test_var_positional_tuple_annotation_is_refused() -> None:
    # OA-schema test_var_positional_tuple_annotation: DIFFERENCE (*args refused)
    def func(*args: tuple[int, ...]) -> int:
        return sum(sum(arg) for arg in args)

    with pytest.raises(ConfigError, match=r"\*args cannot be passed"):
        Tool(func)


def test_var_keyword_dict_annotation() -> None:
    # OA-schema test_var_keyword_dict_annotation: DIFFERENCE: **kwargs are the other arguments
    # themselves (additionalProperties), not one nested "kwargs" object
    def func(**kwargs: dict[str, int]) -> Any:
        return kwargs

    made = Tool(func)
    assert made.parameters["properties"] == {}
    assert made.parameters["additionalProperties"] == {
        "type": "object",
        "additionalProperties": {"type": "integer"},
    }
    assert call(made, {"x": {"a": "1"}}) == {"x": {"a": 1}}


def test_schema_with_mapping_is_accepted() -> None:
    # OA-schema test_schema_with_mapping_raises_strict_mode_error: DIFFERENCE (no strict mode)
    def func_with_mapping(test_one: Mapping[str, int]) -> str:
        return ",".join(sorted(test_one))

    made = Tool(func_with_mapping)
    assert props(made)["test_one"] == {
        "type": "object",
        "additionalProperties": {"type": "integer"},
    }
    assert call(made, {"test_one": {"b": 1, "a": 2}}) == "a,b"


def test_name_override_without_docstring() -> None:  # OA-schema test_name_override_...
    def foo(x: int) -> int:
        return x

    assert Tool(foo, name="custom").name == "custom"


def test_function_with_field_required_constraints() -> None:  # OA-schema, same name
    def func(my_number: int = Field(..., gt=10, le=100)) -> int:
        return my_number * 2

    made = Tool(func)
    assert props(made)["my_number"] == {"type": "integer", "exclusiveMinimum": 10, "maximum": 100}
    assert made.parameters["required"] == ["my_number"]
    assert call(made, {"my_number": 50}) == 100
    for bad in (5, 150):
        with pytest.raises(ToolArgumentError, match="my_number"):
            made.validate({"my_number": bad})


def test_function_with_field_optional_with_default() -> None:  # OA-schema, same name
    def func(required_param: str, optional_param: float = Field(default=5.0, ge=0.0)) -> str:
        return f"{required_param}: {optional_param}"

    made = Tool(func)
    assert props(made)["optional_param"] == {"type": "number", "minimum": 0.0, "default": 5.0}
    assert call(made, {"required_param": "test"}) == "test: 5.0"
    assert call(made, {"required_param": "test", "optional_param": 10.5}) == "test: 10.5"
    with pytest.raises(ToolArgumentError, match="optional_param"):
        made.validate({"required_param": "test", "optional_param": -1.0})


def test_function_uses_annotated_descriptions_without_docstring() -> None:  # OA-schema
    def add(a: Annotated[int, "First number to add"], b: Annotated[int, "Second"]) -> int:
        return a + b

    made = Tool(add)
    assert [props(made)[k]["description"] for k in "ab"] == ["First number to add", "Second"]


def test_annotated_descriptions_win_over_the_docstring() -> None:
    # OA-schema test_function_prefers_docstring_descriptions_over_annotated_metadata:
    # DIFFERENCE: the description nearest the parameter wins
    def add(a: Annotated[int, "Annotated a"], b: Annotated[int, "Annotated b"]) -> int:
        """Adds two integers.

        Args:
            a: Docstring provided description.
        """
        return a + b

    made = Tool(add)
    assert [props(made)[k]["description"] for k in "ab"] == ["Annotated a", "Annotated b"]


def test_field_descriptions_win_over_the_docstring() -> None:
    # OA-schema test_function_with_field_description_merge: DIFFERENCE (as pydantic-ai: Field
    # first, the docstring where the Field has none)
    def func(
        param_with_field_desc: int = Field(..., description="Field description"),
        param_with_both: str = Field(default="hello", description="Field description"),
        param_plain: str = Field(default="x"),
    ) -> str:
        """
        Function with both field and docstring descriptions.

        Args:
            param_with_field_desc: Docstring description
            param_with_both: Docstring description
            param_plain: Docstring description
        """
        return f"{param_with_field_desc}: {param_with_both}"

    made = Tool(func)
    assert props(made)["param_with_field_desc"]["description"] == "Field description"
    assert props(made)["param_with_both"]["description"] == "Field description"
    assert props(made)["param_plain"]["description"] == "Docstring description"


def test_function_with_field_description_only() -> None:  # OA-schema, same name
    def func(
        param_with_field_desc: int = Field(..., description="Field description only"),
        param_without_desc: str = Field(default="hello"),
    ) -> str:
        return f"{param_with_field_desc}: {param_without_desc}"

    made = Tool(func)
    assert props(made)["param_with_field_desc"]["description"] == "Field description only"
    assert "description" not in props(made)["param_without_desc"]


def string_field(
    name: str = Field(..., min_length=3, max_length=20, pattern=r"^[A-Za-z]+$"),
) -> str:
    return f"Hello, {name}!"


def annotated_string_field(
    name: Annotated[str, Field(..., min_length=3, max_length=20, pattern=r"^[A-Za-z]+$")],
) -> str:
    return f"Hello, {name}!"


@pytest.mark.parametrize("func", [string_field, annotated_string_field], ids=lambda f: f.__name__)
def test_function_with_field_string_constraints(func: Any) -> None:
    # OA-schema test_function_with_field_string_constraints and
    # test_function_with_annotated_field_string_constraints
    made = Tool(func)
    assert props(made)["name"] == {
        "type": "string",
        "minLength": 3,
        "maxLength": 20,
        "pattern": r"^[A-Za-z]+$",
    }
    assert call(made, {"name": "Alice"}) == "Hello, Alice!"
    for bad in ("Al", "A" * 25, "Alice123"):
        with pytest.raises(ToolArgumentError, match="name"):
            made.validate({"name": bad})


def multiple(
    score: int = Field(..., ge=0, le=100, description="Score from 0 to 100"),
    name: str = Field(default="Unknown", min_length=1, max_length=50),
    factor: float = Field(default=1.0, gt=0.0, description="Positive multiplier"),
) -> str:
    return f"{name} scored {score * factor}"


def annotated_multiple(
    score: Annotated[int, Field(..., ge=0, le=100, description="Score from 0 to 100")],
    name: Annotated[str, Field(default="Unknown", min_length=1, max_length=50)],
    factor: Annotated[float, Field(default=1.0, gt=0.0, description="Positive multiplier")],
) -> str:
    return f"{name} scored {score * factor}"


@pytest.mark.parametrize("func", [multiple, annotated_multiple], ids=lambda f: f.__name__)
def test_function_with_field_multiple_constraints(func: Any) -> None:
    # OA-schema test_function_with_field_multiple_constraints and
    # test_function_with_annotated_field_multiple_constraints
    made = Tool(func)
    assert props(made)["score"] == {
        "type": "integer",
        "minimum": 0,
        "maximum": 100,
        "description": "Score from 0 to 100",
    }
    assert props(made)["name"] == {
        "type": "string",
        "minLength": 1,
        "maxLength": 50,
        "default": "Unknown",
    }
    assert props(made)["factor"] == {
        "type": "number",
        "exclusiveMinimum": 0.0,
        "default": 1.0,
        "description": "Positive multiplier",
    }
    assert call(made, {"score": 85}) == "Unknown scored 85.0"
    assert call(made, {"score": 90, "name": "Alice", "factor": 1.5}) == "Alice scored 135.0"
    for bad in ({"score": 150}, {"score": 50, "name": ""}, {"score": 50, "factor": 0.0}):
        with pytest.raises(ToolArgumentError):
            made.validate(bad)


def test_function_with_annotated_field_required_and_optional() -> None:
    # OA-schema test_function_with_annotated_field_required_constraints and
    # test_function_with_annotated_field_optional_with_default
    def func(
        my_number: Annotated[int, Field(..., gt=10, le=100)],
        optional_param: Annotated[float, Field(default=5.0, ge=0.0)],
    ) -> str:
        return f"{my_number}: {optional_param}"

    made = Tool(func)
    assert made.parameters["required"] == ["my_number"]
    assert props(made)["optional_param"] == {"type": "number", "minimum": 0.0, "default": 5.0}
    assert call(made, {"my_number": 50}) == "50: 5.0"
    with pytest.raises(ToolArgumentError, match="my_number"):
        made.validate({"my_number": 5})


# -- PA-tools ----------------------------------------------------------------------------------


async def google_style_docstring(foo: int, bar: str) -> str:
    """Do foobar stuff, a lot.

    Args:
        foo: The foo thing.
        bar: The bar thing.
    """
    return f"{foo} {bar}"


def numpy_style_docstring(*, foo: int, bar: str) -> str:
    """Numpy style docstring.

    Parameters
    ----------
    foo : int
        The foo thing.
    bar : str
        The bar thing.
    """
    return f"{foo} {bar}"


def sphinx_style_docstring(foo: int) -> str:
    """Sphinx style docstring.

    :param foo: The foo thing.
    """
    return str(foo)


@pytest.mark.parametrize(
    ("func", "description"),
    [
        (google_style_docstring, "Do foobar stuff, a lot."),
        (numpy_style_docstring, "Numpy style docstring."),
        (sphinx_style_docstring, "Sphinx style docstring."),
    ],
    ids=["google", "numpy", "sphinx"],
)
def test_docstring_styles(func: Any, description: str) -> None:
    # PA-tools test_docstring_google, test_docstring_numpy, test_docstring_sphinx (pydantic-ai's
    # sphinx case has a positional-only `foo, /`, which Kaizen refuses: test below)
    made = Tool(func)
    expected = {"foo": {"description": "The foo thing.", "type": "integer"}}
    if func is not sphinx_style_docstring:
        expected["bar"] = {"description": "The bar thing.", "type": "string"}
    assert made.description == description
    assert made.parameters == {
        "type": "object",
        "properties": expected,
        "required": list(expected),
        "additionalProperties": False,
    }


def test_a_positional_only_parameter_is_refused() -> None:
    # PA-tools test_docstring_sphinx (`foo: int, /`): DIFFERENCE: models pass arguments by name
    def positional(foo: int, /) -> str:
        return str(foo)

    with pytest.raises(ConfigError, match="'foo' is positional-only"):
        Tool(positional)


@pytest.mark.parametrize("style", ["google", "sphinx", "numpy"])
def test_returns_sections_stay_out_of_the_description(style: str) -> None:
    # PA-tools test_google_style_with_returns, test_sphinx_style_with_returns,
    # test_numpy_style_with_returns: DIFFERENCE: pydantic-ai adds a <returns> block to the
    # description; Kaizen's description is the text before the sections
    docs = {
        "google": "A function.\n\nArgs:\n    x: The input value.\n\nReturns:\n    str: The result.",
        "sphinx": "A function.\n\n:param x: The input value.\n:rtype: str\n:return: The result.",
        "numpy": "A function.\n\nParameters\n----------\nx : int\n    The input value.\n\n"
        "Returns\n-------\nstr\n    The result.",
    }

    def my_tool(x: int) -> str:
        return str(x)

    my_tool.__doc__ = docs[style]
    made = Tool(my_tool)
    assert made.description == "A function."
    assert props(made)["x"] == {"description": "The input value.", "type": "integer"}


def test_docstring_unknown_with_kwargs() -> None:
    # PA-tools test_docstring_unknown: DIFFERENCE: `**kwargs: int` types the other arguments
    def unknown_docstring(**kwargs: int) -> str:
        """Unknown style docstring."""
        return str(kwargs)

    made = Tool(unknown_docstring)
    assert made.description == "Unknown style docstring."
    assert made.parameters == {
        "type": "object",
        "properties": {},
        "additionalProperties": {"type": "integer"},
    }


def test_docstring_google_no_body() -> None:  # PA-tools test_docstring_google_no_body
    async def no_body(foo: int, bar: Annotated[str, Field(description="from fields")]) -> str:
        """
        Args:
            foo: The foo thing.
            bar: The bar thing.
        """
        return f"{foo} {bar}"

    made = Tool(no_body)
    assert made.description == ""
    assert props(made) == {
        "foo": {"description": "The foo thing.", "type": "integer"},
        "bar": {"description": "from fields", "type": "string"},
    }


class PaFoo(BaseModel):
    x: int
    y: str


def test_takes_model_and_int() -> None:  # PA-tools test_takes_model_and_int
    def takes_model(model: PaFoo, z: int) -> str:
        return f"{model.x} {model.y} {z}"

    made = Tool(takes_model)
    assert made.parameters["$defs"]["PaFoo"] == {
        "properties": {"x": {"type": "integer"}, "y": {"type": "string"}},
        "required": ["x", "y"],
        "type": "object",
    }
    assert props(made) == {"model": {"$ref": "#/$defs/PaFoo"}, "z": {"type": "integer"}}
    assert call(made, {"model": {"x": 0, "y": "a"}, "z": 0}) == "0 a 0"


def test_takes_just_model_keeps_it_as_a_parameter() -> None:
    # PA-tools test_takes_just_model: DIFFERENCE: pydantic-ai flattens a lone model parameter
    # into the arguments; Kaizen keeps the parameter (the model reads its name)
    def takes_just_model(model: PaFoo) -> str:
        return f"{model.x} {model.y}"

    made = Tool(takes_just_model)
    assert list(props(made)) == ["model"]
    assert call(made, {"model": {"x": 0, "y": "a"}}) == "0 a"


# -- OA-tool -----------------------------------------------------------------------------------


def test_argless_function() -> None:  # OA-tool test_argless_function
    made = Tool(no_args_function)
    assert made.name == "no_args_function"
    assert call(made, parse_arguments("")) == "ok"


def test_simple_function_missing_argument() -> None:  # OA-tool test_simple_function
    made = Tool(simple_function)
    assert call(made, parse_arguments('{"a": 1}')) == 6
    assert call(made, parse_arguments('{"a": 1, "b": 2}')) == 3
    with pytest.raises(ToolArgumentError, match="a: missing"):
        made.validate(parse_arguments(""))


class OaFoo(BaseModel):
    a: int
    b: int = 5


class OaBar(TypedDict):
    x: str
    y: int


def complex_args_function(foo: OaFoo, bar: OaBar, baz: str = "hello") -> str:
    return f"{foo.a + foo.b} {bar['x']}{bar['y']} {baz}"


def test_complex_args_function() -> None:  # OA-tool test_complex_args_function
    made = Tool(complex_args_function)
    bar = {"x": "hello", "y": 10}
    assert call(made, {"foo": {"a": 1}, "bar": bar}) == "6 hello10 hello"
    assert call(made, {"foo": {"a": 1, "b": 2}, "bar": bar}) == "3 hello10 hello"
    assert call(made, {"foo": {"a": 1, "b": 2}, "bar": bar, "baz": "world"}) == "3 hello10 world"
    with pytest.raises(ToolArgumentError, match="bar: missing"):
        made.validate({"foo": {"a": 1}})


def test_function_config_overrides() -> None:  # OA-tool test_function_config_overrides
    made = Tool(simple_function, name="custom_name", description="custom description")
    assert (made.name, made.description) == ("custom_name", "custom description")
    decorated = kaizen.tool(name="other", description="other description")(simple_function)
    assert (decorated.name, decorated.description) == ("other", "other description")


def test_func_schema_is_strict() -> None:  # OA-tool test_func_schema_is_strict
    for func in (simple_function, complex_args_function):
        assert Tool(func).parameters["additionalProperties"] is False
    with pytest.raises(ToolArgumentError, match="c: not a parameter of this tool"):
        Tool(simple_function).validate({"a": 1, "c": 2})


def test_function_tool_default_error_works() -> None:  # OA-tool, same name
    def my_func(a: int, b: int = 5) -> int:
        """Always fails."""
        raise ValueError("test")

    model = ScriptedModel(
        [
            ScriptedModel.tool_calls([("my_func", {}), ("my_func", {"a": 1})]),
            {"answer": "done"},
        ]
    )
    agent = kaizen.Agent("a", "question -> answer", {"model": model}, tools=[my_func])
    result = agent.execute(question="?")
    errors = sorted(record.error or "" for record in result.tool_calls)
    assert "a: missing (required)" in errors[0]
    assert errors[1] == "tool 'my_func': test"
    told = [m["content"] for m in model.calls[1].messages if m["role"] == "tool"]
    assert sorted(told) == [f"ERROR: {error}" for error in errors]


def test_sync_function_does_not_block_event_loop() -> None:  # OA-tool, same name
    release = threading.Event()

    def sync_func() -> str:
        """Blocks its thread until released."""
        release.wait(10)
        return "ok"

    made = Tool(sync_func)

    async def main() -> str:
        task = asyncio.create_task(made.ainvoke({}))
        await asyncio.sleep(0)  # the loop turns while the tool blocks its worker thread
        assert not task.done()
        release.set()
        return await task

    assert asyncio.run(main()) == "ok"


# -- LC-tools: LangChain core tests/unit_tests/test_tools.py -----------------------------------


class SomeEnum(Enum):
    A = "a"
    B = "b"


class SomeBaseModel(BaseModel):
    foo: str


def test_structured_tool_types_parsed() -> None:  # LC-tools test_structured_tool_types_parsed
    def structured_tool(some_enum: SomeEnum, some_base_model: SomeBaseModel) -> dict[str, Any]:
        """Return the arguments directly."""
        return {"some_enum": some_enum, "some_base_model": some_base_model}

    result = call(Tool(structured_tool), {"some_enum": "a", "some_base_model": {"foo": "bar"}})
    assert result == {"some_enum": SomeEnum.A, "some_base_model": SomeBaseModel(foo="bar")}


def test_structured_tool_from_function_docstring() -> None:
    # LC-tools test_structured_tool_from_function_docstring and ..._complex_args: DIFFERENCE:
    # LangChain's description is the whole docstring; Kaizen's is the text before the sections,
    # each parameter described from `Args:`
    def foo(bar: int, baz: list[str]) -> str:
        """Docstring.

        Args:
            bar: the bar value
            baz: the baz value
        """
        return f"{bar} {baz}"

    made = Tool(foo)
    assert (made.name, made.description) == ("foo", "Docstring.")
    assert made.parameters == {
        "type": "object",
        "properties": {
            "bar": {"type": "integer", "description": "the bar value"},
            "baz": {"type": "array", "items": {"type": "string"}, "description": "the baz value"},
        },
        "required": ["bar", "baz"],
        "additionalProperties": False,
    }


def test_tool_partial_function_args_schema() -> None:  # LC-tools, same name
    def func(tool_input: str, other_arg: str) -> str:
        return tool_input + other_arg

    made = Tool(functools.partial(func, other_arg="foo"), name="tool", description="A tool")
    assert made.parameters["required"] == ["tool_input"]
    assert call(made, {"tool_input": "bar"}) == "barfoo"


def test_empty_args_and_parameterless_function() -> None:
    # LC-tools test_empty_args_decorator, test_structured_tool_from_parameterless_function
    @kaizen.tool
    def empty_tool_input() -> str:
        """Return a constant."""
        return "the empty result"

    assert empty_tool_input.name == "empty_tool_input"
    assert empty_tool_input.parameters["properties"] == {}
    assert call(empty_tool_input, {}) == "the empty result"
    assert call(empty_tool_input, parse_arguments("")) == "the empty result"


def test_named_tool_decorator() -> None:
    # LC-tools test_named_tool_decorator: DIFFERENCE: the name is a keyword (`name=`), so a
    # string where a function goes is a clear error
    @kaizen.tool(name="search")
    def search_api(query: str) -> str:
        """Search the API for the query."""
        return f"API result - {query}"

    assert search_api.name == "search"
    assert call(search_api, {"query": "foo"}) == "API result - foo"
    with pytest.raises(TypeError, match="a tool wraps a function, not str"):
        kaizen.tool("search")  # type: ignore[call-overload]


def test_tool_with_kwargs_defaults() -> None:  # LC-tools test_tool_with_kwargs
    @kaizen.tool
    def search_api(arg_0: str, arg_1: float = 4.3, ping: str = "hi") -> str:
        """Search the API for the query."""
        return f"arg_0={arg_0}, arg_1={arg_1}, ping={ping}"

    told = call(search_api, {"arg_0": "foo", "arg_1": 3.2, "ping": "pong"})
    assert told == "arg_0=foo, arg_1=3.2, ping=pong"
    assert call(search_api, {"arg_0": "foo"}) == "arg_0=foo, arg_1=4.3, ping=hi"


def test_missing_docstring_is_allowed() -> None:
    # LC-tools test_missing_docstring: DIFFERENCE: a tool without a docstring has an empty
    # description (the name and the schema still tell the model what it does)
    def search_api(query: str) -> str:
        return "API result"

    assert Tool(search_api).description == ""


# -- OA-decorator: openai-agents tests/test_function_tool_decorator.py --------------------------


def test_sync_and_async_invocations() -> None:
    # OA-decorator test_sync_no_context_no_args_invocation, test_sync_no_context_with_args_...,
    # test_async_no_context_invocation
    @kaizen.tool
    def sync_no_args() -> str:
        return "test_1"

    @kaizen.tool
    def sync_with_args(a: int, b: int) -> int:
        return a + b

    @kaizen.tool
    async def async_with_args(a: int, b: int) -> int:
        await asyncio.sleep(0)
        return a * b

    assert call(sync_no_args, parse_arguments("")) == "test_1"
    assert call(sync_with_args, {"a": 5, "b": 7}) == 12
    assert call(async_with_args, {"a": 3, "b": 4}) == 12
    assert asyncio.run(async_with_args.ainvoke({"a": 3, "b": 4})) == 12


def test_sync_no_context_override_invocation() -> None:  # OA-decorator, same name
    @kaizen.tool(name="my_custom_tool", description="custom desc")
    def sync_no_context_override() -> str:
        return "override_result"

    made = sync_no_context_override
    assert (made.name, made.description) == ("my_custom_tool", "custom desc")
    assert call(made, {}) == "override_result"


def test_error_on_invalid_json() -> None:
    # OA-decorator test_error_on_invalid_json and test_no_error_on_invalid_json: bad JSON is a
    # tool error the model reads, never a crash
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_arguments("{not valid json}")
    model = ScriptedModel([ScriptedModel.tool_call("double", "{not valid json}"), {"answer": "x"}])

    def double(x: int) -> int:
        return x * 2

    agent = kaizen.Agent("a", "question -> answer", {"model": model}, tools=[double])
    [record] = agent.execute(question="?").tool_calls
    assert "the arguments are not valid JSON" in (record.error or "")


def test_optional_parameters() -> None:
    # OA-decorator test_non_strict_mode_function and test_all_optional_params_function
    def optional_param_function(a: int, b: int | None = None) -> str:
        return f"{a}_no_b" if b is None else f"{a}_{b}"

    def all_optional(x: int = 42, y: str = "hello", z: int | None = None) -> str:
        return f"{x}_{y}_no_z" if z is None else f"{x}_{y}_{z}"

    made = Tool(optional_param_function)
    assert made.parameters["required"] == ["a"]
    assert call(made, {"a": 5}) == "5_no_b"
    assert call(made, {"a": 5, "b": 10}) == "5_10"
    every = Tool(all_optional)
    assert "required" not in every.parameters
    assert call(every, {}) == "42_hello_no_z"
    assert call(every, {"x": 10, "y": "world"}) == "10_world_no_z"
    assert call(every, {"x": 10, "y": "world", "z": 99}) == "10_world_99"


def test_extract_descriptions_from_docstring() -> None:  # OA-decorator, same name
    def get_weather(city: str) -> str:
        """Get the weather for a given city.

        Args:
            city: The city to get the weather for.
        """
        return f"The weather in {city} is sunny."

    made = Tool(get_weather)
    assert made.description == "Get the weather for a given city."
    assert made.parameters == {
        "type": "object",
        "properties": {
            "city": {"description": "The city to get the weather for.", "type": "string"}
        },
        "required": ["city"],
        "additionalProperties": False,
    }


def test_async_callable_object_works_as_bare_function_tool() -> None:  # OA-decorator
    class AsyncCallable:
        """Double a value.

        Args:
            value: The value to double.
        """

        def __init__(self) -> None:
            self.calls = 0

        async def __call__(self, value: int) -> int:
            self.calls += 1
            await asyncio.sleep(0)
            return value * 2

    handler = AsyncCallable()
    made = Tool(handler)
    assert (made.name, made.description) == ("AsyncCallable", "Double a value.")
    assert props(made)["value"] == {"description": "The value to double.", "type": "integer"}
    assert call(made, {"value": 4}) == 8 and handler.calls == 1


def test_slotted_async_callable_object_works_as_function_tool() -> None:  # OA-decorator
    class AsyncCallable:
        __slots__ = ()

        async def __call__(self, value: int) -> int:
            return value * 2

    made = Tool(AsyncCallable())
    assert props(made)["value"]["type"] == "integer"
    assert call(made, {"value": 4}) == 8


def test_callable_object_uses_call_docstring_when_class_docstring_missing() -> None:
    # OA-decorator, same name
    class AsyncCallable:
        async def __call__(self, value: int) -> int:
            """Double a value.

            Args:
                value: The value to double.
            """
            return value * 2

    made = Tool(AsyncCallable())
    assert made.description == "Double a value."
    assert props(made)["value"] == {"description": "The value to double.", "type": "integer"}


def test_callable_object_combines_class_summary_with_call_parameter_docs() -> None:
    # OA-decorator, same name: DIFFERENCE on the parameter: an `Annotated` string wins over the
    # docstring in Kaizen (the description nearest the parameter)
    class AsyncCallable:
        """Configure a reusable multiplier."""

        async def __call__(self, value: Annotated[int, "Annotated fallback."], n: int = 2) -> int:
            """Multiply a value.

            Args:
                value: The value supplied to this invocation.
                n: The factor.
            """
            return value * n

    made = Tool(AsyncCallable())
    assert made.description == "Configure a reusable multiplier."
    assert props(made)["value"]["description"] == "Annotated fallback."
    assert props(made)["n"]["description"] == "The factor."


@pytest.mark.parametrize("class_name", ["Café", "A" * 65])
def test_callable_object_requires_a_name_for_an_invalid_class_name(class_name: str) -> None:
    # OA-decorator test_callable_object_requires_override_for_invalid_fallback_name
    async def __call__(self: Any, value: int) -> int:
        return value

    handler = type(class_name, (), {"__call__": __call__})()
    with pytest.raises(ConfigError, match=r"is not valid.*pass name="):
        Tool(handler)
    assert Tool(handler, name="safe_name").name == "safe_name"


def test_async_callable_object_works_with_configured_function_tool() -> None:  # OA-decorator
    class AsyncCallable:
        async def __call__(self, value: int) -> int:
            return value + 1

    made = kaizen.tool(name="increment", description="Increment a value.", timeout=1)(
        AsyncCallable()
    )
    assert (made.name, made.description, made.timeout) == ("increment", "Increment a value.", 1)
    assert call(made, {"value": 4}) == 5


# -- PA-schema: pydantic-ai tests/test_function_schema.py ---------------------------------------
# Its cases ask whether a callable takes a `RunContext` first; Kaizen tools take no context
# argument, so the "with ctx" cases have no counterpart. The "without ctx" ones become: every
# callable shape gives the parameters it is called with.


class CallableWithoutCtx:
    def __call__(self, x: int, y: str) -> str:
        return f"{x}{y}"


class Shapes:
    def method_without_ctx(self, x: int, y: str) -> str:
        return f"{x}{y}"

    @staticmethod
    def static_method_without_ctx(x: int, y: str) -> str:
        return f"{x}{y}"

    @classmethod
    def class_method_without_ctx(cls, x: int, y: str) -> str:
        return f"{x}{y}"


def func_without_ctx(x: int, y: str) -> str:
    return f"{x}{y}"


def partial_original(x: int, y: str, z: float) -> str:
    return f"{x}{y}"


@pytest.mark.parametrize(
    "shape",
    [
        func_without_ctx,  # test_regular_function_without_ctx
        functools.partial(partial_original, z=3.14),  # test_partial_function_without_ctx
        CallableWithoutCtx(),  # test_callable_class_without_ctx
        Shapes().method_without_ctx,  # test_method_without_ctx
        Shapes.static_method_without_ctx,  # test_static_method_without_ctx
        Shapes.class_method_without_ctx,  # test_class_method_without_ctx
    ],
    ids=["function", "partial", "callable", "method", "static", "classmethod"],
)
def test_every_callable_shape_without_ctx(shape: Any) -> None:
    made = Tool(shape, name="shape")
    assert made.parameters["required"] == ["x", "y"]
    assert call(made, {"x": 1, "y": "a"}) == "1a"


def test_function_no_annotations_and_lambda() -> None:
    # PA-schema test_function_no_annotations and test_lambda_with_ctx: unannotated parameters
    # take any JSON value; a lambda has no valid name, so it needs name=
    def func_no_annotations(ctx, x):  # type: ignore[no-untyped-def]
        return [ctx, x]

    made = Tool(func_no_annotations)
    assert made.parameters["properties"] == {"ctx": {}, "x": {}}
    assert call(made, {"ctx": {"a": 1}, "x": [2]}) == [{"a": 1}, [2]]
    with pytest.raises(ConfigError, match=r"'<lambda>' is not valid.*pass name="):
        Tool(lambda ctx, x: x)
    assert call(Tool(lambda ctx, x: x, name="pick"), {"ctx": 1, "x": 2}) == 2


def test_builtin_function() -> None:
    # PA-schema test_builtin_function and PA-tools test_builtin_tool_registration: a builtin is
    # refused, as in pydantic-ai (Kaizen's reason: `len(obj, /)` is positional-only)
    with pytest.raises(ConfigError, match="'obj' is positional-only"):
        Tool(len)
