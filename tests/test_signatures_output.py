"""Prompt rendering and output parsing: what a model sees, and how its reply becomes values."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

from kaizen.errors import InputValidationError, OutputParseError
from kaizen.signatures import create_signature, parse_output, render_messages

QA = create_signature(
    "'Answer using the context.' question: str 'what the user asks', "
    "context: list[str] = [] -> answer: str 'a short answer', confidence: float (ge=0, le=1)"
)


class SigOutCity(BaseModel):
    name: str
    population: int


# -- rendering --------------------------------------------------------------------------------


def test_system_message_has_instructions_fields_types_descriptions_and_schema() -> None:
    system, user = render_messages(QA, {"question": "Capital of France?"})
    assert system["role"] == "system" and user["role"] == "user"
    text = system["content"]
    assert text.rstrip().endswith("Answer using the context.")
    for piece in ("`question` (str): what the user asks", "`context` (list[str])"):
        assert piece in text
    assert "`answer` (str): a short answer" in text and "`confidence` (float)" in text
    assert json.dumps(QA.output_schema, indent=2) in text


def test_user_message_holds_the_input_values() -> None:
    _, user = render_messages(QA, {"question": "Capital of France?", "context": ["Paris is."]})
    assert user["content"] == 'question:\nCapital of France?\n\ncontext:\n["Paris is."]'


def test_defaults_fill_omitted_inputs_and_missing_required_inputs_are_named() -> None:
    _, user = render_messages(QA, {"question": "q"})
    assert "context:\n[]" in user["content"]
    with pytest.raises(InputValidationError, match="`question`"):
        render_messages(QA, {})


def test_schema_can_be_left_out_of_the_prompt() -> None:
    system, _ = render_messages(QA, {"question": "q"}, schema_in_prompt=False)
    assert "JSON Schema" not in system["content"]
    assert "`answer`, `confidence`" in system["content"]


def test_default_instructions_name_the_fields() -> None:
    system, _ = render_messages(create_signature("a, b -> c"), {"a": 1, "b": {"k": [1]}})
    assert system["content"].rstrip().endswith("Given the fields `a`, `b`, produce the fields `c`.")


def test_instructions_come_after_the_fields_so_role_agents_share_a_prompt_prefix() -> None:
    """Agents of one pattern differ only in their instructions (their role): with the fields
    first, their prompts share a prefix the embedded model decodes once for all of them."""
    sig = create_signature("question: str -> answer: str")
    economist, _ = render_messages(
        sig.with_instructions("You are an economist."), {"question": "q"}
    )
    engineer, _ = render_messages(sig.with_instructions("You are an engineer."), {"question": "q"})
    a, b = economist["content"], engineer["content"]
    shared = a[: next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)]
    assert "Your output fields are" in shared and "`answer`" in shared
    assert economist["content"].rstrip().endswith("You are an economist.")


def test_non_string_inputs_render_as_json() -> None:
    sig = create_signature("city: SigOutCity, n: int -> ok: bool", types={"SigOutCity": SigOutCity})
    _, user = render_messages(sig, {"city": SigOutCity(name="Oslo", population=7), "n": 3})
    assert '{"name":"Oslo","population":7}' in user["content"]
    assert "n:\n3" in user["content"]


def test_user_templates_render_in_the_sandbox_with_strict_undefined() -> None:
    template = (
        "{{ instructions }} | {% for f in inputs %}{{ f.name }}:{{ f.type }}{% endfor %}"
        " | {% for f in outputs %}{{ f.name }}{% endfor %} | {{ schema | length > 0 }}"
    )
    user_template = "Q={{ values.question }} ({{ signature.output_names | join(',') }})"
    system, user = render_messages(
        QA, {"question": "why"}, template=template, user_template=user_template
    )
    assert system["content"] == (
        "Answer using the context. | question:strcontext:list[str] | answerconfidence | True"
    )
    assert user["content"] == "Q=why (answer,confidence)"

    from jinja2.exceptions import SecurityError, UndefinedError

    with pytest.raises(UndefinedError):
        render_messages(QA, {"question": "q"}, template="{{ no_such_variable }}")
    with pytest.raises(SecurityError):
        render_messages(
            QA,
            {"question": "q"},
            user_template="{{ signature.__class__.__mro__[1].__subclasses__() }}",
        )


def test_repeat_renders_reuse_the_system_message() -> None:
    first, _ = render_messages(QA, {"question": "a"})
    second, _ = render_messages(QA, {"question": "b"})
    assert first["content"] is second["content"]


# -- parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        '{"answer": "Paris", "confidence": 0.93}',
        '```json\n{"answer": "Paris", "confidence": 0.93}\n```',
        '```\n{"answer": "Paris", "confidence": 0.93}\n```',
        'Sure! Here it is:\n{"answer": "Paris", "confidence": 0.93}\nHope that helps.',
        '{"answer": "Paris", "confidence": 0.93,}',
        '{\n  "answer": "Paris",\n  "confidence": "0.93",\n}',
        "{'answer': 'Paris', 'confidence': 0.93}",
        'Thinking {not json} ... {"answer": "Paris", "confidence": 0.93, "notes": "extra"}',
        '{"meta": 1} then {"answer": "Paris", "confidence": 0.93}',
    ],
)
def test_replies_in_many_shapes_parse_to_typed_values(raw: str) -> None:
    assert parse_output(QA, raw) == {"answer": "Paris", "confidence": 0.93}


def test_values_are_coerced_to_their_types() -> None:
    sig = create_signature(
        "q -> score: float, count: int, ok: bool, tags: list[str], scores: dict[str, float]"
    )
    raw = json.dumps(
        {"score": "0.93", "count": "4", "ok": "true", "tags": '["a", "b"]', "scores": '{"x": "1"}'}
    )
    result = parse_output(sig, raw)
    assert result == {
        "score": 0.93,
        "count": 4,
        "ok": True,
        "tags": ["a", "b"],
        "scores": {"x": 1.0},
    }
    assert type(result["score"]) is float and type(result["scores"]["x"]) is float


def test_nested_objects_and_models_parse() -> None:
    sig = create_signature(
        "q -> city: SigOutCity, cities: list[SigOutCity]", types={"SigOutCity": SigOutCity}
    )
    raw = 'Result:\n```json\n{"city": {"name": "Oslo", "population": "7"}, "cities": []}\n```'
    result = parse_output(sig, raw)
    assert result["city"] == SigOutCity(name="Oslo", population=7)
    assert result["cities"] == []


def test_a_string_field_keeps_json_looking_text() -> None:
    sig = create_signature("q -> code: str, n: int")
    assert parse_output(sig, '{"code": "[1, 2]", "n": 1}') == {"code": "[1, 2]", "n": 1}


@pytest.mark.parametrize(
    ("spec", "raw", "expected"),
    [
        ("q -> answer", "Paris", "Paris"),
        ("q -> answer", "  Paris is the capital.\n", "Paris is the capital."),
        ("q -> answer", '"Paris"', "Paris"),
        ("q -> answer", "```\nParis\n```", "Paris"),
        ("q -> answer", "Use {braces} freely", "Use {braces} freely"),
        ("q -> score: float", "0.93", 0.93),
        ("q -> tags: list[str]", '["a", "b"]', ["a", "b"]),
        ("q -> ok: bool", "true", True),
        ("q -> data: dict[str, int]", '{"x": 1}', {"x": 1}),
        ("q -> answer", '{"answer": "Paris"}', "Paris"),
        ("q -> rows: list[dict[str, int]]", '[{"a": 1}, {"b": 2}]', [{"a": 1}, {"b": 2}]),
        ("q -> rows: list[dict[str, int]]", '```json\n[{"a": 1},]\n```', [{"a": 1}]),
        ("q -> n: int | None", "null", None),
    ],
)
def test_a_single_output_accepts_a_bare_value(spec: str, raw: str, expected: object) -> None:
    sig = create_signature(spec)
    assert parse_output(sig, raw) == {sig.output_names[0]: expected}


def test_errors_list_every_field_and_read_as_a_correction() -> None:
    with pytest.raises(OutputParseError) as info:
        parse_output(QA, '{"confidence": "high"}')
    err = info.value
    assert err.raw == '{"confidence": "high"}'
    assert sorted(err.errors) == [
        ("answer", "is missing"),
        ("confidence", "expected a number, got 'high'"),
    ]
    text = str(err)
    assert text.startswith("Your previous reply was not valid: ")
    assert "field `answer` is missing" in text
    assert "field `confidence`: expected a number, got 'high'" in text
    assert text.endswith("Reply with only a JSON object matching the schema.")


def test_constraint_violations_are_reported() -> None:
    with pytest.raises(OutputParseError) as info:
        parse_output(QA, '{"answer": "x", "confidence": 1.5}')
    assert info.value.errors[0][0] == "confidence"
    assert "less than or equal to 1" in info.value.errors[0][1]


def test_a_reply_with_no_object_for_several_outputs_is_an_error() -> None:
    for raw in ("I think Paris, fairly sure.", "", '{"answer": "Paris", "confidence": 0.9'):
        with pytest.raises(OutputParseError) as info:
            parse_output(QA, raw)
        assert info.value.raw == raw


def test_an_object_without_the_single_string_output_is_not_taken_as_text() -> None:
    with pytest.raises(OutputParseError, match="field `answer` is missing"):
        parse_output(create_signature("q -> answer"), '{"result": "Paris"}')


def test_literal_and_nested_errors_name_the_path() -> None:
    sig = create_signature("q -> verdict: Literal['yes', 'no'], items: list[int]")
    with pytest.raises(OutputParseError) as info:
        parse_output(sig, '{"verdict": "maybe", "items": [1, "x"]}')
    messages = dict(info.value.errors)
    assert "'yes'" in messages["verdict"] and "'maybe'" in messages["verdict"]
    assert messages["items"].startswith("at [1]: expected an integer")


def test_parse_output_rejects_non_text() -> None:
    with pytest.raises(TypeError, match="str"):
        parse_output(QA, {"answer": "x"})  # type: ignore[arg-type]
