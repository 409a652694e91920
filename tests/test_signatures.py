"""The string and class signature forms: parsing, types, errors, value semantics, models, schema."""

from __future__ import annotations

import pickle
from typing import Any, Literal, Optional

import jsonschema
import pytest
from pydantic import BaseModel

from kaizen.errors import InputValidationError, SignatureError
from kaizen.nodes.base import MISSING
from kaizen.signatures import (
    InputField,
    OutputField,
    Signature,
    SignatureField,
    create_signature,
    parse_output,
    register_type,
)


class SigTestAddress(BaseModel):
    city: str
    zip_code: str


class SigTestPerson(BaseModel):
    name: str
    age: int
    address: SigTestAddress | None = None


register_type(SigTestPerson)


def types_of(spec: str, **kwargs: Any) -> dict[str, Any]:
    sig = create_signature(spec, **kwargs)
    return {f.name: f.type for f in (*sig.input_fields, *sig.output_fields)}


# -- string form ------------------------------------------------------------------------------


def test_untyped_fields_are_strings() -> None:
    sig = create_signature("question -> answer")
    assert sig.input_names == ("question",)
    assert sig.output_names == ("answer",)
    assert sig.input_fields[0] == SignatureField("question", str)
    assert sig.input_fields[0].default is MISSING and sig.input_fields[0].required


def test_typed_fields_keep_order_and_types() -> None:
    sig = create_signature("question: str, context: list[str] -> answer: str, confidence: float")
    assert sig.input_names == ("question", "context")
    assert sig.output_names == ("answer", "confidence")
    assert [f.type for f in sig.output_fields] == [str, float]


@pytest.mark.parametrize(
    ("spec_type", "expected"),
    [
        ("list[str]", list[str]),
        ("List[str]", list[str]),
        ("dict[str, int]", dict[str, int]),
        ("Dict[str, list[int]]", dict[str, list[int]]),
        ("Optional[int]", Optional[int]),  # noqa: UP045 - the typing spelling is what is tested
        ("int | None", Optional[int]),  # noqa: UP045
        ("Union[int, str]", int | str),
        ("Literal['yes', 'no']", Literal["yes", "no"]),
        ('Literal["yes", "no"]', Literal["yes", "no"]),
        ("Literal[1, -2, True, None]", Literal[1, -2, True, None]),
        ("tuple[int, ...]", tuple[int, ...]),
        ("tuple[int, str]", tuple[int, str]),
        ("set[str]", set[str]),
        ("list[dict[str, list[Optional[float]]]]", list[dict[str, list[float | None]]]),
        ("bytes", bytes),
        ("bool", bool),
        ("Any", Any),
        ("list", list),
        ("SigTestPerson", SigTestPerson),
        ("list[SigTestPerson] | None", list[SigTestPerson] | None),
    ],
)
def test_types_resolve_to_canonical_annotations(spec_type: str, expected: Any) -> None:
    assert types_of(f"x: {spec_type} -> y")["x"] == expected


def test_typing_and_builtin_spellings_give_equal_signatures() -> None:
    assert create_signature("a: List[str] -> b: Optional[int]") == create_signature(
        "a: list[str] -> b: int | None"
    )


def test_per_call_types_override_the_registry() -> None:
    class Other(BaseModel):
        x: int

    assert types_of("a: SigTestPerson -> b", types={"SigTestPerson": Other})["a"] is Other
    assert types_of("a: Thing -> b", types={"Thing": Other})["a"] is Other


def test_register_type_rejects_non_models_and_builtin_names() -> None:
    with pytest.raises(TypeError):
        register_type(int)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="builtin"):
        register_type(SigTestAddress, name="str")


def test_registering_after_a_failed_parse_makes_the_name_usable() -> None:
    with pytest.raises(SignatureError):
        create_signature("a: SigTestLate -> b")

    class SigTestLate(BaseModel):
        v: int

    register_type(SigTestLate)
    assert types_of("a: SigTestLate -> b")["a"] is SigTestLate


