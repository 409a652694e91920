"""The embedded model at work: loading it, and one chat completion, written once for sync and async.

- Concurrent calls are decoded together (`kaizen.llm.embedded.engine`: one decode thread,
  several sequences in one llama.cpp context, continuous batching, a prefix cache). Each reply
  reports how long it queued for a free sequence (`LocalReply.queue_time`, carried to the run
  record through the response's hidden params). `BATCHING = False` or ``KAIZEN_LOCAL_BATCH=0``
  switch to the serialised path: one `llama_cpp.Llama` behind a lock (its wait for the lock is
  the queue time). Either loads once, lazily, on first use.
- A call is the flow `generation` (`kaizen.flow`): each attempt is one effect, run by `generate`
  (blocking) or `agenerate` (awaiting; cancelling the task frees the request's sequence), and
  the flow decides what the attempt's reply means: a schema reply is normalised
  (`kaizen.llm.embedded.schema`), and one cut off by the token limit is tried once more with
  tighter caps, then reported as `LocalModelTruncated`.
- `make_local_handler` is litellm's custom provider for ``local/smollm2`` (``transport="litellm"``
  or a user's own `litellm.completion` call), on the same flow.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from kaizen import process
from kaizen.flow import Call, Flow, run_async, run_sync
from kaizen.llm.embedded.schema import (
    ARRAY_CAP,
    STRING_CAP,
    asks_for_a_tool_call,
    bounded_schema,
    normalise_json,
    requested_schema,
)
from kaizen.llm.embedded.weights import (
    LOCAL_MODEL,
    LOCAL_MODEL_ENV,
    LOCAL_PROVIDER,
    N_THREADS,
    LocalModelTruncated,
    weights_for,
)
from kaizen.llm.litellm_adapter import set_queue_time, set_response_cost

if TYPE_CHECKING:
    from kaizen.llm.embedded.engine import BatchEngine

__all__ = [
    "BATCHING",
    "LocalReply",
    "agenerate",
    "batching_enabled",
    "check_model",
    "generate",
    "generation",
    "make_local_handler",
]

N_CTX = 4096  # one call at a time (batching off)
N_CTX_BATCH = 8192  # shared by the sequences decoded together (batching on)
DEFAULT_MAX_TOKENS = 512
#: Repetition control on the batched path (`kaizen.llm.embedded.batching.Sampling`), tuned on
#: `benchmarks/demo_quality.py`: a 135M model sampled without it loops ("1.1.1.1...") and copies
#: its prompt. A call's own ``repeat_penalty`` / ``frequency_penalty`` / ``presence_penalty``
#: options override these.
REPETITION: dict[str, Any] = {
    "repeat_penalty": 1.1,
    "dry_multiplier": 0.8,
    "penalize_prompt": True,
}

#: Decode concurrent calls together (True), or one at a time behind a lock (False); None
#: follows the environment variable ``KAIZEN_LOCAL_BATCH`` (``0`` turns batching off).
BATCHING: bool | None = None

_T = TypeVar("_T")
_load_lock = threading.Lock()
_generate_lock = threading.Lock()
# Loaded models, by the weights they run (`weights_for`): the embedded model, or a user's GGUF.
_llama: dict[Path, Any] = {}
_batch_engine: dict[Path, BatchEngine] = {}
# What each model name (and the KAIZEN_LOCAL_MODEL it was read with) resolved to: no file is
# checked again on later calls.
_weights: dict[tuple[str, str], Path] = {}


def batching_enabled() -> bool:
    """Whether concurrent calls are decoded together (`BATCHING`, else ``KAIZEN_LOCAL_BATCH``)."""
    if BATCHING is not None:
        return BATCHING
    setting = os.environ.get("KAIZEN_LOCAL_BATCH", "1").strip().lower()
    return setting not in ("0", "false", "no", "off")


def resolved_weights(model: str = LOCAL_MODEL) -> Path:
    """The weights `model` runs (`weights_for`), resolved once per name and environment."""
    key = (model, os.environ.get(LOCAL_MODEL_ENV, ""))
    found = _weights.get(key)
    if found is None:
        found = _weights[key] = weights_for(model)
    return found


def _model(weights: Path | None = None) -> Any:
    """The loaded `llama_cpp.Llama` (the serialised path), created on first use (thread-safe)."""
    weights = weights or resolved_weights()

    def load() -> Any:
        from llama_cpp import Llama

        return Llama(model_path=str(weights), n_ctx=N_CTX, n_threads=N_THREADS, verbose=False)

    return _loaded(_llama, weights, load, _close)


def _engine(weights: Path | None = None) -> BatchEngine:
    """The batched decoder (`kaizen.llm.embedded.engine`) of `weights` (default: the embedded
    model's), started on first use (thread-safe)."""
    weights = weights or resolved_weights()

    def start() -> BatchEngine:
        from kaizen.llm.embedded.engine import BatchEngine

        return BatchEngine(weights, n_ctx=N_CTX_BATCH, n_threads=N_THREADS)

    return _loaded(_batch_engine, weights, start, _close_engine)


def _loaded(
    cache: dict[Path, _T], weights: Path, make: Callable[[], _T], close: Callable[[], None]
) -> _T:
    """`cache[weights]`, made by `make` on first use under the load lock. The first one made
    registers `close` at exit: the llama.cpp objects are freed before interpreter teardown
    (their `__del__` at exit finds the bindings already gone and prints a TypeError)."""
    found = cache.get(weights)
    if found is not None:
        return found
    with _load_lock:
        if weights not in cache:
            if not cache:
                atexit.register(close)
            cache[weights] = make()
    return cache[weights]


def _close() -> None:
    with _generate_lock:
        models = list(_llama.values())
        _llama.clear()
        for model in models:
            model.close()


def _close_engine() -> None:
    engines = list(_batch_engine.values())
    _batch_engine.clear()
    for engine in engines:
        engine.close()


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
    weights: Path  # the model file (`resolved_weights`)

    def caps(self) -> list[tuple[int, int]]:
        """The string and array caps of each attempt: the second is tighter (see above)."""
        return [(STRING_CAP, ARRAY_CAP), (STRING_CAP // 4, 2)] if self.schema else [(0, 0)]


def _plan(
    messages: list[dict[str, Any]], optional_params: Mapping[str, Any], timeout: Any, model: str
) -> _Plan:
    chat = [
        {"role": str(m.get("role", "user")), "content": str(m.get("content") or "")}
        for m in messages
    ]
    options: dict[str, Any] = {
        "temperature": float(optional_params.get("temperature", 0.2)),
        "max_tokens": int(optional_params.get("max_tokens") or DEFAULT_MAX_TOKENS),
    }
    for key in ("top_p", "seed", "stop", "presence_penalty", "frequency_penalty", "repeat_penalty"):
        if optional_params.get(key) is not None:
            options[key] = optional_params[key]
    response_format = optional_params.get("response_format")
    schema = requested_schema(response_format)
    if asks_for_a_tool_call(response_format):  # its arguments are copied from the prompt
        options["penalize_prompt"] = False
    seconds = float(timeout) if isinstance(timeout, int | float) and timeout > 0 else None
    return _Plan(chat, schema, options, seconds, resolved_weights(model))


def _settle(plan: _Plan, reply: LocalReply, string_cap: int, last: bool) -> LocalReply | None:
    """The reply to return, or None to try again with tighter caps."""
    if plan.schema is None:
        return reply
    normalised = normalise_json(reply.text, string_cap)
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


def generation(
    messages: list[dict[str, Any]],
    optional_params: Mapping[str, Any],
    timeout: Any = None,
    model: str = LOCAL_MODEL,
) -> Flow[LocalReply]:
    """The flow of one chat completion on `model` (a ``local/...`` name, see `weights_for`):
    its attempts (each an effect), and what they mean."""
    plan = _plan(messages, optional_params, timeout, model)
    caps = plan.caps()
    total: LocalReply | None = None
    for number, (string_cap, array_cap) in enumerate(caps):
        attempt = {"plan": plan, "string_cap": string_cap, "array_cap": array_cap}
        reply = yield Call(_attempt, _aattempt, attempt)
        total = _add(total, reply)
        settled = _settle(plan, total, string_cap, last=number == len(caps) - 1)
        if settled is not None:
            return settled
    raise AssertionError("unreachable: the last attempt settles or raises")  # pragma: no cover


def generate(
    messages: list[dict[str, Any]],
    optional_params: Mapping[str, Any],
    timeout: Any = None,
    model: str = LOCAL_MODEL,
) -> LocalReply:
    """Run one chat completion (batched with concurrent calls, unless batching is off).
    Thread-safe; blocks until the reply is complete."""
    return run_sync(generation(messages, optional_params, timeout, model))


async def agenerate(
    messages: list[dict[str, Any]],
    optional_params: Mapping[str, Any],
    timeout: Any = None,
    model: str = LOCAL_MODEL,
) -> LocalReply:
    """`generate` for asyncio: cancelling the awaiting task frees the request's sequence."""
    return await run_async(generation(messages, optional_params, timeout, model))


def _attempt(plan: _Plan, string_cap: int, array_cap: int) -> LocalReply:
    if not batching_enabled():
        return _serial_attempt(plan, string_cap, array_cap)
    engine = _engine(plan.weights)
    request = _batch_request(engine, plan, string_cap, array_cap)
    return _from_decoded(engine.submit(request).result())


async def _aattempt(plan: _Plan, string_cap: int, array_cap: int) -> LocalReply:
    if not batching_enabled():
        return await asyncio.to_thread(_serial_attempt, plan, string_cap, array_cap)
    # The first call loads the model (a second or more): not on the event loop, whose other
    # nodes go on meanwhile.
    engine = _batch_engine.get(plan.weights)
    if engine is None:
        engine = await asyncio.to_thread(_engine, plan.weights)
    request = _batch_request(engine, plan, string_cap, array_cap)
    return _from_decoded(await asyncio.wrap_future(engine.submit(request)))


def _serial_attempt(plan: _Plan, string_cap: int, array_cap: int) -> LocalReply:
    """One attempt through `llama_cpp.Llama`, one call at a time (batching off)."""
    llama = _model(plan.weights)
    options = dict(plan.options)
    options.pop("penalize_prompt", None)  # the batched path's setting (no DRY here)
    options.setdefault("repeat_penalty", REPETITION["repeat_penalty"])
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


def _batch_request(engine: BatchEngine, plan: _Plan, string_cap: int, array_cap: int) -> Any:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    from kaizen.llm.embedded.batching import Request, Sampling

    prompt, stops = engine.chat_prompt(plan.chat)
    user_stop = plan.options.get("stop") or ()
    stop = (user_stop,) if isinstance(user_stop, str) else tuple(user_stop)
    grammar = None
    if plan.schema is not None:
        bounded = bounded_schema(plan.schema, string_cap, array_cap)
        grammar = json_schema_to_gbnf(json.dumps(bounded))
    options = plan.options
    sampling = Sampling(
        temperature=options["temperature"],
        top_p=float(options.get("top_p", 0.95)),
        seed=options.get("seed"),
        repeat_penalty=float(options.get("repeat_penalty", REPETITION["repeat_penalty"])),
        frequency_penalty=float(options.get("frequency_penalty", 0.0)),
        presence_penalty=float(options.get("presence_penalty", 0.0)),
        dry_multiplier=float(REPETITION["dry_multiplier"]),
        penalize_prompt=bool(options.get("penalize_prompt", REPETITION["penalize_prompt"])),
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
    """Raise `LocalModelError` unless `model` names a model the engine can run: the embedded
    one, or a GGUF file (`weights_for`: a missing or non-GGUF file is named in the error)."""
    resolved_weights(f"{LOCAL_PROVIDER}/{model.removeprefix(f'{LOCAL_PROVIDER}/')}")


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
        response.model = f"{LOCAL_PROVIDER}/{model.removeprefix(f'{LOCAL_PROVIDER}/')}"
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
            outcome = generate(messages, optional_params or {}, kwargs.get("timeout"), model)
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
            outcome = await agenerate(messages, optional_params or {}, kwargs.get("timeout"), model)
            return fill(model_response, model, outcome)

    return LocalHandler()


def _forget_model() -> None:
    """After a fork: the child loads its own model (the batch engine's thread is not there)."""
    global _llama, _batch_engine
    _llama = {}
    _batch_engine = {}
    _weights.clear()


process.register("llm.embedded", _forget_model, fork_only=True)
