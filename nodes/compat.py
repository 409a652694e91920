"""Port type compatibility: may a value of a source port's type flow into a target port?

The rule is gradual and sound: `Any` (and an annotation that could not be resolved, kept as a
string) is compatible with everything; otherwise a connection is accepted only when every value
the source can produce is a valid value for the target:

- classes: subclass into base class (a pydantic model into the same model or a parent), plus the
  numeric promotions Python itself makes (`int` into `float` or `complex`, `float` into `complex`);
- unions (`X | Y`, `Optional[X]`): every member of the source must fit some member of the
  target, so `int | None` does *not* fit `int` (the source may produce `None`), while `int`
  fits `int | None`;
- generics: the origins must be compatible (`list` into `Sequence`, `dict` into `Mapping`) and the
  type arguments too, read covariantly because values are passed, not shared for mutation;
  a bare `list` is `list[Any]`. Fixed-length tuples must match element by element;
- `Literal[...]`: a literal source fits when each of its values fits the target; a plain `str`
  does not fit `Literal["a", "b"]` (the values cannot be proven);
- `Annotated[T, ...]` is `T`; a `TypeVar` is its bound (or `Any`); `object` accepts everything.
"""

from __future__ import annotations

import collections.abc as cabc
import types
from functools import lru_cache
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

__all__ = ["is_compatible"]

_NONE_TYPE = type(None)
_PROMOTIONS: dict[type, tuple[type, ...]] = {int: (float, complex), float: (complex,)}
_UNION_ORIGINS: tuple[Any, ...] = (Union, types.UnionType)


def is_compatible(source_type: Any, target_type: Any) -> bool:
    """True when any value of `source_type` is acceptable where `target_type` is expected."""
    if source_type is target_type or target_type is Any or source_type is Any:
        return True
    try:
        return _cached(source_type, target_type)
    except TypeError:  # an unhashable annotation: decide without the cache
        return _compatible(source_type, target_type)


@lru_cache(maxsize=4096)
def _cached(source_type: Any, target_type: Any) -> bool:
    return _compatible(source_type, target_type)


def _normalize(tp: Any) -> Any:
    if tp is None:
        return _NONE_TYPE
    if isinstance(tp, TypeVar):
        return tp.__bound__ if tp.__bound__ is not None else Any
    if get_origin(tp) is Annotated:
        return _normalize(get_args(tp)[0])
    return tp


def _is_unknown(tp: Any) -> bool:
    return tp is Any or tp is object or isinstance(tp, str)


def _compatible(source: Any, target: Any) -> bool:
    source, target = _normalize(source), _normalize(target)
    if source == target or _is_unknown(target) or source is Any or isinstance(source, str):
        return True
    source_origin, target_origin = get_origin(source), get_origin(target)

    if source_origin in _UNION_ORIGINS:
        return all(_compatible(member, target) for member in get_args(source))
    if source_origin is Literal:
        return all(_literal_fits(value, target) for value in get_args(source))
    if target_origin in _UNION_ORIGINS:
        return any(_compatible(source, member) for member in get_args(target))
    if target_origin is Literal:
        return False

    source_class = source_origin or source
    target_class = target_origin or target
    if not _class_fits(source_class, target_class):
        return False
    if target_origin is None:  # a bare target class accepts any parameterisation
        return True
    if target_class is cabc.Callable:
        return True  # parameter and return types of callables are not checked
    return _arguments_fit(source_class, target_class, get_args(source), get_args(target))


def _class_fits(source: Any, target: Any) -> bool:
    if source == target:
        return True
    if not isinstance(source, type) or not isinstance(target, type):
        return False
    if source in _PROMOTIONS and target in _PROMOTIONS[source]:
        return True
    if target is cabc.Callable:
        return callable(source) or issubclass(source, cabc.Callable)
    try:
        return issubclass(source, target)
    except TypeError:  # TypedDict and non-runtime protocols refuse class checks
        return False


def _arguments_fit(
    source_class: type, target_class: type, source: tuple[Any, ...], target: tuple[Any, ...]
) -> bool:
    if not target or not source:  # a bare `list` is `list[Any]`
        return True
    if isinstance(source_class, type) and issubclass(source_class, tuple):
        if isinstance(target_class, type) and issubclass(target_class, tuple):
            return _tuple_fits(source, target)
        # a tuple into Sequence[T] / Iterable[T]: each element type must fit T
        elements = source[:1] if len(source) == 2 and source[1] is Ellipsis else source
        return all(_compatible(element, target[0]) for element in elements)
    # a dict[K, V] into Iterable[K] compares the leading arguments only
    return all(_compatible(s, t) for s, t in zip(source, target, strict=False))


def _tuple_fits(source: tuple[Any, ...], target: tuple[Any, ...]) -> bool:
    source_variadic = len(source) == 2 and source[1] is Ellipsis
    target_variadic = len(target) == 2 and target[1] is Ellipsis
    if target_variadic:
        elements = source[:1] if source_variadic else source
        return all(_compatible(element, target[0]) for element in elements)
    if source_variadic or len(source) != len(target):
        return False
    return all(_compatible(s, t) for s, t in zip(source, target, strict=True))


def _literal_fits(value: Any, target: Any) -> bool:
    if get_origin(target) is Literal:
        return value in get_args(target)
    if get_origin(target) in _UNION_ORIGINS:
        return any(_literal_fits(value, member) for member in get_args(target))
    return _compatible(type(value), target)