def test_descriptions_constraints_defaults_and_instructions() -> None:
    sig = create_signature(
        "'Answer briefly.' question: str 'what the user asks', "
        "k: int (ge=1, le=10) = 3 'how many passages' -> "
        "answer: str (min_length=1) 'the answer'"
    )
    assert sig.instructions == "Answer briefly."
    question, k = sig.input_fields
    assert question.description == "what the user asks"
    assert k.default == 3 and k.constraints == {"ge": 1, "le": 10}
    assert sig.output_fields[0].constraints == {"min_length": 1}
    assert sig.output_fields[0].description == "the answer"


def test_instructions_argument_wins_over_the_spec() -> None:
    sig = create_signature("'spec text' a -> b", instructions="argument text")
    assert sig.instructions == "argument text"
    assert create_signature("a -> b").instructions == ""


def test_commas_inside_brackets_and_literal_strings_are_not_separators() -> None:
    sig = create_signature("a: dict[str, int], b: Literal['x, y', \"->\"] -> c: tuple[int, str]")
    assert sig.input_names == ("a", "b")
    assert sig.input_fields[1].type == Literal["x, y", "->"]


def test_whitespace_and_newlines_are_insignificant() -> None:
    assert create_signature("  a :list[ str ] ,\n b\n->\n c ") == create_signature(
        "a: list[str], b -> c"
    )


def test_repeated_specs_are_cached() -> None:
    spec = "cache_me: str -> out: int"
    assert create_signature(spec) is create_signature(spec)


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "position", "words"),
    [
        ("", 0, "empty"),
        ("   ", 3, "empty"),
        ("->", 0, "no input fields"),
        ("a ->", 4, "no output fields"),
        ("-> b", 0, "no input fields"),
        ("a -> a", 5, "both input and output"),
        ("a, a -> b", 3, "twice among the inputs"),
        ("a -> b, b", 8, "twice among the outputs"),
        ("1x -> y", 0, "'1x' is not a valid field name"),
        ("a, , b -> c", 3, "empty input field"),
        ("a -> b, ", 8, "empty output field"),
        ("a -> b -> c", 7, "exactly one '->'"),
        ("a: list[str -> b", 7, "unbalanced '['"),
        ("a: dict[str, list[int] -> b", 7, "unbalanced '['"),
        ("a: str] -> b", 6, "found ']'"),
        ("class -> b", 0, "keyword"),
        ("a -> None", 5, "keyword"),
        ("a-b -> c", 1, "unexpected character '-'"),
        ("a$ -> b", 1, "unexpected character '$'"),
        ("'unterminated a -> b", 0, "unterminated string"),
        ("a, b", 4, "missing '->'"),
        ("_private -> b", 0, "must not start with '_'"),
        ("a: list[str, int] -> b", 3, "takes 1 type argument"),
        ("a: Optional[int, str] -> b", 3, "exactly one type"),
        ("a: str[int] -> b", 6, "takes no arguments"),
        ("a: Literal -> b", 3, "needs arguments"),
        ("a: Literal[1.5] -> b", 11, "Literal values"),
        ("a -> b = 3", 7, "cannot have a default"),
        ("a: str (ge=1) -> b", 3, "applies to int or float"),
        ("a: int (foo=1) -> b", 3, "unknown constraint"),
        ("a: str (pattern='(') -> b", 3, "not a valid regular expression"),
        ("a: int (ge=1, ge=2) -> b", 14, "given twice"),
        ("a: -> b", 3, "expected a type"),
    ],
)
def test_malformed_specs_raise_signature_error_at_the_fault(
    spec: str, position: int, words: str
) -> None:
    with pytest.raises(SignatureError) as info:
        create_signature(spec)
    err = info.value
    assert words in err.message
    assert err.spec == spec
    assert err.position == position
    caret_line = str(err).splitlines()[-1]
    assert caret_line == "  " + " " * position + "^"


