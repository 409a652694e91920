"""The one module that touches litellm's private parts, and the one place litellm is imported.

litellm costs seconds to import, so nothing imports it at `import kaizen` time: `load_litellm()`
imports it on first use, quiets it, and registers the custom providers given to
`register_provider` (thread-safe, idempotent, without disturbing providers the user registered):

- ``local/smollm2``: the embedded SmolLM2 model (`kaizen.llm.embedded`, registered by
  `kaizen.llm.call`);
- ``kaizen-scripted/<name>``: `kaizen.testing.ScriptedModel` with ``transport="litellm"``
  (registered by `kaizen.testing.scripted_litellm`; by default it answers in-process).

`completion(**kwargs)` / `acompletion(**kwargs)` are how every Kaizen model call reaches litellm.
They run inside litellm's internal-call context while the user has registered no litellm
callbacks: litellm hands each call's success and failure logging to one process-wide worker bound
to a single event loop, and Kaizen runs coroutines on one loop per thread (user code with
`asyncio.run` makes more), so that worker keeps being rebound between loops, revives coroutines
another loop started ("cannot reuse already awaited coroutine"), strands its tasks ("Task was
destroyed but it is pending!") and prints the tracebacks. Kaizen records usage and cost itself,
so skipping that machinery changes neither the response nor its cost. A user who registers
litellm callbacks or a litellm budget gets litellm's logging back, unchanged.

Private litellm names used here, all listed in `PRIVATE_NAMES` (a test fails loudly the day a
litellm upgrade removes one): `litellm._custom_providers`, `litellm._internal_context`, and the
`_hidden_params` of a response (where litellm keeps the cost it computed, and where Kaizen's own
providers leave the seconds a call queued before the model took it: `set_queue_time`).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from types import ModuleType
from typing import Any

from kaizen.logs import host_logging_kept

__all__ = [
    "PRIVATE_NAMES",
    "acompletion",
    "completion",
    "is_kaizen_model",
    "is_kaizen_provider",
    "litellm_logging_off",
    "litellm_logging_wanted",
    "load_litellm",
    "missing_private_names",
    "provider_of",
    "queue_time",
    "register_provider",
    "response_cost",
    "set_queue_time",
    "set_response_cost",
    "token_cost",
]

#: The private litellm names this module relies on (checked by tests/test_layout.py).
PRIVATE_NAMES = (
    "litellm._custom_providers",
    "litellm._internal_context.is_internal_call",
    "litellm.ModelResponse()._hidden_params",
)

# Where a user's litellm callbacks live; any of them set means litellm's logging is wanted.
_CALLBACK_LISTS = (
    "callbacks",
    "success_callback",
    "failure_callback",
    "_async_success_callback",
    "_async_failure_callback",
    "input_callback",
    "service_callback",
)

_lock = threading.Lock()
_loaded: ModuleType | None = None
_internal_call: ContextVar[bool] | None = None
_providers: dict[str, Callable[[], Any]] = {}  # provider name -> handler factory


def load_litellm() -> ModuleType:
    """Import litellm (once) with Kaizen's providers registered; returns the module."""
    global _loaded
    if _loaded is not None:
        return _loaded
    with _lock:
        if _loaded is None:
            # Without this litellm fetches its price list from GitHub on import, retrying for
            # seconds when offline; the copy bundled with the installed version is enough.
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            with host_logging_kept():
                import litellm

            litellm.suppress_debug_info = True  # no "Give Feedback" banners on stdout
            _register(litellm, dict(_providers))
            _find_internal_call_flag()
            _loaded = litellm
    return _loaded


def provider_of(model: str) -> str | None:
    """The provider prefix of a litellm model name (``"openai/gpt-4o"`` -> ``"openai"``)."""
    prefix, sep, _ = model.partition("/")
    return prefix if sep else None


def is_kaizen_model(model: str) -> bool:
    """True for models served by a provider Kaizen registered (the embedded and test models):
    they take every structured-output request and cost nothing."""
    return provider_of(model) in _providers


def is_kaizen_provider(provider: object) -> bool:
    """True for the name of a provider Kaizen registered (`register_provider`)."""
    return isinstance(provider, str) and provider in _providers


def register_provider(name: str, make_handler: Callable[[], Any]) -> None:
    """Serve models named ``<name>/...`` with the litellm `CustomLLM` that `make_handler()`
    returns; made when litellm loads (or now, if it is loaded already). Idempotent per name."""
    with _lock:
        if name in _providers:
            return
        _providers[name] = make_handler
        litellm = _loaded
    if litellm is not None:
        with _lock:
            _register(litellm, {name: make_handler})


def _register(litellm: Any, handlers: Mapping[str, Callable[[], Any]]) -> None:
    present = {item.get("provider") for item in litellm.custom_provider_map}
    additions = [
        {"provider": name, "custom_handler": make()}
        for name, make in handlers.items()
        if name not in present
    ]
    # A new list, not an in-place append: litellm iterates this map while serving other calls.
    litellm.custom_provider_map = [*litellm.custom_provider_map, *additions]
    for name in handlers:
        if name not in litellm.provider_list:
            litellm.provider_list.append(name)
        if name not in litellm._custom_providers:
            litellm._custom_providers.append(name)


