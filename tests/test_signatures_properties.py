"""Hypothesis properties of the signature language: round-trips, parser totality, output parsing."""

from __future__ import annotations

import json
import keyword
from typing import Any, Literal

import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaizen.errors import SignatureError
from kaizen.signatures import Signature, SignatureField, create_signature, parse_output
from kaizen.signatures.compile import attribute_name
from kaizen.signatures.fieldtypes import make_union

names = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True).filter(
    lambda n: not keyword.iskeyword(n)
)
literal_values = st.one_of(st.text(max_size=8), st.integers(-1000, 1000), st.booleans(), st.none())
scalars = st.sampled_from([str, int, float, bool, bytes, Any, list, dict])


def _literal(values: list[Any]) -> Any:
    return Literal[tuple(values)]


literals = st.lists(literal_values, min_size=1, max_size=4).map(_literal)


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        inner.map(lambda t: list[t]),  # type: ignore[valid-type]
        inner.map(lambda t: dict[str, t]),  # type: ignore[valid-type]
        inner.map(lambda t: tuple[t, ...]),  # type: ignore[valid-type]
        st.lists(inner, min_size=1, max_size=3).map(lambda ts: tuple[tuple(ts)]),
        st.lists(inner, min_size=2, max_size=3).map(make_union),
        inner.map(lambda t: make_union([t, type(None)])),
    )


annotations = st.recursive(st.one_of(scalars, literals), _containers, max_leaves=6)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.text(max_size=10)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=5,
)
floats = st.floats(allow_nan=False, allow_infinity=False)
descriptions = st.one_of(st.just(""), st.text(max_size=20))


@st.composite
def signatures(draw: st.DrawFn) -> Signature:
    field_names = draw(st.lists(names, min_size=2, max_size=7, unique=True))
    split = draw(st.integers(1, len(field_names) - 1))
    inputs = []
    for name in field_names[:split]:
        annotation = draw(annotations)
        default = (
            draw(st.one_of(st.just(None), json_values, floats)) if draw(st.booleans()) else None
        )
        has_default = draw(st.booleans())
        field = SignatureField(name, annotation, draw(descriptions))
        if has_default:
            field = SignatureField(name, annotation, field.description, default)
        inputs.append(field)
    outputs = [
        SignatureField(name, draw(annotations), draw(descriptions)) for name in field_names[split:]
    ]
    return Signature(inputs, outputs, draw(st.one_of(st.just(""), st.text(max_size=30))))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(signatures())
def test_every_valid_signature_round_trips_through_str(sig: Signature) -> None:
    assert create_signature(str(sig)) == sig


spec_pieces = st.sampled_from(
    [
        "a", "b", "x1", ":", ",", "->", "-", ">", "[", "]", "(", ")", "{", "}", "|", "=", "...",
        "str", "int", "list", "dict", "Optional", "Literal", "Union", "None", "True", "'s'",
        '"t', "1", "-2", "3.5", "1x", " ", "\n", "class", "_p", "ge", "strr", "'\\x4'", "$",
    ]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=60), st.lists(spec_pieces, max_size=25).map("".join)))
def test_the_parser_raises_nothing_but_signature_error(text: str) -> None:
    try:
        sig = create_signature(text)
    except SignatureError as err:
        assert err.spec == text
        assert err.position is not None and 0 <= err.position <= len(text)
    else:
        assert create_signature(str(sig)) == sig


json_annotations = st.recursive(
    st.one_of(
        st.sampled_from([str, int, float, bool]),
        st.lists(st.text(max_size=5), min_size=1, max_size=3).map(_literal),
    ),
    lambda inner: st.one_of(
        inner.map(lambda t: list[t]),  # type: ignore[valid-type]
        inner.map(lambda t: dict[str, t]),  # type: ignore[valid-type]
        inner.map(lambda t: make_union([t, type(None)])),
    ),
    max_leaves=4,
)


def values_for(annotation: Any) -> st.SearchStrategy[Any]:
    from typing import get_args, get_origin

    origin = get_origin(annotation)
    if annotation is str:
        return st.text(max_size=15)
    if annotation is int:
        return st.integers(-(10**9), 10**9)
    if annotation is float:
        return floats
    if annotation is bool:
        return st.booleans()
    if origin is Literal:
        return st.sampled_from(get_args(annotation))
    if origin is list:
        return st.lists(values_for(get_args(annotation)[0]), max_size=3)
    if origin is dict:
        return st.dictionaries(st.text(max_size=5), values_for(get_args(annotation)[1]), max_size=3)
    inner = next(arg for arg in get_args(annotation) if arg is not type(None))
    return st.one_of(st.none(), values_for(inner))


prose = st.text(
    alphabet=st.characters(blacklist_characters="{}`", blacklist_categories=("Cs",)), max_size=30
)


@st.composite
def replies(draw: st.DrawFn) -> tuple[Signature, dict[str, Any], str]:
    field_names = draw(st.lists(names, min_size=1, max_size=4, unique=True))
    fields = [SignatureField(name, draw(json_annotations)) for name in field_names]
    sig = Signature([SignatureField("question")], fields)
    values = {f.name: draw(values_for(f.type)) for f in fields}
    instance = sig.output_model.model_validate(values)
    body = instance.model_dump_json(by_alias=True, indent=draw(st.sampled_from([None, 2])))
    jsonschema.validate(json.loads(body), sig.output_schema)  # the schema admits every instance
    if draw(st.booleans()):
        body = f"```{draw(st.sampled_from(['', 'json']))}\n{body}\n```"
    if draw(st.booleans()):
        body = f"{draw(prose)}\n{body}\n{draw(prose)}"
    expected = {name: getattr(instance, attribute_name(name)) for name in field_names}
    return sig, expected, body


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(replies())
def test_dumped_output_instances_parse_back_to_equal_values(
    case: tuple[Signature, dict[str, Any], str],
) -> None:
    sig, expected, raw = case
    assert parse_output(sig, raw) == expected


@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True),
            st.text(st.characters(codec="utf-8"), max_size=40),
        ),
        min_size=1,
        max_size=5,
        unique_by=lambda pair: pair[0],
    )
)
def test_the_user_message_written_out_is_what_its_template_renders(
    pairs: list[tuple[str, str]],
) -> None:
    """`render_messages` writes the built-in user template out in Python (it runs on every
    model call); the template stays the reference."""
    from kaizen.signatures.render import _builtin_template, builtin_user_message

    rows = [{"name": name, "value": value} for name, value in pairs]
    rendered = _builtin_template("user.jinja").render(inputs=rows).strip()
    assert builtin_user_message(rows) == rendered
