"""Kaizen's own litellm providers, and the one place litellm is imported.

litellm costs seconds to import, so nothing imports it at `import kaizen` time:
`load_litellm()` imports it on first use, quiets it, and registers Kaizen's custom providers
exactly once (thread-safe, idempotent, and without disturbing providers the user registered):

- ``kaizen-scripted/<name>``: `kaizen.testing.ScriptedModel`, the scriptable test model;
- ``local/smollm2``: the embedded SmolLM2 model (`kaizen.local_model`).

Both answer every structured-output request, so `kaizen.llm` always sends them the JSON Schema.
"""

from __future__ import annotations

import os
import threading
from types import ModuleType
from typing import Any

SCRIPTED_PROVIDER = "kaizen-scripted"
LOCAL_PROVIDER = "local"
KAIZEN_PROVIDERS = frozenset({SCRIPTED_PROVIDER, LOCAL_PROVIDER})

_lock = threading.Lock()
_loaded: ModuleType | None = None


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
            _loaded = litellm
    return _loaded


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
    "load_litellm",
    "provider_of",
]
