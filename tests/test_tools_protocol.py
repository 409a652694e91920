"""How tool calls travel: the JSON tool protocol's schema keeps every `$ref` resolvable (pydantic
models, Enums, TypedDicts and dataclasses in a tool's parameters), through the embedded model's
grammar too (issue 21 item 3); streamed tool calls assemble whatever the fragmentation, a
provider that repeats the name in every fragment included (item 4)."""

from __future__ import annotations

import dataclasses
import enum
import json
import string
from typing import Any

import jsonschema
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import BaseModel, create_model
from typing_extensions import TypedDict

import kaizen
from kaizen.agents.loop import JsonProtocol
from kaizen.llm.transport import StreamAssembler
from kaizen.testing import ScriptedModel
from kaizen.tools import Tool
from kaizen.tools.schema import lift_defs


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Point(BaseModel):
    x: int
    y: int


class Brush(TypedDict):
    width: int


@dataclasses.dataclass
class Canvas:
    name: str


def paint(at: Point, colour: Colour, brush: Brush, canvas: Canvas) -> str:
    """Paint a dot."""
    return f"{canvas.name}: {colour.value} dot of {brush['width']} at {at.x},{at.y}"


class Place(BaseModel):  # a second `Point` elsewhere: same definition name, other shape
    label: str


def mark(point: Place) -> str:
    """Mark a place."""
    return point.label


OUTPUT = Point.model_json_schema()  # `complete`'s own arguments may hold definitions too
GOOD = {
    "tool": "paint",
    "arguments": {"at": {"x": 1, "y": 2}, "colour": "red", "brush": {"width": 3}, "canvas": {}},
}
GOOD["arguments"]["canvas"] = {"name": "c"}


def protocol() -> JsonProtocol:
    return JsonProtocol([Tool(paint), Tool(mark)], {"type": "object", "properties": {}})


def test_every_ref_in_the_json_protocols_schema_resolves_at_its_root() -> None:
    schema = protocol().schema
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert not list(validator.iter_errors(GOOD))  # before: PointerToNowhere on '#/$defs/Point'
    assert not list(validator.iter_errors({"tool": "mark", "arguments": {"point": {"label": "a"}}}))
    assert not list(validator.iter_errors({"tool": "complete", "arguments": {}}))
    bad = json.loads(json.dumps(GOOD))
    bad["arguments"]["colour"] = "green"
    assert list(validator.iter_errors(bad))
    assert list(validator.iter_errors({"tool": "mark", "arguments": {"point": {"x": 1}}}))


OtherPoint = create_model("Point", label=(str, ...))  # the name `paint`'s `Point` has


def pin(point: OtherPoint) -> str:  # type: ignore[valid-type]
    """Pin a point."""
    return str(point.label)  # type: ignore[attr-defined]


def test_definitions_of_the_same_name_from_two_tools_do_not_clash() -> None:
    schema = JsonProtocol([Tool(paint), Tool(pin)], OUTPUT).schema
    assert {"paint.Point", "pin.Point"} <= set(schema["$defs"])
    validator = jsonschema.Draft202012Validator(schema)
    assert not list(validator.iter_errors({"tool": "pin", "arguments": {"point": {"label": "a"}}}))
    assert not list(validator.iter_errors(GOOD))
    assert not list(validator.iter_errors({"tool": "complete", "arguments": {"x": 1, "y": 2}}))


def test_the_forced_completion_schema_keeps_completes_own_definitions() -> None:
    class Answer(BaseModel):
        where: Point

    found = JsonProtocol([Tool(paint)], Answer.model_json_schema()).finish_schema
    validator = jsonschema.Draft202012Validator(found)
    assert not list(
        validator.iter_errors({"tool": "complete", "arguments": {"where": {"x": 1, "y": 2}}})
    )
    assert list(validator.iter_errors({"tool": "complete", "arguments": {"where": {"x": 1}}}))


def test_lift_defs_renames_refs_and_leaves_other_refs_alone() -> None:
    schema = {
        "properties": {"a": {"$ref": "#/$defs/A"}, "b": {"$ref": "#/definitions/B"}},
        "$defs": {"A": {"type": "integer"}},
        "definitions": {"B": {"items": {"$ref": "#/$defs/A"}, "type": "array"}},
        "x": {"$ref": "https://example.com/other"},
    }
    body, defs = lift_defs(schema, "t")
    assert body == {
        "properties": {"a": {"$ref": "#/$defs/t.A"}, "b": {"$ref": "#/$defs/t.B"}},
        "x": {"$ref": "https://example.com/other"},
    }
    assert defs == {
        "t.A": {"type": "integer"},
        "t.B": {"items": {"$ref": "#/$defs/t.A"}, "type": "array"},
    }


def test_an_agent_on_the_json_protocol_calls_a_tool_with_a_model_parameter() -> None:
    model = ScriptedModel([ScriptedModel.tool_call("paint", GOOD["arguments"]), {"answer": "x"}])
    agent = kaizen.Agent(
        "painter",
        "question -> answer: str",
        {"model": model, "tool_protocol": "json"},
        tools=[paint],
    )
    result = agent.execute(question="?")
    assert result.tool_calls[0].output == "c: red dot of 3 at 1,2"
    sent = model.calls[0].response_format["json_schema"]["schema"]  # type: ignore[index]
    assert not list(jsonschema.Draft202012Validator(sent).iter_errors(GOOD))