def test_unknown_type_names_the_field_and_suggests_close_names() -> None:
    with pytest.raises(SignatureError) as info:
        create_signature("a: strr -> b")
    assert info.value.field == "a"
    assert "'strr'" in info.value.message and "did you mean 'str'" in info.value.message
    with pytest.raises(SignatureError, match="'int'"):
        create_signature("a -> b: integer")
    with pytest.raises(SignatureError, match="SigTestPerson"):
        create_signature("a: SigTestPersn -> b")


def test_errors_name_the_field_being_parsed() -> None:
    with pytest.raises(SignatureError) as info:
        create_signature("q, ctx: list[str -> b")
    assert info.value.field == "ctx"


def test_deep_nesting_is_refused_not_a_recursion_error() -> None:
    with pytest.raises(SignatureError, match="nested deeper"):
        create_signature("a: " + "list[" * 200 + "str" + "]" * 200 + " -> b")


@pytest.mark.parametrize("bad", [None, 3, b"a -> b", ["a", "b"], {"a": "b"}, int])
def test_other_argument_types_raise_type_error(bad: Any) -> None:
    with pytest.raises(TypeError, match="spec string"):
        create_signature(bad)


def test_instructions_must_be_a_string() -> None:
    with pytest.raises(TypeError, match="instructions"):
        create_signature("a -> b", instructions=3)  # type: ignore[arg-type]


# -- value semantics --------------------------------------------------------------------------


def test_signatures_are_immutable_hashable_and_compare_by_value() -> None:
    a = create_signature("q: str -> a: int")
    b = create_signature("q:str->a:int")
    assert a == b and hash(a) == hash(b)
    assert len({a, b}) == 1
    assert a != create_signature("q: str -> a: float")
    assert a != a.with_instructions("different")
    with pytest.raises(AttributeError, match="immutable"):
        a.instructions = "x"  # type: ignore[misc]


def test_str_parses_back_to_an_equal_signature() -> None:
    sig = create_signature(
        "'Say \"hi\".\\nThen stop.' q: list[str] 'the q', n: int (ge=0) = 3, "
        "opts: dict[str, float] = {'a': 1.5} -> a: Literal['yes', 'no'] | None, "
        "b: tuple[int, ...], c: SigTestPerson"
    )
    assert create_signature(str(sig)) == sig
    assert repr(sig).startswith("Signature(")


def test_with_instructions_returns_a_new_signature() -> None:
    sig = create_signature("a -> b")
    other = sig.with_instructions("Be terse.")
    assert other.instructions == "Be terse." and sig.instructions == ""
    assert other.input_fields == sig.input_fields


def test_signature_pickles() -> None:
    sig = create_signature("a: list[int] -> b: float")
    assert pickle.loads(pickle.dumps(sig)) == sig


def test_signature_from_fields_is_checked() -> None:
    sig = Signature([SignatureField("a", int)], [SignatureField("b", list[str])], "x")
    assert create_signature(str(sig)) == sig
    with pytest.raises(SignatureError, match="at least one output"):
        Signature([SignatureField("a")], [])
    with pytest.raises(SignatureError, match="twice"):
        Signature([SignatureField("a")], [SignatureField("a")])
    with pytest.raises(SignatureError, match="not a supported signature type"):
        Signature([SignatureField("a", complex)], [SignatureField("b")])


# -- class form -------------------------------------------------------------------------------


class QA(Signature):
    """Answer the question from the context."""

    question: str = InputField(desc="the question")
    context: list[str] = InputField(desc="passages", default=[])
    answer: str = OutputField(desc="a short answer", min_length=1, max_length=200)
    confidence: float = OutputField(desc="0 to 1", ge=0, le=1)