def _find_internal_call_flag() -> None:
    global _internal_call
    try:
        from litellm._internal_context import is_internal_call
    except ImportError:  # another litellm version: its logging stays on (noisy, still correct)
        return
    if isinstance(is_internal_call, ContextVar):
        _internal_call = is_internal_call


def litellm_logging_wanted(litellm: Any) -> bool:
    """True when the user registered litellm callbacks or a budget: both need its logging."""
    if getattr(litellm, "max_budget", None):
        return True
    return any(getattr(litellm, name, None) for name in _CALLBACK_LISTS)


@contextlib.contextmanager
def litellm_logging_off() -> Iterator[None]:
    """Run the litellm calls inside without litellm's own success/failure logging machinery.

    A no-op when the user registered litellm callbacks or a budget (`litellm_logging_wanted`).
    Safe in coroutines: the flag is a context variable, set and reset in the caller's context.
    """
    litellm = load_litellm()
    flag = _internal_call
    if flag is None or litellm_logging_wanted(litellm):
        yield
        return
    token = flag.set(True)
    try:
        yield
    finally:
        flag.reset(token)


def completion(**kwargs: Any) -> Any:
    """`litellm.completion(**kwargs)`, without litellm's logging machinery (see above)."""
    litellm = load_litellm()
    with litellm_logging_off():
        return litellm.completion(**kwargs)


async def acompletion(**kwargs: Any) -> Any:
    """`await litellm.acompletion(**kwargs)`, without litellm's logging machinery."""
    litellm = load_litellm()
    with litellm_logging_off():
        return await litellm.acompletion(**kwargs)


def embedding(model: str, texts: list[str]) -> list[list[float]]:
    """`litellm.embedding(model, input=texts)`: one vector per text, in order."""
    litellm = load_litellm()
    with litellm_logging_off():
        response = litellm.embedding(model=model, input=texts)
    rows = sorted(response.data, key=lambda row: row["index"])
    return [list(row["embedding"]) for row in rows]


_NOT_PRICED = object()


def response_cost(response: Any, model: str) -> float | None:
    """The USD cost litellm computed for a response (None: the model is not in its price map),
    or the cost its calculator gives when the response carries none."""
    hidden = getattr(response, "_hidden_params", None)
    if isinstance(hidden, Mapping):
        priced = hidden.get("response_cost", _NOT_PRICED)
    else:
        priced = getattr(hidden, "response_cost", _NOT_PRICED)
    if priced is None or isinstance(priced, int | float):
        return None if priced is None else float(priced)
    litellm = load_litellm()
    try:  # a response litellm did not price (other versions): ask its calculator directly
        return float(litellm.completion_cost(completion_response=response, model=model) or 0.0)
    except Exception:  # litellm raises for models missing from its price map
        return None


_token_prices: dict[str, tuple[float, float] | None] = {}


def token_cost(model: str, prompt_tokens: int, completion_tokens: int) -> float:
    """The USD cost of a call from litellm's price map, looked up once per model (0.0 for a
    model the map does not know)."""
    if model not in _token_prices:
        litellm = load_litellm()
        try:
            per_prompt, per_completion = litellm.cost_per_token(
                model=model, prompt_tokens=1_000_000, completion_tokens=1_000_000
            )
            _token_prices[model] = (per_prompt / 1_000_000, per_completion / 1_000_000)
        except Exception:  # litellm raises for models missing from its price map
            _token_prices[model] = None
    prices = _token_prices[model]
    if prices is None:
        return 0.0
    per_prompt, per_completion = prices
    return prompt_tokens * per_prompt + completion_tokens * per_completion


def set_response_cost(response: Any, cost: float) -> None:
    """Tell litellm what a response from one of Kaizen's own providers cost (they are free),
    which saves litellm pricing an unknown model on every call."""
    response._hidden_params["response_cost"] = cost


_QUEUE_TIME = "kaizen_queue_time"


def set_queue_time(response: Any, seconds: float) -> None:
    """Record on a response from one of Kaizen's providers how long the call waited for the
    model before generation began (the embedded model's queue)."""
    response._hidden_params[_QUEUE_TIME] = float(seconds)


def queue_time(response: Any) -> float:
    """The seconds a response's call queued before generation (0.0 when none was recorded)."""
    hidden = getattr(response, "_hidden_params", None)
    value = hidden.get(_QUEUE_TIME) if isinstance(hidden, Mapping) else None
    return float(value) if isinstance(value, int | float) else 0.0


def missing_private_names() -> list[str]:
    """The names of `PRIVATE_NAMES` the installed litellm no longer has (empty: all present)."""
    litellm = load_litellm()
    missing = []
    if not isinstance(getattr(litellm, "_custom_providers", None), list):
        missing.append(PRIVATE_NAMES[0])
    try:
        context = importlib.import_module("litellm._internal_context")
        if not isinstance(getattr(context, "is_internal_call", None), ContextVar):
            missing.append(PRIVATE_NAMES[1])
    except ImportError:
        missing.append(PRIVATE_NAMES[1])
    if not isinstance(getattr(litellm.ModelResponse(), "_hidden_params", None), dict):
        missing.append(PRIVATE_NAMES[2])
    return missing
