"""Port type compatibility (`kaizen.nodes.compat.is_compatible`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal, Optional, TypedDict, TypeVar

import pydantic
import pytest

from kaizen.nodes.compat import is_compatible
from kaizen.text import type_name as format_type


class Answer(pydantic.BaseModel):
    text: str


class DetailedAnswer(Answer):
    sources: list[str]


class Other(pydantic.BaseModel):
    text: str


class Movie(TypedDict):
    title: str


T = TypeVar("T")
Number = TypeVar("Number", bound=float)

COMPATIBLE = [
    (int, int),
    (str, str),
    (int, float),
    (int, complex),
    (float, complex),
    (bool, int),
    (str, Any),
    (Any, int),
    (list[str], Any),
    (int, object),
    (list[str], list[str]),
    (list[int], list[float]),
    (list[str], list),
    (list, list[str]),
    (list[str], Sequence[str]),
    (tuple[int, ...], Sequence[int]),
    (tuple[int, str], tuple[int, str]),
    (tuple[int, int], tuple[float, ...]),
    (dict[str, int], dict[str, int]),
    (dict[str, int], Mapping[str, float]),
    (dict[str, int], Iterable[str]),
    (Answer, Answer),
    (DetailedAnswer, Answer),
    (Movie, Movie),
    (int, Optional[int]),  # noqa: UP045 - Optional spelled the old way on purpose
    (int, int | None),
    (None, int | None),
    (int | float, float),
    (Literal["a", "b"], str),
    (Literal["a"], Literal["a", "b"]),
    (Literal[1, 2], float),
    (Annotated[int, "count"], int),
    (int, Annotated[float, "x"]),
    (T, int),
    (Number, float),
    ("SomeUnresolvedName", int),
    (Callable[[int], int], Callable[..., Any]),
    (list[int | None], list[int | None]),
    (Optional[list[str]], list[str] | None),  # noqa: UP045
]

INCOMPATIBLE = [
    (str, int),
    (int, str),
    (float, int),
    (Answer, DetailedAnswer),
    (Answer, Other),
    (dict[str, Any], Answer),
    (list[str], list[int]),
    (list[str], str),
    (str, list[str]),
    (tuple[int, ...], tuple[int, int]),
    (tuple[int, str], tuple[int, str, str]),
    (dict[str, str], dict[str, int]),
    (int | None, int),
    (Optional[str], str),  # noqa: UP045
    (str, Literal["a", "b"]),
    (Literal["a", "c"], Literal["a", "b"]),
    (Literal["a"], int),
    (None, int),
    (list[str], Mapping[str, Any]),
    (dict[str, Any], Movie),
    (Number, int),
]


@pytest.mark.parametrize(("source", "target"), COMPATIBLE)
def test_compatible_pairs(source: Any, target: Any) -> None:
    assert is_compatible(source, target), f"{source} should flow into {target}"


@pytest.mark.parametrize(("source", "target"), INCOMPATIBLE)
def test_incompatible_pairs(source: Any, target: Any) -> None:
    assert not is_compatible(source, target), f"{source} must not flow into {target}"


def test_unhashable_annotations_are_still_decided() -> None:
    unhashable = Annotated[int, {"unhashable": []}]
    assert is_compatible(unhashable, float)
    assert not is_compatible(unhashable, str)


def test_format_type_is_short() -> None:
    assert format_type(int) == "int"
    assert format_type(list[str]) == "list[str]"
    assert format_type(Any) == "Any"
    assert format_type(None) == "None"
    assert format_type(Answer) == "Answer"
    assert "Optional" in format_type(Optional[int]) or "None" in format_type(Optional[int])  # noqa: UP045
