"""Hooks written in the old keyword-argument form, kept working for one release (deprecated).

Before moments were events, a hook method took the moment's fields as keyword arguments
(``def on_node_finish(self, *, run_id, node_id, status, ...)``). Such a method (one that takes
no positional argument) is wrapped in a `KeywordCall`, which spreads the event's fields into
keywords: the same names and values as before. Registering a class written that way warns
once (`DeprecationWarning`); write ``def on_node_finish(self, event: NodeFinished)`` instead.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from dataclasses import fields
from typing import Any

from kaizen.moments import Moment

__all__ = ["KeywordCall", "takes_keywords", "warn_keyword_style"]

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def takes_keywords(function: Callable[..., Any]) -> bool:
    """Whether a hook method (as found on its class, `self` first) takes no positional
    argument besides `self`: the old keyword-argument form."""
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):  # a builtin or a callable object: the event form
        return False
    if inspect.isfunction(function):
        parameters = parameters[1:]  # self
    return not any(p.kind in _POSITIONAL or p.kind is inspect.Parameter.VAR_POSITIONAL
                   for p in parameters)  # fmt: skip


def warn_keyword_style(cls: type) -> None:
    warnings.warn(
        f"hook class {cls.__module__}.{cls.__qualname__} takes moments as keyword arguments, "
        "which is deprecated and will stop working in the next release: take the event "
        "instead, e.g. `def on_node_finish(self, event: kaizen.NodeFinished)` "
        "(docs/runtime.md, Hooks)",
        DeprecationWarning,
        stacklevel=5,
    )


class KeywordCall:
    """Calls an old-form hook method with an event's fields as keyword arguments."""

    __slots__ = ("__self__", "method", "names")

    def __init__(self, method: Callable[..., None], moment: type[Moment]) -> None:
        self.method = method
        self.names = tuple(f.name for f in fields(moment))
        self.__self__ = getattr(method, "__self__", method)  # the hook, named in hook errors

    def __call__(self, event: Moment) -> None:
        self.method(**{name: getattr(event, name) for name in self.names})
