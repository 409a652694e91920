"""Render a signature and its input values as chat messages, with jinja2 templates.

The built-in templates are files in `templates/` (`system.jinja`, `user.jinja`), compiled once.
User templates render in jinja2's `SandboxedEnvironment` with `StrictUndefined`, compiled once per
source text. The system message depends only on the signature, so it is rendered once per
signature and template and then reused; each call renders only the user message.

Variables every template gets:
    instructions  the signature's instructions, or a default sentence naming the fields
    inputs        list of {name, type, description, required, value}; `value` is the input as text
                  (strings as is, everything else as JSON), "" in the system message
    outputs       list of {name, type, description}
    schema        the output JSON Schema as indented JSON text, or "" when schema_in_prompt=False
    values        {name: raw input value} ({} in the system message)
    signature     the Signature itself
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

from kaizen.errors import InputValidationError
from kaizen.missing import MISSING

from .fieldtypes import format_type
from .signature import Signature

if TYPE_CHECKING:
    from jinja2 import Template


@functools.lru_cache(maxsize=1)
def _builtin_environment() -> Any:
    from jinja2 import Environment, StrictUndefined

    return Environment(
        trim_blocks=True, lstrip_blocks=True, undefined=StrictUndefined, autoescape=False
    )


@functools.cache
def _builtin_template(name: str) -> Template:
    source = resources.files(__package__).joinpath("templates", name).read_text(encoding="utf-8")
    template: Template = _builtin_environment().from_string(source)
    return template


@functools.lru_cache(maxsize=1)
def _sandbox() -> Any:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, undefined=StrictUndefined, autoescape=False
    )


@functools.lru_cache(maxsize=256)
def compile_user_template(source: str) -> Template:
    """Compile a user-supplied template in the sandbox (cached by source text)."""
    template: Template = _sandbox().from_string(source)
    return template


def default_instructions(signature: Signature) -> str:
    ins = ", ".join(f"`{n}`" for n in signature.input_names)
    outs = ", ".join(f"`{n}`" for n in signature.output_names)
    return f"Given the fields {ins}, produce the fields {outs}."


def _field_context(signature: Signature) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    cached = signature._cache.get("field_context")
    if cached is None:
        inputs = [
            {
                "name": f.name,
                "type": format_type(f.type),
                "description": f.description,
                "required": f.required,
                "value": "",
            }
            for f in signature.input_fields
        ]
        outputs = [
            {"name": f.name, "type": format_type(f.type), "description": f.description}
            for f in signature.output_fields
        ]
        cached = (inputs, outputs)
        signature._cache["field_context"] = cached
    return cached


def _system_message(signature: Signature, template: str | None, schema_in_prompt: bool) -> str:
    key = ("system", template, schema_in_prompt)
    text = signature._cache.get(key)
    if text is None:
        inputs, outputs = _field_context(signature)
        compiled = (
            _builtin_template("system.jinja")
            if template is None
            else compile_user_template(template)
        )
        text = compiled.render(
            instructions=signature.instructions or default_instructions(signature),
            inputs=[dict(f) for f in inputs],
            outputs=[dict(f) for f in outputs],
            schema=signature.schema_text() if schema_in_prompt else "",
            values={},
            signature=signature,
        ).strip()
        signature._cache[key] = text
    return text


def format_value(value: Any) -> str:
    """An input value as prompt text: strings as is, models and other values as JSON."""
    if isinstance(value, str):
        return value
    model_dump_json = getattr(value, "model_dump_json", None)
    if callable(model_dump_json):
        return str(model_dump_json())
    try:
        return json.dumps(value, ensure_ascii=False, default=_json_fallback)
    except (TypeError, ValueError):
        return repr(value)


def _json_fallback(value: Any) -> Any:
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    return str(value)


def builtin_user_message(rows: Sequence[Mapping[str, Any]]) -> str:
    """What ``templates/user.jinja`` renders for these input rows (each input's name, a colon,
    its value on the next line; a blank line between inputs), without a template engine:
    `tests/test_signatures_properties.py` checks the two agree."""
    return "\n\n".join(f"{row['name']}:\n{row['value']}" for row in rows).strip()


def render_messages(
    signature: Signature,
    inputs: Mapping[str, Any],
    *,
    template: str | None = None,
    user_template: str | None = None,
    schema_in_prompt: bool = True,
) -> list[dict[str, str]]:
    """`[system, user]` chat messages asking a model to fill the signature's outputs.

    `template` replaces the system-message template and `user_template` the user-message one;
    both are jinja2 source rendered in the sandbox, with the variables listed in this module's
    docstring. Inputs with defaults may be omitted; a missing required input raises
    `InputValidationError`.
    """
    system = _system_message(signature, template, schema_in_prompt)
    fields, _ = _field_context(signature)
    rows: list[dict[str, Any]] = []
    missing: list[tuple[str, str]] = []
    for f, row in zip(signature.input_fields, fields, strict=True):
        value = inputs.get(f.name, f.default)
        if value is MISSING:
            missing.append((f.name, "is missing"))
            continue
        rows.append({**row, "value": format_value(value)})
    if missing:
        names = ", ".join(f"`{name}`" for name, _ in missing)
        raise InputValidationError(
            f"cannot render the prompt: missing input(s) {names}", errors=missing
        )
    if user_template is None:  # templates/user.jinja, written out: it runs on every call
        user = builtin_user_message(rows)
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]
    compiled = compile_user_template(user_template)
    _, outputs = _field_context(signature)
    user = compiled.render(
        instructions=signature.instructions or default_instructions(signature),
        inputs=rows,
        outputs=outputs,
        schema=signature.schema_text() if schema_in_prompt else "",
        values=dict(inputs),
        signature=signature,
    ).strip()
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]