def test_class_form_gives_the_same_kind_of_value() -> None:
    sig = QA.signature()
    assert type(sig) is Signature
    assert create_signature(QA) is sig
    assert sig.instructions == "Answer the question from the context."
    assert sig.input_names == ("question", "context")
    assert sig.input_fields[1].default == [] and not sig.input_fields[1].required
    assert sig.output_fields[1].constraints == {"ge": 0, "le": 1}
    assert create_signature(str(sig)) == sig


def test_class_and_string_forms_are_equal() -> None:
    string_form = create_signature(
        "question: str 'the question', context: list[str] = [] 'passages' -> "
        "answer: str (min_length=1, max_length=200) 'a short answer', "
        "confidence: float (ge=0, le=1) '0 to 1'",
        instructions="Answer the question from the context.",
    )
    assert string_form == QA.signature()


def test_class_form_constraints_reach_the_schema() -> None:
    props = QA.signature().output_schema["properties"]
    assert props["answer"]["minLength"] == 1 and props["answer"]["maxLength"] == 200
    assert props["confidence"]["minimum"] == 0 and props["confidence"]["maximum"] == 1


def test_class_form_inherits_fields_and_accepts_typing_spellings() -> None:
    class Base(Signature):
        question: str = InputField()

    class Child(Base):
        tags: Optional[list[str]] = OutputField()  # noqa: UP045

    with pytest.raises(SignatureError, match="Base: a signature needs at least one output"):
        Base.signature()
    sig = Child.signature()
    assert sig.input_names == ("question",)
    assert sig.output_fields[0].type == Optional[list[str]]  # noqa: UP045
    assert sig.instructions == ""


def test_class_form_errors() -> None:
    with pytest.raises(SignatureError, match="no InputField"):

        class Stray(Signature):
            question: str
            answer: str = OutputField()

    class NoOutputs(Signature):
        question: str = InputField()

    with pytest.raises(SignatureError, match="NoOutputs: a signature needs at least one output"):
        create_signature(NoOutputs)

    with pytest.raises(SignatureError, match="not a supported"):

        class BadType(Signature):
            question: complex = InputField()
            answer: str = OutputField()

    with pytest.raises(SignatureError, match="applies to int or float"):

        class BadConstraint(Signature):
            question: str = InputField(ge=1)
            answer: str = OutputField()

    with pytest.raises(TypeError, match=r"QA\.signature\(\)"):
        QA()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="subclasses"):
        Signature.signature()


# -- compiled models and schema ---------------------------------------------------------------


def test_output_schema_is_valid_draft_2020_12_with_every_output_required() -> None:
    sig = create_signature(
        "q -> answer: str, confidence: float, tags: list[str], verdict: Literal['yes', 'no'], "
        "person: SigTestPerson, extra: dict[str, int] | None"
    )
    schema = sig.output_schema
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["required"] == list(sig.output_names)
    assert schema["additionalProperties"] is False
    validator = jsonschema.Draft202012Validator(schema)
    good = {
        "answer": "x",
        "confidence": 0.5,
        "tags": ["a"],
        "verdict": "yes",
        "person": {"name": "Ann", "age": 3},
        "extra": None,
    }
    validator.validate(good)
    assert not validator.is_valid({**good, "confidence": "high"})
    assert not validator.is_valid({**good, "surprise": 1})
    assert not validator.is_valid({k: v for k, v in good.items() if k != "answer"})


def test_output_schema_is_built_once() -> None:
    sig = create_signature("a -> b")
    assert sig.output_schema is sig.output_schema
    assert sig.output_schema["title"] == "Outputs"


def test_models_validate_by_field_name_even_for_basemodel_attribute_names() -> None:
    sig = create_signature("json: str, schema: int -> model_config: float")
    assert sig.validate_inputs({"json": "x", "schema": "4"}) == {"json": "x", "schema": 4}
    assert "model_config" in sig.output_schema["properties"]
    instance = sig.output_model.model_validate({"model_config": "1.5"})
    assert instance.model_dump(by_alias=True) == {"model_config": 1.5}