def test_the_embedded_models_grammar_is_made_from_the_protocols_schema() -> None:
    pytest.importorskip("llama_cpp")
    from llama_cpp import LlamaGrammar
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    from kaizen.llm.embedded.schema import bounded_schema

    schema = protocol().schema
    # before: AssertionError "Error resolving ref ... $defs not in" from the converter
    grammar = json_schema_to_gbnf(json.dumps(bounded_schema(schema)))
    for rule in ("paint-Point", "paint-Colour", "paint-Brush", "paint-Canvas", "mark-Place"):
        assert f"{rule} ::=" in grammar
    assert '"\\"red\\""' in grammar and '"\\"blue\\""' in grammar
    LlamaGrammar.from_string(grammar, verbose=False)  # llama.cpp parses it


# -- stream assembly -------------------------------------------------------------------------

tool_names = st.text(string.ascii_lowercase + "_", min_size=1, max_size=16)
calls = st.lists(
    st.tuples(tool_names, st.dictionaries(tool_names, st.integers() | st.text(max_size=8))),
    min_size=1,
    max_size=3,
)


def cut(text: str, data: st.DataObject) -> list[str]:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=3)))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


def assemble(chunks: list[dict[str, Any]]) -> list[tuple[str, str, Any]]:
    assembler = StreamAssembler()
    for chunk in chunks:
        assembler.add(chunk)
    return [(c.id, c.name, json.loads(c.arguments)) for c in assembler.reply("m").tool_calls]


def fragment(index: int, name: str | None, arguments: str, with_id: bool) -> dict[str, Any]:
    function: dict[str, Any] = {"arguments": arguments}
    if name is not None:
        function["name"] = name
    part: dict[str, Any] = {"index": index, "function": function, "type": "function"}
    if with_id:
        part["id"] = f"id{index}"
    return {"choices": [{"index": 0, "delta": {"tool_calls": [part]}}]}


@given(calls, st.sampled_from(["once", "every", "pieces"]), st.data())
def test_streamed_tool_names_assemble_once_repeated_or_in_pieces(
    wanted: list[tuple[str, dict[str, Any]]], naming: str, data: st.DataObject
) -> None:
    # parallel calls' fragments interleave (as litellm's chunk builder and openai-python's
    # stream state meet them), each call's in its own order
    streams: list[list[dict[str, Any]]] = []
    for index, (name, arguments) in enumerate(wanted):
        pieces = cut(json.dumps(arguments), data)
        own: list[dict[str, Any]] = []
        if naming == "pieces":  # the name cut in pieces, one per fragment, before the arguments
            names = [n for n in cut(name, data) if n]
            so_far = ""
            for piece in names:  # a piece that starts with the name so far reads as a repeat
                assume(not (so_far and piece.startswith(so_far)))
                so_far += piece
            for number, piece in enumerate(names):
                own.append(fragment(index, piece, "", number == 0))
            own += [fragment(index, None, piece, False) for piece in pieces]
        else:
            for number, piece in enumerate(pieces):
                repeated = naming == "every" or number == 0
                own.append(fragment(index, name if repeated else None, piece, number == 0))
        streams.append(own)
    chunks = []
    while any(streams):
        which = data.draw(st.sampled_from([i for i, own in enumerate(streams) if own]))
        chunks.append(streams[which].pop(0))
    assert assemble(chunks) == [(f"id{i}", n, a) for i, (n, a) in enumerate(wanted)]


def test_a_provider_repeating_the_name_in_every_fragment_gets_it_once() -> None:
    chunks = [
        fragment(0, "get_weather", '{"city":', True),
        fragment(0, "get_weather", ' "Oslo"}', False),
    ]
    assert assemble(chunks) == [("id0", "get_weather", {"city": "Oslo"})]  # not get_weatherget_...


def test_the_embedded_model_runs_a_tool_whose_parameters_hold_definitions() -> None:
    """Structure, not facts: with a model, an Enum, a TypedDict and a dataclass in the tool's
    parameters, every reply is a call the grammar allowed; the loop ends with typed outputs
    (before: the grammar could not be made, and the run failed)."""
    from kaizen.llm import LOCAL_MODEL, local_model_installed

    if not local_model_installed():
        pytest.skip("embedded model not installed (run `make setup`)")
    agent = kaizen.create_agent(
        "painter",
        "task -> answer: str",
        {"model": LOCAL_MODEL, "max_tokens": 128, "max_iterations": 3},
        tools=[paint],
    )
    result = agent.execute(task="Paint a red dot at 1,2 with a width 3 brush on canvas c.")
    assert result.success and isinstance(result.answer, str)
    for record in result.tool_calls:  # a call the grammar allowed fits the parameters
        assert record.name == "paint" and record.output is not None, record.error
