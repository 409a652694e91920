"""`kaizen.tool` / `kaizen.Tool`: names, descriptions, schemas, validation, results, toolsets."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import string
from typing import Annotated, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, Field

import kaizen
from kaizen.errors import ConfigError
from kaizen.llm.transport import StreamAssembler
from kaizen.tools import Tool, ToolArgumentError, Toolset, collect_tools, serialize_result
from kaizen.tools.schema import parse_docstring
from kaizen.tools.tool import ToolResultError


@kaizen.tool
def search(query: str, limit: int = 3, mode: Literal["fast", "deep"] = "fast") -> list[str]:
    """Search the notes for a query.

    Longer explanation that the model also reads.

    Args:
        query: What to look for.
        limit (int): How many results to return,
            at most.
        mode: How hard to look.

    Returns:
        The matching notes.
    """
    return [f"{query}-{i}" for i in range(limit)]


def test_a_decorated_function_becomes_a_tool_named_and_described_from_its_docstring() -> None:
    assert isinstance(search, Tool)
    assert search.name == "search"
    assert search.description == (
        "Search the notes for a query.\n\nLonger explanation that the model also reads."
    )
    spec = search.spec()
    assert spec["type"] == "function"
    parameters = spec["function"]["parameters"]
    assert parameters["required"] == ["query"]
    assert parameters["additionalProperties"] is False
    assert parameters["properties"]["query"] == {
        "type": "string",
        "description": "What to look for.",
    }
    assert (
        parameters["properties"]["limit"]["description"] == "How many results to return, at most."
    )
    assert parameters["properties"]["mode"]["enum"] == ["fast", "deep"]
    assert "title" not in json.dumps(parameters)  # pydantic's titles are noise for a model


def test_the_tool_is_still_callable_as_the_function() -> None:
    assert search("x", limit=1) == ["x-0"]


def test_arguments_are_validated_and_converted_before_the_call() -> None:
    assert search.validate({"query": "a", "limit": "2"}) == {
        "query": "a",
        "limit": 2,
        "mode": "fast",
    }
    with pytest.raises(ToolArgumentError) as caught:
        search.validate({"limit": "many", "colour": "red"})
    message = str(caught.value)
    assert "query: missing" in message
    assert "limit:" in message and "'many'" in message
    assert "colour: not a parameter of this tool" in message
    assert caught.value.tool == "search"


def test_the_explicit_form_sets_name_description_timeout_and_retries() -> None:
    def f(x: int) -> int:
        return x

    explicit = Tool(f, name="double", description="Doubles.", timeout=2.5, retries=4)
    assert (explicit.name, explicit.description, explicit.timeout, explicit.retries) == (
        "double",
        "Doubles.",
        2.5,
        4,
    )
    decorated = kaizen.tool(name="other", timeout=1, deterministic=True)(f)
    assert decorated.name == "other" and decorated.deterministic


class Point(BaseModel):
    x: int
    y: Annotated[int, Field(description="vertical")] = 0


def test_pydantic_parameters_and_async_functions() -> None:
    @kaizen.tool
    async def move(point: Point, by: int) -> Point:
        """Move a point."""
        await asyncio.sleep(0)
        return Point(x=point.x + by, y=point.y)

    assert move.is_async
    arguments = move.validate({"point": {"x": 1}, "by": 2})
    assert arguments["point"] == Point(x=1)
    assert move.invoke(arguments) == Point(x=3, y=0)
    assert asyncio.run(move.ainvoke(arguments)) == Point(x=3, y=0)
    assert "$defs" in move.parameters or "properties" in move.parameters["properties"]["point"]


def test_sync_tools_run_from_async_code_in_a_thread() -> None:
    assert asyncio.run(search.ainvoke({"query": "q", "limit": 1, "mode": "fast"})) == ["q-0"]


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda: Tool(lambda x: x, name="has space"), "not valid"),
        (lambda: Tool(len, name="ok", timeout=0), "timeout must be positive"),
        (lambda: Tool(len, name="ok", retries=-1), "retries must be 0 or more"),
    ],
)
def test_bad_tool_definitions_fail_when_made(make: object, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        make()  # type: ignore[operator]


def test_positional_only_parameters_are_refused() -> None:
    def f(a: int, /) -> int:
        return a

    with pytest.raises(ConfigError, match="positional-only"):
        Tool(f)


@dataclasses.dataclass
class Row:
    name: str
    score: float


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("plain text", "plain text"),
        (Point(x=1, y=2), '{"x":1,"y":2}'),
        (Row("a", 0.5), '{"name": "a", "score": 0.5}'),
        ([1, "two", None], '[1, "two", null]'),
        ({"rows": [Row("b", 1.0)]}, '{"rows": [{"name": "b", "score": 1.0}]}'),
        (42, "42"),
    ],
)
def test_results_are_serialised_for_the_model(value: object, text: str) -> None:
    assert serialize_result("t", value) == text


def test_an_unserialisable_result_is_a_clear_error() -> None:
    with pytest.raises(ToolResultError, match=r"tool 't' returned a object"):
        serialize_result("t", object())


def test_collect_tools_wraps_functions_expands_toolsets_and_refuses_clashes() -> None:
    def plain(a: int) -> int:
        """Plain."""
        return a

    class Two(Toolset):
        def list_tools(self) -> list[Tool]:
            return [Tool(plain, name="one"), Tool(plain, name="two")]

    tools = collect_tools([plain, Two(), search])
    assert [t.name for t in tools] == ["plain", "one", "two", "search"]
    with pytest.raises(ConfigError, match="two tools are named 'search'"):
        collect_tools([search, search])
    with pytest.raises(ConfigError, match="may not be named 'complete'"):
        collect_tools([Tool(plain, name="complete")])
    with pytest.raises(ConfigError, match="is not a tool"):
        collect_tools([42])  # type: ignore[list-item]


names = st.text(string.ascii_lowercase + "_", min_size=1, max_size=12).filter(lambda n: n[0] != "_")
descriptions = (
    st.text(string.ascii_letters + " ,.", min_size=1, max_size=40).map(str.strip).filter(bool)
)


@given(st.dictionaries(names, descriptions, min_size=1, max_size=5), descriptions)
def test_docstring_args_round_trip(args: dict[str, str], summary: str) -> None:
    lines = [summary, "", "Args:"]
    lines += [f"    {name}: {text}" for name, text in args.items()]
    lines += ["", "Returns:", "    something"]
    parsed_summary, parsed = parse_docstring("\n".join(lines))
    assert parsed_summary == summary
    assert parsed == args


calls = st.lists(
    st.tuples(names, st.dictionaries(names, st.integers() | st.text(max_size=8), max_size=3)),
    max_size=4,
)


@given(calls, st.text(max_size=30), st.data())
def test_streamed_tool_calls_assemble_by_index_whatever_the_fragments(
    wanted: list[tuple[str, dict[str, object]]], text: str, data: st.DataObject
) -> None:
    chunks: list[dict[str, object]] = []
    if text:  # text first: the tool calls after it must not be dropped
        chunks.append({"choices": [{"delta": {"content": text}}]})
    for index, (name, arguments) in enumerate(wanted):
        encoded = json.dumps(arguments)
        cuts = sorted(data.draw(st.lists(st.integers(0, len(encoded)), max_size=3)))
        pieces = [encoded[a:b] for a, b in zip([0, *cuts], [*cuts, len(encoded)], strict=True)]
        for number, piece in enumerate(pieces):
            fragment: dict[str, object] = {"index": index, "function": {"arguments": piece}}
            if number == 0:
                fragment["id"] = f"id{index}"
                fragment["function"] = {"name": name, "arguments": piece}
            chunks.append({"choices": [{"delta": {"tool_calls": [fragment]}}]})
    chunks.append(
        {
            "choices": [{"delta": {}, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 7},
        }
    )
    seen: list[str] = []
    assembler = StreamAssembler(seen.append)
    for chunk in chunks:
        assembler.add(chunk)
    reply = assembler.reply("m")
    assert reply.text == text == "".join(seen)
    assert [(c.id, c.name, json.loads(c.arguments)) for c in reply.tool_calls] == [
        (f"id{i}", name, arguments) for i, (name, arguments) in enumerate(wanted)
    ]
    assert (reply.prompt_tokens, reply.completion_tokens) == (5, 7)
    assert reply.finish_reason == "tool_calls"
