"""Kaizen's own litellm providers, and the one place litellm is imported.

litellm costs seconds to import, so nothing imports it at `import kaizen` time:
`load_litellm()` imports it on first use, quiets it, and registers Kaizen's custom providers
exactly once (thread-safe, idempotent, and without disturbing providers the user registered):

- ``kaizen-scripted/<name>``: `kaizen.testing.ScriptedModel`, the scriptable test model;
- ``local/smollm2``: the embedded SmolLM2 model (`kaizen.local_model`).

Both answer every structured-output request, so `kaizen.llm` always sends them the JSON Schema.

`litellm_logging_off()` wraps every Kaizen call to litellm. litellm hands each call's success
and failure logging to one process-wide background worker (``GLOBAL_LOGGING_WORKER``) bound to a
single event loop, plus a thread pool on the sync path. Kaizen runs coroutines on one loop per
thread (and `asyncio.run` in user code makes more), so that worker keeps being rebound between
loops: it revives coroutines another loop already started ("cannot reuse already awaited
coroutine"), strands its own tasks ("Task was destroyed but it is pending!") and prints the
tracebacks to stderr. Kaizen records usage and cost itself and registers no litellm callbacks, so
while the user has registered none either, its calls run in litellm's internal-call context,
which skips that machinery (and its CPU cost) without changing the response or the cost litellm
computes for it. A user who registers litellm callbacks or a litellm budget gets litellm's
logging back, unchanged.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from types import ModuleType
from typing import Any

SCRIPTED_PROVIDER = "kaizen-scripted"
LOCAL_PROVIDER = "local"
KAIZEN_PROVIDERS = frozenset({SCRIPTED_PROVIDER, LOCAL_PROVIDER})

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
            import litellm

            litellm.suppress_debug_info = True  # no "Give Feedback" banners on stdout
            _register(litellm)
            _find_internal_call_flag()
            _loaded = litellm
    return _loaded


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


def _register(litellm: Any) -> None:
    from kaizen.local_model import make_local_handler
    from kaizen.testing import make_scripted_handler

    handlers = {
        SCRIPTED_PROVIDER: make_scripted_handler,
        LOCAL_PROVIDER: make_local_handler,
    }
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


def provider_of(model: str) -> str | None:
    """The provider prefix of a litellm model name (``"openai/gpt-4o"`` -> ``"openai"``)."""
    prefix, sep, _ = model.partition("/")
    return prefix if sep else None


def is_kaizen_model(model: str) -> bool:
    """True for models served by Kaizen's own providers (scripted and embedded local)."""
    return provider_of(model) in KAIZEN_PROVIDERS


__all__ = [
    "KAIZEN_PROVIDERS",
    "LOCAL_PROVIDER",
    "SCRIPTED_PROVIDER",
    "is_kaizen_model",
    "litellm_logging_off",
    "litellm_logging_wanted",
    "load_litellm",
    "provider_of",
]
