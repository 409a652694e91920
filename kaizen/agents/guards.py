"""Input guards: size limits and pattern policies on an agent's inputs, checked before any model
call (the agent config key ``input_guards``).

    config={"input_guards": {
        "max_chars": 4000,                       # every input; or {"question": 500, ...} per field
        "deny_patterns": [r"(?i)ignore (all )?previous instructions", r"\\bDROP\\s+TABLE\\b"],
        "fields": ["question"],                  # optional: only these inputs are checked
    }}

An input is measured and matched as the text the prompt shows (`format_value`: a str as it is,
anything else as JSON). A failing input raises `InputGuardError` (an `InputValidationError`)
naming the agent, the field and the rule, never the value: `agent.execute` raises it before
anything runs, and in a workflow the agent's node fails with it before its model is called.

Separately, and always: input values are never rendered as templates. The prompt templates
receive them as data, so ``{{ ... }}`` in a value reaches the model literally
(tests/test_guards.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kaizen.errors import ConfigError, InputGuardError

__all__ = ["InputGuards", "check_inputs", "input_guards"]

GUARD_KEYS = frozenset({"max_chars", "deny_patterns", "fields"})


@dataclass(frozen=True, slots=True)
class InputGuards:
    """The parsed ``input_guards`` option."""

    max_chars: int | None = None
    max_chars_by_field: tuple[tuple[str, int], ...] = ()
    deny_patterns: tuple[re.Pattern[str], ...] = ()
    fields: frozenset[str] | None = None  # None: every input

    def limit_for(self, name: str) -> int | None:
        for field_name, limit in self.max_chars_by_field:
            if field_name == name:
                return limit
        return self.max_chars


def input_guards(option: Mapping[str, Any] | None) -> InputGuards | None:
    """The config's ``input_guards`` as `InputGuards` (None: no guards); `ConfigError` naming
    what is wrong (an unknown key, a bad limit, a pattern that does not compile)."""
    if option is None:
        return None
    if not isinstance(option, Mapping):
        raise ConfigError(f"input_guards must be a dict, got {type(option).__name__}")
    unknown = sorted(set(option) - GUARD_KEYS)
    if unknown:
        raise ConfigError(f"input_guards: unknown key(s) {unknown}; known: {sorted(GUARD_KEYS)}")
    max_chars: int | None = None
    by_field: tuple[tuple[str, int], ...] = ()
    limit = option.get("max_chars")
    if isinstance(limit, Mapping):
        by_field = tuple((str(name), _limit(value, name)) for name, value in limit.items())
    elif limit is not None:
        max_chars = _limit(limit, None)
    patterns: list[re.Pattern[str]] = []
    for pattern in option.get("deny_patterns") or ():
        if not isinstance(pattern, str):
            raise ConfigError(f"input_guards.deny_patterns: {pattern!r} is not a str")
        try:
            patterns.append(re.compile(pattern))
        except re.error as exc:
            message = f"input_guards.deny_patterns: {pattern!r} is not a regex: {exc}"
            raise ConfigError(message) from None
    fields = option.get("fields")
    if fields is not None and (
        isinstance(fields, str) or not all(isinstance(name, str) for name in fields)
    ):
        raise ConfigError(f"input_guards.fields must be a list of input names, got {fields!r}")
    chosen = frozenset(fields) if fields is not None else None
    return InputGuards(max_chars, by_field, tuple(patterns), chosen)


def _limit(value: Any, name: str | None) -> int:
    where = "input_guards.max_chars" + (f"[{name!r}]" if name else "")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where} must be a positive int, got {value!r}")
    return value


def check_inputs(guards: InputGuards, agent: str, inputs: Mapping[str, Any]) -> None:
    """Raise `InputGuardError` for the first input that breaks a guard (see the module
    docstring); every failing field is listed in its `errors`."""
    from kaizen.signatures.render import format_value

    problems: list[tuple[str, str]] = []
    for name, value in inputs.items():
        if guards.fields is not None and name not in guards.fields:
            continue
        text = format_value(value)
        limit = guards.limit_for(name)
        if limit is not None and len(text) > limit:
            problems.append((name, f"is {len(text)} characters, over the limit of {limit}"))
            continue
        for pattern in guards.deny_patterns:
            if pattern.search(text):
                problems.append((name, f"matches the denied pattern {pattern.pattern!r}"))
                break
    if problems:
        detail = "; ".join(f"input {name!r} {why}" for name, why in problems)
        raise InputGuardError(
            f"agent {agent!r}: {detail} (config input_guards); nothing was sent to the model",
            errors=problems,
            agent=agent,
        )