def test_equal_signatures_share_models() -> None:
    a = create_signature("x: int -> y: float")
    b = create_signature("'other instructions' x: int -> y: float")
    assert a.input_model is b.input_model and a.output_model is b.output_model


def test_validate_inputs_applies_defaults_and_coerces() -> None:
    sig = QA.signature()
    assert sig.validate_inputs({"question": "why?"}) == {"question": "why?", "context": []}
    numbers = create_signature("n: int, x: float, flag: bool -> y")
    assert numbers.validate_inputs({"n": "3", "x": 2, "flag": "yes"}) == {
        "n": 3,
        "x": 2.0,
        "flag": True,
    }


def test_validate_inputs_names_every_problem() -> None:
    sig = create_signature("question: str, k: int (ge=1), tags: list[str] -> answer")
    with pytest.raises(InputValidationError) as info:
        sig.validate_inputs({"k": 0, "tags": "oops", "surprise": 1})
    fields = {field for field, _ in info.value.errors}
    assert fields == {"question", "k", "tags", "surprise"}
    text = str(info.value)
    for name in ("question", "k", "tags", "surprise"):
        assert f"`{name}`" in text
    assert "is missing" in text and "not an input" in text


def test_models_sharing_a_class_name_get_distinct_schema_definitions() -> None:
    class Item(BaseModel):
        x: int

    first = Item
    Item = type("Item", (BaseModel,), {"__annotations__": {"y": str}})  # type: ignore[misc]
    sig = create_signature("q -> a: A, b: B", types={"A": first, "B": Item})
    schema = sig.output_schema
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid({"a": {"x": 1}, "b": {"y": "s"}})
    assert not validator.is_valid({"a": {"y": "s"}, "b": {"x": 1}})


def test_length_and_number_constraints_apply_through_optional() -> None:
    sig = create_signature("q -> tags: list[str] | None (max_length=2), n: int | None (ge=0)")
    validator = jsonschema.Draft202012Validator(sig.output_schema)
    assert validator.is_valid({"tags": None, "n": None})
    assert not validator.is_valid({"tags": ["a", "b", "c"], "n": 1})
    assert not validator.is_valid({"tags": [], "n": -1})


def test_field_names_are_the_users_own_even_where_kaizen_or_pydantic_use_them() -> None:
    class Names(Signature):
        inputs: str = InputField()
        signature: str = InputField()
        instructions: str = InputField()
        json: str = OutputField()
        model_dump: int = OutputField()
        confidence: float = OutputField()

    sig = create_signature(Names)
    assert sig.input_names == ("inputs", "signature", "instructions")
    assert sig.output_names == ("json", "model_dump", "confidence")
    outputs = sig.output_model.model_validate(
        {"json": "{}", "model_dump": "3", "confidence": "0.93"}
    )
    assert outputs.confidence == 0.93  # field names are the model's attribute names
    assert outputs.json_ == "{}" and outputs.model_dump_ == 3  # clashing ones get a trailing _
    reply = '{"json": "x", "model_dump": 1, "confidence": "0.5"}'
    assert parse_output(sig, reply) == {"json": "x", "model_dump": 1, "confidence": 0.5}


def test_string_signature_output_model_attributes_are_the_field_names() -> None:
    sig = create_signature("question: str -> answer: str, confidence: float")
    model = sig.output_model.model_validate({"answer": "x", "confidence": "0.93"})
    assert model.answer == "x" and model.confidence == 0.93
    inputs = sig.input_model.model_validate({"question": "q"})
    assert inputs.question == "q"


def test_a_field_named_signature_hides_the_method_and_says_what_to_do() -> None:
    class Odd(Signature):
        signature: str = InputField()
        verdict: str = OutputField()

    assert create_signature(Odd).input_names == ("signature",)
    with pytest.raises(TypeError, match="create_signature"):
        Odd.signature()
